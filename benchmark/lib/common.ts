// Helpers shared by the workload scripts: command-line options, the JSON
// line each script prints, descriptors, the `epoll` package, and readers of
// /proc/self.

import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'

import * as libc from '../../examples/libc'

/** The implementations a workload can run. Each workload accepts a subset. */
export type Implementation = 'completion-port' | 'epoll' | 'epoll-oneshot' | 'net'

/** Exit status of a workload script called with invalid options. */
const USAGE_EXIT_CODE = 2

/** The subset of the `epoll` package's API that the workloads use. */
export interface EpollPackage {
  Epoll: {
    new (callback: (error: Error | null, fd: number, events: number) => void): EpollInstance
    EPOLLIN: number
    EPOLLONESHOT: number
  }
}

export interface EpollInstance {
  add(fd: number, events: number): EpollInstance
  modify(fd: number, events: number): EpollInstance
  remove(fd: number): EpollInstance
  close(): void
}

/**
 * Parses `--name value` options of a workload script. Each option in
 * `defaults` is a number, except `impl`, which must be one of `impls`.
 * Exits with status 2 and a message on invalid options.
 */
export function parseOptions<T extends Record<string, number>>(
  impls: readonly Implementation[],
  defaults: T,
): T & { impl: Implementation } {
  const options: Record<string, { type: 'string' }> = { impl: { type: 'string' } }
  for (const name of Object.keys(defaults)) {
    options[name] = { type: 'string' }
  }
  try {
    const { values } = parseArgs({ args: process.argv.slice(2), options })
    const impl = values.impl as Implementation | undefined
    if (impl === undefined || !impls.includes(impl)) {
      throw new Error(`--impl must be one of ${impls.join(', ')}, got ${JSON.stringify(impl)}`)
    }
    const parsed: Record<string, number> = {}
    for (const [name, defaultValue] of Object.entries(defaults)) {
      const text = values[name] as string | undefined
      const value = text === undefined ? defaultValue : Number(text)
      if (!Number.isFinite(value) || value <= 0) {
        throw new Error(`--${name} must be a positive number, got ${JSON.stringify(text)}`)
      }
      parsed[name] = value
    }
    return { ...(parsed as T), impl }
  } catch (error) {
    console.error((error as Error).message)
    process.exit(USAGE_EXIT_CODE)
  }
}

/** Prints the result of a workload as one JSON line, which the runner parses. */
export function emit(result: Record<string, unknown>): void {
  console.log(JSON.stringify(result))
}

/** A missing prerequisite, such as an unbuilt package: its message names the fix, so no stack is printed. */
export class SetupError extends Error {
  override name = 'SetupError'
}

/** Runs `main`, and on failure prints the error and exits with status 1. */
export function runMain(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    if (error instanceof SetupError) {
      console.error(error.message)
    } else {
      console.error(error instanceof Error ? (error.stack ?? error.message) : String(error))
    }
    process.exit(1)
  })
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Returns the value at `fraction` of `sortedSamples`, by nearest rank. */
export function percentile(sortedSamples: Float64Array | number[], fraction: number): number {
  const rank = Math.ceil(fraction * sortedSamples.length)
  return sortedSamples[Math.min(Math.max(rank, 1), sortedSamples.length) - 1]
}

/** Runs a full garbage collection. The script must run under `--expose-gc`. */
export function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) {
    throw new Error('global.gc is missing: run this script with node --expose-gc')
  }
  gc()
  gc()
}

/**
 * Creates `count` non-blocking AF_UNIX socketpairs. With `readable`, one byte
 * is written to the second end of each, so the first end stays readable
 * until someone reads it.
 */
export function socketpairs(count: number, readable: boolean): Array<[number, number]> {
  const pairs: Array<[number, number]> = []
  const byte = new Uint8Array([0x78])
  for (let i = 0; i < count; i++) {
    const pair = libc.socketpair(libc.AF_UNIX, libc.SOCK_STREAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC)
    pairs.push(pair)
    if (readable) {
      libc.write(pair[1], byte)
    }
  }
  return pairs
}

export function closePairs(pairs: Array<[number, number]>): void {
  for (const [first, second] of pairs) {
    libc.close(first)
    libc.close(second)
  }
}

/** Checks that `count` more descriptors fit under RLIMIT_NOFILE. */
export function checkDescriptorLimit(count: number): void {
  const { soft } = libc.getrlimit(libc.RLIMIT_NOFILE)
  const needed = readdirSync('/proc/self/fd').length + count + 16
  if (needed > soft) {
    throw new SetupError(
      `this workload needs about ${needed} file descriptors, but the limit (RLIMIT_NOFILE) is ${soft}: ` +
        'raise it with ulimit -n or lower the workload size',
    )
  }
}

/**
 * Loads the `epoll` package. Its native part is compiled by its install
 * script, which npm 11 does not run unless approved, so a missing build gets
 * an error that names the command that builds it.
 */
export function loadEpollPackage(): EpollPackage {
  const require = createRequire(__filename)
  try {
    return require('epoll') as EpollPackage
  } catch (error) {
    const reason = (error as Error).message.split('\n')[0]
    throw new SetupError(
      `failed to load the epoll package (${reason}). Install the dev dependencies with npm ci, ` +
        'then compile it with npm rebuild epoll (add --nodedir=/usr where Node headers cannot be downloaded)',
    )
  }
}

/** Context switches of one thread, from /proc/self/task/TID/status. */
export interface ThreadSwitches {
  tid: number
  name: string
  voluntary: number
  involuntary: number
}

/** Reads the name and context switch counts of every thread of this process. */
export function readThreadSwitches(): ThreadSwitches[] {
  const threads: ThreadSwitches[] = []
  for (const entry of readdirSync('/proc/self/task')) {
    let status: string
    try {
      status = readFileSync(`/proc/self/task/${entry}/status`, 'utf8')
    } catch {
      // The thread exited between the listing and the read.
      continue
    }
    threads.push({
      tid: Number(entry),
      name: statusField(status, 'Name'),
      voluntary: Number(statusField(status, 'voluntary_ctxt_switches')),
      involuntary: Number(statusField(status, 'nonvoluntary_ctxt_switches')),
    })
  }
  return threads
}

/** Returns the resident set size of this process in bytes, from /proc/self/status. */
export function readRssBytes(): number {
  const kilobytes = statusField(readFileSync('/proc/self/status', 'utf8'), 'VmRSS')
  return Number.parseInt(kilobytes, 10) * 1024
}

function statusField(status: string, name: string): string {
  const line = status.split('\n').find((candidate) => candidate.startsWith(`${name}:`))
  if (line === undefined) {
    throw new Error(`/proc status has no ${name} field`)
  }
  return line.slice(name.length + 1).trim()
}
