// RSS growth over `--cycles` add/complete cycles on `--fds` readable fds, the
// throughput workload run for a fixed number of completions. RSS, malloc'd
// bytes and the JavaScript heap are sampled once after `--warmup` cycles and
// once at the end, each time after a full garbage collection and one turn of
// the event loop, so that finalizers of collected ArrayBuffers have run.
// The warm-up lets the JavaScript heap and the garbage of delivered batches
// reach their steady size first.
//
// - completion-port: each callback re-adds its one-shot registration.
// - epoll: the `epoll` package, fds registered level-triggered, one cycle
//   per callback.

import { CompletionPort, CompletionPortEpollAction, EPOLLIN } from '../..'
import {
  closePairs,
  collectGarbage,
  emit,
  loadEpollPackage,
  parseOptions,
  readRssBytes,
  runMain,
  sleep,
  socketpairs,
} from '../lib/common'
import { mallocInUseBytes } from '../lib/malloc'

const options = parseOptions(['completion-port', 'epoll'], {
  cycles: 1_000_000,
  fds: 100,
  warmup: 100_000,
})

interface Sample {
  rssBytes: number
  nativeBytes: number
  heapBytes: number
}

async function sample(): Promise<Sample> {
  collectGarbage()
  await new Promise((resolve) => setImmediate(resolve))
  collectGarbage()
  return { rssBytes: readRssBytes(), nativeBytes: mallocInUseBytes(), heapBytes: process.memoryUsage().heapUsed }
}

/**
 * Counts cycles: starts the first sample when the warm-up ends and resolves
 * `finished` when every measured cycle has run.
 */
class CycleCounter {
  #cycles = 0
  #first: Promise<Sample> | undefined
  #finish: () => void = () => {}
  readonly finished = new Promise<void>((resolve) => {
    this.#finish = resolve
  })

  /** Counts one cycle. Returns false once the workload should stop re-arming. */
  count(): boolean {
    this.#cycles++
    if (this.#cycles === options.warmup) {
      // Runs after the current batch, while the cycles go on.
      this.#first = sample()
    } else if (this.#cycles === options.warmup + options.cycles) {
      this.#finish()
    }
    return this.#cycles < options.warmup + options.cycles
  }

  get first(): Promise<Sample> {
    if (this.#first === undefined) {
      throw new Error('the warm-up has not ended')
    }
    return this.#first
  }
}

async function runCompletionPort(fds: number[], counter: CycleCounter): Promise<void> {
  const port = new CompletionPort()
  for (const fd of fds) {
    const onReadable = (action: CompletionPortEpollAction): void => {
      if (action === CompletionPortEpollAction.EPOLLIN && counter.count()) {
        port.add(fd, EPOLLIN, onReadable)
      }
    }
    port.add(fd, EPOLLIN, onReadable)
  }
  await counter.finished
  port.decRef()
  await sleep(0)
}

async function runEpollPackage(fds: number[], counter: CycleCounter): Promise<void> {
  const { Epoll } = loadEpollPackage()
  const epoll = new Epoll((error) => {
    if (error) {
      throw error
    }
    counter.count()
  })
  for (const fd of fds) {
    epoll.add(fd, Epoll.EPOLLIN)
  }
  await counter.finished
  epoll.close()
}

async function main(): Promise<void> {
  const pairs = socketpairs(options.fds, true)
  const fds = pairs.map(([readable]) => readable)
  const counter = new CycleCounter()
  if (options.impl === 'completion-port') {
    await runCompletionPort(fds, counter)
  } else {
    await runEpollPackage(fds, counter)
  }
  const first = await counter.first
  const last = await sample()
  closePairs(pairs)

  emit({
    workload: 'rss',
    impl: options.impl,
    cycles: options.cycles,
    rssGrowthBytes: last.rssBytes - first.rssBytes,
    nativeGrowthBytes: last.nativeBytes - first.nativeBytes,
    jsHeapGrowthBytes: last.heapBytes - first.heapBytes,
  })
}

runMain(main)
