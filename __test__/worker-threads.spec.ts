// Ports inside worker_threads: delivery on the Worker's own thread, and
// cleanup when a Worker ends with registrations pending.

import test from 'ava'
import { join } from 'node:path'
import { threadId, Worker } from 'node:worker_threads'

import { CompletionPortEpollAction as Action, EPOLLIN } from '..'
import * as libc from '../examples/libc'
import { createPort, Descriptors, lastJsonLine, Recorder, runFixture, withDeadline } from './helpers'

interface WorkerMessage {
  type: 'ready' | 'completion'
  action?: Action
  events?: number
  threadId: number
}

test('port works inside a Worker', async (t) => {
  const fds = new Descriptors(t)
  const [workerFd, workerPeer] = fds.socketpair()
  const [mainFd, mainPeer] = fds.socketpair()
  const mainPort = createPort(t)
  const mainRecorder = new Recorder()
  mainPort.add(mainFd, EPOLLIN, mainRecorder.callback)

  const worker = new Worker(join(__dirname, 'fixtures', 'port-worker.js'), {
    workerData: { fd: workerFd, mode: 'complete' },
  })
  // worker.threadId becomes -1 once the Worker exits.
  const workerThreadId = worker.threadId
  const exited = new Promise<number>((resolve) => worker.on('exit', resolve))
  const messages: WorkerMessage[] = []
  const completed = new Promise<WorkerMessage>((resolve, reject) => {
    worker.on('error', reject)
    worker.on('message', (message: WorkerMessage) => {
      messages.push(message)
      if (message.type === 'ready') {
        libc.write(workerPeer, Buffer.from('for the worker'))
        libc.write(mainPeer, Buffer.from('for the main thread'))
      } else {
        resolve(message)
      }
    })
  })
  const completion = await withDeadline(completed, 'the completion in the Worker')
  const mainCompletion = await mainRecorder.first()
  // The worker closed its port, so nothing keeps it alive.
  const exitCode = await withDeadline(exited, 'the Worker to exit')

  t.is(completion.action, Action.EPOLLIN)
  t.is(completion.threadId, workerThreadId, 'the callback ran on the Worker thread')
  t.not(completion.threadId, threadId)
  t.is(mainCompletion.action, Action.EPOLLIN)
  t.is(mainCompletion.threadId, threadId, 'the main port delivered on the main thread')
  t.is(messages.filter((message) => message.type === 'completion').length, 1)
  t.is(exitCode, 0)
})

for (const mode of ['hold', 'blocked', 'exit']) {
  const name = {
    hold: 'terminated Worker',
    blocked: 'terminated blocked Worker',
    exit: 'Worker calling process.exit',
  }[mode]
  test(`${name} leaves no thread or fd`, async (t) => {
    const result = await runFixture('worker-teardown.ts', { args: [mode] })

    t.false(result.timedOut, 'the process finished before the deadline')
    t.is(result.code, 0, `the process did not crash: ${result.stderr}`)
    const output = lastJsonLine(result)
    t.true(output.started, 'the port in the Worker started its worker thread')
    t.true(output.stopped, 'the worker thread of the port stopped')
    t.true(output.closed, 'the epoll fd and eventfd closed')
    t.deepEqual(output.completions, [], 'no callback ran after the Worker ended')
  })
}
