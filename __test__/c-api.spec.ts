// The C-style functions: they never throw for bad input, treat a null port
// and INVALID_SOCKET as no-ops, and return 0 or an errno from
// completionPortAdd.

import test from 'ava'
import { mkdtempSync, openSync, closeSync, rmSync } from 'node:fs'
import { constants as osConstants, tmpdir } from 'node:os'
import { join } from 'node:path'

import {
  CompletionPort,
  CompletionPortEpollAction as Action,
  completionPortAdd,
  completionPortCreate,
  completionPortDecRef,
  completionPortIncRef,
  completionPortRemove,
  EPOLLET,
  EPOLLEXCLUSIVE,
  EPOLLIN,
  EPOLLOUT,
  INVALID_SOCKET,
} from '..'
import * as libc from '../examples/libc'
import { delay, Descriptors, roundTrip, withDeadline } from './helpers'

const { EBADF, EINVAL, EPERM } = osConstants.errno

interface CApiCall<Context> {
  ctx: Context
  action: Action
  events: number
}

/** Records calls of a C-shaped callback, which gets its context first. */
function cApiRecorder<Context>(): {
  calls: Array<CApiCall<Context>>
  callback: (ctx: Context, action: Action, events: number) => void
  first: () => Promise<CApiCall<Context>>
} {
  const calls: Array<CApiCall<Context>> = []
  let resolveFirst: (call: CApiCall<Context>) => void = () => {}
  const firstCall = new Promise<CApiCall<Context>>((resolve) => (resolveFirst = resolve))
  return {
    calls,
    callback: (ctx, action, events) => {
      const call = { ctx, action, events }
      calls.push(call)
      resolveFirst(call)
    },
    first: () => withDeadline(firstCall, 'the C-shaped callback'),
  }
}

function createCApiPort(t: { teardown: (fn: () => void) => void }): CompletionPort {
  const port = completionPortCreate()
  if (port === null) {
    throw new Error('completionPortCreate returned null')
  }
  t.teardown(() => {
    while (!port.closed) {
      completionPortDecRef(port)
    }
  })
  return port
}

test('completionPortCreate returns an open port', (t) => {
  const port = createCApiPort(t)

  t.true(port instanceof CompletionPort)
  t.is(port.refCount, 1)
  t.false(port.closed)
})

test('incRef and decRef accept null and undefined', (t) => {
  t.notThrows(() => completionPortIncRef(null))
  t.notThrows(() => completionPortIncRef(undefined))
  t.notThrows(() => completionPortDecRef(null))
  t.notThrows(() => completionPortDecRef(undefined))
})

test('incRef and decRef change refCount', (t) => {
  const port = createCApiPort(t)

  completionPortIncRef(port)
  t.is(port.refCount, 2)
  completionPortDecRef(port)
  t.is(port.refCount, 1)
  t.false(port.closed)
  completionPortDecRef(port)
  t.is(port.refCount, 0)
  t.true(port.closed)
})

test('add returns 0 and passes ctx first', async (t) => {
  const port = createCApiPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = cApiRecorder<{ name: string }>()
  const ctx = { name: 'reader context' }

  t.is(completionPortAdd(port, EPOLLIN, reader, recorder.callback, ctx), 0)
  libc.write(writer, Buffer.from('x'))
  const call = await recorder.first()
  await roundTrip(port)

  t.is(call.ctx, ctx, 'the callback gets the very context object')
  t.is(call.action, Action.EPOLLIN)
  t.true((call.events & EPOLLIN) !== 0)
  t.is(recorder.calls.length, 1)
})

test('add passes undefined ctx when omitted', async (t) => {
  const port = createCApiPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const recorder = cApiRecorder<undefined>()

  t.is(completionPortAdd(port, EPOLLOUT, local, recorder.callback), 0)
  const call = await recorder.first()

  t.is(call.ctx, undefined)
  t.is(call.action, Action.EPOLLOUT)
})

test('add returns EINVAL for null port', async (t) => {
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const recorder = cApiRecorder<string>()

  t.is(completionPortAdd(null, EPOLLOUT, local, recorder.callback, 'ctx'), EINVAL)
  t.is(completionPortAdd(undefined, EPOLLOUT, local, recorder.callback, 'ctx'), EINVAL)
  await delay(100)

  t.is(recorder.calls.length, 0)
})

for (const [name, socket] of [
  ['INVALID_SOCKET', INVALID_SOCKET],
  ['negative socket', -2],
  ['fractional socket', 1.5],
  ['NaN socket', Number.NaN],
  ['socket above int32', 2 ** 31],
  ['string socket', '3'],
] as const) {
  test(`add returns EINVAL for ${name}`, async (t) => {
    const port = createCApiPort(t)
    const recorder = cApiRecorder<string>()

    t.is(completionPortAdd(port, EPOLLOUT, socket as number, recorder.callback, 'ctx'), EINVAL)
    await roundTrip(port)

    t.is(recorder.calls.length, 0)
    t.is(port.pendingCount, 0)
  })
}

for (const [name, epollOp] of [
  ['EPOLLEXCLUSIVE', EPOLLEXCLUSIVE | EPOLLIN],
  ['unknown bits', 0x8000],
  ['negative epollOp', -1],
  ['string epollOp', '1'],
] as const) {
  test(`add returns EINVAL for ${name}`, async (t) => {
    const port = createCApiPort(t)
    const fds = new Descriptors(t)
    const [local] = fds.socketpair()
    const recorder = cApiRecorder<string>()

    t.is(completionPortAdd(port, epollOp as number, local, recorder.callback, 'ctx'), EINVAL)
    await roundTrip(port)

    t.is(recorder.calls.length, 0)
    t.is(port.pendingCount, 0)
  })
}

test('add returns EINVAL for non-function callback', async (t) => {
  const port = createCApiPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()

  for (const callback of [undefined, null, 'callback', {}]) {
    t.is(completionPortAdd(port, EPOLLOUT, local, callback as never, 'ctx'), EINVAL)
  }
  t.is(port.pendingCount, 0)
})

test('add returns EINVAL for closed port', async (t) => {
  const port = createCApiPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const recorder = cApiRecorder<string>()
  completionPortDecRef(port)

  t.is(completionPortAdd(port, EPOLLOUT, local, recorder.callback, 'ctx'), EINVAL)
  await delay(100)

  t.is(recorder.calls.length, 0)
})

test('add returns EBADF for closed socket', async (t) => {
  const port = createCApiPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  fds.close(local)
  const recorder = cApiRecorder<string>()

  t.is(completionPortAdd(port, EPOLLIN, local, recorder.callback, 'ctx'), EBADF)
  await roundTrip(port)

  t.is(recorder.calls.length, 0)
})

test('add returns EPERM for regular file', async (t) => {
  const port = createCApiPort(t)
  const directory = mkdtempSync(join(tmpdir(), 'completion-port-'))
  const fd = openSync(join(directory, 'regular-file'), 'w')
  t.teardown(() => {
    closeSync(fd)
    rmSync(directory, { recursive: true })
  })
  const recorder = cApiRecorder<string>()

  t.is(completionPortAdd(port, EPOLLIN, fd, recorder.callback, 'ctx'), EPERM)
  await roundTrip(port)

  t.is(recorder.calls.length, 0)
})

test('add accepts EPOLLET as one-shot', async (t) => {
  const port = createCApiPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = cApiRecorder<number>()
  libc.write(writer, Buffer.from('stays unread'))

  t.is(completionPortAdd(port, (EPOLLIN | EPOLLET) >>> 0, reader, recorder.callback, 7), 0)
  await recorder.first()
  libc.write(writer, Buffer.from('more'))
  await roundTrip(port)

  t.is(recorder.calls.length, 1)
})

test('remove accepts null port and INVALID_SOCKET', async (t) => {
  const port = createCApiPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const recorder = cApiRecorder<string>()
  t.is(completionPortAdd(port, EPOLLIN, local, recorder.callback, 'ctx'), 0)

  t.notThrows(() => completionPortRemove(null, local))
  t.notThrows(() => completionPortRemove(undefined, local))
  t.notThrows(() => completionPortRemove(port, INVALID_SOCKET))
  await roundTrip(port)

  t.is(recorder.calls.length, 0, 'the registration is still pending')
  t.is(port.pendingCount, 1)
})

test('remove abandons registrations with ctx', async (t) => {
  const port = createCApiPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const recorder = cApiRecorder<string>()
  t.is(completionPortAdd(port, EPOLLIN, local, recorder.callback, 'ctx'), 0)

  completionPortRemove(port, local)
  t.is(recorder.calls.length, 0, 'remove does not call back synchronously')
  const call = await recorder.first()

  t.is(call.ctx, 'ctx')
  t.is(call.action, Action.ABANDONED)
  t.is(call.events, 0)
})

test('last decRef abandons C-shaped registrations', async (t) => {
  const port = createCApiPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const recorder = cApiRecorder<string>()
  t.is(completionPortAdd(port, EPOLLIN, local, recorder.callback, 'ctx'), 0)

  completionPortDecRef(port)
  const call = await recorder.first()
  await delay(100)

  t.is(call.action, Action.ABANDONED)
  t.is(recorder.calls.length, 1)
})
