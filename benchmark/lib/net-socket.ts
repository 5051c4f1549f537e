// The interface of examples/nonblocking-socket.ts implemented with node:net,
// so that the echo demo's own server and clients can run on libuv sockets
// for the node:net peer of the echo benchmark. Only the I/O layer differs:
// the demo's chunk sizes, data generator and checks stay the same.
//
// Sockets are created with libc so that SO_SNDBUF and SO_RCVBUF are set
// before the connection starts, as the demo does, then handed to net by fd.
// All reading and writing goes through net.Socket. The `port` arguments are
// ignored: libuv reports readiness on the JavaScript thread.

import * as net from 'node:net'

import * as libc from '../../examples/libc'

const DEFAULT_BACKLOG = 1024

/** Number of listeners created, so that a caller can check that this module replaced the demo's. */
export let listenerCount = 0

/** Same class and message as the demo's: the operation's socket is closed. */
export class SocketClosedError extends Error {
  readonly code = 'ERR_SOCKET_CLOSED'

  constructor(operation: string) {
    super(`${operation} failed: the socket is closed`)
    this.name = 'SocketClosedError'
  }
}

export interface ListenOptions {
  address?: string
  port?: number
  backlog?: number
  socketBufferSize?: number
}

export interface ConnectOptions {
  address?: string
  socketBufferSize?: number
}

/** Resolves the one pending waiter, if any. */
class Wakeup {
  #resolve: (() => void) | undefined

  wait(): Promise<void> {
    return new Promise((resolve) => {
      this.#resolve = resolve
    })
  }

  wake(): void {
    const resolve = this.#resolve
    this.#resolve = undefined
    resolve?.()
  }
}

/** A connected TCP socket: net.Socket in paused mode behind the demo's read and write. */
class NetConnection {
  readonly #socket: net.Socket
  readonly #readable = new Wakeup()
  /** Bytes that the last read could not fit in the caller's buffer. */
  #leftover: Buffer | null = null
  #ended = false
  #error: Error | undefined
  #closed = false

  constructor(socket: net.Socket) {
    this.#socket = socket
    socket.setNoDelay(true)
    socket.on('readable', () => this.#readable.wake())
    socket.on('end', () => {
      this.#ended = true
      this.#readable.wake()
    })
    socket.on('error', (error) => {
      this.#error = error
      this.#readable.wake()
    })
    socket.on('close', () => this.#readable.wake())
  }

  async read(buffer: Uint8Array): Promise<number> {
    if (buffer.length === 0) {
      throw new RangeError('read needs a buffer of at least 1 byte, because a read of 0 bytes means end of stream')
    }
    for (;;) {
      this.#throwIfClosed('read')
      if (this.#error !== undefined) {
        throw this.#error
      }
      const chunk: Buffer | null = this.#leftover ?? this.#socket.read()
      if (chunk !== null) {
        const count = Math.min(chunk.length, buffer.length)
        buffer.set(chunk.subarray(0, count))
        this.#leftover = count < chunk.length ? chunk.subarray(count) : null
        return count
      }
      if (this.#ended) {
        return 0
      }
      await this.#readable.wait()
    }
  }

  /** Resolves when net has handed all of `buffer` to the kernel, so the caller may reuse it. */
  write(buffer: Uint8Array): Promise<void> {
    this.#throwIfClosed('write')
    return new Promise((resolve, reject) => {
      this.#socket.write(buffer, (error) => (error ? reject(error) : resolve()))
    })
  }

  shutdownWrite(): void {
    this.#throwIfClosed('shutdown')
    this.#socket.end()
  }

  close(): void {
    if (this.#closed) {
      return
    }
    this.#closed = true
    this.#socket.destroy()
    this.#readable.wake()
  }

  get closed(): boolean {
    return this.#closed
  }

  #throwIfClosed(operation: string): void {
    if (this.#closed) {
      throw new SocketClosedError(operation)
    }
  }
}

/** A listening TCP socket whose connections net.Server accepts. */
class NetListener {
  readonly #fd: number
  readonly #server: net.Server
  readonly #connections: NetConnection[] = []
  readonly #accepted = new Wakeup()
  #closed = false

  constructor(fd: number) {
    this.#fd = fd
    this.#server = net.createServer({ allowHalfOpen: true }, (socket) => {
      this.#connections.push(new NetConnection(socket))
      this.#accepted.wake()
    })
    this.#server.listen({ fd })
  }

  async accept(): Promise<NetConnection> {
    for (;;) {
      if (this.#closed) {
        throw new SocketClosedError('accept')
      }
      const connection = this.#connections.shift()
      if (connection !== undefined) {
        return connection
      }
      await this.#accepted.wait()
    }
  }

  localAddress(): { address: string; port: number } {
    if (this.#closed) {
      throw new SocketClosedError('getsockname')
    }
    return libc.getsockname(this.#fd)
  }

  /** Stops accepting. Connections already accepted stay open. */
  close(): void {
    if (this.#closed) {
      return
    }
    this.#closed = true
    this.#server.close()
    this.#accepted.wake()
  }

  get closed(): boolean {
    return this.#closed
  }
}

/** Static constructors with the signatures of the demo's NonBlockingSocket. */
export const NonBlockingSocket = {
  listen(_port: unknown, options: ListenOptions = {}): NetListener {
    const fd = createTcpSocket()
    try {
      libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_REUSEADDR, 1)
      setBufferSize(fd, options.socketBufferSize)
      libc.bind(fd, options.port ?? 0, options.address ?? '127.0.0.1')
      libc.listen(fd, options.backlog ?? DEFAULT_BACKLOG)
    } catch (error) {
      libc.close(fd)
      throw error
    }
    listenerCount++
    return new NetListener(fd)
  },

  async connect(_port: unknown, remotePort: number, options: ConnectOptions = {}): Promise<NetConnection> {
    const fd = createTcpSocket()
    try {
      setBufferSize(fd, options.socketBufferSize)
    } catch (error) {
      libc.close(fd)
      throw error
    }
    const socket = new net.Socket({ fd, allowHalfOpen: true, readable: true, writable: true })
    await new Promise<void>((resolve, reject) => {
      const fail = (error: Error): void => {
        socket.destroy()
        reject(error)
      }
      socket.once('error', fail)
      socket.connect(remotePort, options.address ?? '127.0.0.1', () => {
        socket.off('error', fail)
        resolve()
      })
    })
    return new NetConnection(socket)
  },
}

function createTcpSocket(): number {
  return libc.socket(libc.AF_INET, libc.SOCK_STREAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC)
}

function setBufferSize(fd: number, size: number | undefined): void {
  if (size === undefined) {
    return
  }
  libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_SNDBUF, size)
  libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_RCVBUF, size)
}
