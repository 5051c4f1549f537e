'use strict'

const { AsyncResource } = require('node:async_hooks')
// Taken at load, so that fake timers installed later (as test frameworks
// do) do not replace it.
const { setImmediate } = require('node:timers')

const native = require('./binding.js')

const resolvedPromise = Promise.resolve()

/** The fd value that the C-shaped functions treat as "no socket". */
const INVALID_SOCKET = -1

/** EINVAL, returned by `completionPortAdd` for invalid arguments. */
const EINVAL = 22

// A batch from the native port is written into a Float64Array, four numbers
// per completion: registration id, action, event mask and fd.
const BATCH_STRIDE = 4
const BATCH_ACTION = 1
const BATCH_EVENTS = 2
const BATCH_FD = 3
/** Completions that a port's first batch array has room for. It grows as needed. */
const INITIAL_BATCH_CAPACITY = 16
/**
 * Completions that the batch array a port keeps may grow to. A larger batch,
 * such as a last decRef with many pending registrations, gets an array of
 * its own that is not kept.
 */
const MAX_KEPT_BATCH_CAPACITY = 1024
/**
 * Completions that the ports of one thread deliver in one turn of the event
 * loop before their polls wait for the next turn. It bounds how long ports
 * that keep finding readiness delay timers and other I/O.
 */
const COMPLETIONS_PER_TURN = 1024

/**
 * Completions delivered by the ports of this thread in this turn of the event
 * loop, reset by an immediate that the turn's first completion schedules.
 */
let completionsThisTurn = 0
let turnResetScheduled = false

// Whether a port has a poll scheduled, and how.
const NO_POLL = 0
const POLL_QUEUED = 1
const POLL_YIELDED = 2

const MAX_FD = 0x7fffffff
const MAX_EVENTS = 0xffffffff
const MIN_INT32 = -0x80000000

/**
 * The single outcome of a registration. The numbers match the C enum
 * COMPLETION_PORT_EPOLL_ACTION and `Action` in core/src/action.rs; like a
 * TypeScript enum, the object also maps each number back to its name.
 */
const CompletionPortEpollAction = Object.freeze({
  EPOLLRDHUP: 0,
  EPOLLIN: 1,
  EPOLLOUT: 2,
  ABANDONED: 3,
  ERROR: 4,
  0: 'EPOLLRDHUP',
  1: 'EPOLLIN',
  2: 'EPOLLOUT',
  3: 'ABANDONED',
  4: 'ERROR',
})
const { ABANDONED } = CompletionPortEpollAction

class CompletionPort {
  /** The native port: epoll instance, worker thread and registrations. */
  #native
  /** Callbacks by registration id, shared with the dispatch function. */
  #state

  constructor() {
    // The dispatch function must not reach the native port strongly: the
    // native port keeps the function for as long as it is open, and a strong
    // path back would keep an idle port from being collected. `state.owner`
    // makes that path only while callbacks are pending.
    const state = {
      callbacks: new Map(),
      owner: null,
      nativeRef: null,
      // NO_POLL, POLL_QUEUED (a promise job) or POLL_YIELDED (an immediate).
      pollScheduled: NO_POLL,
      // Runs a scheduled poll in the async context in which the port was
      // created, as the worker thread's notifications do.
      runScheduledPoll: null,
      // The array that polls write batches into, reused while no batch is
      // being delivered from it.
      buffer: new Float64Array(INITIAL_BATCH_CAPACITY * BATCH_STRIDE),
      // The batches being delivered, innermost last. There is more than one
      // only if a callback makes the event loop run a nested turn.
      // NOTE: only native code that spins the event loop, such as the
      // deasync package, nests batches, and no test covers that case.
      frames: [],
    }
    const asyncResource = new AsyncResource('CompletionPort')
    state.runScheduledPoll = () => asyncResource.runInAsyncScope(runScheduledPoll, null, state)
    this.#state = state
    this.#native = new native.NativePort((overdue) => {
      if (overdue) {
        // The immediate that would have reset the budget or run the poll
        // never ran, as under fake timers: start a new budget now.
        resetTurn()
      }
      runScheduledPoll(state)
    })
    state.nativeRef = new WeakRef(this.#native)
  }

  add(fd, events, callback) {
    validateFd('fd', fd)
    const mask = normalizeEvents(events)
    if (typeof callback !== 'function') {
      throw invalidArgType('callback', 'a function', callback)
    }

    const id = this.#native.add(fd, mask)
    const state = this.#state
    if (state.callbacks.size === 0) {
      state.owner = this
    }
    state.callbacks.set(id, callback)
    return id
  }

  cancel(id) {
    if (typeof id !== 'number') {
      throw invalidArgType('id', 'of type number', id)
    }
    if (this.#native.cancel(id)) {
      schedulePoll(this.#state)
      return true
    }
    return abandonIdInBatch(this.#state, id)
  }

  remove(fd) {
    validateFd('fd', fd)
    if (this.#native.remove(fd)) {
      schedulePoll(this.#state)
    }
    abandonFdInBatch(this.#state, fd)
  }

  incRef() {
    this.#native.incRef()
  }

  decRef() {
    if (this.#native.decRef()) {
      schedulePoll(this.#state)
    }
    if (this.#native.closed) {
      abandonRestOfBatch(this.#state)
    }
  }

  [Symbol.dispose]() {
    this.decRef()
  }

  get refCount() {
    return this.#native.refCount
  }

  get pendingCount() {
    return this.#state.callbacks.size
  }

  get closed() {
    return this.#native.closed
  }
}

/**
 * Calls the callback of every completion in `batch` before offset `end`. A
 * callback that throws does not stop the batch: its error is rethrown on the
 * next tick, where Node reports it as an uncaught exception.
 */
function deliver(state, batch, end) {
  const { callbacks } = state
  // The offset of the next completion and an index of the offsets by fd and
  // by id, built on first use.
  const frame = { batch, next: 0, end, index: null }
  state.frames.push(frame)
  try {
    for (let offset = 0; offset < end; offset += BATCH_STRIDE) {
      frame.next = offset + BATCH_STRIDE
      const id = batch[offset]
      const callback = callbacks.get(id)
      if (callback === undefined) {
        continue
      }
      callbacks.delete(id)
      try {
        callback(batch[offset + BATCH_ACTION], batch[offset + BATCH_EVENTS])
      } catch (error) {
        process.nextTick(rethrow, error)
      }
    }
  } finally {
    state.frames.pop()
  }
  if (callbacks.size === 0) {
    state.owner = null
  }
  if (end > 0) {
    schedulePoll(state)
  }
}

/**
 * Delivers the port's decided completions and the readiness the kernel
 * reports now, once the current code and the promise jobs it queued have
 * run. Runs after each batch, because its callbacks often caused more
 * readiness (they wrote, or re-added an fd that is still readable), and
 * after remove, cancel or the last decRef, so that no callback runs inside
 * those calls.
 *
 * The poll is a promise job, so a reply to the byte a callback just wrote
 * costs no turn of the event loop. After COMPLETIONS_PER_TURN completions on
 * this thread in one turn, the poll waits for the next turn instead, which
 * lets timers and other I/O run.
 *
 * Every batch that is not empty must be followed by a poll: the native port
 * keeps the worker thread from reporting again until a poll finds nothing.
 * If the poll is lost, for example to fake timers installed before this
 * module loaded, the worker calls the dispatch function after its 2 s
 * epoll_wait timeout.
 */
function schedulePoll(state) {
  const scheduled = state.pollScheduled
  if (scheduled === POLL_QUEUED) {
    return
  }
  // A closed port has only abandoned completions left, a finite number, so
  // it polls from a promise job even when a yielded poll waits for an
  // immediate that fake timers may hold back. isClosed costs a native call,
  // so the common case skips it.
  const budgetLeft = completionsThisTurn < COMPLETIONS_PER_TURN
  if ((scheduled === NO_POLL && budgetLeft) || isClosed(state)) {
    state.pollScheduled = POLL_QUEUED
    resolvedPromise.then(state.runScheduledPoll)
    return
  }
  if (scheduled === POLL_YIELDED) {
    return
  }
  state.pollScheduled = POLL_YIELDED
  state.nativeRef.deref()?.expectPoll()
  setImmediate(runYieldedPoll, state)
}

/**
 * Runs a yielded poll from a second immediate. The first one may run in the
 * same check phase as the immediate that resets the budget, before any
 * timer. The second one runs in the next turn, after timers and other I/O.
 */
function runYieldedPoll(state) {
  setImmediate(state.runScheduledPoll)
}

function isClosed(state) {
  const port = state.nativeRef.deref()
  return port === undefined || port.closed
}

function resetTurn() {
  turnResetScheduled = false
  completionsThisTurn = 0
}

function runScheduledPoll(state) {
  state.pollScheduled = NO_POLL
  pollNow(state)
}

/** Polls the native port and delivers the batch. Also called by the worker thread's notification. */
function pollNow(state) {
  // Undefined once the native port is collected, which closes it.
  const port = state.nativeRef.deref()
  if (port === undefined) {
    return
  }
  // A batch still being delivered further up the stack keeps its array.
  const nested = state.frames.length > 0
  let buffer = nested ? new Float64Array(0) : state.buffer
  let count = port.poll(buffer)
  if (count * BATCH_STRIDE > buffer.length) {
    // The native port kept the completions, and nothing ran since.
    const capacity = 2 ** Math.ceil(Math.log2(count))
    buffer = new Float64Array(capacity * BATCH_STRIDE)
    if (!nested && capacity <= MAX_KEPT_BATCH_CAPACITY) {
      state.buffer = buffer
    }
    count = port.poll(buffer)
  }
  if (count > 0) {
    completionsThisTurn += count
    if (!turnResetScheduled) {
      turnResetScheduled = true
      setImmediate(resetTurn)
    }
  }
  deliver(state, buffer, count * BATCH_STRIDE)
}

// A remove, cancel or last decRef made by a callback must override the
// completions later in the batches being delivered: the native port decided
// them when it handed over each batch. The functions below turn those into
// ABANDONED in place, and each returns whether it changed any.

function abandonFdInBatch(state, fd) {
  let changed = false
  for (const frame of state.frames) {
    const { byFd } = indexFrame(frame)
    const offsets = byFd.get(fd)
    if (offsets === undefined) {
      continue
    }
    // Later removes of this fd number concern new registrations, which are
    // not in this batch.
    byFd.delete(fd)
    for (const offset of offsets) {
      changed = abandonAt(frame, offset) || changed
    }
  }
  return changed
}

function abandonIdInBatch(state, id) {
  for (const frame of state.frames) {
    const offset = indexFrame(frame).byId.get(id)
    if (offset !== undefined) {
      return abandonAt(frame, offset)
    }
  }
  return false
}

function abandonRestOfBatch(state) {
  for (const frame of state.frames) {
    for (let offset = frame.next; offset < frame.end; offset += BATCH_STRIDE) {
      abandonAt(frame, offset)
    }
  }
}

/** Abandons the completion at `offset` unless its callback already ran or it is abandoned. */
function abandonAt(frame, offset) {
  const { batch } = frame
  if (offset < frame.next || batch[offset + BATCH_ACTION] === ABANDONED) {
    return false
  }
  batch[offset + BATCH_ACTION] = ABANDONED
  batch[offset + BATCH_EVENTS] = 0
  return true
}

/**
 * Returns the offsets of the undelivered completions of a batch being
 * delivered, by fd and by id. Built once per batch, so callbacks that each
 * remove their own fd cost linear time in all.
 */
function indexFrame(frame) {
  if (frame.index === null) {
    const { batch } = frame
    const byFd = new Map()
    const byId = new Map()
    for (let offset = frame.next; offset < frame.end; offset += BATCH_STRIDE) {
      byId.set(batch[offset], offset)
      const fd = batch[offset + BATCH_FD]
      const offsets = byFd.get(fd)
      if (offsets === undefined) {
        byFd.set(fd, [offset])
      } else {
        offsets.push(offset)
      }
    }
    frame.index = { byFd, byId }
  }
  return frame.index
}

function rethrow(error) {
  throw error
}

function validateFd(name, value) {
  if (typeof value !== 'number') {
    throw invalidArgType(name, 'of type number', value)
  }
  if (!Number.isInteger(value) || value < 0 || value > MAX_FD) {
    const note = value === INVALID_SOCKET ? ' (INVALID_SOCKET)' : ''
    throw outOfRange(name, `an integer from 0 to ${MAX_FD} (an open file descriptor)`, `${value}${note}`)
  }
}

/**
 * Returns `value` as an unsigned 32-bit event mask. A negative int32 is
 * accepted because `|` on EPOLLET (bit 31) gives one, as in `EPOLLIN | EPOLLET`.
 */
function normalizeEvents(value) {
  if (typeof value !== 'number') {
    throw invalidArgType('events', 'of type number', value)
  }
  if (!Number.isInteger(value) || value < MIN_INT32 || value > MAX_EVENTS) {
    throw outOfRange('events', `an integer from ${MIN_INT32} to ${MAX_EVENTS} combining EPOLL* flags`, String(value))
  }
  return value >>> 0
}

function invalidArgType(name, expected, value) {
  const error = new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(value)}`)
  error.code = 'ERR_INVALID_ARG_TYPE'
  return error
}

function outOfRange(name, expected, received) {
  const error = new RangeError(`The value of "${name}" is out of range. It must be ${expected}. Received ${received}`)
  error.code = 'ERR_OUT_OF_RANGE'
  return error
}

function describe(value) {
  if (value === null || value === undefined) {
    return String(value)
  }
  if (typeof value === 'function') {
    return `function ${value.name || '<anonymous>'}`
  }
  if (typeof value === 'object') {
    return `an instance of ${value.constructor?.name ?? 'Object'}`
  }
  const printed = typeof value === 'string' ? `'${value.slice(0, 25)}'` : String(value)
  return `type ${typeof value} (${printed})`
}

// C-shaped functions: the API of completion_port_linux in Azure c-pal, with
// its argument order, null-handle and INVALID_SOCKET rules, and status codes
// instead of throws.

function completionPortCreate() {
  try {
    return new CompletionPort()
  } catch {
    return null
  }
}

function completionPortIncRef(port) {
  if (port != null) {
    port.incRef()
  }
}

function completionPortDecRef(port) {
  if (port != null) {
    port.decRef()
  }
}

/**
 * Returns 0 on success. On failure returns the errno of the failed
 * epoll_ctl, or EINVAL for invalid arguments and a closed port.
 */
function completionPortAdd(port, epollOp, socket, eventCallback, eventCallbackCtx) {
  if (!(port instanceof CompletionPort) || socket === INVALID_SOCKET || typeof eventCallback !== 'function') {
    return EINVAL
  }
  try {
    port.add(socket, epollOp, (action, events) => eventCallback(eventCallbackCtx, action, events))
    return 0
  } catch (error) {
    const isSystemError = typeof error?.errno === 'number' && error.syscall === 'epoll_ctl'
    return isSystemError ? -error.errno : EINVAL
  }
}

function completionPortRemove(port, socket) {
  if (port != null && socket !== INVALID_SOCKET) {
    port.remove(socket)
  }
}

// Plain names in the object literal, so that Node can detect every export
// when an ES module imports this file by name.
const { EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP, EPOLLEXCLUSIVE, EPOLLONESHOT, EPOLLET } = native

module.exports = {
  CompletionPort,
  CompletionPortEpollAction,
  INVALID_SOCKET,
  EPOLLIN,
  EPOLLPRI,
  EPOLLOUT,
  EPOLLERR,
  EPOLLHUP,
  EPOLLRDHUP,
  EPOLLEXCLUSIVE,
  EPOLLONESHOT,
  EPOLLET,
  completionPortCreate,
  completionPortIncRef,
  completionPortDecRef,
  completionPortAdd,
  completionPortRemove,
}
