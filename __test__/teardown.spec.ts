// What the last decRef releases: the worker thread, the epoll fd and the
// eventfd. The tests count them in /proc/self, so they run one at a time and
// this file creates no port outside them.

import test from 'ava'

import { CompletionPort, CompletionPortEpollAction as Action, EPOLLIN } from '..'
import * as libc from '../examples/libc'
import { anonInodeDescriptors, Descriptors, eventually, Recorder, workerThreadIds } from './helpers'

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
    ['anon_inode:[eventfd]', 'anon_inode:[eventpoll]'],
    'the port opened an epoll fd and an eventfd',
  )
  const recorder = new Recorder()
  port.add(local, EPOLLIN, recorder.callback)

  port.decRef()
  t.deepEqual(anonInodeDescriptors(), descriptorsBefore, 'decRef closed both descriptors')
  t.true(
    await eventually(() => workerThreadIds().length === threadsBefore),
    `worker threads left: ${workerThreadIds().length - threadsBefore}`,
  )
  const completion = await recorder.first('ABANDONED')
  t.is(completion.action, Action.ABANDONED)
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
