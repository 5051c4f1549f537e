/**
 * Linux epoll completion port: register a one-shot interest in any file
 * descriptor and get exactly one callback for it, on the JavaScript thread
 * that created the port.
 */

/** The fd value that the C-shaped functions treat as "no socket". */
export declare const INVALID_SOCKET: -1

/** Readable. */
export declare const EPOLLIN: number
/** Urgent (out-of-band) data readable; completes as `EPOLLIN`. */
export declare const EPOLLPRI: number
/** Writable. */
export declare const EPOLLOUT: number
/** Error condition; always reported, whatever was requested. */
export declare const EPOLLERR: number
/** Hang-up; always reported, whatever was requested. */
export declare const EPOLLHUP: number
/** Peer closed its writing side. */
export declare const EPOLLRDHUP: number
/** Rejected by `add`: every registration is one-shot, and the kernel refuses `EPOLLEXCLUSIVE` with `EPOLLONESHOT`. */
export declare const EPOLLEXCLUSIVE: number
/** Accepted and ignored: every registration is one-shot. */
export declare const EPOLLONESHOT: number
/** Accepted and ignored: every registration is one-shot. Its value is 2147483648. */
export declare const EPOLLET: number

/** The single outcome of a registration. */
export declare enum CompletionPortEpollAction {
  /** The peer hung up (`EPOLLRDHUP` or `EPOLLHUP`) and no data is readable. */
  EPOLLRDHUP = 0,
  /** Readable (`EPOLLIN` or `EPOLLPRI`), including data that arrived before a FIN. */
  EPOLLIN = 1,
  /** Writable (`EPOLLOUT`). */
  EPOLLOUT = 2,
  /**
   * Ended without readiness: `remove`, `cancel`, the last `decRef`, or the
   * file behind the fd was closed. `events` is 0.
   */
  ABANDONED = 3,
  /** `EPOLLERR` alone; read `SO_ERROR` for the cause. */
  ERROR = 4,
}

/**
 * Called once per registration.
 *
 * @param action - the outcome.
 * @param events - the event mask the kernel reported for the fd (it may
 *   include bits that another registration on the same fd requested), or 0
 *   for `ABANDONED`.
 */
export type CompletionCallback = (action: CompletionPortEpollAction, events: number) => void

/**
 * An epoll instance with a worker thread. Each `add` makes a one-shot
 * registration that gets exactly one callback; re-add to wait again.
 *
 * Callbacks run on the JavaScript thread that created the port, never
 * inside `add`, `remove`, `cancel` or `decRef`. Pending registrations keep
 * the process alive.
 */
export declare class CompletionPort implements Disposable {
  /**
   * Creates the epoll instance and starts the worker thread, with
   * `refCount` 1.
   *
   * @throws Error with `code`, `errno` and `syscall` if the system refuses
   *   (for example `EMFILE`).
   */
  constructor()

  /**
   * Registers a one-shot interest in `events` on `fd`. Several
   * registrations may wait on one fd; their interests are merged.
   *
   * @param fd - an open descriptor the caller owns; the port never closes it.
   * @param events - `EPOLLIN`, `EPOLLPRI`, `EPOLLOUT`, `EPOLLRDHUP`,
   *   `EPOLLERR` and `EPOLLHUP` combined with `|`. `EPOLLET` and
   *   `EPOLLONESHOT` are ignored. The negative int32 that `|` gives when
   *   `EPOLLET` is included is accepted.
   * @returns the registration id, for `cancel`.
   * @throws TypeError or RangeError for invalid arguments, Error with code
   *   `ERR_COMPLETION_PORT_CLOSED` after the last `decRef`, and Error with
   *   `code`, `errno` and `syscall: 'epoll_ctl'` if the kernel refuses the
   *   fd (`EBADF`, `EPERM`, `ENOSPC`, ...).
   */
  add(fd: number, events: number, callback: CompletionCallback): number

  /**
   * Abandons one pending registration; its callback gets `ABANDONED` later.
   *
   * @returns false if the registration is not pending (already completed or
   *   abandoned, unknown, or the port is closed).
   */
  cancel(id: number): boolean

  /**
   * Deletes `fd` from the epoll instance and abandons every pending
   * registration on it, even if the fd is already closed. Readiness the
   * worker saw for `fd` but had not delivered yet is dropped. Call it before
   * closing an fd. Does nothing after the port is closed.
   */
  remove(fd: number): void

  /**
   * Adds a reference.
   *
   * @throws Error with code `ERR_COMPLETION_PORT_CLOSED` after the last
   *   `decRef`.
   */
  incRef(): void

  /**
   * Drops a reference. The last one closes the port: the worker thread
   * stops at once, the epoll descriptors close, and every pending
   * registration gets `ABANDONED`. Safe inside a callback; does nothing once
   * closed.
   */
  decRef(): void

  /** Same as `decRef`, for `using` declarations. */
  [Symbol.dispose](): void

  /** The reference count; 0 once closed. */
  readonly refCount: number
  /**
   * Registrations whose callback has not run yet, including abandoned ones
   * whose `ABANDONED` callback is still queued.
   */
  readonly pendingCount: number
  /** Whether the last `decRef` closed the port. */
  readonly closed: boolean
}

/**
 * Callback of the C-shaped `completionPortAdd`: the context comes first,
 * as in the C API.
 */
export type EventCallback<Context> = (
  eventCallbackCtx: Context,
  action: CompletionPortEpollAction,
  events: number,
) => void

/** Creates a port, or returns null if the system refuses. */
export declare function completionPortCreate(): CompletionPort | null

/** `port.incRef()`; does nothing for null or undefined. */
export declare function completionPortIncRef(port: CompletionPort | null | undefined): void

/** `port.decRef()`; does nothing for null or undefined. */
export declare function completionPortDecRef(port: CompletionPort | null | undefined): void

/**
 * `port.add(socket, epollOp, ...)` with C-style status codes.
 *
 * @returns 0 on success, or else the errno of the failed `epoll_ctl`. It
 *   returns EINVAL (22) for a null port, `INVALID_SOCKET`, a socket that is
 *   not a non-negative int32, a callback that is not a function, invalid
 *   `epollOp` bits and a closed port. A failed add never calls back.
 */
export declare function completionPortAdd<Context>(
  port: CompletionPort | null | undefined,
  epollOp: number,
  socket: number,
  eventCallback: EventCallback<Context>,
  eventCallbackCtx?: Context,
): number

/** `port.remove(socket)`; does nothing for a null port or `INVALID_SOCKET`. */
export declare function completionPortRemove(port: CompletionPort | null | undefined, socket: number): void
