// Errors of the class API: argument validation, epoll_ctl failures, a closed
// port, and a constructor that the system refuses.

import test from 'ava'
import koffi from 'koffi'
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs'
import { constants as osConstants, tmpdir } from 'node:os'
import { join } from 'node:path'

import {
  CompletionPort,
  CompletionPortEpollAction as Action,
  EPOLLERR,
  EPOLLET,
  EPOLLEXCLUSIVE,
  EPOLLHUP,
  EPOLLIN,
  EPOLLONESHOT,
  EPOLLOUT,
  EPOLLPRI,
  EPOLLRDHUP,
  INVALID_SOCKET,
} from '..'
import * as libc from '../examples/libc'
import {
  anonInodeDescriptors,
  createPort,
  createPortWithDescriptors,
  Descriptors,
  lastJsonLine,
  Recorder,
  roundTrip,
  runFixture,
} from './helpers'

const EPOLL_CTL_ADD = 1

const libcHandle = koffi.load('libc.so.6')
const epoll = {
  create1: libcHandle.func('epoll_create1', 'int', ['int']),
  ctl: libcHandle.func('epoll_ctl', 'int', ['int', 'int', 'int', 'void *']),
}
/** strerror(3): the C library's description of an errno. */
const strerror: (errno: number) => string = libcHandle.func('strerror', 'const char *', ['int'])

interface ErrorWithCode extends Error {
  code?: string
  errno?: number
  syscall?: string
}

/** Returns whether `message` shows `value` in decimal or in hexadecimal. */
function showsValue(message: string, value: unknown): boolean {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) {
    return message.includes(String(value)) || message.toLowerCase().includes(`0x${value.toString(16)}`)
  }
  return message.includes(String(value))
}

test('flag constants have the Linux values', (t) => {
  t.is(INVALID_SOCKET, -1)
  t.is(EPOLLIN, 0x001)
  t.is(EPOLLPRI, 0x002)
  t.is(EPOLLOUT, 0x004)
  t.is(EPOLLERR, 0x008)
  t.is(EPOLLHUP, 0x010)
  t.is(EPOLLRDHUP, 0x2000)
  t.is(EPOLLEXCLUSIVE, 0x10000000)
  t.is(EPOLLONESHOT, 0x40000000)
  t.is(EPOLLET, 2147483648)
})

test('action enum has the C values', (t) => {
  t.is(Action.EPOLLRDHUP, 0)
  t.is(Action.EPOLLIN, 1)
  t.is(Action.EPOLLOUT, 2)
  t.is(Action.ABANDONED, 3)
  t.is(Action.ERROR, 4)
})

const invalidFds: Array<[string, unknown, typeof TypeError | typeof RangeError]> = [
  ['string', '3', TypeError],
  ['undefined', undefined, TypeError],
  ['null', null, TypeError],
  ['bigint', 3n, TypeError],
  ['INVALID_SOCKET', INVALID_SOCKET, RangeError],
  ['negative', -2, RangeError],
  ['fraction', 1.5, RangeError],
  ['NaN', Number.NaN, RangeError],
  ['above int32', 2 ** 31, RangeError],
]

for (const [name, fd, errorType] of invalidFds) {
  test(`add rejects ${name} fd`, (t) => {
    const port = createPort(t)
    const recorder = new Recorder()

    const error = t.throws(() => port.add(fd as number, EPOLLIN, recorder.callback), {
      instanceOf: errorType,
    })

    t.regex(error?.message ?? '', /\bfd\b/, 'the message names the argument')
    t.true(showsValue(error?.message ?? '', fd), `the message shows the value: ${error?.message}`)
    t.is(port.pendingCount, 0)
  })
}

const invalidEvents: Array<[string, unknown, typeof TypeError | typeof RangeError]> = [
  ['string', '1', TypeError],
  ['undefined', undefined, TypeError],
  ['below int32', -(2 ** 31) - 1, RangeError],
  ['all bits', 0xffffffff, RangeError],
  ['fraction', 1.5, RangeError],
  ['above uint32', 2 ** 32, RangeError],
  ['unknown bit', 0x8000, RangeError],
  ['EPOLLEXCLUSIVE', EPOLLEXCLUSIVE, RangeError],
  ['EPOLLEXCLUSIVE with EPOLLIN', EPOLLEXCLUSIVE | EPOLLIN, RangeError],
]

for (const [name, events, errorType] of invalidEvents) {
  test(`add rejects ${name} events`, (t) => {
    const port = createPort(t)
    const fds = new Descriptors(t)
    const [local] = fds.socketpair()
    const recorder = new Recorder()

    const error = t.throws(() => port.add(local, events as number, recorder.callback), {
      instanceOf: errorType,
    })

    t.regex(error?.message ?? '', /\bevents\b/, 'the message names the argument')
    t.true(showsValue(error?.message ?? '', events), `the message shows the value: ${error?.message}`)
    t.is(port.pendingCount, 0)
  })
}

for (const [name, events] of [
  ['0xffffffff', 0xffffffff],
  ['EPOLLEXCLUSIVE | 0x8000', EPOLLEXCLUSIVE | 0x8000],
] as const) {
  test(`add names unknown bits of ${name}`, (t) => {
    const port = createPort(t)
    const fds = new Descriptors(t)
    const [local] = fds.socketpair()
    const known = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP | EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE
    const unknown = (events & ~known) >>> 0

    const error = t.throws(() => port.add(local, events, () => {}), { instanceOf: RangeError })

    const message = error?.message ?? ''
    t.regex(message, /unknown bits/)
    t.true(showsValue(message, unknown), `the message shows the unknown bits 0x${unknown.toString(16)}: ${message}`)
    t.false(message.includes('EPOLLEXCLUSIVE'), `the unknown bits are reported, not EPOLLEXCLUSIVE: ${message}`)
    t.is(port.pendingCount, 0)
  })
}

test('add accepts EPOLLET combined with |', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const recorder = new Recorder()
  const events = EPOLLOUT | EPOLLET
  t.true(events < 0, '| on bit 31 gives a negative int32')

  port.add(local, events, recorder.callback)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLOUT)
})

test('add accepts every documented flag', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const recorder = new Recorder()
  const allFlags = (EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP | EPOLLONESHOT | EPOLLET) >>> 0

  port.add(local, allFlags, recorder.callback)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLOUT)
})

for (const [name, callback] of [
  ['undefined', undefined],
  ['string', 'callback'],
  ['object', {}],
] as const) {
  test(`add rejects ${name} callback`, (t) => {
    const port = createPort(t)
    const fds = new Descriptors(t)
    const [local] = fds.socketpair()

    const error = t.throws(() => port.add(local, EPOLLIN, callback as never), { instanceOf: TypeError })

    t.regex(error?.message ?? '', /\bcallback\b/)
    t.is(port.pendingCount, 0)
  })
}

test('add reports EBADF for closed fd', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  fds.close(local)
  const recorder = new Recorder()

  const error = t.throws<ErrorWithCode>(() => port.add(local, EPOLLIN, recorder.callback))

  t.is(error?.code, 'EBADF')
  t.is(error?.errno, -osConstants.errno.EBADF, 'errno is negative, as in Node system errors')
  t.is(error?.syscall, 'epoll_ctl')
  t.true(error?.message.includes(String(local)), `the message names fd ${local}: ${error?.message}`)
  t.true(
    error?.message.includes(strerror(osConstants.errno.EBADF)),
    `the message uses the C library text "${strerror(osConstants.errno.EBADF)}": ${error?.message}`,
  )
  t.is(port.pendingCount, 0)
  await roundTrip(port)
  t.is(recorder.calls.length, 0, 'a failed add never calls back')
})

test('add reports EPERM for regular file', async (t) => {
  const port = createPort(t)
  const directory = mkdtempSync(join(tmpdir(), 'completion-port-'))
  const fd = openSync(join(directory, 'regular-file'), 'w')
  t.teardown(() => {
    closeSync(fd)
    rmSync(directory, { recursive: true })
  })
  const recorder = new Recorder()

  const error = t.throws<ErrorWithCode>(() => port.add(fd, EPOLLIN, recorder.callback))

  t.is(error?.code, 'EPERM')
  t.is(error?.errno, -osConstants.errno.EPERM)
  t.is(error?.syscall, 'epoll_ctl')
  t.true(error?.message.includes(String(fd)), `the message names fd ${fd}: ${error?.message}`)
  await roundTrip(port)
  t.is(recorder.calls.length, 0)
})

// epoll_ctl fails with EINVAL only for an fd equal to the epoll fd and for
// EPOLLEXCLUSIVE misuse. The port rejects both before calling epoll_ctl, so
// EINVAL from the kernel cannot be provoked through add.
test.serial('add rejects port descriptors', async (t) => {
  const before = new Set(anonInodeDescriptors())
  const port = createPort(t)
  const opened = anonInodeDescriptors().filter((entry) => !before.has(entry))
  t.is(opened.length, 3, `the port opened two epoll fds and an eventfd: ${opened.join(', ')}`)
  const recorder = new Recorder()

  for (const entry of opened) {
    const fd = Number(entry.split(' ')[0])
    const error = t.throws(() => port.add(fd, EPOLLIN, recorder.callback), { instanceOf: RangeError })
    t.true(error?.message.includes(String(fd)), `the message names fd ${fd}: ${error?.message}`)
  }
  await roundTrip(port)

  t.is(recorder.calls.length, 0)
  t.is(port.pendingCount, 0)
})

test.serial('add reports ELOOP for epoll cycle', async (t) => {
  const { port, epollFd } = createPortWithDescriptors()
  t.teardown(() => port.decRef())
  // An epoll instance that watches the port's epoll fd. Adding it to the port
  // would close a cycle, which epoll_ctl rejects with ELOOP.
  const outer = epoll.create1(libc.O_CLOEXEC)
  t.teardown(() => libc.close(outer))
  const event = Buffer.alloc(16)
  event.writeUInt32LE(EPOLLIN, 0)
  t.is(epoll.ctl(outer, EPOLL_CTL_ADD, epollFd, event), 0)
  const recorder = new Recorder()

  const error = t.throws<ErrorWithCode>(() => port.add(outer, EPOLLIN, recorder.callback))

  t.is(error?.code, 'ELOOP')
  t.is(error?.syscall, 'epoll_ctl')
  t.true(
    error?.message.includes(strerror(osConstants.errno.ELOOP)),
    `the message uses the C library text "${strerror(osConstants.errno.ELOOP)}": ${error?.message}`,
  )
  await roundTrip(port)
  t.is(recorder.calls.length, 0)
})

// ENOSPC (more than fs.epoll.max_user_watches registrations for this user) is
// not tested: the default limit is millions on this kind of machine, and
// lowering it needs a system-wide sysctl that would affect other processes.

test('failed add keeps other registrations on fd', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()
  port.add(reader, EPOLLIN, recorder.callback)

  t.throws(() => port.add(reader, EPOLLEXCLUSIVE, () => {}), { instanceOf: RangeError })
  t.is(port.pendingCount, 1)
  libc.write(writer, Buffer.from('x'))
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
})

test('cancel rejects non-number id', (t) => {
  const port = createPort(t)

  const error = t.throws(() => port.cancel('1' as unknown as number), { instanceOf: TypeError })

  t.regex(error?.message ?? '', /\bid\b/)
})

test('cancel returns false for ids never issued', (t) => {
  const port = createPort(t)

  for (const id of [0, -1, 1.5, Number.NaN, 2 ** 60, 12345]) {
    t.false(port.cancel(id), `cancel(${id})`)
  }
})

test('remove rejects invalid fd', (t) => {
  const port = createPort(t)

  t.throws(() => port.remove('3' as unknown as number), { instanceOf: TypeError })
  t.throws(() => port.remove(INVALID_SOCKET), { instanceOf: RangeError })
  t.throws(() => port.remove(1.5), { instanceOf: RangeError })
})

test('closed port rejects add and incRef', (t) => {
  const port = new CompletionPort()
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  port.decRef()

  const addError = t.throws<ErrorWithCode>(() => port.add(local, EPOLLIN, () => {}))
  const incRefError = t.throws<ErrorWithCode>(() => port.incRef())

  t.is(addError?.code, 'ERR_COMPLETION_PORT_CLOSED')
  t.is(incRefError?.code, 'ERR_COMPLETION_PORT_CLOSED')
  t.is(port.refCount, 0)
})

test('closed port ignores remove, cancel and decRef', async (t) => {
  const port = new CompletionPort()
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const recorder = new Recorder()
  const id = port.add(local, EPOLLIN, recorder.callback)
  port.decRef()

  t.notThrows(() => port.remove(local))
  t.false(port.cancel(id))
  t.notThrows(() => port.decRef())
  t.notThrows(() => port[Symbol.dispose]())
  const completion = await recorder.first('ABANDONED')

  t.is(completion.action, Action.ABANDONED)
  t.is(recorder.calls.length, 1)
  t.is(port.refCount, 0)
  t.true(port.closed)
  t.is(port.pendingCount, 0)
})

test('constructor reports EMFILE as system error', async (t) => {
  const result = await runFixture('fd-limit.ts')

  t.false(result.timedOut, 'the fixture finished before the deadline')
  t.is(result.code, 0, result.stderr)
  const output = lastJsonLine(result)
  const error = output.constructorError as ErrorWithCode | null
  t.not(error, null, 'the constructor threw')
  t.is(error?.name, 'Error')
  t.is(error?.code, 'EMFILE')
  t.is(error?.errno, -osConstants.errno.EMFILE)
  t.is(error?.syscall, 'epoll_create1')
  t.is(output.cApiCreate, null, 'completionPortCreate returns null')
})
