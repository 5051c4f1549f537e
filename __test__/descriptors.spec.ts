// Readiness of each kind of descriptor the port is used with: TCP on
// 127.0.0.1, eventfds, pipes and AF_UNIX datagram and seqpacket sockets.

import test from 'ava'
import { constants as osConstants } from 'node:os'

import { CompletionPortEpollAction as Action, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT } from '..'
import * as libc from '../examples/libc'
import { createPort, Descriptors, Recorder, roundTrip } from './helpers'

const { ECONNREFUSED } = osConstants.errno

test('TCP connect completes with EPOLLOUT', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const listener = fds.tcpListener()
  const client = fds.inetSocket()
  const recorder = new Recorder()

  const state = libc.connect(client, listener.port)
  t.true(state === 'in-progress' || state === 'connected', `connect returned ${state}`)
  port.add(client, EPOLLOUT, recorder.callback)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLOUT)
  t.is(completion.events & (EPOLLERR | EPOLLHUP), 0)
  t.is(libc.getsockoptInt(client, libc.SOL_SOCKET, libc.SO_ERROR), 0)
})

test('TCP listener completes with EPOLLIN on connect', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const listener = fds.tcpListener()
  const recorder = new Recorder()

  port.add(listener.fd, EPOLLIN, recorder.callback)
  await roundTrip(port)
  t.is(recorder.calls.length, 0, 'a listener without connections is not readable')

  const client = fds.inetSocket()
  libc.connect(client, listener.port)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
  const accepted = libc.accept4(listener.fd)
  t.not(accepted, null)
  if (accepted !== null) {
    fds.track(accepted)
  }
})

test('TCP refused connect gives EPOLLOUT with EPOLLERR', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const closedPort = fds.closedInetPort()
  const client = fds.inetSocket()
  const recorder = new Recorder()

  libc.connect(client, closedPort)
  port.add(client, EPOLLOUT, recorder.callback)
  const completion = await recorder.first()

  // Linux reports EPOLLOUT | EPOLLERR | EPOLLHUP, and EPOLLOUT wins.
  t.is(completion.action, Action.EPOLLOUT)
  t.is(completion.events, EPOLLOUT | EPOLLERR | EPOLLHUP)
  t.is(libc.getsockoptInt(client, libc.SOL_SOCKET, libc.SO_ERROR), ECONNREFUSED)
})

test('TCP data completes reader with EPOLLIN', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [client, server] = fds.tcpPair()
  const recorder = new Recorder()

  port.add(server, EPOLLIN, recorder.callback)
  libc.send(client, Buffer.from('hello'))
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
  const buffer = Buffer.alloc(16)
  t.is(libc.recv(server, buffer), 5)
  t.is(buffer.toString('utf8', 0, 5), 'hello')
})

test('eventfd completes with EPOLLIN when written', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const eventfd = fds.eventfd()
  const recorder = new Recorder()

  port.add(eventfd, EPOLLIN, recorder.callback)
  await roundTrip(port)
  t.is(recorder.calls.length, 0, 'an eventfd with counter 0 is not readable')

  libc.eventfdWrite(eventfd, 7)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
  t.is(completion.events, EPOLLIN)
  t.is(libc.eventfdRead(eventfd), 7n)
})

test('eventfd completes with EPOLLOUT at once', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const eventfd = fds.eventfd()
  const recorder = new Recorder()

  port.add(eventfd, EPOLLOUT, recorder.callback)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLOUT)
  t.is(completion.events, EPOLLOUT)
})

test('pipe read end completes with EPOLLIN', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [readEnd, writeEnd] = fds.pipe()
  const recorder = new Recorder()

  port.add(readEnd, EPOLLIN, recorder.callback)
  libc.write(writeEnd, Buffer.from('abc'))
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
  t.is(completion.events, EPOLLIN)
})

test('full pipe write end completes when drained', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [readEnd, writeEnd] = fds.pipe()
  const recorder = new Recorder()
  const chunk = Buffer.alloc(65536)
  while (libc.write(writeEnd, chunk) !== null) {
    // Fill the pipe.
  }

  port.add(writeEnd, EPOLLOUT, recorder.callback)
  await roundTrip(port)
  t.is(recorder.calls.length, 0, 'a full pipe is not writable')

  while (libc.read(readEnd, chunk) !== null) {
    // Drain the pipe.
  }
  const completion = await recorder.first()
  t.is(completion.action, Action.EPOLLOUT)
})

test('SOCK_DGRAM pair completes with EPOLLIN', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair(libc.SOCK_DGRAM)
  const recorder = new Recorder()

  port.add(reader, EPOLLIN, recorder.callback)
  libc.send(writer, Buffer.from('datagram'))
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
  const buffer = Buffer.alloc(64)
  t.is(libc.recv(reader, buffer), 8)
  t.is(buffer.toString('utf8', 0, 8), 'datagram')
})

test('SOCK_DGRAM pair completes with EPOLLOUT', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair(libc.SOCK_DGRAM)
  const recorder = new Recorder()

  port.add(local, EPOLLOUT, recorder.callback)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLOUT)
})

test('SOCK_SEQPACKET closed peer gives EPOLLIN with EPOLLHUP', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local, peer] = fds.socketpair(libc.SOCK_SEQPACKET)
  const recorder = new Recorder()

  port.add(local, EPOLLIN, recorder.callback)
  fds.close(peer)
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
  t.is(completion.events, EPOLLIN | EPOLLHUP)
  t.is(libc.recv(local, Buffer.alloc(8)), 0)
})
