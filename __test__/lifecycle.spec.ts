// How registrations end without readiness (remove, cancel, fd reuse, the last
// decRef), how one wake-up is delivered, and the reference count of a port.

import test from 'ava'
import { AsyncLocalStorage } from 'node:async_hooks'

import { CompletionPort, CompletionPortEpollAction as Action, EPOLLIN, EPOLLOUT, EPOLLRDHUP } from '..'
import * as libc from '../examples/libc'
import { blockThread, createPort, delay, Descriptors, Recorder, roundTrip, withDeadline } from './helpers'

test('remove abandons every registration on fd', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const other = fds.eventfd()
  const recorders = [EPOLLIN, EPOLLRDHUP, EPOLLIN | EPOLLRDHUP].map((events) => {
    const recorder = new Recorder()
    port.add(local, events, recorder.callback)
    return recorder
  })
  const bystander = new Recorder()
  port.add(other, EPOLLIN, bystander.callback)

  port.remove(local)
  t.true(
    recorders.every((recorder) => recorder.calls.length === 0),
    'remove does not call back synchronously',
  )
  for (const recorder of recorders) {
    const completion = await recorder.first('ABANDONED')
    t.is(completion.action, Action.ABANDONED)
    t.is(completion.events, 0)
  }
  await roundTrip(port)

  for (const recorder of recorders) {
    t.is(recorder.calls.length, 1)
  }
  t.is(bystander.calls.length, 0, 'registrations on other fds stay pending')
  t.is(port.pendingCount, 1)
})

test('remove abandons registrations after close', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const recorder = new Recorder()

  port.add(local, EPOLLIN, recorder.callback)
  fds.close(local)
  port.remove(local)
  const completion = await recorder.first('ABANDONED')

  t.is(completion.action, Action.ABANDONED)
  t.is(completion.events, 0)
  t.is(port.pendingCount, 0)
})

test('remove drops events already picked up', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()
  libc.write(writer, Buffer.from('x'))

  port.add(reader, EPOLLIN, recorder.callback)
  // The worker reports the readable fd while JS is blocked, so the event
  // waits for JS when remove runs.
  blockThread()
  port.remove(reader)
  const completion = await recorder.first('ABANDONED')
  await roundTrip(port)

  t.is(completion.action, Action.ABANDONED)
  t.is(completion.events, 0)
  t.is(recorder.calls.length, 1)
})

test('remove stops later readiness', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()

  port.add(reader, EPOLLIN, recorder.callback)
  port.remove(reader)
  await recorder.first('ABANDONED')
  libc.write(writer, Buffer.from('x'))
  await roundTrip(port)

  t.is(recorder.calls.length, 1)
  t.is(recorder.calls[0].action, Action.ABANDONED)
})

test('remove of fd without registrations does nothing', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const [, unregistered] = fds.socketpair()
  const recorder = new Recorder()
  port.add(local, EPOLLIN, recorder.callback)

  t.notThrows(() => port.remove(unregistered))
  await roundTrip(port)

  t.is(recorder.calls.length, 0)
  t.is(port.pendingCount, 1)
})

test('cancel abandons only its registration', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const cancelled = new Recorder()
  const kept = new Recorder()

  const cancelledId = port.add(reader, EPOLLIN, cancelled.callback)
  port.add(reader, EPOLLIN, kept.callback)
  t.true(port.cancel(cancelledId))
  t.is(cancelled.calls.length, 0, 'cancel does not call back synchronously')
  const completion = await cancelled.first('ABANDONED')
  t.is(completion.action, Action.ABANDONED)
  t.is(completion.events, 0)
  t.is(port.pendingCount, 1)

  libc.write(writer, Buffer.from('x'))
  const readable = await kept.first()
  await roundTrip(port)

  t.is(readable.action, Action.EPOLLIN)
  t.is(cancelled.calls.length, 1, 'a cancelled registration is never called again')
  t.is(kept.calls.length, 1)
})

test('cancel returns false once not pending', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const cancelled = new Recorder()
  const completed = new Recorder()

  const cancelledId = port.add(reader, EPOLLIN, cancelled.callback)
  t.true(port.cancel(cancelledId))
  t.false(port.cancel(cancelledId), 'a second cancel finds nothing pending')
  await cancelled.first('ABANDONED')

  const completedId = port.add(reader, EPOLLIN, completed.callback)
  libc.write(writer, Buffer.from('x'))
  await completed.first()
  t.false(port.cancel(completedId), 'a completed registration cannot be cancelled')
  t.false(port.cancel(completedId + 1000), 'an unknown id cannot be cancelled')
  await roundTrip(port)

  t.is(cancelled.calls.length, 1)
  t.is(completed.calls.length, 1)
  t.is(completed.calls[0].action, Action.EPOLLIN)
})

test('cancel drops events already picked up', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()
  libc.write(writer, Buffer.from('x'))

  const id = port.add(reader, EPOLLIN, recorder.callback)
  blockThread()
  // The event is queued but its callback has not run, so it is still pending.
  t.true(port.cancel(id))
  const completion = await recorder.first('ABANDONED')
  await roundTrip(port)

  t.is(completion.action, Action.ABANDONED)
  t.is(recorder.calls.length, 1)
})

test('remove in callback abandons rest of batch', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [removed] = fds.socketpair()
  const [other] = fds.socketpair()
  const recorders = [new Recorder(), new Recorder()]
  const bystander = new Recorder()
  const order: string[] = []
  let remover: number | undefined

  // One event completes both registrations on `removed`, so they are always
  // in the same batch. The first of them to run removes the fd.
  recorders.forEach((recorder, index) => {
    port.add(removed, EPOLLOUT, (action, events) => {
      recorder.callback(action, events)
      order.push(`registration ${index}`)
      if (remover === undefined) {
        remover = index
        port.remove(removed)
        order.push('remove')
      }
    })
  })
  port.add(other, EPOLLOUT, (action, events) => {
    bystander.callback(action, events)
    order.push('other fd')
  })
  // Socket pairs are writable at once, so the worker collects both fds while JS is blocked.
  blockThread()
  for (const recorder of [...recorders, bystander]) {
    await recorder.first()
  }
  await roundTrip(port)

  if (remover === undefined) {
    t.fail('no callback ran')
    return
  }
  t.is(recorders[remover].calls[0].action, Action.EPOLLOUT)
  t.is(recorders[1 - remover].calls[0].action, Action.ABANDONED, 'the completion after remove is abandoned')
  t.is(recorders[1 - remover].calls[0].events, 0)
  t.true(order.indexOf('other fd') > order.indexOf('remove'), `the other fd came later in the batch: ${order.join(', ')}`)
  t.is(bystander.calls[0].action, Action.EPOLLOUT, 'remove leaves other fds of the batch alone')
  for (const recorder of [...recorders, bystander]) {
    t.is(recorder.calls.length, 1)
  }
  t.is(port.pendingCount, 0)
})

test('cancel in callback abandons later completion', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const [other] = fds.socketpair()
  const recorders = [new Recorder(), new Recorder()]
  const bystander = new Recorder()
  const ids: number[] = []
  let canceller: number | undefined
  let firstCancel: boolean | undefined
  let secondCancel: boolean | undefined

  // One event completes both registrations on `local`, so they are always in
  // the same batch. The first of them to run cancels the other.
  recorders.forEach((recorder, index) => {
    const id = port.add(local, EPOLLOUT, (action, events) => {
      recorder.callback(action, events)
      if (canceller === undefined) {
        canceller = index
        firstCancel = port.cancel(ids[1 - index])
        secondCancel = port.cancel(ids[1 - index])
      }
    })
    ids.push(id)
  })
  port.add(other, EPOLLOUT, bystander.callback)
  blockThread()
  for (const recorder of [...recorders, bystander]) {
    await recorder.first()
  }
  await roundTrip(port)

  if (canceller === undefined) {
    t.fail('no callback ran')
    return
  }
  t.true(firstCancel, 'cancel finds the completion whose callback has not run')
  t.false(secondCancel, 'a second cancel finds it abandoned')
  t.is(recorders[canceller].calls[0].action, Action.EPOLLOUT)
  t.is(recorders[1 - canceller].calls[0].action, Action.ABANDONED)
  t.is(recorders[1 - canceller].calls[0].events, 0)
  t.is(bystander.calls[0].action, Action.EPOLLOUT)
  for (const recorder of [...recorders, bystander]) {
    t.is(recorder.calls.length, 1)
  }
  t.is(port.pendingCount, 0)
})

test.serial('reused fd number abandons stale registration', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [stale] = fds.socketpair()
  const old = new Recorder()
  port.add(stale, EPOLLIN, old.callback)

  // Close the fd without remove, and put a new socket under the same number.
  // The kernel reuses the lowest free number, which is `stale` unless a lower
  // one is free, and then dup2 moves the new socket there. The tracker closes
  // the new socket at teardown.
  libc.close(stale)
  const [fresh, freshPeer] = libc.socketpair(libc.AF_UNIX, libc.SOCK_STREAM | libc.SOCK_NONBLOCK)
  if (fresh !== stale) {
    libc.dup2(fresh, stale)
    libc.close(fresh)
  }
  fds.track(freshPeer)
  libc.write(freshPeer, Buffer.from('new'))
  const buffer = Buffer.alloc(8)
  t.is(libc.recv(stale, buffer, libc.MSG_PEEK), 3)
  t.is(buffer.toString('utf8', 0, 3), 'new', `fd ${stale} now refers to the new socket`)

  const current = new Recorder()
  port.add(stale, EPOLLIN, current.callback)
  t.is(old.calls.length, 0, 'add does not call back synchronously')
  const abandoned = await old.first('ABANDONED for the stale registration')
  const readable = await current.first('EPOLLIN for the new registration')
  await roundTrip(port)

  t.is(abandoned.action, Action.ABANDONED)
  t.is(readable.action, Action.EPOLLIN)
  t.is(old.calls.length, 1)
  t.is(current.calls.length, 1)
})

test.serial('stale queued event skips new registration', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, oldWriter] = fds.socketpair()
  const old = new Recorder()
  const current = new Recorder()
  libc.write(oldWriter, Buffer.from('old'))

  port.add(reader, EPOLLIN, old.callback)
  // The worker queues EPOLLIN for the old socket while JS is blocked.
  blockThread()
  // dup2 closes the old socket and puts a new one, with nothing to read, under the same number.
  const [fresh, freshPeer] = libc.socketpair(libc.AF_UNIX, libc.SOCK_STREAM | libc.SOCK_NONBLOCK)
  libc.dup2(fresh, reader)
  libc.close(fresh)
  fds.track(freshPeer)
  port.add(reader, EPOLLIN, current.callback)
  const abandoned = await old.first('ABANDONED for the stale registration')
  await roundTrip(port)

  t.is(abandoned.action, Action.ABANDONED)
  t.is(old.calls.length, 1)
  t.is(current.calls.length, 0, 'the event queued for the old socket does not complete the new one')

  libc.write(freshPeer, Buffer.from('new'))
  const readable = await current.first()
  t.is(readable.action, Action.EPOLLIN)
})

test('one wake-up is delivered in one macrotask', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const count = 100
  const pairs = Array.from({ length: count }, () => fds.socketpair())
  let calls = 0
  let callsAtFirstTick: number | undefined
  let callsAtFirstImmediate: number | undefined
  const recorder = new Recorder()

  for (const [reader] of pairs) {
    port.add(reader, EPOLLIN, (action, events) => {
      calls += 1
      if (calls === 1) {
        process.nextTick(() => (callsAtFirstTick = calls))
        setImmediate(() => (callsAtFirstImmediate = calls))
      }
      recorder.callback(action, events)
    })
  }
  for (const [, writer] of pairs) {
    libc.write(writer, Buffer.from('x'))
  }
  // All 100 become readable while JS is blocked, so the worker reports them together.
  blockThread()
  await recorder.until(count)
  await delay(10)

  t.is(callsAtFirstTick, count, 'a nextTick from the first callback runs after the whole batch')
  t.is(callsAtFirstImmediate, count)
  t.true(recorder.calls.every((call) => call.action === Action.EPOLLIN))
})

test('promise jobs of a batch run before the next', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  libc.write(writer, Buffer.from('stays unread'))
  const rounds = 20
  const order: string[] = []

  // The fd stays readable, so each re-add completes in the poll after the
  // batch that made it.
  await withDeadline(
    new Promise<void>((resolve) => {
      let round = 0
      const onReadable = (): void => {
        round += 1
        order.push(`callback ${round}`)
        const current = round
        void Promise.resolve().then(() => order.push(`job ${current}`))
        if (round === rounds) {
          resolve()
          return
        }
        port.add(reader, EPOLLIN, onReadable)
      }
      port.add(reader, EPOLLIN, onReadable)
    }),
    `${rounds} rounds`,
  )
  await delay(10)

  const expected = Array.from({ length: rounds }, (_, i) => [`callback ${i + 1}`, `job ${i + 1}`]).flat()
  t.deepEqual(order, expected)
})

test('port that keeps finding readiness lets timers run', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  libc.write(writer, Buffer.from('stays unread'))
  const limit = 100_000
  let completions = 0
  let completionsWhenTimerRan: number | undefined

  // Every callback re-adds a registration that completes at once, so polls
  // never come back empty until the limit.
  const timer = new Promise<void>((resolve) =>
    setTimeout(() => {
      completionsWhenTimerRan = completions
      resolve()
    }, 1),
  )
  const loop = new Promise<void>((resolve) => {
    const onReadable = (): void => {
      completions += 1
      if (completions === limit || completionsWhenTimerRan !== undefined) {
        resolve()
        return
      }
      port.add(reader, EPOLLIN, onReadable)
    }
    port.add(reader, EPOLLIN, onReadable)
  })
  await withDeadline(Promise.all([timer, loop]), 'the timer and the loop')

  t.not(completionsWhenTimerRan, undefined)
  t.true(
    (completionsWhenTimerRan ?? limit) < limit,
    `the timer ran after ${completionsWhenTimerRan} of ${limit} completions`,
  )
})

test.serial('ports of one thread share the turn budget', async (t) => {
  const fds = new Descriptors(t)
  const portCount = 20
  const perPortBudget = 1024
  let completions = 0
  let completionsWhenTimerSet = 0
  let completionsWhenTimerRan: number | undefined
  let stopped = false
  let timerDone: () => void = () => {}
  const timer = new Promise<void>((resolve) => (timerDone = resolve))
  const startTimer = (): void => {
    completionsWhenTimerSet = completions
    setTimeout(() => {
      completionsWhenTimerRan = completions
      stopped = true
      timerDone()
    }, 1)
  }

  // Each port keeps re-adding an fd that stays readable. The timer starts
  // once the ports are busy.
  for (let i = 0; i < portCount; i++) {
    const port = createPort(t)
    const [reader, writer] = fds.socketpair()
    libc.write(writer, Buffer.from('stays unread'))
    const onReadable = (action: Action): void => {
      completions += 1
      if (completions === portCount * 4) {
        startTimer()
      }
      if (action === Action.EPOLLIN && !stopped) {
        port.add(reader, EPOLLIN, onReadable)
      }
    }
    port.add(reader, EPOLLIN, onReadable)
  }
  await withDeadline(timer, 'the timer')
  const completionsBeforeTimer = (completionsWhenTimerRan ?? Infinity) - completionsWhenTimerSet

  // With a budget per port, one turn alone could run 20 x 1024.
  t.true(
    completionsBeforeTimer < (portCount * perPortBudget) / 2,
    `the timer ran after ${completionsBeforeTimer} completions of ${portCount} busy ports`,
  )
})

test.serial('replaced timer globals do not stop polls', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  libc.write(writer, Buffer.from('stays unread'))
  const rounds = 3000
  // As fake timers do: the replacements never run what they are given.
  const saved = { queueMicrotask, setImmediate }
  globalThis.queueMicrotask = () => {}
  globalThis.setImmediate = (() => ({})) as unknown as typeof setImmediate
  t.teardown(() => Object.assign(globalThis, saved))

  // Each completion re-adds, so every batch needs the poll after it.
  const completed = await withDeadline(
    new Promise<number>((resolve) => {
      let count = 0
      const onReadable = (): void => {
        count += 1
        if (count === rounds) {
          resolve(count)
          return
        }
        port.add(reader, EPOLLIN, onReadable)
      }
      port.add(reader, EPOLLIN, onReadable)
    }),
    `${rounds} completions`,
  )
  Object.assign(globalThis, saved)

  t.is(completed, rounds)
})

test('callbacks run in the port creation context', async (t) => {
  const storage = new AsyncLocalStorage<string>()
  const port = storage.run('port', () => new CompletionPort())
  t.teardown(() => port.decRef())
  const fds = new Descriptors(t)
  const [readerA, writerA] = fds.socketpair()
  const [readerB] = fds.socketpair()
  const stores: { a?: string; b?: string } = {}
  const aDone = new Promise<void>((resolve) =>
    port.add(readerA, EPOLLIN, () => {
      stores.a = storage.getStore()
      resolve()
    }),
  )
  let idB = 0
  const bDone = new Promise<void>((resolve) => {
    idB = port.add(readerB, EPOLLIN, () => {
      stores.b = storage.getStore()
      resolve()
    })
  })

  // The poll that the cancel schedules delivers both completions.
  libc.write(writerA, Buffer.from('x'))
  storage.run('request', () => port.cancel(idB))
  await withDeadline(Promise.all([aDone, bDone]), 'both callbacks')

  t.is(stores.a, 'port')
  t.is(stores.b, 'port')
})

test('last decRef abandons pending registrations', async (t) => {
  const port = new CompletionPort()
  const fds = new Descriptors(t)
  const recorders = [fds.socketpair()[0], fds.pipe()[0], fds.eventfd()].map((fd) => {
    const recorder = new Recorder()
    port.add(fd, EPOLLIN, recorder.callback)
    return recorder
  })
  t.is(port.pendingCount, 3)

  port.decRef()
  t.true(port.closed)
  t.true(
    recorders.every((recorder) => recorder.calls.length === 0),
    'decRef does not call back synchronously',
  )
  for (const recorder of recorders) {
    const completion = await recorder.first('ABANDONED')
    t.is(completion.action, Action.ABANDONED)
    t.is(completion.events, 0)
  }
  await delay(200)

  for (const recorder of recorders) {
    t.is(recorder.calls.length, 1)
  }
  t.is(port.refCount, 0)
  t.is(port.pendingCount, 0)
})

test('last decRef drops events already picked up', async (t) => {
  const port = new CompletionPort()
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()
  libc.write(writer, Buffer.from('x'))

  port.add(reader, EPOLLIN, recorder.callback)
  blockThread()
  port.decRef()
  const completion = await recorder.first('ABANDONED')
  await delay(200)

  t.is(completion.action, Action.ABANDONED)
  t.is(recorder.calls.length, 1)
})

test('decRef keeps port open while referenced', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const recorder = new Recorder()
  port.add(reader, EPOLLIN, recorder.callback)

  port.incRef()
  t.is(port.refCount, 2)
  port.incRef()
  t.is(port.refCount, 3)
  port.decRef()
  t.is(port.refCount, 2)
  port.decRef()
  t.is(port.refCount, 1)
  t.false(port.closed)

  libc.write(writer, Buffer.from('x'))
  const completion = await recorder.first()
  t.is(completion.action, Action.EPOLLIN, 'the port still works')

  port.decRef()
  t.is(port.refCount, 0)
  t.true(port.closed)
})

test('decRef inside a callback closes port', async (t) => {
  const port = new CompletionPort()
  const fds = new Descriptors(t)
  const readables = [fds.socketpair(), fds.socketpair()]
  const [idle] = fds.socketpair()
  const recorders = readables.map(() => new Recorder())
  const idleRecorder = new Recorder()
  let closedInCallback: boolean | undefined

  readables.forEach(([reader], index) => {
    port.add(reader, EPOLLIN, (action, events) => {
      recorders[index].callback(action, events)
      if (!port.closed) {
        port.decRef()
        closedInCallback = port.closed
      }
    })
  })
  port.add(idle, EPOLLIN, idleRecorder.callback)
  for (const [, writer] of readables) {
    libc.write(writer, Buffer.from('x'))
  }
  blockThread()
  for (const recorder of recorders) {
    await recorder.first()
  }
  const abandoned = await idleRecorder.first('ABANDONED')
  await delay(200)

  t.true(closedInCallback)
  t.is(abandoned.action, Action.ABANDONED)
  t.is(idleRecorder.calls.length, 1)
  for (const recorder of recorders) {
    t.is(recorder.calls.length, 1, 'every registration of the batch is called once')
    t.true([Action.EPOLLIN, Action.ABANDONED].includes(recorder.calls[0].action))
  }
  const actions = recorders.map((recorder) => recorder.calls[0].action)
  t.true(actions.includes(Action.EPOLLIN), 'the callback that closed the port got EPOLLIN')
})

test('last decRef in callback abandons rest of batch', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [local] = fds.socketpair()
  const [other] = fds.socketpair()
  const registrations = [
    { name: 'local 0', fd: local, recorder: new Recorder() },
    { name: 'local 1', fd: local, recorder: new Recorder() },
    { name: 'other fd', fd: other, recorder: new Recorder() },
  ]
  const calls: Array<{ name: string; action: Action; events: number }> = []

  // One event completes both registrations on `local`, so at least one
  // completion follows the first callback in its batch.
  for (const { name, fd, recorder } of registrations) {
    port.add(fd, EPOLLOUT, (action, events) => {
      recorder.callback(action, events)
      calls.push({ name, action, events })
      if (!port.closed) {
        port.decRef()
      }
    })
  }
  blockThread()
  for (const { recorder } of registrations) {
    await recorder.first()
  }
  await delay(200)

  t.true(port.closed)
  t.is(calls.length, 3, `each registration is called once: ${JSON.stringify(calls)}`)
  t.is(calls[0].action, Action.EPOLLOUT, 'the callback that closed the port got EPOLLOUT')
  for (const call of calls.slice(1)) {
    t.is(call.action, Action.ABANDONED, `${call.name} ran after the last decRef`)
    t.is(call.events, 0)
  }
  t.is(port.pendingCount, 0)
})

test('decRef returns within 1 s', async (t) => {
  const port = new CompletionPort()
  const fds = new Descriptors(t)
  const [reader] = fds.socketpair()
  const recorder = new Recorder()
  port.add(reader, EPOLLIN, recorder.callback)
  // Let the worker settle into epoll_wait, so decRef has to wake it.
  await delay(300)

  const started = process.hrtime.bigint()
  port.decRef()
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6

  t.true(elapsedMs < 1000, `decRef took ${elapsedMs.toFixed(1)} ms`)
  await recorder.first('ABANDONED')
})

test('Symbol.dispose releases one reference', (t) => {
  const port = new CompletionPort()
  port.incRef()

  port[Symbol.dispose]()
  t.is(port.refCount, 1)
  t.false(port.closed)

  port[Symbol.dispose]()
  t.is(port.refCount, 0)
  t.true(port.closed)
})

test('using declaration closes port at scope end', async (t) => {
  const fds = new Descriptors(t)
  const [reader] = fds.socketpair()
  const recorder = new Recorder()
  let escaped: CompletionPort | undefined
  {
    using port = new CompletionPort()
    port.add(reader, EPOLLIN, recorder.callback)
    escaped = port
    t.false(port.closed)
  }

  t.true(escaped.closed)
  const completion = await withDeadline(recorder.first('ABANDONED'), 'ABANDONED after the scope')
  t.is(completion.action, Action.ABANDONED)
})

test('pendingCount follows registrations', async (t) => {
  const port = createPort(t)
  const fds = new Descriptors(t)
  const [reader, writer] = fds.socketpair()
  const [other] = fds.socketpair()
  const readable = new Recorder()
  const cancelled = new Recorder()
  const removed = new Recorder()

  t.is(port.pendingCount, 0)
  port.add(reader, EPOLLIN, readable.callback)
  const cancelledId = port.add(reader, EPOLLRDHUP, cancelled.callback)
  port.add(other, EPOLLIN, removed.callback)
  t.is(port.pendingCount, 3)

  libc.write(writer, Buffer.from('x'))
  await readable.first()
  t.is(port.pendingCount, 2)

  port.cancel(cancelledId)
  t.is(port.pendingCount, 2, 'a cancelled registration counts until its callback runs')
  await cancelled.first('ABANDONED')
  t.is(port.pendingCount, 1)

  port.remove(other)
  t.is(port.pendingCount, 1, 'a removed registration counts until its callback runs')
  await removed.first('ABANDONED')
  t.is(port.pendingCount, 0)
})
