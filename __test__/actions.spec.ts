// Mapping of reported events to actions. Of the events reported, a
// registration keeps those it asked for plus EPOLLERR and EPOLLHUP. Then
// EPOLLIN or EPOLLPRI gives EPOLLIN, else EPOLLOUT gives EPOLLOUT, else
// EPOLLRDHUP or EPOLLHUP gives EPOLLRDHUP, else EPOLLERR gives ERROR.
//
// The masks asserted here are what Linux reports for each case. Each case
// uses one registration per fd, so the reported mask is not widened by the
// interest of another registration.

import test from 'ava'
import { constants as osConstants } from 'node:os'

import {
  CompletionPortEpollAction as Action,
  EPOLLERR,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  EPOLLPRI,
  EPOLLRDHUP,
} from '..'
import * as libc from '../examples/libc'
import { createPort, Descriptors, Recorder, roundTrip } from './helpers'

const { ECONNREFUSED, ECONNRESET } = osConstants.errno

function readAll(fd: number): string {
  const buffer = Buffer.alloc(256)
  const length = libc.read(fd, buffer)
  return length === null ? '<would block>' : buffer.toString('utf8', 0, length)
}

test('data before FIN arrives as EPOLLIN', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()
  libc.write(writer, Buffer.from('last words'))
  libc.shutdown(writer, libc.SHUT_WR)

  port.add(reader, EPOLLIN | EPOLLRDHUP, recorder.callback)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
  t.true((completion.events & EPOLLIN) !== 0)
  t.true((completion.events & EPOLLRDHUP) !== 0)
  t.is(readAll(reader), 'last words', 'the data before the FIN is still readable')
  t.is(readAll(reader), '', 'then the reader sees EOF')
})

test('FIN alone gives EPOLLIN to reader', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()
  libc.shutdown(writer, libc.SHUT_WR)

  port.add(reader, EPOLLIN | EPOLLRDHUP, recorder.callback)
  const completion = await recorder.first()

  // The kernel reports EPOLLIN at EOF too, and read then returns 0 bytes.
  t.is(completion.action, Action.EPOLLIN)
  t.true((completion.events & EPOLLIN) !== 0)
  t.true((completion.events & EPOLLRDHUP) !== 0)
  t.is(readAll(reader), '')
})

test('EPOLLRDHUP registration gets EPOLLRDHUP', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()
  libc.write(writer, Buffer.from('unread'))
  libc.shutdown(writer, libc.SHUT_WR)

  port.add(reader, EPOLLRDHUP, recorder.callback)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLRDHUP)
  t.is(completion.events, EPOLLRDHUP)
})

test('EPOLLRDHUP registration ignores data', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()

  port.add(reader, EPOLLRDHUP, recorder.callback)
  libc.write(writer, Buffer.from('data without FIN'))
  await roundTrip(port)
  t.is(recorder.calls.length, 0)
  t.is(port.pendingCount, 1)

  libc.shutdown(writer, libc.SHUT_WR)
  const completion = await recorder.first()
  t.is(completion.action, Action.EPOLLRDHUP)
})

test('EPOLLIN wins over EPOLLOUT in one registration', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local, peer] = fds.socketpair()
  const recorder = new Recorder()
  libc.write(peer, Buffer.from('x'))

  port.add(local, EPOLLIN | EPOLLOUT, recorder.callback)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
  t.true((completion.events & EPOLLIN) !== 0)
  t.true((completion.events & EPOLLOUT) !== 0)
})

test('EPOLLOUT registration ignores readable data', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [readEnd, writeEnd] = fds.pipe()
  const recorder = new Recorder()
  libc.write(writeEnd, Buffer.from('x'))

  // A pipe's read end is readable here but never writable.
  port.add(readEnd, EPOLLOUT, recorder.callback)
  await roundTrip(port)

  t.is(recorder.calls.length, 0)
  t.is(port.pendingCount, 1)
})

test('closed socket peer gives EPOLLOUT with EPOLLHUP', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local, peer] = fds.socketpair()
  const recorder = new Recorder()
  fds.close(peer)

  port.add(local, EPOLLOUT, recorder.callback)
  const completion = await recorder.first()

  // Linux reports EPOLLOUT | EPOLLHUP for an AF_UNIX stream socket whose peer closed.
  t.is(completion.action, Action.EPOLLOUT)
  t.true((completion.events & EPOLLOUT) !== 0)
  t.true((completion.events & EPOLLHUP) !== 0)
})

test('pipe with space and no reader gives EPOLLOUT', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [readEnd, writeEnd] = fds.pipe()
  const recorder = new Recorder()
  fds.close(readEnd)

  port.add(writeEnd, EPOLLOUT, recorder.callback)
  const completion = await recorder.first()

  // Linux reports EPOLLOUT | EPOLLERR, and EPOLLOUT wins over EPOLLERR.
  t.is(completion.action, Action.EPOLLOUT)
  t.is(completion.events, EPOLLOUT | EPOLLERR)
})

test('full pipe with no reader gives ERROR', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [readEnd, writeEnd] = fds.pipe()
  const recorder = new Recorder()
  const chunk = Buffer.alloc(65536)
  while (libc.write(writeEnd, chunk) !== null) {
    // Fill the pipe, so only EPOLLERR is left to report.
  }
  fds.close(readEnd)

  port.add(writeEnd, EPOLLOUT, recorder.callback)
  const completion = await recorder.first()

  t.is(completion.action, Action.ERROR)
  t.is(completion.events, EPOLLERR)
})

test('pipe reader at EOF gets EPOLLRDHUP', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [readEnd, writeEnd] = fds.pipe()
  const recorder = new Recorder()
  fds.close(writeEnd)

  port.add(readEnd, EPOLLIN, recorder.callback)
  const completion = await recorder.first()

  // An empty pipe without writers reports EPOLLHUP alone, not EPOLLIN.
  t.is(completion.action, Action.EPOLLRDHUP)
  t.is(completion.events, EPOLLHUP)
  t.is(readAll(readEnd), '')
})

test('pipe data then closed writer gives EPOLLIN', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [readEnd, writeEnd] = fds.pipe()
  const recorder = new Recorder()
  libc.write(writeEnd, Buffer.from('tail'))
  fds.close(writeEnd)

  port.add(readEnd, EPOLLIN, recorder.callback)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
  t.is(completion.events, EPOLLIN | EPOLLHUP)
  t.is(readAll(readEnd), 'tail')
})

test('TCP urgent data gives EPOLLIN to EPOLLPRI', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [client, server] = fds.tcpPair()
  const recorder = new Recorder()

  port.add(server, EPOLLPRI, recorder.callback)
  libc.send(client, Buffer.from('!'), libc.MSG_OOB)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
  t.is(completion.events, EPOLLPRI)
  const buffer = Buffer.alloc(1)
  t.is(libc.recv(server, buffer, libc.MSG_OOB), 1)
  t.is(buffer.toString(), '!')
})

test('UDP ICMP error gives ERROR to EPOLLIN', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const closedPort = fds.closedInetPort(libc.SOCK_DGRAM)
  const socket = fds.inetSocket(libc.SOCK_DGRAM)
  libc.connect(socket, closedPort)
  const recorder = new Recorder()

  port.add(socket, EPOLLIN, recorder.callback)
  // The kernel replies with ICMP port unreachable, which sets the socket error.
  libc.send(socket, Buffer.from('x'))
  const completion = await recorder.first()

  t.is(completion.action, Action.ERROR)
  t.is(completion.events, EPOLLERR)
  t.is(libc.getsockoptInt(socket, libc.SOL_SOCKET, libc.SO_ERROR), ECONNREFUSED)
})

test('TCP reset gives EPOLLRDHUP to EPOLLRDHUP', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [client, server] = fds.tcpPair()
  const recorder = new Recorder()

  port.add(server, EPOLLRDHUP, recorder.callback)
  libc.setLinger(client, 1, 0)
  fds.close(client)
  const completion = await recorder.first()

  // A reset reports EPOLLERR | EPOLLHUP | EPOLLRDHUP, and hang-up wins over error.
  t.is(completion.action, Action.EPOLLRDHUP)
  t.is(completion.events, EPOLLERR | EPOLLHUP | EPOLLRDHUP)
  t.is(libc.getsockoptInt(server, libc.SOL_SOCKET, libc.SO_ERROR), ECONNRESET)
})

test('TCP reset gives EPOLLIN to EPOLLIN', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [client, server] = fds.tcpPair()
  const recorder = new Recorder()

  port.add(server, EPOLLIN, recorder.callback)
  libc.setLinger(client, 1, 0)
  fds.close(client)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
  t.true((completion.events & EPOLLERR) !== 0)
  t.true((completion.events & EPOLLHUP) !== 0)
  const error = t.throws(() => libc.read(server, Buffer.alloc(8)))
  t.is((error as libc.SystemError | undefined)?.code, 'ECONNRESET')
})
