// Process-level behaviour, each case in its own Node process: what keeps the
// process alive, collection of unreachable ports, callbacks that throw,
// epoll_wait failures and loading the module from an ES module.

import test from 'ava'

import { CompletionPortEpollAction as Action, EPOLLIN } from '..'
import { lastJsonLine, runFixture } from './helpers'

// The module's own exports object, without the `default` that ES interop adds.
import completionPort = require('..')

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
  t.is(output.descriptorsDuring, (output.descriptorsBefore as number) + 6, 'two ports held three descriptors each')
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
  t.is(calls.length, 7, `each callback ran once and each error was reported once: ${calls.join(', ')}`)
})

test('throwing callback without handler ends process', async (t) => {
  const result = await runFixture('throwing-callback.ts')

  t.false(result.timedOut)
  t.is(result.code, 1)
  t.regex(result.stderr, /callback failed/)
})

test('failed add on reused fd lets process exit', async (t) => {
  const result = await runFixture('failed-add-reused-fd.ts')

  t.false(result.timedOut, 'the process exited by itself')
  t.is(result.code, 0, result.stderr)
  const output = lastJsonLine(result)
  const addError = output.addError as { code?: string; syscall?: string } | null
  t.is(addError?.code, 'ELOOP', 'the add on the reused fd number failed')
  t.is(addError?.syscall, 'epoll_ctl')
  t.deepEqual(output.staleActions, [Action.ABANDONED], 'the stale registration got ABANDONED once')
  t.is(output.newCalls, 0, 'the failed add never called back')
  t.is(output.pendingCount, 0)
})

test('epoll_wait failure emits one warning', async (t) => {
  const result = await runFixture('epoll-wait-failure.ts')

  t.false(result.timedOut)
  t.is(result.code, 0, result.stderr)
  const output = lastJsonLine(result)
  t.true(output.reported, 'a warning came within the hang deadline')
  const warnings = (output.warnings as Array<{ name: string; message: string }>).filter(
    (warning) => warning.name === 'CompletionPortWarning',
  )
  t.is(warnings.length, 1, `one warning for repeated failures: ${JSON.stringify(warnings)}`)
  t.regex(warnings[0]?.message ?? '', /\bepoll_wait\b/)
  t.regex(warnings[0]?.message ?? '', /\bEINVAL\b/)
  t.regex(warnings[0]?.message ?? '', /Invalid argument/, 'the message uses the C library text for EINVAL')
  t.false(output.portClosed, 'the failure does not close the port')
})

test('lost poll is recovered by the worker', async (t) => {
  const result = await runFixture('lost-poll.ts')

  t.false(result.timedOut, 'the process exited by itself')
  t.is(result.code, 0, result.stderr)
  const output = lastJsonLine(result)
  t.is(output.completions, 1100)
  t.is(output.idleAction, output.abandoned, 'the cancelled registration got ABANDONED')
  t.deepEqual(
    output.otherActions,
    { cancelled: output.abandoned, closed: output.abandoned },
    'the other ports delivered ABANDONED although their polls waited for an immediate',
  )
  // The recovery waits for a whole 2 s epoll_wait timeout without a poll,
  // so a chain that finished sooner never lost its poll.
  t.true((output.finishedAfterMs as number) >= 1000, `the chain finished after ${output.finishedAfterMs} ms`)
})

test('ES module imports every export by name', async (t) => {
  const result = await runFixture('esm-import.mjs', { tsx: false })

  t.false(result.timedOut)
  t.is(result.code, 0, result.stderr)
  const imported = lastJsonLine(result) as Record<string, { type: string; value: number | null }>
  for (const [name, value] of Object.entries(completionPort)) {
    t.is(imported[name]?.type, typeof value, `${name} has the type it has through require`)
    if (typeof value === 'number') {
      t.is(imported[name]?.value, value, `${name} has the value it has through require`)
    }
  }
  t.is(Object.keys(imported).length, Object.keys(completionPort).length, 'the fixture imports every export')
})
