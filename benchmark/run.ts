// Runs every benchmark workload against completion-port and its peers (the
// `epoll` package, node:net, and the core crate driven from Rust with no
// JavaScript), then prints one markdown table with the ratios and targets.
// Each workload runs in a fresh child process, one implementation at a
// time, so that no measurement shares a process with another.
//
//   npm run bench                 full run, about 4 minutes
//   npm run bench -- --quick      smoke run, under a minute
//
// Progress goes to stderr, the table to stdout. docs/benchmarks.md explains
// the method and what limits each figure.

import { execFileSync, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, release } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const WORKLOAD_NAMES = ['throughput', 'ping-pong', 'echo', 'teardown', 'memory', 'rss', 'idle'] as const
type WorkloadName = (typeof WORKLOAD_NAMES)[number]

const USAGE = `Usage: npm run bench -- [--quick] [--only WORKLOADS] [--json FILE]

  --quick           smoke run: shorter durations and fewer cycles, under a minute
  --only WORKLOADS  comma-separated subset of: ${WORKLOAD_NAMES.join(', ')}
  --json FILE       also write every raw result to FILE
  --help            print this message`

const ROOT = join(__dirname, '..')
const WORKLOADS = join(__dirname, 'workloads')

/**
 * A child still running after this long is killed, so a hang ends the run.
 * The slowest child, the `epoll` package's RSS run, takes about 90 s when
 * its thread wake-ups are slow.
 */
const CHILD_TIMEOUT_MS = 240_000

/** Sizes and durations of one run. */
interface Plan {
  mode: 'full' | 'quick'
  throughputFds: number[]
  throughputSeconds: number
  throughputWarmup: number
  roundTrips: number
  roundTripWarmup: number
  echoClients: number
  echoBytes: number
  /** Runs of each throughput, ping-pong and echo measurement, interleaved. The table shows the median. */
  repeats: number
  teardownRegistrations: number
  memoryRegistrations: number
  memoryFds: number
  rssCycles: number
  /** Cycles run before the first RSS sample. */
  rssWarmup: number
  /** Whether the `epoll` package runs the RSS workload too. Its callback rate varies a lot, so this can take a minute. */
  rssEpoll: boolean
  idleSeconds: number
}

const FULL_PLAN: Plan = {
  mode: 'full',
  throughputFds: [1, 100, 1000],
  throughputSeconds: 3,
  throughputWarmup: 0.5,
  roundTrips: 20_000,
  roundTripWarmup: 2_000,
  echoClients: 100,
  echoBytes: 1024 * 1024,
  repeats: 3,
  teardownRegistrations: 10_000,
  memoryRegistrations: 100_000,
  memoryFds: 10_000,
  rssCycles: 1_000_000,
  rssWarmup: 200_000,
  rssEpoll: true,
  idleSeconds: 6.5,
}

const QUICK_PLAN: Plan = {
  ...FULL_PLAN,
  mode: 'quick',
  throughputSeconds: 0.5,
  throughputWarmup: 0.2,
  roundTrips: 3_000,
  roundTripWarmup: 500,
  repeats: 1,
  rssCycles: 200_000,
  rssEpoll: false,
  idleSeconds: 4.5,
}

type Result = Record<string, number | string | null>

/** Raw results by key, for example 'throughput/epoll/1000'. */
const results = new Map<string, Result>()
const failures: string[] = []

function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`)
}

/** Runs a command and returns its stdout. Rejects on a non-zero exit or a timeout. */
function runCommand(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, CHILD_TIMEOUT_MS)
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) {
        resolve(stdout)
      } else {
        let how = `failed with exit status ${code}`
        if (timedOut) {
          how = `timed out after ${CHILD_TIMEOUT_MS / 1000} s`
        } else if (signal !== null) {
          how = `was killed by ${signal}`
        }
        reject(new Error(`${command} ${args.join(' ')} ${how}\n${stderr.trim()}`))
      }
    })
  })
}

/** Runs `script` under Node with tsx and returns its last line of output parsed as JSON. */
async function runNodeWorkload(script: string, args: string[]): Promise<Result> {
  const stdout = await runCommand(process.execPath, ['--import', 'tsx', '--expose-gc', join(WORKLOADS, script), ...args])
  const lines = stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1]) as Result
}

/** Runs one measurement and stores its result under `key`. A failure is recorded, and its cells show '—'. */
async function measure(key: string, run: () => Promise<Result>): Promise<void> {
  progress(key)
  try {
    results.set(key, await run())
  } catch (error) {
    failures.push(`${key}: ${(error as Error).message}`)
    progress(`${key} failed`)
  }
}

/**
 * Runs each measurement `repeats` times, interleaved so that a change in the
 * machine's load affects every implementation alike. Stores, under each key,
 * the run whose `field` is the median, with every run's `field` in `runs`.
 */
async function measureInterleaved(
  measurements: Array<[key: string, run: () => Promise<Result>]>,
  repeats: number,
  field: string,
): Promise<void> {
  const runs = new Map<string, Result[]>()
  for (let repeat = 1; repeat <= repeats; repeat++) {
    for (const [key, run] of measurements) {
      const label = repeats === 1 ? key : `${key} (run ${repeat} of ${repeats})`
      progress(label)
      try {
        const result = await run()
        runs.set(key, [...(runs.get(key) ?? []), result])
      } catch (error) {
        failures.push(`${label}: ${(error as Error).message}`)
        progress(`${label} failed`)
      }
    }
  }
  for (const [key, keyRuns] of runs) {
    const sorted = [...keyRuns].sort((a, b) => Number(a[field]) - Number(b[field]))
    const median = sorted[Math.floor(sorted.length / 2)]
    results.set(key, { ...median, runs: sorted.map((result) => result[field]).join(' ') })
  }
}

/**
 * Builds the Rust benchmark (core/examples/bench.rs) in release mode and
 * returns the path of its executable, or null if cargo is missing or the
 * build fails.
 */
async function buildRustBenchmark(): Promise<string | null> {
  progress('building core/examples/bench.rs (cargo build --release)')
  let stdout: string
  try {
    stdout = await runCommand('cargo', [
      'build',
      '--release',
      '--quiet',
      '--message-format=json',
      '-p',
      'completion-port-core',
      '--example',
      'bench',
    ])
  } catch (error) {
    failures.push(`Rust benchmark build: ${(error as Error).message}`)
    return null
  }
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) {
      continue
    }
    const message = JSON.parse(line) as { reason?: string; target?: { name?: string }; executable?: string | null }
    if (message.reason === 'compiler-artifact' && message.target?.name === 'bench' && message.executable) {
      return message.executable
    }
  }
  failures.push('Rust benchmark build: cargo reported no executable for the example bench')
  return null
}

async function runRustWorkload(executable: string, args: string[]): Promise<Result> {
  return JSON.parse((await runCommand(executable, args)).trim()) as Result
}

async function measureThroughput(plan: Plan, rust: string | null): Promise<void> {
  for (const fds of plan.throughputFds) {
    const measurements: Array<[string, () => Promise<Result>]> = []
    const args = ['--fds', `${fds}`, '--seconds', `${plan.throughputSeconds}`, '--warmup', `${plan.throughputWarmup}`]
    for (const impl of ['completion-port', 'epoll', 'epoll-oneshot']) {
      measurements.push([`throughput/${impl}/${fds}`, () => runNodeWorkload('throughput.ts', ['--impl', impl, ...args])])
    }
    if (rust !== null) {
      const rustArgs = ['throughput', '--fds', `${fds}`, '--seconds', `${plan.throughputSeconds}`]
      measurements.push([`throughput/rust/${fds}`, () => runRustWorkload(rust, rustArgs)])
    }
    await measureInterleaved(measurements, plan.repeats, 'perSecond')
  }
}

async function measurePingPong(plan: Plan, rust: string | null): Promise<void> {
  const measurements: Array<[string, () => Promise<Result>]> = []
  const args = ['--roundTrips', `${plan.roundTrips}`, '--warmup', `${plan.roundTripWarmup}`]
  for (const impl of ['completion-port', 'epoll', 'net']) {
    measurements.push([`ping-pong/${impl}`, () => runNodeWorkload('ping-pong.ts', ['--impl', impl, ...args])])
  }
  if (rust !== null) {
    const rustArgs = ['ping-pong', '--round-trips', `${plan.roundTrips}`]
    measurements.push(['ping-pong/rust', () => runRustWorkload(rust, rustArgs)])
  }
  await measureInterleaved(measurements, plan.repeats, 'p50Us')
}

/** Runs the echo demo, or its node:net variant, and returns its MB/s. */
async function runEcho(plan: Plan, script: string): Promise<Result> {
  const args = ['--import', 'tsx', script, '--clients', `${plan.echoClients}`, '--bytes', `${plan.echoBytes}`]
  const stdout = await runCommand(process.execPath, args)
  const match = /^throughput:\s+([\d.]+) MB\/s/m.exec(stdout)
  if (match === null) {
    throw new Error(`found no "throughput: N MB/s" line in the output of ${script}:\n${stdout}`)
  }
  return { megabytesPerSecond: Number(match[1]) }
}

async function measureEcho(plan: Plan): Promise<void> {
  await measureInterleaved(
    [
      ['echo/completion-port', () => runEcho(plan, join(ROOT, 'examples', 'echo-demo.ts'))],
      ['echo/net', () => runEcho(plan, join(WORKLOADS, 'echo-net.ts'))],
    ],
    plan.repeats,
    'megabytesPerSecond',
  )
}

async function measureTeardown(plan: Plan): Promise<void> {
  for (const impl of ['completion-port', 'epoll', 'net']) {
    const args = ['--impl', impl, '--registrations', `${plan.teardownRegistrations}`]
    await measure(`teardown/${impl}`, () => runNodeWorkload('teardown.ts', args))
  }
}

async function measureMemory(plan: Plan): Promise<void> {
  for (const impl of ['completion-port', 'epoll', 'net']) {
    const args = ['--impl', impl, '--registrations', `${plan.memoryRegistrations}`, '--fds', `${plan.memoryFds}`]
    await measure(`memory/${impl}`, () => runNodeWorkload('memory.ts', args))
  }
}

async function measureRss(plan: Plan, rust: string | null): Promise<void> {
  const impls = plan.rssEpoll ? ['completion-port', 'epoll'] : ['completion-port']
  for (const impl of impls) {
    const args = ['--impl', impl, '--cycles', `${plan.rssCycles}`, '--warmup', `${plan.rssWarmup}`]
    await measure(`rss/${impl}`, () => runNodeWorkload('rss.ts', args))
  }
  if (rust !== null) {
    await measure('rss/rust', () => runRustWorkload(rust, ['rss', '--cycles', `${plan.rssCycles}`]))
  }
}

async function measureIdle(plan: Plan): Promise<void> {
  // Both only sleep, so they run at the same time to save a few seconds.
  await Promise.all(
    ['completion-port', 'epoll'].map((impl) =>
      measure(`idle/${impl}`, () => runNodeWorkload('idle.ts', ['--impl', impl, '--seconds', `${plan.idleSeconds}`])),
    ),
  )
}

// Table

/** Returns a number from a stored result, or undefined if the measurement failed or was not run. */
function value(key: string, field: string): number | undefined {
  const result = results.get(key)
  const raw = result?.[field]
  return typeof raw === 'number' ? raw : undefined
}

type Formatter = (x: number) => string

const integer: Formatter = (x) => Math.round(x).toLocaleString('en-US')
const decimal =
  (digits: number): Formatter =>
  (x) =>
    x.toFixed(digits)

interface Row {
  /** The workload that measures this row, for `--only`. */
  source: WorkloadName
  workload: string
  unit: string
  completionPort: number | undefined
  epoll?: number | undefined
  /** Text after the epoll figure, for example the size it was measured at. */
  epollNote?: string
  net?: number | undefined
  netNote?: string
  rust?: number | undefined
  format: Formatter
  /** False where a quotient means nothing, for example of two near-zero growths. */
  ratios?: boolean
  target?: string
  /** Whether the target is met, or undefined when a figure it needs is missing. */
  met?: boolean | undefined
}

function ratio(row: Row, denominator: number | undefined): string {
  const numerator = row.completionPort
  if (row.ratios === false || numerator === undefined || denominator === undefined || numerator <= 0 || denominator <= 0) {
    return '—'
  }
  const quotient = numerator / denominator
  return `${quotient >= 10 ? quotient.toFixed(1) : quotient.toFixed(2)}×`
}

function cell(x: number | undefined, format: Formatter, note = ''): string {
  return x === undefined ? '—' : `${format(x)}${note}`
}

function buildRows(plan: Plan): Row[] {
  const rows: Row[] = []
  const mb = (bytes: number | undefined): number | undefined => (bytes === undefined ? undefined : bytes / 1e6)

  for (const fds of plan.throughputFds) {
    const completionPort = value(`throughput/completion-port/${fds}`, 'perSecond')
    const epoll = value(`throughput/epoll/${fds}`, 'perSecond')
    const isTargetRow = fds === 1000
    rows.push({
      source: 'throughput',
      workload: `Throughput, ${fds} readable fd${fds === 1 ? '' : 's'}`,
      unit: 'completions/s',
      completionPort,
      epoll,
      rust: value(`throughput/rust/${fds}`, 'perSecond'),
      format: integer,
      target: isTargetRow ? '≥ 10× epoll' : undefined,
      met: isTargetRow && completionPort !== undefined && epoll !== undefined ? completionPort >= 10 * epoll : undefined,
    })
    rows.push({
      source: 'throughput',
      workload: `Throughput, ${fds} readable fd${fds === 1 ? '' : 's'}, epoll with EPOLLONESHOT + modify`,
      unit: 'completions/s',
      completionPort,
      epoll: value(`throughput/epoll-oneshot/${fds}`, 'perSecond'),
      format: integer,
    })
  }

  const pingPong = (field: string): Pick<Row, 'completionPort' | 'epoll' | 'net' | 'rust'> => ({
    completionPort: value('ping-pong/completion-port', field),
    epoll: value('ping-pong/epoll', field),
    net: value('ping-pong/net', field),
    rust: value('ping-pong/rust', field),
  })
  const p50 = pingPong('p50Us')
  const p50Known = p50.completionPort !== undefined && p50.epoll !== undefined && p50.net !== undefined
  rows.push({
    source: 'ping-pong',
    workload: 'Ping-pong round trip, p50',
    unit: 'µs',
    ...p50,
    format: decimal(1),
    target: '≤ epoll and ≤ 1.5× node:net',
    met: p50Known ? p50.completionPort! <= p50.epoll! && p50.completionPort! <= 1.5 * p50.net! : undefined,
  })
  rows.push({ source: 'ping-pong', workload: 'Ping-pong round trip, p99', unit: 'µs', ...pingPong('p99Us'), format: decimal(1) })

  rows.push({
    source: 'echo',
    workload: `Echo, ${plan.echoClients} TCP clients × ${plan.echoBytes / 1024} KiB`,
    unit: 'MB/s',
    completionPort: value('echo/completion-port', 'megabytesPerSecond'),
    net: value('echo/net', 'megabytesPerSecond'),
    format: decimal(1),
  })

  const teardownReturn = value('teardown/completion-port', 'returnMs')
  rows.push({
    source: 'teardown',
    workload: `Teardown of ${integer(plan.teardownRegistrations)} pending: until the call returns`,
    unit: 'ms',
    completionPort: teardownReturn,
    epoll: value('teardown/epoll', 'returnMs'),
    epollNote: ' (close)',
    net: value('teardown/net', 'returnMs'),
    netNote: ' (destroy each)',
    format: decimal(2),
    target: '< 5 ms',
    met: teardownReturn === undefined ? undefined : teardownReturn < 5,
  })
  rows.push({
    source: 'teardown',
    workload: `Teardown of ${integer(plan.teardownRegistrations)} pending: until the last callback`,
    unit: 'ms',
    completionPort: value('teardown/completion-port', 'lastCallbackMs'),
    net: value('teardown/net', 'lastCallbackMs'),
    netNote: " ('close')",
    format: decimal(2),
  })

  const memoryFds = value('memory/epoll', 'fds') ?? value('memory/net', 'fds')
  const perFdNote = memoryFds === undefined ? '' : ` (per fd, ${integer(memoryFds)} fds)`
  const nativeBytes = value('memory/completion-port', 'nativeBytesPerWait')
  rows.push({
    source: 'memory',
    workload: `Native memory per pending registration, ${integer(plan.memoryRegistrations)} pending`,
    unit: 'bytes',
    completionPort: nativeBytes,
    epoll: value('memory/epoll', 'nativeBytesPerWait'),
    epollNote: perFdNote,
    net: value('memory/net', 'nativeBytesPerWait'),
    netNote: perFdNote.replace('fd', 'socket'),
    format: integer,
    target: '≤ 256 bytes',
    met: nativeBytes === undefined ? undefined : nativeBytes <= 256,
  })
  rows.push({
    source: 'memory',
    workload: `JS heap per pending registration, ${integer(plan.memoryRegistrations)} pending`,
    unit: 'bytes',
    completionPort: value('memory/completion-port', 'jsHeapBytesPerWait'),
    epoll: value('memory/epoll', 'jsHeapBytesPerWait'),
    epollNote: perFdNote,
    net: value('memory/net', 'jsHeapBytesPerWait'),
    netNote: perFdNote.replace('fd', 'socket'),
    format: integer,
    ratios: false,
  })

  const rssGrowth = mb(value('rss/completion-port', 'rssGrowthBytes'))
  rows.push({
    source: 'rss',
    workload: `RSS growth over ${integer(plan.rssCycles)} add/complete cycles, after ${integer(plan.rssWarmup)}`,
    unit: 'MB',
    completionPort: rssGrowth,
    epoll: mb(value('rss/epoll', 'rssGrowthBytes')),
    rust: mb(value('rss/rust', 'growthBytes')),
    format: decimal(2),
    ratios: false,
    target: plan.rssCycles === 1_000_000 ? '< 5 MB' : '< 5 MB over 1 000 000',
    met: rssGrowth === undefined ? undefined : rssGrowth < 5,
  })

  const idleWakeUps = value('idle/completion-port', 'wakeUps')
  const idleSeconds = value('idle/completion-port', 'seconds')
  rows.push({
    source: 'idle',
    workload: `Idle wake-ups of the helper thread (over ${plan.idleSeconds} s)`,
    unit: 'per s',
    completionPort: value('idle/completion-port', 'perSecond'),
    epoll: value('idle/epoll', 'perSecond'),
    format: decimal(2),
    target: 'only the 2 s timeout',
    // A window of T seconds contains at most floor(T / 2) + 1 timeouts.
    met:
      idleWakeUps === undefined || idleSeconds === undefined ? undefined : idleWakeUps <= Math.floor(idleSeconds / 2) + 1,
  })
  return rows
}

function epollVersion(): string {
  try {
    const require = createRequire(join(ROOT, 'package.json'))
    return (require('epoll/package.json') as { version: string }).version
  } catch {
    return 'not installed'
  }
}

function renderTable(rows: Row[]): string {
  const header = [
    'Workload',
    'Unit',
    'completion-port',
    `epoll ${epollVersion()}`,
    'node:net',
    'Rust core, no JS',
    '÷ epoll',
    '÷ node:net',
    '÷ Rust',
    'Target',
    'Status',
  ]
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => ' --- ').join('|')}|`]
  for (const row of rows) {
    let status: string
    if (row.target === undefined) {
      status = ''
    } else if (row.met === undefined) {
      status = 'not measured'
    } else if (row.met) {
      status = 'met'
    } else {
      status = 'MISSED'
    }
    const cells = [
      row.workload,
      row.unit,
      cell(row.completionPort, row.format),
      cell(row.epoll, row.format, row.epollNote),
      cell(row.net, row.format, row.netNote),
      cell(row.rust, row.format),
      ratio(row, row.epoll),
      ratio(row, row.net),
      ratio(row, row.rust),
      row.target ?? '',
      status,
    ]
    lines.push(`| ${cells.join(' | ')} |`)
  }
  return lines.join('\n')
}

function describeMachine(plan: Plan): string {
  let gitRevision = 'unknown'
  try {
    gitRevision = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
  } catch {
    // Not a git checkout: the revision stays unknown.
  }
  const model = cpus()[0]?.model ?? 'unknown CPU'
  return (
    `${plan.mode} run, ${new Date().toISOString()}, commit ${gitRevision}: ` +
    `Node ${process.version}, Linux ${release()}, ${cpus().length} × ${model}`
  )
}

/** Exits with a message when the native module of this package cannot be loaded. */
function checkAddonBuilt(): void {
  try {
    createRequire(join(ROOT, 'package.json'))(ROOT)
  } catch (error) {
    console.error(`failed to load completion-port from ${ROOT}: ${(error as Error).message.split('\n')[0]}`)
    console.error('Build the native module first with npm run build.')
    process.exit(1)
  }
}

function parseCommandLine(): { plan: Plan; only: Set<WorkloadName>; jsonPath: string | undefined } {
  let values
  try {
    values = parseArgs({
      args: process.argv.slice(2),
      options: {
        quick: { type: 'boolean' },
        only: { type: 'string' },
        json: { type: 'string' },
        help: { type: 'boolean' },
      },
    }).values
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`)
    process.exit(2)
  }
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const only = new Set<WorkloadName>()
  for (const name of (values.only ?? WORKLOAD_NAMES.join(',')).split(',')) {
    if (!(WORKLOAD_NAMES as readonly string[]).includes(name)) {
      console.error(`unknown workload ${JSON.stringify(name)} in --only\n\n${USAGE}`)
      process.exit(2)
    }
    only.add(name as WorkloadName)
  }
  return { plan: values.quick ? QUICK_PLAN : FULL_PLAN, only, jsonPath: values.json }
}

async function main(): Promise<void> {
  const { plan, only, jsonPath } = parseCommandLine()
  checkAddonBuilt()
  const started = performance.now()
  const needsRust = only.has('throughput') || only.has('ping-pong') || only.has('rss')
  const rust = needsRust ? await buildRustBenchmark() : null

  const steps: Array<[WorkloadName, () => Promise<void>]> = [
    ['throughput', () => measureThroughput(plan, rust)],
    ['ping-pong', () => measurePingPong(plan, rust)],
    ['echo', () => measureEcho(plan)],
    ['teardown', () => measureTeardown(plan)],
    ['memory', () => measureMemory(plan)],
    ['rss', () => measureRss(plan, rust)],
    ['idle', () => measureIdle(plan)],
  ]
  for (const [name, step] of steps) {
    if (only.has(name)) {
      await step()
    }
  }

  console.log(describeMachine(plan))
  console.log()
  console.log(renderTable(buildRows(plan).filter((row) => only.has(row.source))))
  console.log()
  console.log('Ratios are completion-port ÷ peer: above 1 is better for rates, below 1 is better for times and bytes.')
  if (plan.repeats > 1) {
    console.log(`Throughput, ping-pong and echo figures are the median of ${plan.repeats} interleaved runs.`)
  }
  progress(`finished in ${((performance.now() - started) / 1000).toFixed(1)} s`)

  if (jsonPath !== undefined) {
    writeFileSync(jsonPath, `${JSON.stringify(Object.fromEntries(results), null, 2)}\n`)
  }
  if (failures.length > 0) {
    for (const failure of failures) {
      console.error(`\nfailed: ${failure}`)
    }
    process.exitCode = 1
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error))
  process.exit(1)
})
