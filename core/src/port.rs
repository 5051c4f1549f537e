//! The completion port: reference counting, argument checks and the queue of
//! completions waiting to be taken by the owner.

use std::mem;
use std::os::fd::RawFd;
use std::sync::Arc;

use nix::sys::epoll::{EpollEvent, EpollFlags};

use crate::action::{IGNORED_MODE_BITS, INTEREST_BITS};
use crate::error::{AddError, ClosedError, SystemError};
use crate::registry::{Completion, RegistrationId, Registry};
use crate::worker::{Listener, RawEvent, Worker, MAX_EVENTS};

/// Number of entries in the epoll instance, armed or not, from which
/// [`CompletionPort::close`] closes it on another thread. The kernel removes
/// the entries one by one when the last descriptor of an epoll instance
/// closes: about 0.6 us each on Linux 6.18 in a 2-vCPU KVM guest, so 6 ms for
/// 10 000 fds (`strace -T` of the benchmark's teardown workload). Below this
/// count the close costs less than starting a thread is worth.
pub const BACKGROUND_CLOSE_MIN_FDS: usize = 1024;

/// An epoll instance with a worker thread, delivering exactly one
/// [`Completion`] per registration.
///
/// The worker thread only collects events. They become completions when the
/// owner calls [`take_completions`](Self::take_completions), so a `remove` or
/// `cancel` made before that always wins over readiness that the worker had
/// already seen. [`Listener::events_queued`] signals the owner when to take.
pub struct CompletionPort {
    /// `None` once the reference count reached 0.
    worker: Option<Worker>,
    registry: Registry,
    ref_count: usize,
    /// Completions decided outside `take_completions` (abandoned
    /// registrations), not taken yet.
    ready: Vec<Completion>,
    /// Reused buffer for the worker's events.
    raw_events: Vec<RawEvent>,
    /// Reused buffer for [`poll_completions`](Self::poll_completions),
    /// allocated on first use.
    poll_buffer: Vec<EpollEvent>,
}

impl CompletionPort {
    /// Creates the epoll instance and starts the worker thread. The reference
    /// count starts at 1.
    pub fn new(listener: Arc<dyn Listener>) -> Result<Self, SystemError> {
        Ok(Self {
            worker: Some(Worker::start(listener)?),
            registry: Registry::default(),
            ref_count: 1,
            ready: Vec::new(),
            raw_events: Vec::new(),
            poll_buffer: Vec::new(),
        })
    }

    /// Returns the reference count, which is 0 once the port is closed.
    pub fn ref_count(&self) -> usize {
        self.ref_count
    }

    /// Returns whether the reference count reached 0.
    pub fn is_closed(&self) -> bool {
        self.worker.is_none()
    }

    /// Number of registrations waiting for readiness. Completions that are
    /// decided but not taken yet are not counted.
    pub fn pending_count(&self) -> usize {
        self.registry.pending_count()
    }

    /// Returns whether completions are waiting in the port. Events queued by
    /// the worker are not counted: it reports them through
    /// [`Listener::events_queued`].
    pub fn has_ready_completions(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Adds a reference.
    pub fn inc_ref(&mut self) -> Result<(), ClosedError> {
        if self.is_closed() {
            return Err(ClosedError);
        }
        self.ref_count += 1;
        Ok(())
    }

    /// Drops a reference. The last one closes the port: see
    /// [`close`](Self::close). Returns whether the port is closed.
    pub fn dec_ref(&mut self) -> bool {
        if self.ref_count > 1 {
            self.ref_count -= 1;
        } else {
            self.close();
        }
        self.is_closed()
    }

    /// Closes the port whatever its reference count: stops and joins the
    /// worker thread, closes the epoll and eventfd descriptors, and abandons
    /// every pending registration. Idempotent.
    ///
    /// With [`BACKGROUND_CLOSE_MIN_FDS`] or more entries in the epoll instance,
    /// the descriptors are closed on a short-lived thread
    /// ([`CLOSE_THREAD_NAME`](crate::CLOSE_THREAD_NAME)) after this returns.
    pub fn close(&mut self) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        self.ref_count = 0;
        if self.registry.entry_count_bound() >= BACKGROUND_CLOSE_MIN_FDS {
            worker.close_in_background();
        } else {
            drop(worker);
        }
        self.registry.abandon_all(&mut self.ready);
        // Free the capacity that the registry and the event buffer grew to.
        self.registry = Registry::default();
        self.raw_events = Vec::new();
        self.poll_buffer = Vec::new();
    }

    /// Registers a one-shot interest in `events` on `fd`. The registration
    /// completes once: with readiness, or abandoned.
    ///
    /// `events` combines `EPOLLIN`, `EPOLLPRI`, `EPOLLOUT`, `EPOLLRDHUP`,
    /// `EPOLLERR` and `EPOLLHUP`; `EPOLLET` and `EPOLLONESHOT` are accepted
    /// and change nothing. Several registrations may wait on one fd.
    ///
    /// An earlier registration on the same fd number whose file was closed
    /// (the kernel no longer has the entry) is abandoned here.
    pub fn add(&mut self, fd: RawFd, events: u32) -> Result<RegistrationId, AddError> {
        let interest = validate_events(events)?;
        let Some(worker) = &self.worker else {
            return Err(AddError::Closed);
        };
        if fd < 0 {
            return Err(AddError::InvalidFd(fd));
        }
        if worker.owns_fd(fd) {
            return Err(AddError::ReservedFd(fd));
        }
        self.registry
            .add(worker.epoll(), fd, interest, &mut self.ready)
            .map_err(|errno| AddError::Epoll { fd, errno })
    }

    /// Abandons the pending registration `id`. Returns false if it is not
    /// pending: it already completed, was abandoned, or the port is closed.
    pub fn cancel(&mut self, id: RegistrationId) -> bool {
        let Some(worker) = &self.worker else {
            return false;
        };
        self.registry.cancel(worker.epoll(), id, &mut self.ready)
    }

    /// Deletes `fd` from the epoll instance (`EPOLL_CTL_DEL`) and abandons
    /// every pending registration on it, even if the fd is already closed.
    /// Events for `fd` that the worker has collected but that were not taken
    /// yet are dropped. Does nothing for a negative fd, the port's own
    /// descriptors, or a closed port.
    pub fn remove(&mut self, fd: RawFd) {
        let Some(worker) = &self.worker else {
            return;
        };
        if fd < 0 || worker.owns_fd(fd) {
            return;
        }
        self.registry.remove(worker.epoll(), fd, &mut self.ready);
    }

    /// Moves every decided completion to `out`: first the abandoned ones,
    /// then those for the events the worker collected, in the order the
    /// kernel reported them. Fds with registrations left are re-armed, and
    /// the worker collects again.
    pub fn take_completions(&mut self, out: &mut Vec<Completion>) {
        self.take(out, false);
        if let Some(worker) = &self.worker {
            worker.record_take(false);
            worker.arm();
        }
    }

    /// Like [`take_completions`](Self::take_completions), but also collects
    /// the events that are ready now on the calling thread, without waiting
    /// for the worker thread, and keeps the worker asleep unless nothing was
    /// found. Returns whether any completion was added to `out`.
    ///
    /// An owner that polls after handling each batch gets the readiness its
    /// own handlers caused (a reply to the byte it just wrote) with no thread
    /// hop. It must keep polling until a poll returns false: until then the
    /// worker reports nothing new.
    pub fn poll_completions(&mut self, out: &mut Vec<Completion>) -> bool {
        let before = out.len();
        self.take(out, true);
        let found = out.len() > before;
        if let Some(worker) = &self.worker {
            worker.record_take(found);
            if !found {
                worker.arm();
            }
        }
        found
    }

    /// Records that the owner has scheduled a poll on a path that may be
    /// lost, such as a timer. If no take comes within a whole `epoll_wait`
    /// timeout, the worker calls [`Listener::take_overdue`].
    pub fn expect_take(&self) {
        if let Some(worker) = &self.worker {
            worker.expect_take();
        }
    }

    fn take(&mut self, out: &mut Vec<Completion>, collect: bool) {
        out.append(&mut self.ready);
        let Some(worker) = &self.worker else {
            return;
        };

        let mut raw_events = mem::take(&mut self.raw_events);
        worker.take_events(&mut raw_events);
        if collect {
            if self.poll_buffer.is_empty() {
                self.poll_buffer = vec![EpollEvent::empty(); MAX_EVENTS];
            }
            worker.collect_ready(&mut self.poll_buffer, &mut raw_events);
        }
        for event in raw_events.drain(..) {
            self.registry.dispatch(worker.epoll(), event, out);
        }
        self.raw_events = raw_events;
    }
}

impl Drop for CompletionPort {
    fn drop(&mut self) {
        self.close();
    }
}

/// Returns the event bits of `events` after checking that every bit is known
/// and at least one event is requested.
fn validate_events(events: u32) -> Result<u32, AddError> {
    let exclusive = EpollFlags::EPOLLEXCLUSIVE.bits() as u32;
    let unknown = events & !(INTEREST_BITS | IGNORED_MODE_BITS | exclusive);
    if unknown != 0 {
        return Err(AddError::UnknownEvents { events, unknown });
    }
    if events & exclusive != 0 {
        return Err(AddError::Exclusive { events });
    }
    let interest = events & INTEREST_BITS;
    if interest == 0 {
        return Err(AddError::NoEvents { events });
    }
    Ok(interest)
}
