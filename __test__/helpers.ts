// Shared helpers for the specs: descriptors that close themselves at teardown,
// ports that close themselves at teardown, a callback recorder, and readers of
// /proc/self for worker threads and descriptors.

import { spawn } from 'node:child_process'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { threadId } from 'node:worker_threads'

import type { ExecutionContext } from 'ava'

import { CompletionPort, CompletionPortEpollAction, EPOLLIN } from '..'
import * as libc from '../examples/libc'

export { delay }

/** Name of the port's worker thread in /proc/self/task/<tid>/comm. */
export const WORKER_THREAD_NAME = 'completion-port'

/** Name of the thread that closes the descriptors of a port with many fds. */
export const CLOSE_THREAD_NAME = 'epoll-close'

/** Deadline that only catches hangs. */
/**
 * Multiplier for the deadlines below, for slow runs: scripts/test-arm64.sh
 * sets 4, because the arm64 Node.js under qemu-aarch64 needs about 5 s to
 * start a fixture.
 */
const DEADLINE_SCALE = Number(process.env.COMPLETION_PORT_TEST_DEADLINE_SCALE ?? '1')

export const HANG_DEADLINE_MS = 10_000 * DEADLINE_SCALE

/** Time the JS thread is blocked so that the worker surely picks up ready events. */
export const WORKER_PICKUP_MS = 200

/**
 * Descriptors owned by one test. Teardown closes those the test did not close
 * itself through `close`, so a number that another test reused is never closed.
 */
export class Descriptors {
  private readonly open = new Set<number>()

  constructor(t: ExecutionContext) {
    t.teardown(() => this.closeAll())
  }

  track(fd: number): number {
    this.open.add(fd)
    return fd
  }

  /** Creates a non-blocking AF_UNIX socket pair of `type`. */
  socketpair(type = libc.SOCK_STREAM): [number, number] {
    const [first, second] = libc.socketpair(libc.AF_UNIX, type | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC)
    return [this.track(first), this.track(second)]
  }

  /** Creates a non-blocking pipe and returns [readEnd, writeEnd]. */
  pipe(): [number, number] {
    const [readEnd, writeEnd] = libc.pipe2()
    return [this.track(readEnd), this.track(writeEnd)]
  }

  eventfd(initialValue = 0): number {
    return this.track(libc.eventfd(initialValue))
  }

  /** Creates a non-blocking IPv4 socket of `type`. */
  inetSocket(type = libc.SOCK_STREAM): number {
    return this.track(libc.socket(libc.AF_INET, type | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC))
  }

  /** Creates a TCP listener on 127.0.0.1 and returns it with its port. */
  tcpListener(): { fd: number; port: number } {
    const fd = this.inetSocket()
    libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_REUSEADDR, 1)
    libc.bind(fd, 0)
    libc.listen(fd)
    return { fd, port: libc.getsockname(fd).port }
  }

  /** Creates a connected TCP pair on 127.0.0.1: [client, server]. */
  tcpPair(): [number, number] {
    const listener = this.tcpListener()
    const client = this.inetSocket()
    libc.connect(client, listener.port)
    let server: number | null = null
    const deadline = Date.now() + HANG_DEADLINE_MS
    while (server === null) {
      if (Date.now() > deadline) {
        throw new Error(`accept4 on 127.0.0.1:${listener.port} found no connection within ${HANG_DEADLINE_MS} ms`)
      }
      server = libc.accept4(listener.fd)
    }
    this.close(listener.fd)
    libc.setsockoptInt(client, libc.IPPROTO_TCP, libc.TCP_NODELAY, 1)
    return [client, this.track(server)]
  }

  /** Returns a port number on 127.0.0.1 that nothing listens on, for `type`. */
  closedInetPort(type = libc.SOCK_STREAM): number {
    const fd = this.inetSocket(type)
    libc.bind(fd, 0)
    const { port } = libc.getsockname(fd)
    this.close(fd)
    return port
  }

  close(fd: number): void {
    if (!this.open.delete(fd)) {
      throw new Error(`fd ${fd} is not open in this test`)
    }
    libc.close(fd)
  }

  private closeAll(): void {
    for (const fd of this.open) {
      libc.close(fd)
    }
    this.open.clear()
  }
}

/** Creates a port that teardown closes if the test left it open. */
export function createPort(t: ExecutionContext): CompletionPort {
  const port = new CompletionPort()
  t.teardown(() => {
    while (!port.closed) {
      port.decRef()
    }
  })
  return port
}

export interface Completion {
  action: CompletionPortEpollAction
  events: number
  /** worker_threads threadId of the thread the callback ran on. */
  threadId: number
}

/** Records every call of its callback, so tests can count them. */
export class Recorder {
  readonly calls: Completion[] = []
  private readonly waiters: Array<{ count: number; resolve: () => void }> = []

  readonly callback = (action: CompletionPortEpollAction, events: number): void => {
    this.calls.push({ action, events, threadId })
    for (const waiter of this.waiters.filter((entry) => this.calls.length >= entry.count)) {
      this.waiters.splice(this.waiters.indexOf(waiter), 1)
      waiter.resolve()
    }
  }

  /** Resolves with the first call once there is one, and fails after the hang deadline. */
  async first(what = 'the callback'): Promise<Completion> {
    await this.until(1, what)
    return this.calls[0]
  }

  /** Resolves once the callback ran `count` times in total. */
  until(count: number, what = `${count} callbacks`): Promise<void> {
    if (this.calls.length >= count) {
      return Promise.resolve()
    }
    const reached = new Promise<void>((resolve) => this.waiters.push({ count, resolve }))
    return withDeadline(reached, what)
  }
}

/** Rejects if `promise` does not settle within `ms`. Only for catching hangs. */
export async function withDeadline<T>(promise: Promise<T>, what: string, ms = HANG_DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Blocks the JS thread, so the worker can pick up events that JS cannot take yet. */
export function blockThread(ms = WORKER_PICKUP_MS): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/**
 * Waits until the port's worker has gone through another wake-up and its
 * batch was delivered: a readable eventfd is registered and its completion
 * awaited. Any repeat of an earlier event would have been delivered by then.
 * The short delay first gives a spinning worker time to queue repeats.
 */
export async function roundTrip(port: CompletionPort): Promise<void> {
  await delay(100)
  const fd = libc.eventfd(1)
  try {
    const recorder = new Recorder()
    port.add(fd, EPOLLIN, recorder.callback)
    await recorder.first('a round trip through the worker')
  } finally {
    libc.close(fd)
  }
}

/** Names of the threads of this process, as /proc shows them (15 bytes at most). */
export function threadNames(): string[] {
  const names: string[] = []
  for (const entry of readdirSync('/proc/self/task')) {
    try {
      names.push(readFileSync(join('/proc/self/task', entry, 'comm'), 'utf8').trim())
    } catch {
      // The thread exited between readdir and the read.
    }
  }
  return names
}

/**
 * Thread ids of the worker threads of every port in this process. A worker
 * names itself once it runs, so a port created a moment ago may be missing.
 */
export function workerThreadIds(): number[] {
  const ids: number[] = []
  for (const entry of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(join('/proc/self/task', entry, 'comm'), 'utf8').trim() === WORKER_THREAD_NAME) {
        ids.push(Number(entry))
      }
    } catch {
      // The thread exited between readdir and the read.
    }
  }
  return ids
}

/** CPU time of thread `tid` (user plus system) in clock ticks. */
export function threadCpuTicks(tid: number): number {
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
  // The command name in brackets may contain spaces, so fields are counted after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // utime and stime are fields 14 and 15 of stat, so 11 and 12 after the name.
  return Number(fields[11]) + Number(fields[12])
}

/** Times thread `tid` went to sleep and was woken again (voluntary context switches). */
export function threadSleepCount(tid: number): number {
  const status = readFileSync(`/proc/self/task/${tid}/status`, 'utf8')
  const match = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(status)
  if (match === null) {
    throw new Error(`/proc/self/task/${tid}/status has no voluntary_ctxt_switches line`)
  }
  return Number(match[1])
}

/** Descriptors of this process that are epoll instances or eventfds, as "fd target". */
export function anonInodeDescriptors(): string[] {
  const found: string[] = []
  for (const entry of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(join('/proc/self/fd', entry))
      if (target === 'anon_inode:[eventpoll]' || target === 'anon_inode:[eventfd]') {
        found.push(`${entry} ${target}`)
      }
    } catch {
      // The descriptor was closed between readdir and readlink.
    }
  }
  return found.sort()
}

/**
 * The descriptors of one port: the epoll instance that contains its
 * registrations, the epoll instance its worker thread waits on (the wait
 * set, which watches the first one and the eventfd) and its shutdown eventfd.
 */
export interface PortDescriptors {
  epollFd: number
  waitSetFd: number
  eventFd: number
}

/**
 * Creates a port and finds its descriptors among those that appeared in
 * /proc/self/fd. The wait set is the epoll instance that already watches
 * descriptors, as /proc/self/fdinfo shows. Throws if they do not match.
 */
export function createPortWithDescriptors(): { port: CompletionPort } & PortDescriptors {
  const before = new Set(anonInodeDescriptors())
  const port = new CompletionPort()
  const opened = anonInodeDescriptors().filter((entry) => !before.has(entry))
  const fdsOf = (target: string): number[] =>
    opened.filter((entry) => entry.endsWith(target)).map((entry) => Number(entry.split(' ')[0]))
  const epolls = fdsOf('[eventpoll]')
  const eventFds = fdsOf('[eventfd]')
  const watching = epolls.filter((fd) => readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').includes('tfd:'))
  if (epolls.length !== 2 || eventFds.length !== 1 || watching.length !== 1) {
    throw new Error(`expected the new port to open two epoll fds and an eventfd, found: ${opened.join(', ') || 'none'}`)
  }
  const waitSetFd = watching[0]
  const epollFd = epolls.find((fd) => fd !== waitSetFd) as number
  return { port, epollFd, waitSetFd, eventFd: eventFds[0] }
}

/** Polls `condition` every 20 ms until it returns true or the hang deadline passes. Returns the last result. */
export async function eventually(condition: () => boolean, ms = HANG_DEADLINE_MS): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) {
      return false
    }
    await delay(20)
  }
  return true
}

export interface FixtureResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  timedOut: boolean
}

const FIXTURE_DEADLINE_MS = 15_000 * DEADLINE_SCALE

/**
 * Runs `__test__/fixtures/<name>` in a new Node process, with tsx loaded
 * unless `tsx` is false, and kills it if it is still running after the
 * deadline.
 */
export function runFixture(
  name: string,
  options: { args?: string[]; nodeOptions?: string[]; tsx?: boolean } = {},
): Promise<FixtureResult> {
  const script = join(__dirname, 'fixtures', name)
  const loader = options.tsx === false ? [] : ['--import=tsx']
  const nodeArguments = [...loader, ...(options.nodeOptions ?? []), script, ...(options.args ?? [])]
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, nodeArguments, {
      cwd: join(__dirname, '..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, FIXTURE_DEADLINE_MS)
    child.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, timedOut })
    })
  })
}

/** Parses the last line of a fixture's stdout, which fixtures write as JSON. */
export function lastJsonLine(result: FixtureResult): Record<string, unknown> {
  const lines = result.stdout.trim().split('\n')
  const last = lines[lines.length - 1]
  try {
    return JSON.parse(last) as Record<string, unknown>
  } catch {
    throw new Error(`fixture printed no JSON result. stdout: ${result.stdout} stderr: ${result.stderr}`)
  }
}
