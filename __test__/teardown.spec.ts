// What the last decRef releases: the worker thread, the two epoll fds, the
// eventfd and the native memory. The tests count them in /proc/self, so they
// run one at a time and this file creates no port outside them.

import test from 'ava'
import { readlinkSync } from 'node:fs'

import { CompletionPort, CompletionPortEpollAction as Action, EPOLLIN } from '..'
import * as libc from '../examples/libc'
import {
  anonInodeDescriptors,
  CLOSE_THREAD_NAME,
  createPortWithDescriptors,
  Descriptors,
  eventually,
  lastJsonLine,
  Recorder,
  runFixture,
  threadNames,
  workerThreadIds,
} from './helpers'

/**
 * Limit for the RSS growth over the measured rounds of
 * fixtures/closed-port-memory.ts. In 58 runs on a 2-core x86-64 VM, 20 of
 * them beside a full ava run, the growth stayed below 3.3 MB. An open port
 * with 5000 registrations uses about 0.3 MB of malloc memory there, and
 * keeping 0.2 MB per closed port alive (a Buffer standing in for a native
 * leak) made the growth 23 MB.
 */
const MAX_RSS_GROWTH_BYTES = 8 * 1024 * 1024

test.serial('last decRef stops worker and closes descriptors', async (t) => {
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const threadsBefore = workerThreadIds().length
  const descriptorsBefore = anonInodeDescriptors()

  const port = new CompletionPort()
  t.true(await eventually(() => workerThreadIds().length === threadsBefore + 1), 'the port started a worker thread')
  const opened = anonInodeDescriptors().filter((entry) => !descriptorsBefore.includes(entry))
  t.deepEqual(
    opened.map((entry) => entry.split(' ')[1]).sort(),
    ['anon_inode:[eventfd]', 'anon_inode:[eventpoll]', 'anon_inode:[eventpoll]'],
    'the port opened two epoll fds and an eventfd',
  )
  const recorder = new Recorder()
  port.add(local, EPOLLIN, recorder.callback)

  port.decRef()
  t.deepEqual(anonInodeDescriptors(), descriptorsBefore, 'decRef closed all three descriptors')
  t.true(
    await eventually(() => workerThreadIds().length === threadsBefore),
    `worker threads left: ${workerThreadIds().length - threadsBefore}`,
  )
  const completion = await recorder.first('ABANDONED')
  t.is(completion.action, Action.ABANDONED)
})

test.serial('last decRef closes descriptors of port with many fds', async (t) => {
  const fds = new Descriptors(t)
  const threadsBefore = workerThreadIds().length
  const { port, epollFd, waitSetFd, eventFd } = createPortWithDescriptors()
  // From 1024 fds in its epoll instance on, a port closes its descriptors on
  // a short-lived thread after decRef returns.
  const count = 1100
  const recorder = new Recorder()
  for (let i = 0; i < count; i++) {
    port.add(fds.eventfd(), EPOLLIN, recorder.callback)
  }

  port.decRef()
  const closed = (fd: number, target: string): boolean => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) !== target
    } catch {
      return true
    }
  }
  const descriptorsClosed = (): boolean =>
    closed(epollFd, 'anon_inode:[eventpoll]') &&
    closed(waitSetFd, 'anon_inode:[eventpoll]') &&
    closed(eventFd, 'anon_inode:[eventfd]')

  t.true(port.closed)
  t.true(await eventually(descriptorsClosed), 'the port closed its two epoll fds and its eventfd')
  t.true(await eventually(() => threadNames().every((name) => name !== CLOSE_THREAD_NAME)), 'the closing thread exited')
  t.is(workerThreadIds().length, threadsBefore)
  await recorder.until(count)
  t.true(recorder.calls.every((call) => call.action === Action.ABANDONED))
})

test.serial('decRef inside callback stops worker', async (t) => {
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const threadsBefore = workerThreadIds().length
  const descriptorsBefore = anonInodeDescriptors()
  const port = new CompletionPort()
  let descriptorsAfterDecRef: string[] = []
  const recorder = new Recorder()

  port.add(reader, EPOLLIN, (action, events) => {
    port.decRef()
    descriptorsAfterDecRef = anonInodeDescriptors()
    recorder.callback(action, events)
  })
  libc.write(writer, Buffer.from('x'))
  await recorder.first()

  t.true(port.closed)
  t.deepEqual(descriptorsAfterDecRef, descriptorsBefore)
  t.true(
    await eventually(() => workerThreadIds().length === threadsBefore),
    `worker threads left: ${workerThreadIds().length - threadsBefore}`,
  )
})

test.serial('twenty ports stop all their workers', async (t) => {
  const fds = new Descriptors(t)
  const threadsBefore = workerThreadIds().length
  const descriptorsBefore = anonInodeDescriptors()
  const ports = Array.from({ length: 20 }, () => new CompletionPort())
  const recorders = ports.map((port) => {
    const recorder = new Recorder()
    port.add(fds.socketpair()[0], EPOLLIN, recorder.callback)
    return recorder
  })
  t.true(await eventually(() => workerThreadIds().length === threadsBefore + 20), 'each port has a worker')

  for (const port of ports) {
    port.decRef()
  }

  t.deepEqual(anonInodeDescriptors(), descriptorsBefore)
  t.true(
    await eventually(() => workerThreadIds().length === threadsBefore),
    `worker threads left: ${workerThreadIds().length - threadsBefore}`,
  )
  for (const recorder of recorders) {
    const completion = await recorder.first('ABANDONED')
    t.is(completion.action, Action.ABANDONED)
  }
})

test('closed ports free their native memory', async (t) => {
  // A fixed young generation keeps V8 from growing it during the measured
  // rounds, which moved RSS by about 5 MB at a round that varied from run to run.
  const result = await runFixture('closed-port-memory.ts', {
    nodeOptions: ['--expose-gc', '--min-semi-space-size=16', '--max-semi-space-size=16'],
  })

  t.false(result.timedOut, 'the fixture finished before the deadline')
  t.is(result.code, 0, result.stderr)
  const output = lastJsonLine(result)
  const registrations = (output.portsPerRound as number) * (output.registrationsPerPort as number)
  t.is(output.callbacks, (output.rounds as number) * registrations, 'every registration got its ABANDONED callback')
  const rssAfterWarmUp = output.rssAfterWarmUp as number
  const rssAfterRounds = output.rssAfterRounds as number[]
  const growth = rssAfterRounds[rssAfterRounds.length - 1] - rssAfterWarmUp
  const growthPerRound = rssAfterRounds.map((rss) => ((rss - rssAfterWarmUp) / 2 ** 20).toFixed(2))
  t.true(
    growth < MAX_RSS_GROWTH_BYTES,
    `RSS grew by ${(growth / 2 ** 20).toFixed(2)} MB; growth after each measured round in MB: ${growthPerRound.join(', ')}`,
  )
})
