// Teardown: `--registrations` fds waiting for readiness that never comes
// (both ends of socketpairs with nothing written), then everything closed at
// once. Prints the time until the closing call returns and the time until
// the last callback of the teardown has run, in milliseconds.
//
// - completion-port: the last decRef, then every ABANDONED callback.
// - epoll: close() of the `epoll` package, which deletes every fd from its
//   epoll instance and calls nothing back.
// - net: destroy() of every reading `net.Socket`, then every 'close' event.
//   Unlike the others it also closes the fds.

import * as net from 'node:net'

import { CompletionPort, CompletionPortEpollAction, EPOLLIN } from '../..'
import { checkDescriptorLimit, closePairs, emit, loadEpollPackage, parseOptions, runMain, sleep, socketpairs } from '../lib/common'

const options = parseOptions(['completion-port', 'epoll', 'net'], {
  registrations: 10_000,
})

/** Time for the worker thread or libuv to settle into waiting before the teardown. */
const SETTLE_MS = 200

interface Teardown {
  returnMs: number
  /** Time until the last callback, or null when the implementation calls nothing back. */
  lastCallbackMs: number | null
}

async function teardownCompletionPort(fds: number[]): Promise<Teardown> {
  const port = new CompletionPort()
  let abandoned = 0
  let lastCallbackAt = 0
  let allAbandoned: () => void = () => {}
  const done = new Promise<void>((resolve) => {
    allAbandoned = resolve
  })
  const onAbandoned = (action: CompletionPortEpollAction): void => {
    if (action !== CompletionPortEpollAction.ABANDONED) {
      throw new Error(`expected ABANDONED, got action ${action}`)
    }
    abandoned++
    if (abandoned === fds.length) {
      lastCallbackAt = performance.now()
      allAbandoned()
    }
  }
  for (const fd of fds) {
    port.add(fd, EPOLLIN, onAbandoned)
  }
  await sleep(SETTLE_MS)

  const start = performance.now()
  port.decRef()
  const returnedAt = performance.now()
  await done
  return { returnMs: returnedAt - start, lastCallbackMs: lastCallbackAt - start }
}

async function teardownEpollPackage(fds: number[]): Promise<Teardown> {
  const { Epoll } = loadEpollPackage()
  const epoll = new Epoll((error) => {
    throw error ?? new Error('no fd was made readable, but the epoll package reported one')
  })
  for (const fd of fds) {
    epoll.add(fd, Epoll.EPOLLIN)
  }
  await sleep(SETTLE_MS)

  const start = performance.now()
  epoll.close()
  return { returnMs: performance.now() - start, lastCallbackMs: null }
}

async function teardownNet(fds: number[]): Promise<Teardown> {
  const sockets = fds.map((fd) => new net.Socket({ fd, readable: true, writable: true }))
  let closed = 0
  let lastCallbackAt = 0
  const done = new Promise<void>((resolve) => {
    for (const socket of sockets) {
      socket.on('close', () => {
        closed++
        if (closed === sockets.length) {
          lastCallbackAt = performance.now()
          resolve()
        }
      })
    }
  })
  await sleep(SETTLE_MS)

  const start = performance.now()
  for (const socket of sockets) {
    socket.destroy()
  }
  const returnedAt = performance.now()
  await done
  return { returnMs: returnedAt - start, lastCallbackMs: lastCallbackAt - start }
}

async function main(): Promise<void> {
  const pairCount = Math.ceil(options.registrations / 2)
  checkDescriptorLimit(2 * pairCount)
  const pairs = socketpairs(pairCount, false)
  const fds = pairs.flat().slice(0, options.registrations)

  let result: Teardown
  if (options.impl === 'completion-port') {
    result = await teardownCompletionPort(fds)
  } else if (options.impl === 'epoll') {
    result = await teardownEpollPackage(fds)
  } else {
    result = await teardownNet(fds)
  }
  if (options.impl !== 'net') {
    closePairs(pairs)
  }
  emit({ workload: 'teardown', impl: options.impl, registrations: fds.length, ...result })
}

runMain(main)
