//! Helpers shared by the integration tests: a port whose notifications
//! arrive on a channel, and descriptor factories.

#![allow(dead_code)]

use std::fs;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use completion_port_core::{Action, Completion, CompletionPort, Listener, WORKER_THREAD_NAME};
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

pub const EPOLLIN: u32 = EpollFlags::EPOLLIN.bits() as u32;
pub const EPOLLOUT: u32 = EpollFlags::EPOLLOUT.bits() as u32;
pub const EPOLLRDHUP: u32 = EpollFlags::EPOLLRDHUP.bits() as u32;
pub const EPOLLERR: u32 = EpollFlags::EPOLLERR.bits() as u32;
pub const EPOLLET: u32 = EpollFlags::EPOLLET.bits() as u32;
pub const EPOLLONESHOT: u32 = EpollFlags::EPOLLONESHOT.bits() as u32;
pub const EPOLLEXCLUSIVE: u32 = EpollFlags::EPOLLEXCLUSIVE.bits() as u32;

/// Deadline for events that must arrive; only reached when a test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long a test waits to show that nothing more arrives.
pub const QUIET_PERIOD: Duration = Duration::from_millis(300);

/// Sends a message for every notification of the worker thread.
pub struct ChannelListener(Mutex<Sender<()>>);

impl Listener for ChannelListener {
    fn events_queued(&self) {
        let _ = self.0.lock().unwrap().send(());
    }
}

/// A port with the receiving end of its notifications.
pub struct TestPort {
    pub port: CompletionPort,
    pub notifications: Receiver<()>,
}

impl TestPort {
    pub fn new() -> Self {
        let (sender, notifications) = mpsc::channel();
        let listener = Arc::new(ChannelListener(Mutex::new(sender)));
        let port = CompletionPort::new(listener).expect("create port");
        Self {
            port,
            notifications,
        }
    }

    /// Takes completions until `count` arrived, waiting for notifications.
    pub fn wait_for(&mut self, count: usize) -> Vec<Completion> {
        let deadline = Instant::now() + DEADLINE;
        let mut completions = Vec::new();
        self.port.take_completions(&mut completions);
        while completions.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.notifications.recv_timeout(left).is_err() {
                panic!("expected {count} completions, got {completions:?}");
            }
            self.port.take_completions(&mut completions);
        }
        completions
    }

    /// Waits for the quiet period and returns whatever completed meanwhile.
    pub fn completions_after_quiet_period(&mut self) -> Vec<Completion> {
        let _ = self.notifications.recv_timeout(QUIET_PERIOD);
        let mut completions = Vec::new();
        self.port.take_completions(&mut completions);
        completions
    }

    /// Waits until the worker has queued an event, without taking it.
    pub fn wait_for_notification(&self) {
        self.notifications
            .recv_timeout(DEADLINE)
            .expect("the worker queued no event");
    }
}

pub fn stream_pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair")
}

pub fn completion(id: u64, action: Action, events: u32, fd: RawFd) -> Completion {
    Completion {
        id,
        action,
        events,
        fd,
    }
}

/// Polls `condition` every millisecond until it returns true or
/// [`DEADLINE`] passes, and returns whether it returned true.
pub fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

pub fn worker_thread_count() -> usize {
    fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == WORKER_THREAD_NAME)
        .count()
}

pub fn open_fd_count() -> usize {
    list_fds().len()
}

/// Lists the open descriptors of this process.
pub fn list_fds() -> Vec<RawFd> {
    let listed: Vec<RawFd> = fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The listing includes the descriptor of the directory read itself,
    // which is closed by now.
    listed
        .into_iter()
        .filter(|fd| fs::read_link(format!("/proc/self/fd/{fd}")).is_ok())
        .collect()
}
