// Echo demo: a TCP echo server and many concurrent clients in one process, on
// non-blocking libc sockets. One completion port reports the readiness of the
// listener, the accepted sockets and the client sockets. Node's `net` is not
// used.
//
// Each client sends pseudo-random bytes in chunks of pseudo-random sizes, both
// from a seeded generator, and checks every byte echoed back. The demo exits
// with status 1 if a byte differs, a connection fails, a registration is left
// pending or the deadline passes, and with status 2 on invalid options.
//
//   npm run demo -- --clients 200 --bytes 1048576

import { readdirSync } from 'node:fs'
import { parseArgs } from 'node:util'

import { CompletionPort } from '..'
import * as libc from './libc'
import { NonBlockingSocket, SocketClosedError } from './nonblocking-socket'

const USAGE = `Usage: npm run demo -- [--clients N] [--bytes N] [--socket-buffer BYTES] [--timeout SECONDS]

  --clients N              number of concurrent client connections, at least 1 (default: 100)
  --bytes N                bytes each client sends and expects back (default: 1048576)
  --socket-buffer BYTES    SO_SNDBUF and SO_RCVBUF of every socket, at least 4096, or 0 for
                           the kernel's default, with which most loopback writes finish
                           without waiting (default: 65536)
  --timeout SECONDS        fail when the run takes longer than this (default: 60)
  --help                   print this message`

const DEFAULT_CLIENTS = 100
const DEFAULT_BYTES = 1024 * 1024
/**
 * Small enough that the sockets fill up and the clients and the server wait
 * for readiness often, which is what the demo shows.
 */
const DEFAULT_SOCKET_BUFFER_SIZE = 64 * 1024
/**
 * Smaller buffers can make the TCP receive window smaller than a segment, so
 * that connections stall on TCP's timers. Measured on Linux loopback with 20
 * clients of 100 kB: 42 s with 1, which the kernel raises to its minimum,
 * and under 1 s with 2048.
 */
const MIN_SOCKET_BUFFER_SIZE = 4096
const DEFAULT_TIMEOUT_SECONDS = 60

/** Large enough that each read returns much of the socket buffer, so few calls cross into libc. */
const READ_BUFFER_SIZE = 64 * 1024
/** Chunk sizes of a client range from 1 byte to this. */
const MAX_CHUNK_SIZE = 64 * 1024
const RANDOM_BLOCK_SIZE = 4096
const LISTEN_BACKLOG = 1024
/** Errors printed in full. The rest are only counted, so that a general failure does not print thousands. */
const MAX_ERRORS_SHOWN = 10

interface Options {
  clients: number
  bytes: number
  /** SO_SNDBUF and SO_RCVBUF of every socket, or undefined for the kernel's default. */
  socketBufferSize: number | undefined
  timeoutSeconds: number
}

interface ServerSummary {
  connections: number
  errors: unknown[]
}

interface ClientSummary {
  finished: number
  errors: unknown[]
}

class UsageError extends Error {}

/** A completion port that counts its registrations, to show how often the sockets waited. */
class CountingPort extends CompletionPort {
  registrations = 0

  override add(...args: Parameters<CompletionPort['add']>): number {
    this.registrations++
    return super.add(...args)
  }
}

/** Mulberry32: a small seeded 32-bit generator, good enough for test data. */
class PseudoRandom {
  #state: number

  constructor(seed: number) {
    this.#state = seed >>> 0
  }

  nextUint32(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0
    let t = this.#state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }

  /** Returns an integer from 1 to `max`. */
  nextSize(max: number): number {
    return 1 + (this.nextUint32() % max)
  }
}

/**
 * A seeded stream of pseudo-random bytes. The sender and the checker each
 * run one with the same seed, so the expected bytes are never stored.
 */
class PseudoRandomBytes {
  readonly #random: PseudoRandom
  // The stream is generated a block of words at a time, because one
  // generator call per byte took most of the demo's time.
  readonly #words = new Uint32Array(RANDOM_BLOCK_SIZE / 4)
  readonly #block = new Uint8Array(this.#words.buffer)
  #position = RANDOM_BLOCK_SIZE

  constructor(seed: number) {
    this.#random = new PseudoRandom(seed)
  }

  /** Fills `target` with the next bytes of the stream. */
  fill(target: Uint8Array): void {
    let filled = 0
    while (filled < target.length) {
      if (this.#position === this.#block.length) {
        this.#refill()
      }
      const count = Math.min(target.length - filled, this.#block.length - this.#position)
      target.set(this.#block.subarray(this.#position, this.#position + count), filled)
      filled += count
      this.#position += count
    }
  }

  #refill(): void {
    for (let i = 0; i < this.#words.length; i++) {
      this.#words[i] = this.#random.nextUint32()
    }
    this.#position = 0
  }
}

function parseOptions(argv: string[]): Options | 'help' {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        clients: { type: 'string' },
        bytes: { type: 'string' },
        'socket-buffer': { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean' },
      },
    })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
  if (parsed.values.help) {
    return 'help'
  }
  return {
    clients: parseInteger('--clients', parsed.values.clients, DEFAULT_CLIENTS, 1),
    bytes: parseInteger('--bytes', parsed.values.bytes, DEFAULT_BYTES, 0),
    socketBufferSize: parseSocketBufferSize(parsed.values['socket-buffer']),
    timeoutSeconds: parseInteger('--timeout', parsed.values.timeout, DEFAULT_TIMEOUT_SECONDS, 1),
  }
}

function parseInteger(name: string, text: string | undefined, defaultValue: number, min: number): number {
  if (text === undefined) {
    return defaultValue
  }
  const value = Number(text)
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`invalid ${name} value ${JSON.stringify(text)}: expected an integer of at least ${min}`)
  }
  return value
}

function parseSocketBufferSize(text: string | undefined): number | undefined {
  const size = parseInteger('--socket-buffer', text, DEFAULT_SOCKET_BUFFER_SIZE, 0)
  if (size === 0) {
    return undefined
  }
  if (size < MIN_SOCKET_BUFFER_SIZE) {
    throw new UsageError(`invalid --socket-buffer value ${size}: expected 0 or at least ${MIN_SOCKET_BUFFER_SIZE}`)
  }
  return size
}

/**
 * Rejects a client count that would run out of descriptors midway, with
 * EMFILE on some connections. Each client uses two: its own socket and the
 * server's accepted socket.
 */
function checkDescriptorLimit(clients: number): void {
  const { soft } = libc.getrlimit(libc.RLIMIT_NOFILE)
  const alreadyOpen = readdirSync('/proc/self/fd').length
  // The 4 are the listener and the port's two epoll instances and eventfd.
  const needed = alreadyOpen + 2 * clients + 4
  if (needed > soft) {
    throw new UsageError(
      `--clients ${clients} needs about ${needed} file descriptors, but the limit (RLIMIT_NOFILE) is ${soft}. ` +
        'Lower --clients or raise the limit with ulimit -n.',
    )
  }
}

/** Echoes everything that `connection` reads until end of stream, then sends FIN. */
async function echo(connection: NonBlockingSocket): Promise<void> {
  const buffer = Buffer.allocUnsafe(READ_BUFFER_SIZE)
  try {
    for (;;) {
      const count = await connection.read(buffer)
      if (count === 0) {
        break
      }
      await connection.write(buffer.subarray(0, count))
    }
    connection.shutdownWrite()
  } finally {
    connection.close()
  }
}

/**
 * Accepts connections until the listener closes and echoes each one.
 * Resolves when every connection has ended. It never rejects, so a server
 * failure shows up in the summary and as failed clients.
 */
async function runServer(listener: NonBlockingSocket): Promise<ServerSummary> {
  const summary: ServerSummary = { connections: 0, errors: [] }
  const connections: Promise<void>[] = []
  for (;;) {
    let connection: NonBlockingSocket
    try {
      connection = await listener.accept()
    } catch (error) {
      if (!(error instanceof SocketClosedError)) {
        summary.errors.push(new Error(`accept: ${describeError(error)}`))
      }
      break
    }
    const index = summary.connections++
    const echoed = echo(connection).catch((error: unknown) => {
      summary.errors.push(new Error(`connection ${index}: ${describeError(error)}`))
    })
    connections.push(echoed)
  }
  // After an accept error, closing the listener fails the clients still in
  // its queue at once, so they do not wait for the deadline.
  listener.close()
  await Promise.all(connections)
  return summary
}

/** Sends `bytes` pseudo-random bytes in chunks of pseudo-random sizes, then FIN. */
async function sendPayload(socket: NonBlockingSocket, seed: number, bytes: number): Promise<void> {
  const content = new PseudoRandomBytes(seed)
  // A second generator with another seed, so that the sizes do not depend on the content.
  const sizes = new PseudoRandom(seed ^ 0x5bd1e995)
  const chunk = Buffer.allocUnsafe(MAX_CHUNK_SIZE)
  let sent = 0
  while (sent < bytes) {
    const size = Math.min(sizes.nextSize(MAX_CHUNK_SIZE), bytes - sent)
    const data = chunk.subarray(0, size)
    content.fill(data)
    await socket.write(data)
    sent += size
  }
  socket.shutdownWrite()
}

/** Reads until end of stream and checks that exactly the sent bytes came back. */
async function receiveAndVerify(socket: NonBlockingSocket, seed: number, bytes: number): Promise<void> {
  const content = new PseudoRandomBytes(seed)
  const received = Buffer.allocUnsafe(READ_BUFFER_SIZE)
  const expected = Buffer.allocUnsafe(READ_BUFFER_SIZE)
  let offset = 0
  for (;;) {
    const count = await socket.read(received)
    if (count === 0) {
      break
    }
    if (offset + count > bytes) {
      throw new Error(`received ${offset + count} bytes or more, but sent only ${bytes}`)
    }
    content.fill(expected.subarray(0, count))
    checkEqual(received.subarray(0, count), expected.subarray(0, count), offset)
    offset += count
  }
  if (offset !== bytes) {
    throw new Error(`connection ended after ${offset} of ${bytes} echoed bytes`)
  }
}

function checkEqual(received: Buffer, expected: Buffer, offset: number): void {
  if (received.equals(expected)) {
    return
  }
  const index = received.findIndex((byte, i) => byte !== expected[i])
  throw new Error(
    `echoed byte ${offset + index} differs: expected 0x${hex(expected[index])}, received 0x${hex(received[index])}`,
  )
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, '0')
}

/** Runs one client. Client `index` uses seed `index + 1`, so every connection carries different bytes. */
async function runClient(port: CompletionPort, serverPort: number, index: number, options: Options): Promise<void> {
  const socket = await NonBlockingSocket.connect(port, serverPort, { socketBufferSize: options.socketBufferSize })
  try {
    // Sending and receiving run at the same time, because the server echoes
    // while the client still sends. A client that sent everything first
    // would fill both sides' socket buffers and wait forever.
    const seed = index + 1
    await Promise.all([sendPayload(socket, seed, options.bytes), receiveAndVerify(socket, seed, options.bytes)])
  } finally {
    socket.close()
  }
}

/** Runs every client at once. Resolves when all have finished or failed. */
async function runClients(
  port: CompletionPort,
  serverPort: number,
  options: Options,
  summary: ClientSummary,
): Promise<void> {
  const clients = []
  for (let index = 0; index < options.clients; index++) {
    const client = runClient(port, serverPort, index, options)
      .then(() => void summary.finished++)
      .catch((error: unknown) => void summary.errors.push(new Error(`client ${index}: ${describeError(error)}`)))
    clients.push(client)
  }
  await Promise.all(clients)
}

/** Rejects with a timeout error if `work` has not settled after `seconds`. */
async function withDeadline<T>(work: Promise<T>, seconds: number, describeProgress: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const advice = 'Raise --timeout or lower --clients or --bytes.'
      reject(new Error(`timed out after ${seconds} s: ${describeProgress()}. ${advice}`))
    }, seconds * 1000)
  })
  try {
    return await Promise.race([work, deadline])
  } finally {
    clearTimeout(timer)
  }
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function printErrors(label: string, errors: unknown[]): void {
  for (const error of errors.slice(0, MAX_ERRORS_SHOWN)) {
    console.error(`${label}: ${describeError(error)}`)
  }
  if (errors.length > MAX_ERRORS_SHOWN) {
    console.error(`${label}: ${errors.length - MAX_ERRORS_SHOWN} more errors not shown`)
  }
}

function formatCount(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`
}

function formatMegabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`
}

function printSummary(
  options: Options,
  clients: ClientSummary,
  server: ServerSummary,
  seconds: number,
  registrations: number,
): void {
  const verifiedBytes = clients.finished * options.bytes
  const megabytesPerSecond = verifiedBytes / 1e6 / seconds
  const accepted = `server accepted ${server.connections}`
  console.log(`connections: ${clients.finished} of ${options.clients} clients succeeded, ${accepted}`)
  console.log(`bytes:       ${verifiedBytes} echoed and verified (${formatMegabytes(verifiedBytes)})`)
  console.log(`time:        ${seconds.toFixed(3)} s`)
  console.log(`throughput:  ${megabytesPerSecond.toFixed(1)} MB/s (verified bytes per second, 1 MB = 10^6 bytes)`)
  console.log(`waits:       ${registrations} readiness registrations, all on one completion port`)
}

/** Runs the server and the clients and returns the failures found, or none on success. */
async function run(options: Options): Promise<string[]> {
  const port = new CountingPort()
  const listener = NonBlockingSocket.listen(port, {
    backlog: LISTEN_BACKLOG,
    socketBufferSize: options.socketBufferSize,
  })
  const { address, port: serverPort } = listener.localAddress()
  console.log(`echo server listening on ${address}:${serverPort}`)
  const bufferSize = options.socketBufferSize ?? "the kernel's default"
  console.log(`${options.clients} clients send ${options.bytes} bytes each, socket buffer size: ${bufferSize}`)

  const server = runServer(listener)
  const clients: ClientSummary = { finished: 0, errors: [] }
  const started = performance.now()
  await withDeadline(
    runClients(port, serverPort, options, clients),
    options.timeoutSeconds,
    () => `${clients.finished} of ${options.clients} clients finished, ${port.pendingCount} registrations pending`,
  )
  const seconds = (performance.now() - started) / 1000

  listener.close()
  const serverSummary = await server

  printSummary(options, clients, serverSummary, seconds, port.registrations)
  printErrors('client failed', clients.errors)
  printErrors('server failed', serverSummary.errors)
  const failures: string[] = []
  if (clients.errors.length > 0) {
    failures.push(`${clients.errors.length} of ${options.clients} clients failed`)
  }
  if (serverSummary.errors.length > 0) {
    failures.push(`the server reported ${formatCount(serverSummary.errors.length, 'error')}`)
  }
  failures.push(...closePort(port))
  return failures
}

/** Checks that nothing is left pending, then closes the port. Returns the failures found. */
function closePort(port: CompletionPort): string[] {
  const failures: string[] = []
  const pending = port.pendingCount
  console.log(`pending registrations at the end: ${pending}`)
  if (pending !== 0) {
    failures.push(`${formatCount(pending, 'registration')} left pending`)
  }
  port.decRef()
  if (!port.closed) {
    failures.push('the port is still open after its last decRef')
  }
  return failures
}

async function main(): Promise<number> {
  let options
  try {
    options = parseOptions(process.argv.slice(2))
    if (options === 'help') {
      console.log(USAGE)
      return 0
    }
    checkDescriptorLimit(options.clients)
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n\n${USAGE}`)
      return 2
    }
    throw error
  }

  const failures = await run(options)
  if (failures.length > 0) {
    console.error(`demo failed: ${failures.join('; ')}`)
    return 1
  }
  console.log('demo passed')
  return 0
}

main().then(
  (status) => {
    process.exitCode = status
  },
  (error: unknown) => {
    console.error(`demo failed: ${describeError(error)}`)
    // Exits at once, because registrations still pending after a timeout
    // keep the event loop alive.
    process.exit(1)
  },
)
