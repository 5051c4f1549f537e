// Throughput: `--fds` socketpairs whose first end stays readable (one unread
// byte), and every readiness report counted. Prints completions per second.
//
// - completion-port: each callback re-adds its one-shot registration.
// - epoll: the `epoll` package with level-triggered registrations, its
//   natural use: the fds stay registered and every report is one callback.
// - epoll-oneshot: the `epoll` package with EPOLLONESHOT, each callback
//   re-arming its fd with modify, which is the same work as completion-port.

import { CompletionPort, CompletionPortEpollAction, EPOLLIN } from '../..'
import { checkDescriptorLimit, closePairs, emit, loadEpollPackage, parseOptions, runMain, sleep, socketpairs } from '../lib/common'

const options = parseOptions(['completion-port', 'epoll', 'epoll-oneshot'], {
  fds: 1000,
  seconds: 3,
  /** Seconds run before counting starts. */
  warmup: 0.3,
})

/** A running workload: its completion counter and how to stop it. */
interface Counter {
  count(): number
  stop(): Promise<void>
}

function startCompletionPort(fds: number[]): Counter {
  const port = new CompletionPort()
  let count = 0
  let running = true
  for (const fd of fds) {
    const onReadable = (action: CompletionPortEpollAction): void => {
      if (action !== CompletionPortEpollAction.EPOLLIN) {
        return
      }
      count++
      if (running) {
        port.add(fd, EPOLLIN, onReadable)
      }
    }
    port.add(fd, EPOLLIN, onReadable)
  }
  return {
    count: () => count,
    async stop() {
      running = false
      port.decRef()
      // Lets the ABANDONED callbacks run before the fds close.
      await sleep(0)
    },
  }
}

function startEpollPackage(fds: number[], oneShot: boolean): Counter {
  const { Epoll } = loadEpollPackage()
  const events = oneShot ? Epoll.EPOLLIN | Epoll.EPOLLONESHOT : Epoll.EPOLLIN
  let count = 0
  let running = true
  const epoll = new Epoll((error, fd) => {
    if (error) {
      throw error
    }
    count++
    if (oneShot && running) {
      epoll.modify(fd, events)
    }
  })
  for (const fd of fds) {
    epoll.add(fd, events)
  }
  return {
    count: () => count,
    async stop() {
      running = false
      epoll.close()
    },
  }
}

async function main(): Promise<void> {
  checkDescriptorLimit(2 * options.fds)
  const pairs = socketpairs(options.fds, true)
  const readableFds = pairs.map(([readable]) => readable)
  const counter =
    options.impl === 'completion-port'
      ? startCompletionPort(readableFds)
      : startEpollPackage(readableFds, options.impl === 'epoll-oneshot')

  await sleep(options.warmup * 1000)
  const startCount = counter.count()
  const startTime = performance.now()
  await sleep(options.seconds * 1000)
  const completions = counter.count() - startCount
  const seconds = (performance.now() - startTime) / 1000

  await counter.stop()
  closePairs(pairs)
  emit({ workload: 'throughput', impl: options.impl, fds: options.fds, completions, seconds, perSecond: completions / seconds })
}

runMain(main)
