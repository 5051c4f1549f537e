// Type checks of the public API: `npm run test:types` compiles this file, and
// nothing runs it. Every export and exported type is used once the right way,
// and the `@ts-expect-error` lines must stay errors.

import {
  type CompletionCallback,
  CompletionPort,
  CompletionPortEpollAction,
  completionPortAdd,
  completionPortCreate,
  completionPortDecRef,
  completionPortIncRef,
  completionPortRemove,
  EPOLLERR,
  EPOLLET,
  EPOLLEXCLUSIVE,
  EPOLLHUP,
  EPOLLIN,
  EPOLLONESHOT,
  EPOLLOUT,
  EPOLLPRI,
  EPOLLRDHUP,
  type EventCallback,
  INVALID_SOCKET,
} from '..'

const flags: number[] = [EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP, EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE]
const noSocket: -1 = INVALID_SOCKET

/** Returns a description of every action; fails to compile if a case is missing. */
function describeAction(action: CompletionPortEpollAction): string {
  switch (action) {
    case CompletionPortEpollAction.EPOLLIN:
      return 'readable'
    case CompletionPortEpollAction.EPOLLOUT:
      return 'writable'
    case CompletionPortEpollAction.EPOLLRDHUP:
      return 'hang-up'
    case CompletionPortEpollAction.ERROR:
      return 'error'
    case CompletionPortEpollAction.ABANDONED:
      return 'abandoned'
    default: {
      const unreachable: never = action
      return unreachable
    }
  }
}

export function useClassApi(fd: number): void {
  const callback: CompletionCallback = (action, events) => {
    const description: string = describeAction(action)
    const mask: number = events
    void description
    void mask
  }

  using port = new CompletionPort()
  const id: number = port.add(fd, EPOLLIN | EPOLLRDHUP, callback)
  const cancelled: boolean = port.cancel(id)
  port.remove(fd)
  port.incRef()
  port.decRef()
  const counts: [number, number, boolean] = [port.refCount, port.pendingCount, port.closed]
  void cancelled
  void counts
  void flags
  void noSocket

  // @ts-expect-error fd is a number, not a socket object
  port.add({ fd }, EPOLLIN, callback)
  // @ts-expect-error the callback is required
  port.add(fd, EPOLLIN)
  // @ts-expect-error actions are not strings
  port.add(fd, EPOLLIN, (action: string) => action)
  // @ts-expect-error refCount is read-only
  port.refCount = 2
}

export function useCApi(fd: number): void {
  const port: CompletionPort | null = completionPortCreate()
  completionPortIncRef(port)

  const onEvent: EventCallback<{ name: string }> = (context, action, events) => {
    const name: string = context.name
    void [name, describeAction(action), events]
  }
  const status: number = completionPortAdd(port, EPOLLIN, fd, onEvent, { name: 'reader' })
  void status
  // @ts-expect-error the context must match the callback's context type
  completionPortAdd(port, EPOLLIN, fd, onEvent, 42)

  completionPortRemove(port, fd)
  completionPortDecRef(port)
  completionPortDecRef(undefined)
}
