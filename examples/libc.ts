// Minimal libc bindings through koffi, for the demo, the tests and the
// benchmarks: they create raw descriptors (sockets, pipes, eventfds) that the
// completion port watches, and read and write them without Node's streams.
//
// Conventions:
// - Descriptors are plain numbers. Nothing closes them for you.
// - A failed call throws an Error shaped like Node's system errors: `code`
//   ('EBADF'), `errno` (negative, as in Node: -9), `syscall` ('close').
// - Non-blocking I/O that would block returns `null` instead of throwing:
//   read, write, recv, send, accept4, eventfdRead and eventfdWrite. They throw
//   on any other errno, and the other functions throw on EAGAIN too.
// - connect returns 'in-progress' for EINPROGRESS on a non-blocking socket.
// - Addresses are IPv4 only. sockaddr_in and struct linger are laid out by
//   hand: both have the same layout on Linux x64 and arm64.
//
// Constant values are those of Linux on x86_64 and aarch64 (the generic ABI).

import koffi from 'koffi'
import { constants as osConstants, endianness } from 'node:os'
import { getSystemErrorMap } from 'node:util'

const libc = koffi.load('libc.so.6')

// koffi has no ssize_t type, so alias it to intptr_t, which has its size on LP64 Linux.
koffi.alias('ssize_t', 'intptr_t')

const native = {
  socketpair: libc.func('socketpair', 'int', ['int', 'int', 'int', 'void *']),
  socket: libc.func('socket', 'int', ['int', 'int', 'int']),
  bind: libc.func('bind', 'int', ['int', 'void *', 'uint32_t']),
  listen: libc.func('listen', 'int', ['int', 'int']),
  connect: libc.func('connect', 'int', ['int', 'void *', 'uint32_t']),
  getsockname: libc.func('getsockname', 'int', ['int', 'void *', 'void *']),
  accept4: libc.func('accept4', 'int', ['int', 'void *', 'void *', 'int']),
  setsockopt: libc.func('setsockopt', 'int', ['int', 'int', 'int', 'void *', 'uint32_t']),
  getsockopt: libc.func('getsockopt', 'int', ['int', 'int', 'int', 'void *', 'void *']),
  read: libc.func('read', 'ssize_t', ['int', 'void *', 'size_t']),
  write: libc.func('write', 'ssize_t', ['int', 'void *', 'size_t']),
  recv: libc.func('recv', 'ssize_t', ['int', 'void *', 'size_t', 'int']),
  send: libc.func('send', 'ssize_t', ['int', 'void *', 'size_t', 'int']),
  shutdown: libc.func('shutdown', 'int', ['int', 'int']),
  close: libc.func('close', 'int', ['int']),
  pipe2: libc.func('pipe2', 'int', ['void *', 'int']),
  eventfd: libc.func('eventfd', 'int', ['uint32_t', 'int']),
  eventfdRead: libc.func('eventfd_read', 'int', ['int', 'void *']),
  eventfdWrite: libc.func('eventfd_write', 'int', ['int', 'uint64_t']),
  dup: libc.func('dup', 'int', ['int']),
  dup2: libc.func('dup2', 'int', ['int', 'int']),
  // fcntl is variadic: koffi takes the type of each extra argument before it.
  fcntl: libc.func('int fcntl(int fd, int cmd, ...)'),
  getrlimit: libc.func('getrlimit', 'int', ['int', 'void *']),
}

export const AF_UNIX = 1
export const AF_INET = 2

export const SOCK_STREAM = 1
export const SOCK_DGRAM = 2
export const SOCK_SEQPACKET = 5
export const SOCK_NONBLOCK = 0o4000
export const SOCK_CLOEXEC = 0o2000000

export const SHUT_RD = 0
export const SHUT_WR = 1
export const SHUT_RDWR = 2

export const MSG_OOB = 0x1
export const MSG_PEEK = 0x2
export const MSG_DONTWAIT = 0x40
export const MSG_NOSIGNAL = 0x4000

export const SOL_SOCKET = 1
export const SO_REUSEADDR = 2
export const SO_ERROR = 4
export const SO_SNDBUF = 7
export const SO_RCVBUF = 8
export const SO_LINGER = 13

export const IPPROTO_TCP = 6
export const TCP_NODELAY = 1

export const O_NONBLOCK = 0o4000
export const O_CLOEXEC = 0o2000000

export const F_GETFL = 3
export const F_SETFL = 4

export const EFD_SEMAPHORE = 1
export const EFD_NONBLOCK = O_NONBLOCK
export const EFD_CLOEXEC = O_CLOEXEC

export const RLIMIT_NOFILE = 7

export const EAGAIN = osConstants.errno.EAGAIN
export const EINPROGRESS = osConstants.errno.EINPROGRESS

const SOCKADDR_IN_SIZE = 16
const INT_SIZE = 4

export interface SystemError extends Error {
  code: string
  errno: number
  syscall: string
}

/**
 * Builds a Node-style system error for `errno` (positive, as libc sets it).
 * The message follows Node's format: "EBADF: bad file descriptor, close".
 */
export function systemError(syscall: string, errno: number): SystemError {
  const entry = getSystemErrorMap().get(-errno)
  const code = entry ? entry[0] : `Unknown system error ${errno}`
  const description = entry ? entry[1] : 'unknown error'
  const error = new Error(`${code}: ${description}, ${syscall}`) as SystemError
  error.code = code
  error.errno = -errno
  error.syscall = syscall
  return error
}

function check(syscall: string, result: number): number {
  if (result === -1) {
    throw systemError(syscall, koffi.errno())
  }
  return result
}

/** Returns null when the call failed with EAGAIN, and throws on any other error. */
function checkWouldBlock(syscall: string, result: number): number | null {
  if (result === -1) {
    const errno = koffi.errno()
    if (errno === EAGAIN) {
      return null
    }
    throw systemError(syscall, errno)
  }
  return result
}

function encodeSockaddrIn(address: string, port: number): Buffer {
  const octets = address.split('.').map(Number)
  if (octets.length !== 4 || octets.some((octet) => !Number.isInteger(octet) || octet < 0 || octet > 255)) {
    throw new RangeError(`invalid IPv4 address: ${JSON.stringify(address)}`)
  }
  const sockaddr = Buffer.alloc(SOCKADDR_IN_SIZE)
  // sin_family is in host byte order, sin_port and sin_addr in network order.
  if (endianness() === 'LE') {
    sockaddr.writeUInt16LE(AF_INET, 0)
  } else {
    sockaddr.writeUInt16BE(AF_INET, 0)
  }
  sockaddr.writeUInt16BE(port, 2)
  sockaddr.set(octets, 4)
  return sockaddr
}

export function socketpair(domain: number, type: number, protocol = 0): [number, number] {
  const fds = new Int32Array(2)
  check('socketpair', native.socketpair(domain, type, protocol, fds))
  return [fds[0], fds[1]]
}

export function socket(domain: number, type: number, protocol = 0): number {
  return check('socket', native.socket(domain, type, protocol))
}

export function bind(fd: number, port = 0, address = '127.0.0.1'): void {
  check('bind', native.bind(fd, encodeSockaddrIn(address, port), SOCKADDR_IN_SIZE))
}

export function listen(fd: number, backlog = 128): void {
  check('listen', native.listen(fd, backlog))
}

/**
 * Connects to an IPv4 address. Returns 'in-progress' when a non-blocking
 * stream socket started a connection that completes later (EINPROGRESS):
 * wait for EPOLLOUT, then read SO_ERROR.
 */
export function connect(fd: number, port: number, address = '127.0.0.1'): 'connected' | 'in-progress' {
  const result = native.connect(fd, encodeSockaddrIn(address, port), SOCKADDR_IN_SIZE)
  if (result === -1) {
    const errno = koffi.errno()
    if (errno === EINPROGRESS) {
      return 'in-progress'
    }
    throw systemError('connect', errno)
  }
  return 'connected'
}

export function getsockname(fd: number): { address: string; port: number } {
  const sockaddr = Buffer.alloc(SOCKADDR_IN_SIZE)
  const length = new Uint32Array([SOCKADDR_IN_SIZE])
  check('getsockname', native.getsockname(fd, sockaddr, length))
  return {
    address: Array.from(sockaddr.subarray(4, 8)).join('.'),
    port: sockaddr.readUInt16BE(2),
  }
}

/** Accepts one connection, non-blocking and close-on-exec by default. Returns null when none is queued. */
export function accept4(fd: number, flags = SOCK_NONBLOCK | SOCK_CLOEXEC): number | null {
  return checkWouldBlock('accept4', native.accept4(fd, null, null, flags))
}

export function setsockoptInt(fd: number, level: number, name: number, value: number): void {
  const buffer = new Int32Array([value])
  check('setsockopt', native.setsockopt(fd, level, name, buffer, INT_SIZE))
}

export function getsockoptInt(fd: number, level: number, name: number): number {
  const buffer = new Int32Array(1)
  const length = new Uint32Array([INT_SIZE])
  check('getsockopt', native.getsockopt(fd, level, name, buffer, length))
  return buffer[0]
}

/** Sets SO_LINGER. With `onoff` 1 and `seconds` 0, close sends RST instead of FIN. */
export function setLinger(fd: number, onoff: number, seconds: number): void {
  // struct linger { int l_onoff; int l_linger; }
  const linger = new Int32Array([onoff, seconds])
  check('setsockopt', native.setsockopt(fd, SOL_SOCKET, SO_LINGER, linger, linger.byteLength))
}

function slice(buffer: Uint8Array, offset: number, length: number | undefined): Uint8Array {
  const end = length === undefined ? buffer.length : offset + length
  if (offset < 0 || end > buffer.length || end < offset) {
    throw new RangeError(`offset ${offset} and length ${length} are outside a buffer of ${buffer.length} bytes`)
  }
  return buffer.subarray(offset, end)
}

/** Reads into `buffer[offset, offset + length)`. Returns the byte count (0 at EOF), or null on EAGAIN. */
export function read(fd: number, buffer: Uint8Array, offset = 0, length?: number): number | null {
  const target = slice(buffer, offset, length)
  return checkWouldBlock('read', Number(native.read(fd, target, target.length)))
}

/** Writes `buffer[offset, offset + length)`. Returns the byte count, or null on EAGAIN. */
export function write(fd: number, buffer: Uint8Array, offset = 0, length?: number): number | null {
  const source = slice(buffer, offset, length)
  return checkWouldBlock('write', Number(native.write(fd, source, source.length)))
}

/** Receives into `buffer[offset, offset + length)`. Returns the byte count (0 at EOF), or null on EAGAIN. */
export function recv(fd: number, buffer: Uint8Array, flags = 0, offset = 0, length?: number): number | null {
  const target = slice(buffer, offset, length)
  return checkWouldBlock('recv', Number(native.recv(fd, target, target.length, flags)))
}

/**
 * Sends `buffer[offset, offset + length)`. MSG_NOSIGNAL is always added, so a
 * closed peer gives EPIPE and no SIGPIPE. Returns the byte count, or null on EAGAIN.
 */
export function send(fd: number, buffer: Uint8Array, flags = 0, offset = 0, length?: number): number | null {
  const source = slice(buffer, offset, length)
  return checkWouldBlock('send', Number(native.send(fd, source, source.length, flags | MSG_NOSIGNAL)))
}

export function shutdown(fd: number, how: number): void {
  check('shutdown', native.shutdown(fd, how))
}

export function close(fd: number): void {
  check('close', native.close(fd))
}

/** Creates a pipe and returns [readEnd, writeEnd]. */
export function pipe2(flags = O_NONBLOCK | O_CLOEXEC): [number, number] {
  const fds = new Int32Array(2)
  check('pipe2', native.pipe2(fds, flags))
  return [fds[0], fds[1]]
}

export function eventfd(initialValue = 0, flags = EFD_NONBLOCK | EFD_CLOEXEC): number {
  return check('eventfd', native.eventfd(initialValue, flags))
}

/** Adds `value` to the eventfd counter. Returns false when the counter would overflow on a non-blocking eventfd. */
export function eventfdWrite(fd: number, value: number | bigint = 1): boolean {
  return checkWouldBlock('eventfd_write', native.eventfdWrite(fd, BigInt(value))) !== null
}

/** Reads and resets the eventfd counter. Returns null when it is zero on a non-blocking eventfd. */
export function eventfdRead(fd: number): bigint | null {
  const value = new BigUint64Array(1)
  return checkWouldBlock('eventfd_read', native.eventfdRead(fd, value)) === null ? null : value[0]
}

export function dup(fd: number): number {
  return check('dup', native.dup(fd))
}

/** Makes `newFd` refer to the file of `oldFd`, closing what `newFd` referred to. */
export function dup2(oldFd: number, newFd: number): number {
  return check('dup2', native.dup2(oldFd, newFd))
}

export function getNonBlocking(fd: number): boolean {
  return (check('fcntl', native.fcntl(fd, F_GETFL)) & O_NONBLOCK) !== 0
}

export function setNonBlocking(fd: number, nonBlocking: boolean): void {
  const flags = check('fcntl', native.fcntl(fd, F_GETFL))
  const updated = nonBlocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
  check('fcntl', native.fcntl(fd, F_SETFL, 'int', updated))
}

/**
 * Returns the soft and hard limits of `resource` (RLIMIT_*). RLIM_INFINITY
 * is returned as Infinity.
 */
export function getrlimit(resource: number): { soft: number; hard: number } {
  // struct rlimit { rlim_t rlim_cur; rlim_t rlim_max; }, with a 64-bit rlim_t on LP64 Linux.
  const limits = new BigUint64Array(2)
  check('getrlimit', native.getrlimit(resource, limits))
  return { soft: rlimitToNumber(limits[0]), hard: rlimitToNumber(limits[1]) }
}

const RLIM_INFINITY = 2n ** 64n - 1n

function rlimitToNumber(value: bigint): number {
  return value === RLIM_INFINITY ? Infinity : Number(value)
}
