// A small promise-based TCP socket library on a completion port, for IPv4.
//
// Every operation tries its system call first. Only when the call would block
// (EAGAIN) does it register a one-shot interest with the port and try again
// once the port reports readiness. Readiness is a hint, so a retry may hit
// EAGAIN again and wait again. Each wait is one registration, and a socket may
// have a read and a write waiting at the same time.

import { setImmediate as yieldToEventLoop } from 'node:timers/promises'

import { CompletionPort, CompletionPortEpollAction, EPOLLIN, EPOLLOUT, EPOLLRDHUP } from '..'
import * as libc from './libc'

/** A read also wakes when the peer closes, so that it can return end of stream. */
const READ_EVENTS = EPOLLIN | EPOLLRDHUP

const DEFAULT_BACKLOG = 1024

/**
 * Operations that one socket may complete in a row without waiting for
 * readiness before it yields to the event loop. Without that yield, sockets
 * on loopback can hand data to each other for as long as the transfer lasts
 * in promise continuations alone, and timers and other I/O never run.
 */
const MAX_OPERATIONS_WITHOUT_YIELD = 4

/**
 * accept4 errors of one connection that failed before it was accepted, so
 * the listener can go on. The Linux accept(2) man page recommends retrying
 * after the network errors listed here, as after EAGAIN. ECONNABORTED means
 * the peer aborted a connection that was still in the queue.
 */
const RETRYABLE_ACCEPT_ERRORS = new Set([
  'ECONNABORTED',
  'EPROTO',
  'ENETDOWN',
  'ENOPROTOOPT',
  'EHOSTDOWN',
  'ENONET',
  'EHOSTUNREACH',
  'EOPNOTSUPP',
  'ENETUNREACH',
])

/**
 * The error of an operation on a closed socket, or of a wait that the port
 * abandoned because the socket or the port was closed.
 */
export class SocketClosedError extends Error {
  readonly code = 'ERR_SOCKET_CLOSED'

  constructor(operation: string) {
    super(`${operation} failed: the socket or its completion port is closed`)
    this.name = 'SocketClosedError'
  }
}

export interface ListenOptions {
  /** IPv4 address to bind. Default: 127.0.0.1. */
  address?: string
  /** Port to bind. Default: 0, which lets the kernel choose one. */
  port?: number
  /** Maximum length of the queue of connections not yet accepted. Default: 1024. */
  backlog?: number
  /** SO_SNDBUF and SO_RCVBUF of the listener, which accepted sockets inherit. Default: the kernel's. */
  socketBufferSize?: number
}

export interface ConnectOptions {
  /** IPv4 address to connect to. Default: 127.0.0.1. */
  address?: string
  /** SO_SNDBUF and SO_RCVBUF of the socket. Default: the kernel's. */
  socketBufferSize?: number
}

/**
 * A non-blocking TCP socket whose readiness comes from a completion port.
 * The socket owns its descriptor: `close` removes it from the port and
 * closes it.
 */
export class NonBlockingSocket {
  readonly fd: number
  readonly #port: CompletionPort
  #closed = false
  #operationsWithoutWait = 0

  private constructor(port: CompletionPort, fd: number) {
    this.#port = port
    this.fd = fd
  }

  /** Creates a listening socket. Its `accept` resolves with each new connection. */
  static listen(port: CompletionPort, options: ListenOptions = {}): NonBlockingSocket {
    const fd = createTcpSocket()
    try {
      // Lets a restarted server bind its port while old connections are in TIME_WAIT.
      libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_REUSEADDR, 1)
      setBufferSize(fd, options.socketBufferSize)
      libc.bind(fd, options.port ?? 0, options.address ?? '127.0.0.1')
      libc.listen(fd, options.backlog ?? DEFAULT_BACKLOG)
    } catch (error) {
      libc.close(fd)
      throw error
    }
    return new NonBlockingSocket(port, fd)
  }

  /**
   * Connects to `remotePort` on 127.0.0.1 or `options.address`. Rejects with
   * the error of a failed connection, such as ECONNREFUSED.
   */
  static async connect(
    port: CompletionPort,
    remotePort: number,
    options: ConnectOptions = {},
  ): Promise<NonBlockingSocket> {
    const socket = new NonBlockingSocket(port, createTcpSocket())
    try {
      setNoDelay(socket.fd)
      setBufferSize(socket.fd, options.socketBufferSize)
      if (libc.connect(socket.fd, remotePort, options.address ?? '127.0.0.1') === 'in-progress') {
        await socket.#waitFor(EPOLLOUT, 'connect')
        // Writable only means the attempt ended, and SO_ERROR contains its result.
        const errno = libc.getsockoptInt(socket.fd, libc.SOL_SOCKET, libc.SO_ERROR)
        if (errno !== 0) {
          throw libc.systemError('connect', errno)
        }
      }
      return socket
    } catch (error) {
      socket.close()
      throw error
    }
  }

  /** Accepts one connection on a listening socket. */
  async accept(): Promise<NonBlockingSocket> {
    await this.#yieldIfBusy()
    for (;;) {
      this.#throwIfClosed('accept')
      const fd = acceptConnection(this.fd)
      if (fd !== null) {
        setNoDelay(fd)
        return new NonBlockingSocket(this.#port, fd)
      }
      await this.#waitFor(EPOLLIN, 'accept4')
    }
  }

  /**
   * Reads into `buffer`. Resolves with the number of bytes read, at least 1,
   * or with 0 at end of stream (the peer sent FIN). Rejects with the error
   * of the connection, such as ECONNRESET.
   */
  async read(buffer: Uint8Array): Promise<number> {
    if (buffer.length === 0) {
      throw new RangeError('read needs a buffer of at least 1 byte, because a read of 0 bytes means end of stream')
    }
    await this.#yieldIfBusy()
    for (;;) {
      this.#throwIfClosed('read')
      const count = libc.recv(this.fd, buffer)
      if (count !== null) {
        return count
      }
      await this.#waitFor(READ_EVENTS, 'recv')
    }
  }

  /**
   * Writes all of `buffer`. The kernel may take part of it per call, so this
   * sends the rest after each partial write. Rejects with the error of the
   * connection, such as EPIPE or ECONNRESET.
   */
  async write(buffer: Uint8Array): Promise<void> {
    await this.#yieldIfBusy()
    let offset = 0
    while (offset < buffer.length) {
      this.#throwIfClosed('write')
      const count = libc.send(this.fd, buffer, 0, offset)
      if (count === null) {
        await this.#waitFor(EPOLLOUT, 'send')
      } else {
        offset += count
      }
    }
  }

  /** Sends FIN after the data already written. The socket can still read. */
  shutdownWrite(): void {
    this.#throwIfClosed('shutdown')
    libc.shutdown(this.fd, libc.SHUT_WR)
  }

  /** Returns the local address, for example the port that `listen` chose. */
  localAddress(): { address: string; port: number } {
    this.#throwIfClosed('getsockname')
    return libc.getsockname(this.fd)
  }

  /**
   * Closes the socket. Operations waiting for readiness reject with
   * SocketClosedError. Does nothing if the socket is already closed.
   */
  close(): void {
    if (this.#closed) {
      return
    }
    this.#closed = true
    // Removing before closing abandons the waiting registrations now. After
    // close alone they would wait until a later add reuses this fd number.
    this.#port.remove(this.fd)
    libc.close(this.fd)
  }

  get closed(): boolean {
    return this.#closed
  }

  /**
   * Checks before each system call, because the fd number of a closed socket
   * may already belong to a socket opened since.
   */
  #throwIfClosed(operation: string): void {
    if (this.#closed) {
      throw new SocketClosedError(operation)
    }
  }

  async #yieldIfBusy(): Promise<void> {
    this.#operationsWithoutWait++
    if (this.#operationsWithoutWait >= MAX_OPERATIONS_WITHOUT_YIELD) {
      this.#operationsWithoutWait = 0
      await yieldToEventLoop()
    }
  }

  /**
   * Waits for one readiness report on `events`. Rejects with SocketClosedError
   * when the registration is abandoned, and with the socket's pending error
   * (SO_ERROR) when the port reports EPOLLERR alone.
   */
  #waitFor(events: number, syscall: string): Promise<void> {
    // A wait ends in a port callback, and the port lets the event loop run
    // after at most 1024 callbacks in a row, so a wait counts as a yield.
    this.#operationsWithoutWait = 0
    return new Promise((resolve, reject) => {
      this.#port.add(this.fd, events, (action) => {
        if (action === CompletionPortEpollAction.ABANDONED) {
          reject(new SocketClosedError(syscall))
        } else if (action === CompletionPortEpollAction.ERROR) {
          this.#rejectWithPendingError(syscall, resolve, reject)
        } else {
          // EPOLLIN, EPOLLOUT and EPOLLRDHUP: the retried call returns the
          // data, end of stream (0) or the connection's error.
          resolve()
        }
      })
    })
  }

  #rejectWithPendingError(syscall: string, resolve: () => void, reject: (error: unknown) => void): void {
    try {
      const errno = libc.getsockoptInt(this.fd, libc.SOL_SOCKET, libc.SO_ERROR)
      if (errno === 0) {
        // SO_ERROR is 0 when another call already took the error, so the
        // retried call reports the state of the socket.
        resolve()
      } else {
        reject(libc.systemError(syscall, errno))
      }
    } catch (error) {
      reject(error)
    }
  }
}

function createTcpSocket(): number {
  return libc.socket(libc.AF_INET, libc.SOCK_STREAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC)
}

/**
 * Turns off Nagle's algorithm. Without it, a small write that follows
 * unacknowledged data waits for the peer's delayed ACK, up to 40 ms on Linux.
 */
function setNoDelay(fd: number): void {
  libc.setsockoptInt(fd, libc.IPPROTO_TCP, libc.TCP_NODELAY, 1)
}

/**
 * Sets SO_SNDBUF and SO_RCVBUF before the connection starts, because the
 * receive buffer size decides the TCP window scale sent in the SYN. Linux
 * doubles the value for its bookkeeping.
 */
function setBufferSize(fd: number, size: number | undefined): void {
  if (size === undefined) {
    return
  }
  libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_SNDBUF, size)
  libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_RCVBUF, size)
}

/** Returns a new non-blocking descriptor, or null when no connection can be accepted now. */
function acceptConnection(listenerFd: number): number | null {
  try {
    return libc.accept4(listenerFd)
  } catch (error) {
    if (RETRYABLE_ACCEPT_ERRORS.has((error as libc.SystemError).code)) {
      return null
    }
    throw error
  }
}
