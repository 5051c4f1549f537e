// Ping-pong latency: one byte bounced between the two ends of an AF_UNIX
// socketpair, both served by the same process. A round trip is two
// readiness reports: the right end reads and writes the byte back, then the
// left end reads it. Prints the p50 and p99 round-trip times in microseconds.
//
// - completion-port: each end has a one-shot registration, re-added after
//   each read.
// - epoll: the `epoll` package, both ends registered level-triggered.
// - net: both ends wrapped in `net.Socket`, so libuv polls them on the
//   JavaScript thread with no thread hop.

import * as net from 'node:net'

import { CompletionPort, CompletionPortEpollAction, EPOLLIN } from '../..'
import * as libc from '../../examples/libc'
import { emit, loadEpollPackage, parseOptions, percentile, runMain, socketpairs } from '../lib/common'

const options = parseOptions(['completion-port', 'epoll', 'net'], {
  roundTrips: 20_000,
  /** Round trips run before the first sample. */
  warmup: 2_000,
})

/** Round-trip times in milliseconds, filled after the warm-up. */
class Samples {
  readonly values = new Float64Array(options.roundTrips)
  #completed = 0
  #sentAt = performance.now()

  /** Records the round trip that just ended. Returns true when enough are recorded. */
  record(): boolean {
    const now = performance.now()
    const index = this.#completed - options.warmup
    if (index >= 0) {
      this.values[index] = now - this.#sentAt
    }
    this.#completed++
    this.#sentAt = now
    return index + 1 >= options.roundTrips
  }

  start(): void {
    this.#sentAt = performance.now()
  }
}

function readByte(fd: number, byte: Uint8Array): void {
  if (libc.read(fd, byte) !== 1) {
    throw new Error(`fd ${fd} was reported readable, but the read returned no byte`)
  }
}

function pingPongCompletionPort(left: number, right: number, samples: Samples): Promise<void> {
  const port = new CompletionPort()
  const byte = new Uint8Array(1)
  return new Promise((resolve) => {
    const onRightReadable = (action: CompletionPortEpollAction): void => {
      if (action !== CompletionPortEpollAction.EPOLLIN) {
        return
      }
      readByte(right, byte)
      port.add(right, EPOLLIN, onRightReadable)
      libc.write(right, byte)
    }
    const onLeftReadable = (action: CompletionPortEpollAction): void => {
      readByte(left, byte)
      if (samples.record()) {
        // Abandons the right end's registration, whose callback then returns.
        port.decRef()
        resolve()
        return
      }
      port.add(left, EPOLLIN, onLeftReadable)
      libc.write(left, byte)
    }
    port.add(right, EPOLLIN, onRightReadable)
    port.add(left, EPOLLIN, onLeftReadable)
    samples.start()
    libc.write(left, byte)
  })
}

function pingPongEpollPackage(left: number, right: number, samples: Samples): Promise<void> {
  const { Epoll } = loadEpollPackage()
  const byte = new Uint8Array(1)
  return new Promise((resolve) => {
    const epoll = new Epoll((error, fd) => {
      if (error) {
        throw error
      }
      readByte(fd, byte)
      if (fd === left && samples.record()) {
        epoll.close()
        resolve()
        return
      }
      libc.write(fd, byte)
    })
    epoll.add(right, Epoll.EPOLLIN)
    epoll.add(left, Epoll.EPOLLIN)
    samples.start()
    libc.write(left, byte)
  })
}

function pingPongNet(left: number, right: number, samples: Samples): Promise<void> {
  const leftSocket = new net.Socket({ fd: left, readable: true, writable: true })
  const rightSocket = new net.Socket({ fd: right, readable: true, writable: true })
  return new Promise((resolve) => {
    rightSocket.on('data', (chunk) => rightSocket.write(chunk))
    leftSocket.on('data', (chunk) => {
      if (samples.record()) {
        // destroy closes the fds.
        leftSocket.destroy()
        rightSocket.destroy()
        resolve()
        return
      }
      leftSocket.write(chunk)
    })
    samples.start()
    leftSocket.write(Buffer.from([0x78]))
  })
}

async function main(): Promise<void> {
  const [[left, right]] = socketpairs(1, false)
  const samples = new Samples()
  if (options.impl === 'completion-port') {
    await pingPongCompletionPort(left, right, samples)
  } else if (options.impl === 'epoll') {
    await pingPongEpollPackage(left, right, samples)
  } else {
    await pingPongNet(left, right, samples)
  }
  if (options.impl !== 'net') {
    libc.close(left)
    libc.close(right)
  }

  const sorted = samples.values.sort()
  const microseconds = (ms: number): number => ms * 1000
  emit({
    workload: 'ping-pong',
    impl: options.impl,
    roundTrips: options.roundTrips,
    p50Us: microseconds(percentile(sorted, 0.5)),
    p99Us: microseconds(percentile(sorted, 0.99)),
  })
}

runMain(main)
