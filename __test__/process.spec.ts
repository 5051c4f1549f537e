// Process-level behaviour, each case in its own Node process: what keeps the
// process alive, collection of unreachable ports, and callbacks that throw.

import test from 'ava'

import { CompletionPortEpollAction as Action, EPOLLIN } from '..'
import { lastJsonLine, runFixture } from './helpers'

test('pending registration keeps process alive', async (t) => {
  const result = await runFixture('keep-alive.ts')

  t.false(result.timedOut, 'the process exited by itself')
  t.is(result.code, 0, result.stderr)
  const output = lastJsonLine(result)
  t.is(output.action, Action.EPOLLIN, 'the callback ran before the process exited')
  t.true(((output.events as number) & EPOLLIN) !== 0)
  t.is(output.data, 'ready')
})

test('idle ports let process exit', async (t) => {
  const result = await runFixture('idle-exit.ts')

  t.false(result.timedOut, 'the process exited by itself with four ports open')
  t.is(result.code, 0, result.stderr)
  t.deepEqual(lastJsonLine(result), {
    completed: Action.EPOLLOUT,
    cancelled: Action.ABANDONED,
    removed: Action.ABANDONED,
  })
})

test('unreachable idle port is collected', async (t) => {
  const result = await runFixture('collect.ts', { nodeOptions: ['--expose-gc'] })

  t.false(result.timedOut)
  t.is(result.code, 0, result.stderr)
  const output = lastJsonLine(result)
  t.is(output.threadsDuring, (output.threadsBefore as number) + 2, 'two ports ran worker threads')
  t.is(output.descriptorsDuring, (output.descriptorsBefore as number) + 4, 'two ports held two descriptors each')
  t.true(output.collected, 'collection stopped the workers and closed the descriptors')
  t.is(output.threadsAfter, output.threadsBefore)
  t.is(output.descriptorsAfter, output.descriptorsBefore)
})

test('throwing callback reaches uncaughtException', async (t) => {
  const result = await runFixture('throwing-callback.ts', { args: ['handler'] })

  t.false(result.timedOut)
  t.is(result.code, 0, result.stderr)
  const output = lastJsonLine(result)
  t.deepEqual(
    [...(output.uncaught as string[])].sort(),
    ['abandoned callback failed', 'readiness callback failed'],
    'both errors were reported as uncaught exceptions',
  )
  const calls = output.calls as string[]
  t.true(calls.includes(`readiness 0 action ${Action.EPOLLIN}`))
  t.true(calls.includes(`readiness 1 action ${Action.EPOLLIN}`), 'the rest of the batch was delivered')
  t.true(calls.includes(`readiness 2 action ${Action.EPOLLIN}`), 'the rest of the batch was delivered')
  t.true(calls.includes(`removed action ${Action.ABANDONED}`))
  t.true(calls.includes(`later action ${Action.EPOLLIN}`), 'a later add still completed')
  t.is(calls.length, 5, `each callback ran once: ${calls.join(', ')}`)
})

test('throwing callback without handler ends process', async (t) => {
  const result = await runFixture('throwing-callback.ts')

  t.false(result.timedOut)
  t.is(result.code, 1)
  t.regex(result.stderr, /callback failed/)
})
