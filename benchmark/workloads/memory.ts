// Memory per pending wait: native bytes (glibc malloc in use) and JavaScript
// heap bytes, measured after a full garbage collection before and after the
// waits are made, divided by their number. Kernel memory (one epoll entry
// per fd) is not counted.
//
// - completion-port: `--registrations` pending registrations spread over
//   `--fds` fds (several registrations may wait on one fd). All share one
//   callback function, so the figure is the port's own cost; a closure per
//   registration adds its size to the JavaScript heap.
// - epoll: the `epoll` package allows one registration per fd, so it is
//   measured at `--fds` registered fds.
// - net: `--fds` reading `net.Socket`s.

import * as net from 'node:net'

import { CompletionPort, EPOLLIN } from '../..'
import {
  checkDescriptorLimit,
  closePairs,
  collectGarbage,
  emit,
  loadEpollPackage,
  parseOptions,
  runMain,
  sleep,
  socketpairs,
} from '../lib/common'
import { mallocInUseBytes } from '../lib/malloc'

const options = parseOptions(['completion-port', 'epoll', 'net'], {
  registrations: 100_000,
  fds: 10_000,
})

/** Registrations made and dropped before measuring, so that lazily created state is in the baseline. */
const WARM_UP_REGISTRATIONS = 1_000

interface Snapshot {
  nativeBytes: number
  heapBytes: number
}

function snapshot(): Snapshot {
  collectGarbage()
  return { nativeBytes: mallocInUseBytes(), heapBytes: process.memoryUsage().heapUsed }
}

/** Measures the memory that `makeWaits` adds, per wait. */
async function measure(waits: number, makeWaits: () => void): Promise<Record<string, number>> {
  // Lets callbacks of the warm-up run and their garbage become collectable.
  await sleep(50)
  const before = snapshot()
  makeWaits()
  await sleep(50)
  const after = snapshot()
  return {
    waits,
    nativeBytesPerWait: (after.nativeBytes - before.nativeBytes) / waits,
    jsHeapBytesPerWait: (after.heapBytes - before.heapBytes) / waits,
  }
}

async function measureCompletionPort(fds: number[]): Promise<Record<string, number>> {
  const callback = (): void => {}
  const warmUp = new CompletionPort()
  for (let i = 0; i < WARM_UP_REGISTRATIONS; i++) {
    warmUp.add(fds[i % fds.length], EPOLLIN, callback)
  }
  warmUp.decRef()

  const port = new CompletionPort()
  const perFd = Math.ceil(options.registrations / fds.length)
  const result = await measure(options.registrations, () => {
    let made = 0
    for (let round = 0; round < perFd; round++) {
      for (const fd of fds) {
        if (made === options.registrations) {
          return
        }
        port.add(fd, EPOLLIN, callback)
        made++
      }
    }
  })
  if (port.pendingCount !== options.registrations) {
    throw new Error(`expected ${options.registrations} pending registrations, found ${port.pendingCount}`)
  }
  port.decRef()
  await sleep(0)
  return { ...result, fds: fds.length }
}

async function measureEpollPackage(fds: number[]): Promise<Record<string, number>> {
  const { Epoll } = loadEpollPackage()
  const callback = (error: Error | null): void => {
    throw error ?? new Error('no fd was made readable, but the epoll package reported one')
  }
  const warmUp = new Epoll(callback)
  warmUp.add(fds[0], Epoll.EPOLLIN)
  warmUp.close()

  const epoll = new Epoll(callback)
  const result = await measure(fds.length, () => {
    for (const fd of fds) {
      epoll.add(fd, Epoll.EPOLLIN)
    }
  })
  epoll.close()
  return { ...result, fds: fds.length }
}

async function measureNet(fds: number[]): Promise<Record<string, number>> {
  // Sockets on a pair of their own, because destroy closes the fds.
  for (const fd of socketpairs(1, false)[0]) {
    new net.Socket({ fd, readable: true, writable: true }).destroy()
  }

  let sockets: net.Socket[] = []
  const result = await measure(fds.length, () => {
    sockets = fds.map((fd) => new net.Socket({ fd, readable: true, writable: true }))
  })
  for (const socket of sockets) {
    socket.destroy()
  }
  return { ...result, fds: fds.length }
}

async function main(): Promise<void> {
  const fdCount = Math.min(options.fds, options.registrations)
  const pairCount = Math.ceil(fdCount / 2)
  checkDescriptorLimit(2 * pairCount)
  const pairs = socketpairs(pairCount, false)
  const fds = pairs.flat().slice(0, fdCount)

  let result: Record<string, number>
  if (options.impl === 'completion-port') {
    result = await measureCompletionPort(fds)
  } else if (options.impl === 'epoll') {
    result = await measureEpollPackage(fds)
  } else {
    result = await measureNet(fds)
  }
  if (options.impl !== 'net') {
    closePairs(pairs)
  }
  emit({ workload: 'memory', impl: options.impl, ...result })
}

runMain(main)
