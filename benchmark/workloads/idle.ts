// Idle cost: wake-ups of the helper thread while one registration waits on
// an fd that never becomes ready. A wake-up is counted as one voluntary
// context switch in /proc/self/task/TID/status: the thread blocks again
// after each one.
//
// - completion-port: the 'completion-port' worker thread, whose epoll_wait
//   times out every 2 s, so about 0.5 wake-ups per second are expected.
// - epoll: the `epoll` package's watcher thread, which waits with no timeout.

import { CompletionPort, EPOLLIN } from '../..'
import { closePairs, emit, loadEpollPackage, parseOptions, readThreadSwitches, runMain, sleep, socketpairs } from '../lib/common'

const options = parseOptions(['completion-port', 'epoll'], {
  seconds: 6,
})

/** Time for the helper thread to start and block before the first sample. */
const SETTLE_MS = 200

/** Name of the port's worker thread, as core/src/worker.rs sets it. */
const WORKER_THREAD_NAME = 'completion-port'

/** Starts the implementation and returns the ids of its helper threads and how to stop it. */
function start(fd: number): { tids: number[]; stop: () => void } {
  const before = new Set(readThreadSwitches().map((thread) => thread.tid))
  if (options.impl === 'completion-port') {
    const port = new CompletionPort()
    port.add(fd, EPOLLIN, () => {})
    const workers = readThreadSwitches().filter((thread) => thread.name === WORKER_THREAD_NAME && !before.has(thread.tid))
    if (workers.length !== 1) {
      throw new Error(`expected one new '${WORKER_THREAD_NAME}' thread, found ${workers.length}`)
    }
    return { tids: [workers[0].tid], stop: () => port.decRef() }
  }

  const { Epoll } = loadEpollPackage()
  const epoll = new Epoll((error) => {
    throw error ?? new Error('no fd was made readable, but the epoll package reported one')
  })
  epoll.add(fd, Epoll.EPOLLIN)
  // The package starts its watcher thread when it is first loaded.
  const watchers = readThreadSwitches().filter((thread) => !before.has(thread.tid))
  if (watchers.length === 0) {
    throw new Error('found no thread started by the epoll package')
  }
  return { tids: watchers.map((thread) => thread.tid), stop: () => epoll.close() }
}

function voluntarySwitches(tids: number[]): number {
  return readThreadSwitches()
    .filter((thread) => tids.includes(thread.tid))
    .reduce((sum, thread) => sum + thread.voluntary, 0)
}

async function main(): Promise<void> {
  const pairs = socketpairs(1, false)
  const { tids, stop } = start(pairs[0][0])
  await sleep(SETTLE_MS)

  const startSwitches = voluntarySwitches(tids)
  const startTime = performance.now()
  await sleep(options.seconds * 1000)
  const wakeUps = voluntarySwitches(tids) - startSwitches
  const seconds = (performance.now() - startTime) / 1000

  stop()
  await sleep(0)
  closePairs(pairs)
  emit({ workload: 'idle', impl: options.impl, threads: tids.length, seconds, wakeUps, perSecond: wakeUps / seconds })
}

runMain(main)
