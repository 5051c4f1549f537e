//! The worker thread: waits in `epoll_wait` and queues what the kernel
//! reports until the owner of the port takes it.
//!
//! The registrations live in one epoll instance, and the worker waits on a
//! second one, the wait set, which contains the first (one-shot) and the
//! shutdown eventfd. After a wake-up the worker leaves the first instance
//! disarmed in the wait set until the owner finds nothing left to take, or
//! until a whole wait timeout passes without that. While
//! the owner keeps collecting readiness on its own thread
//! ([`Worker::collect_ready`]), the worker sleeps: the kernel does not wake it
//! for every event, and no event takes the slower path through it.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::error::SystemError;

/// How long one `epoll_wait` blocks when nothing happens, in milliseconds.
/// Shutdown does not wait for it: closing the port wakes the worker through
/// an eventfd.
pub const WAIT_TIMEOUT_MS: u16 = 2000;

/// Name of the worker thread, as shown in `/proc/<pid>/task/<tid>/comm`.
/// Linux keeps 15 bytes of a thread name, and this one fits.
pub const WORKER_THREAD_NAME: &str = "completion-port";

/// Name of the thread that closes the descriptors of a port with many fds,
/// started by [`Worker::close_in_background`].
pub const CLOSE_THREAD_NAME: &str = "epoll-close";

/// Capacity of the buffer passed to one `epoll_wait`. More ready descriptors
/// are collected by the next call.
pub(crate) const MAX_EVENTS: usize = 1024;

/// Pause after an `epoll_wait` failure other than `EINTR`, so that a
/// persistent failure does not spin a core.
const WAIT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// `epoll_event.data` of the shutdown eventfd in the wait set.
const WAKE_TOKEN: u64 = u64::MAX;

/// `epoll_event.data` of the registrations' epoll instance in the wait set.
const REGISTRATIONS_TOKEN: u64 = u64::MAX - 1;

/// One event as `epoll_wait` reported it: the registration token stored in
/// `epoll_event.data` and the event mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub token: u64,
    pub events: u32,
}

/// Receives notifications from the worker thread. Both methods run on the
/// worker thread and must not block.
pub trait Listener: Send + Sync + 'static {
    /// Called when events were queued and no notification is outstanding.
    /// The next [`Worker::take_events`] clears the outstanding notification.
    fn events_queued(&self);

    /// Called when the owner expected to take again but did not take for a
    /// whole `epoll_wait` timeout, for example because the call it scheduled
    /// never ran. The owner should take now.
    fn take_overdue(&self) {
        self.events_queued();
    }

    /// Called once for each distinct error of `epoll_wait` other than
    /// `EINTR`. The worker pauses briefly and keeps waiting.
    fn wait_failed(&self, errno: Errno) {
        eprintln!("completion-port: epoll_wait failed: {errno}; the worker keeps waiting");
    }
}

/// State shared by the owner of the port and the worker thread.
struct Shared {
    /// The epoll instance that contains the registrations.
    epoll: Epoll,
    /// The epoll instance the worker waits on: `epoll`, one-shot, and `wake`.
    wait_set: Epoll,
    wake: EventFd,
    stop: AtomicBool,
    notified: AtomicBool,
    /// Whether the owner is expected to take again soon: the worker handed
    /// it events, its last take found completions, or it scheduled a take
    /// that may be lost ([`Worker::expect_take`]).
    take_expected: AtomicBool,
    /// Whether the owner took since the worker last checked.
    taken_since_check: AtomicBool,
    queue: Mutex<Vec<RawEvent>>,
}

impl Shared {
    /// Arms `epoll` in the wait set, so that its next readiness wakes the
    /// worker, at once if events are ready now.
    fn arm(&self) {
        let mut event = EpollEvent::new(
            EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT,
            REGISTRATIONS_TOKEN,
        );
        // NOTE: this fails only if the application closed one of the port's
        // epoll fds behind its back, which the port cannot recover from.
        let _ = self.wait_set.modify(&self.epoll.0, &mut event);
    }

    fn lock_queue(&self) -> MutexGuard<'_, Vec<RawEvent>> {
        // A panic while the lock is held cannot leave the vector invalid.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An epoll instance with the thread that waits on it.
pub struct Worker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Creates the epoll instance and the shutdown eventfd, and starts the
    /// worker thread.
    pub fn start(listener: Arc<dyn Listener>) -> Result<Self, SystemError> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|errno| SystemError::new("epoll_create1", errno))?;
        let wait_set = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|errno| SystemError::new("epoll_create1", errno))?;
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|errno| SystemError::new("eventfd", errno))?;
        wait_set
            .add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN))
            .map_err(|errno| SystemError::new("epoll_ctl", errno))?;
        let registrations = EpollEvent::new(
            EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT,
            REGISTRATIONS_TOKEN,
        );
        wait_set
            .add(&epoll.0, registrations)
            .map_err(|errno| SystemError::new("epoll_ctl", errno))?;

        let shared = Arc::new(Shared {
            epoll,
            wait_set,
            wake,
            stop: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            take_expected: AtomicBool::new(false),
            taken_since_check: AtomicBool::new(false),
            queue: Mutex::new(Vec::new()),
        });
        let thread_shared = Arc::clone(&shared);
        let (started, wait_started) = mpsc::sync_channel(1);
        let thread = thread::Builder::new()
            .name(WORKER_THREAD_NAME.to_owned())
            .spawn(move || {
                let _ = started.send(());
                run(&thread_shared, listener.as_ref());
            })
            .map_err(|error| SystemError::from_io("pthread_create", &error))?;
        // The thread names itself once it runs. Waiting for that makes the
        // name visible in /proc as soon as the port exists.
        let _ = wait_started.recv();

        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Returns the epoll instance that registrations are added to.
    pub fn epoll(&self) -> &Epoll {
        &self.shared.epoll
    }

    /// Whether `fd` is one of the two epoll instances or the shutdown
    /// eventfd, which callers must not register or remove.
    pub fn owns_fd(&self, fd: RawFd) -> bool {
        fd == self.shared.epoll.0.as_raw_fd()
            || fd == self.shared.wait_set.0.as_raw_fd()
            || fd == self.shared.wake.as_fd().as_raw_fd()
    }

    /// Moves every queued event to `out`, oldest first, and clears the
    /// outstanding notification so that the next queued event notifies again.
    pub fn take_events(&self, out: &mut Vec<RawEvent>) {
        // Cleared before draining: an event queued after the drain then
        // notifies again, at worst once more than needed, never too few.
        self.shared.notified.store(false, Ordering::Release);
        out.append(&mut self.shared.lock_queue());
    }

    /// Collects the events that are ready now into `out`, on the calling
    /// thread and without blocking: one `epoll_wait` with a zero timeout,
    /// `buffer.len()` events at most.
    ///
    /// The worker may collect at the same time. Every entry is one-shot, so
    /// the kernel reports each event to one of the two callers, never both.
    /// Errors are left to the worker, which reports them.
    pub fn collect_ready(&self, buffer: &mut [EpollEvent], out: &mut Vec<RawEvent>) {
        if let Ok(count) = self.shared.epoll.wait(buffer, EpollTimeout::ZERO) {
            push_events(&buffer[..count], out);
        }
    }

    /// Records a take by the owner, and whether the owner expects to take
    /// again soon: it found completions and has scheduled another take. If
    /// that take does not come within a whole `epoll_wait` timeout, the
    /// worker notifies the listener again.
    pub fn record_take(&self, take_expected: bool) {
        self.shared.taken_since_check.store(true, Ordering::Release);
        self.shared
            .take_expected
            .store(take_expected, Ordering::Release);
    }

    /// Records that the owner has scheduled a take on a path that may be
    /// lost, so that the worker notifies the listener if no take comes
    /// within a whole `epoll_wait` timeout.
    pub fn expect_take(&self) {
        self.shared.take_expected.store(true, Ordering::Release);
    }

    /// Lets the worker collect again after a wake-up. Until the owner calls
    /// this, the worker sleeps, so the owner calls it when it stops taking:
    /// when a take finds nothing.
    pub fn arm(&self) {
        self.shared.arm();
    }

    /// Stops the worker thread and waits for it to exit. The eventfd wakes it
    /// at once, so this does not wait for the `epoll_wait` timeout.
    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::Release);
        // The counter is 0 or already written, so the write cannot overflow
        // it and fail with EAGAIN.
        let _ = self.shared.wake.write(1);
        if thread.join().is_err() {
            eprintln!("completion-port: the worker thread panicked");
        }
    }

    /// Stops the worker thread like [`stop`](Self::stop), then closes the
    /// descriptors on a new thread, so that the caller does not wait while
    /// the kernel removes every entry of the epoll instance. Closes them on
    /// the calling thread if no thread can be started.
    pub fn close_in_background(mut self) {
        self.stop();
        // The worker thread has exited, so this is the last reference.
        let shared = Arc::clone(&self.shared);
        drop(self);
        let _ = thread::Builder::new()
            .name(CLOSE_THREAD_NAME.to_owned())
            .spawn(move || drop(shared));
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared, listener: &dyn Listener) {
    let mut wake_events = [EpollEvent::empty(); 2];
    let mut events = vec![EpollEvent::empty(); MAX_EVENTS];
    let mut errors = ErrorReporter::default();

    while !shared.stop.load(Ordering::Acquire) {
        let result = shared
            .wait_set
            .wait(&mut wake_events, EpollTimeout::from(WAIT_TIMEOUT_MS));
        let count = match result {
            Ok(count) => count,
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                errors.report(errno, listener);
                continue;
            }
        };
        if count == 0 {
            recover_lost_take(shared, listener);
            continue;
        }
        let registrations_ready = wake_events[..count]
            .iter()
            .any(|event| event.data() == REGISTRATIONS_TOKEN);
        if !registrations_ready {
            continue;
        }

        // The wake-up disarmed the registrations in the wait set. Events
        // handed to the owner keep them disarmed until the owner has taken
        // everything. Otherwise the worker arms them again itself: the owner
        // collected the events first, or a level-triggered fd stopped being
        // ready.
        let count = match shared.epoll.wait(&mut events, EpollTimeout::ZERO) {
            Ok(count) => count,
            Err(Errno::EINTR) => 0,
            Err(errno) => {
                errors.report(errno, listener);
                0
            }
        };
        if count == 0 {
            shared.arm();
            continue;
        }
        push_events(&events[..count], &mut shared.lock_queue());
        shared.take_expected.store(true, Ordering::Release);
        if !shared.notified.swap(true, Ordering::AcqRel) {
            listener.events_queued();
        }
    }
}

/// Runs after an `epoll_wait` timeout. If the owner was expected to take
/// again but did not take for a whole timeout, for example because the call
/// it scheduled never ran, this arms the registrations and notifies the
/// listener again, so that nothing waits forever. An owner that is still
/// busy taking costs the worker one check per timeout.
fn recover_lost_take(shared: &Shared, listener: &dyn Listener) {
    let taken = shared.taken_since_check.swap(false, Ordering::AcqRel);
    if !taken && shared.take_expected.load(Ordering::Acquire) {
        shared.arm();
        listener.take_overdue();
    }
}

/// Reports each distinct `epoll_wait` error once, and pauses after every
/// error so that a persistent failure does not spin a core.
#[derive(Default)]
struct ErrorReporter {
    last: Option<Errno>,
}

impl ErrorReporter {
    fn report(&mut self, errno: Errno, listener: &dyn Listener) {
        // NOTE: this happens if the application closes an epoll fd of the
        // port behind its back. The port never recovers, and dropping it
        // closes that fd number again, which may name another file by then.
        if self.last != Some(errno) {
            self.last = Some(errno);
            listener.wait_failed(errno);
        }
        thread::sleep(WAIT_ERROR_BACKOFF);
    }
}

fn push_events(events: &[EpollEvent], out: &mut Vec<RawEvent>) {
    out.extend(events.iter().map(|event| RawEvent {
        token: event.data(),
        events: event.events().bits() as u32,
    }));
}
