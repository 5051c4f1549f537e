// Delivery rules of a port: every successful add completes exactly once, on
// the JS thread that created the port and never synchronously, several
// registrations may share an fd, and every registration is one-shot.

import test from 'ava'
import { isMainThread, threadId } from 'node:worker_threads'

import {
  CompletionPortEpollAction as Action,
  EPOLLERR,
  EPOLLET,
  EPOLLHUP,
  EPOLLIN,
  EPOLLONESHOT,
  EPOLLOUT,
  EPOLLRDHUP,
} from '..'
import * as libc from '../examples/libc'
import {
  blockThread,
  createPort,
  delay,
  Descriptors,
  eventually,
  Recorder,
  roundTrip,
  threadCpuTicks,
  threadSleepCount,
  withDeadline,
  workerThreadIds,
} from './helpers'

test('new port has refCount 1 and nothing pending', (t) => {
  const port = createPort(t)

  t.is(port.refCount, 1)
  t.is(port.pendingCount, 0)
  t.false(port.closed)
})

test('add returns increasing positive integer ids', (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [first] = fds.socketpair()

  const ids = [1, 2, 3].map(() => port.add(first, EPOLLIN, () => {}))

  for (const id of ids) {
    t.true(Number.isSafeInteger(id), `id ${id} is an integer`)
    t.true(id > 0, `id ${id} is positive`)
  }
  t.true(ids[0] < ids[1])
  t.true(ids[1] < ids[2])
  t.is(port.pendingCount, 3)
})

test('readable socket completes with EPOLLIN', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()

  port.add(reader, EPOLLIN, recorder.callback)
  libc.write(writer, Buffer.from('ping'))
  const completion = await recorder.first()

  t.is(completion.action, Action.EPOLLIN)
  t.true((completion.events & EPOLLIN) !== 0)
  const buffer = Buffer.alloc(16)
  t.is(libc.read(reader, buffer), 4)
  t.is(buffer.toString('utf8', 0, 4), 'ping')
  t.is(port.pendingCount, 0)
})

test('level-triggered readable fd completes once', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()
  // The data is never read, so the fd stays readable for the whole test.
  libc.write(writer, Buffer.from('stays unread'))

  port.add(reader, EPOLLIN, recorder.callback)
  await recorder.first()
  await roundTrip(port)
  await delay(200)

  t.is(recorder.calls.length, 1)
  t.is(port.pendingCount, 0)
})

test('two adds on one fd complete once each', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const first = new Recorder()
  const second = new Recorder()

  const firstId = port.add(reader, EPOLLIN, first.callback)
  const secondId = port.add(reader, EPOLLIN, second.callback)
  t.not(firstId, secondId)
  t.is(port.pendingCount, 2)
  libc.write(writer, Buffer.from('x'))
  await first.first()
  await second.first()
  await roundTrip(port)

  t.is(first.calls.length, 1)
  t.is(second.calls.length, 1)
  t.is(first.calls[0].action, Action.EPOLLIN)
  t.is(second.calls[0].action, Action.EPOLLIN)
  t.is(port.pendingCount, 0)
})

for (const [name, flags] of [
  ['no mode flag', 0],
  ['EPOLLET', EPOLLET],
  ['EPOLLONESHOT', EPOLLONESHOT],
  ['EPOLLET with EPOLLONESHOT', EPOLLET | EPOLLONESHOT],
] as const) {
  test(`registration with ${name} is one-shot`, async (t) => {
    const port = createPort(t)
    const fds = new Descriptors(t)
    const [reader, writer] = fds.socketpair()
    const recorder = new Recorder()
    libc.write(writer, Buffer.from('stays unread'))

    // `|` gives a signed int32, so `>>> 0` turns EPOLLET back into 2147483648.
    port.add(reader, (EPOLLIN | flags) >>> 0, recorder.callback)
    await recorder.first()
    // More data makes a new edge, which an edge-triggered entry left armed would report.
    libc.write(writer, Buffer.from('more'))
    await roundTrip(port)

    t.is(recorder.calls.length, 1)
    t.is(recorder.calls[0].action, Action.EPOLLIN)
    t.is(port.pendingCount, 0)
  })
}

test.serial('worker stays idle after level-triggered completion', async (t) => {
  const threadsBefore = new Set(workerThreadIds())
  const port = createPort(t)
  let workerIds: number[] = []
  await eventually(() => {
    workerIds = workerThreadIds().filter((id) => !threadsBefore.has(id))
    return workerIds.length > 0
  })
  t.is(workerIds.length, 1, 'the new port started one worker thread')
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()
  libc.write(writer, Buffer.from('stays unread'))

  port.add(reader, EPOLLIN, recorder.callback)
  await recorder.first()
  const ticksBefore = threadCpuTicks(workerIds[0])
  await delay(1000)
  const ticksAfter = threadCpuTicks(workerIds[0])

  // A worker that kept reporting the readable fd would use most of a core,
  // about 100 ticks a second at Linux's USER_HZ of 100. An idle one uses none.
  t.true(ticksAfter - ticksBefore < 20, `worker used ${ticksAfter - ticksBefore} clock ticks in 1 s`)
  t.is(recorder.calls.length, 1)
})

test.serial('readiness caused by callbacks skips worker', async (t) => {
  const threadsBefore = new Set(workerThreadIds())
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [left, right] = fds.socketpair()
  const workerIds = workerThreadIds().filter((id) => !threadsBefore.has(id))
  t.is(workerIds.length, 1, 'the new port started one worker thread')
  const rounds = 1000
  const byte = Buffer.alloc(1)

  // A byte bounced between the two ends: each callback makes the other end
  // readable, and the poll after its batch reports that on this thread.
  const sleepsBefore = threadSleepCount(workerIds[0])
  const bounced = await withDeadline(
    new Promise<number>((resolve) => {
      let count = 0
      const onReadable = (fd: number) => (action: Action) => {
        if (action !== Action.EPOLLIN || libc.read(fd, byte) !== 1) {
          resolve(count)
          return
        }
        count += 1
        if (count === rounds) {
          resolve(count)
          return
        }
        port.add(fd, EPOLLIN, onReadable(fd))
        libc.write(fd, byte)
      }
      port.add(left, EPOLLIN, onReadable(left))
      port.add(right, EPOLLIN, onReadable(right))
      libc.write(left, byte)
    }),
    `${rounds} bounces`,
  )
  const sleeps = threadSleepCount(workerIds[0]) - sleepsBefore

  t.is(bounced, rounds)
  // Through the worker, each of the 1000 reports would wake it at least once.
  t.true(sleeps < rounds / 10, `the worker woke ${sleeps} times for ${rounds} reports`)
})

test('callback runs on the creating thread', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()

  port.add(reader, EPOLLIN, recorder.callback)
  libc.write(writer, Buffer.from('x'))
  const completion = await recorder.first()

  t.true(isMainThread)
  t.is(completion.threadId, threadId)
})

test('add never calls back synchronously', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()
  libc.write(writer, Buffer.from('x'))

  port.add(reader, EPOLLIN, recorder.callback)
  // The worker picks up the readable fd during the block, while the JS thread is still busy.
  blockThread()
  t.is(recorder.calls.length, 0)

  const completion = await recorder.first()
  t.is(completion.action, Action.EPOLLIN)
})

test('read and write registrations share one fd', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local, peer] = fds.socketpair()
  const reader = new Recorder()
  const writer = new Recorder()

  port.add(local, EPOLLIN, reader.callback)
  port.add(local, EPOLLOUT, writer.callback)
  const writable = await writer.first('EPOLLOUT')
  await roundTrip(port)

  t.is(writable.action, Action.EPOLLOUT)
  t.is(reader.calls.length, 0, 'EPOLLOUT does not complete the read registration')
  t.is(port.pendingCount, 1)

  libc.write(peer, Buffer.from('x'))
  const readable = await reader.first('EPOLLIN')
  await roundTrip(port)

  t.is(readable.action, Action.EPOLLIN)
  t.is(reader.calls.length, 1)
  t.is(writer.calls.length, 1)
  t.is(port.pendingCount, 0)
})

test('one event completes every registration it satisfies', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local, peer] = fds.socketpair()
  const readers = [new Recorder(), new Recorder(), new Recorder()]
  const rdhup = new Recorder()

  for (const reader of readers) {
    port.add(local, EPOLLIN, reader.callback)
  }
  port.add(local, EPOLLRDHUP, rdhup.callback)
  libc.write(peer, Buffer.from('x'))
  for (const reader of readers) {
    await reader.first()
  }
  await roundTrip(port)

  for (const reader of readers) {
    t.is(reader.calls.length, 1)
    t.is(reader.calls[0].action, Action.EPOLLIN)
  }
  t.is(rdhup.calls.length, 0, 'data alone does not complete an EPOLLRDHUP registration')
  t.is(port.pendingCount, 1)

  libc.shutdown(peer, libc.SHUT_WR)
  const hangup = await rdhup.first()
  t.is(hangup.action, Action.EPOLLRDHUP)
})

test('EPOLLERR completes every registration', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [readEnd, writeEnd] = fds.pipe()
  const chunk = Buffer.alloc(65536)
  while (libc.write(writeEnd, chunk) !== null) {
    // Fill the pipe, so the write end is not writable.
  }
  const recorders = [EPOLLIN, EPOLLOUT, EPOLLRDHUP].map((events) => {
    const recorder = new Recorder()
    port.add(writeEnd, events, recorder.callback)
    return recorder
  })
  await roundTrip(port)
  t.is(port.pendingCount, 3)

  // A full pipe without readers reports EPOLLERR alone on its write end.
  fds.close(readEnd)
  for (const recorder of recorders) {
    const completion = await recorder.first()
    t.is(completion.action, Action.ERROR)
    t.is(completion.events, EPOLLERR)
  }
  await roundTrip(port)
  for (const recorder of recorders) {
    t.is(recorder.calls.length, 1)
  }
})

test('EPOLLHUP completes every registration', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [readEnd, writeEnd] = fds.pipe()
  const recorders = [EPOLLIN, EPOLLOUT, EPOLLRDHUP].map((events) => {
    const recorder = new Recorder()
    port.add(readEnd, events, recorder.callback)
    return recorder
  })
  await roundTrip(port)
  t.is(port.pendingCount, 3)

  // An empty pipe without writers reports EPOLLHUP alone on its read end.
  fds.close(writeEnd)
  for (const recorder of recorders) {
    const completion = await recorder.first()
    t.is(completion.action, Action.EPOLLRDHUP)
    t.true((completion.events & EPOLLHUP) !== 0)
  }
  await roundTrip(port)
  for (const recorder of recorders) {
    t.is(recorder.calls.length, 1)
  }
})

test('1000 socket pairs complete exactly once each', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const count = 1000
  const pairs = Array.from({ length: count }, () => fds.socketpair())
  const counts = new Array<number>(count).fill(0)
  const actions = new Array<Action | undefined>(count)
  const ids = new Set<number>()
  let completed = 0
  let allCompleted: () => void = () => {}
  const done = new Promise<void>((resolve) => (allCompleted = resolve))

  pairs.forEach(([reader], index) => {
    const id = port.add(reader, EPOLLIN, (action) => {
      counts[index] += 1
      actions[index] = action
      completed += 1
      if (completed === count) {
        allCompleted()
      }
    })
    ids.add(id)
  })
  t.is(ids.size, count, 'every id is distinct')
  t.is(port.pendingCount, count)
  // Half become readable before the other half, so completions span several wake-ups.
  pairs.forEach(([, writer], index) => {
    if (index % 2 === 0) {
      libc.write(writer, Buffer.from('x'))
    }
  })
  await delay(10)
  pairs.forEach(([, writer], index) => {
    if (index % 2 === 1) {
      libc.write(writer, Buffer.from('x'))
    }
  })
  await Promise.race([done, delay(10_000)])
  await roundTrip(port)

  t.is(completed, count)
  t.true(
    counts.every((calls) => calls === 1),
    `indexes not called exactly once: ${counts.flatMap((calls, index) => (calls === 1 ? [] : [index])).slice(0, 10)}`,
  )
  t.true(actions.every((action) => action === Action.EPOLLIN))
  t.is(port.pendingCount, 0)
})
