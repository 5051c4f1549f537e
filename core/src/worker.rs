//! The worker thread: waits in `epoll_wait` and queues what the kernel
//! reports until the owner of the port takes it.

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

/// Capacity of the buffer passed to one `epoll_wait`. More ready descriptors
/// are collected by the next call.
const MAX_EVENTS: usize = 1024;

/// Pause after an `epoll_wait` failure other than `EINTR`, so that a
/// persistent failure does not spin a core.
const WAIT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// `epoll_event.data` of the shutdown eventfd. Registration tokens carry an
/// fd in their low 32 bits, and fds are below 2^31, so no token equals it.
const WAKE_TOKEN: u64 = u64::MAX;

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

    /// Called once for each distinct error of `epoll_wait` other than
    /// `EINTR`. The worker pauses briefly and keeps waiting.
    fn wait_failed(&self, errno: Errno) {
        eprintln!("completion-port: epoll_wait failed: {errno}; the worker keeps waiting");
    }
}

/// State shared by the owner of the port and the worker thread.
struct Shared {
    epoll: Epoll,
    wake: EventFd,
    stop: AtomicBool,
    notified: AtomicBool,
    queue: Mutex<Vec<RawEvent>>,
}

impl Shared {
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
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|errno| SystemError::new("eventfd", errno))?;
        epoll
            .add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN))
            .map_err(|errno| SystemError::new("epoll_ctl", errno))?;

        let shared = Arc::new(Shared {
            epoll,
            wake,
            stop: AtomicBool::new(false),
            notified: AtomicBool::new(false),
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

    /// Whether `fd` is the epoll instance or the shutdown eventfd, which
    /// callers must not register or remove.
    pub fn owns_fd(&self, fd: RawFd) -> bool {
        fd == self.shared.epoll.0.as_raw_fd() || fd == self.shared.wake.as_fd().as_raw_fd()
    }

    /// Moves every queued event to `out`, oldest first, and clears the
    /// outstanding notification so that the next queued event notifies again.
    pub fn take_events(&self, out: &mut Vec<RawEvent>) {
        // Cleared before draining: an event queued after the drain then
        // notifies again, at worst once more than needed, never too few.
        self.shared.notified.store(false, Ordering::Release);
        out.append(&mut self.shared.lock_queue());
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
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared, listener: &dyn Listener) {
    let mut events = vec![EpollEvent::empty(); MAX_EVENTS];
    let mut last_error = None;

    while !shared.stop.load(Ordering::Acquire) {
        let count = match shared
            .epoll
            .wait(&mut events, EpollTimeout::from(WAIT_TIMEOUT_MS))
        {
            Ok(count) => count,
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                // NOTE: this happens if the application closes the epoll fd
                // behind the port's back. The port never recovers, and
                // dropping it closes that fd number again, which may name
                // another file by then.
                if last_error != Some(errno) {
                    last_error = Some(errno);
                    listener.wait_failed(errno);
                }
                thread::sleep(WAIT_ERROR_BACKOFF);
                continue;
            }
        };

        let mut queued = false;
        {
            let mut queue = shared.lock_queue();
            for event in &events[..count] {
                if event.data() != WAKE_TOKEN {
                    queue.push(RawEvent {
                        token: event.data(),
                        events: event.events().bits() as u32,
                    });
                    queued = true;
                }
            }
        }
        if queued && !shared.notified.swap(true, Ordering::AcqRel) {
            listener.events_queued();
        }
    }
}
