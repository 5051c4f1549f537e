//! Tests that count process-wide resources (threads, descriptors, reused
//! fd numbers). They run one at a time, because the test harness runs the
//! tests of one binary on parallel threads of a single process.

mod common;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use completion_port_core::{Action, AddError};
use nix::unistd::write;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn reused_fd_number_never_completes_old_registration() {
    let _serial = serial();
    let mut test = TestPort::new();
    let (old, _old_peer) = stream_pair();
    let fd = old.as_raw_fd();
    let old_id = test.port.add(fd, EPOLLIN).unwrap();
    drop(old);

    // Linux hands out the lowest free number, so the next socket reuses it.
    let (new, new_peer) = stream_pair();
    assert_eq!(new.as_raw_fd(), fd, "the fd number was not reused");
    let new_id = test.port.add(fd, EPOLLIN).unwrap();
    write(&new_peer, b"x").unwrap();

    assert_eq!(
        test.wait_for(2),
        vec![
            completion(old_id, Action::Abandoned, 0, fd),
            completion(new_id, Action::EpollIn, EPOLLIN, fd)
        ]
    );
}

#[test]
fn port_descriptors_are_reserved() {
    let _serial = serial();
    let fds_before = list_fds();
    let mut test = TestPort::new();
    let own: Vec<RawFd> = list_fds()
        .into_iter()
        .filter(|fd| !fds_before.contains(fd))
        .collect();
    assert_eq!(own.len(), 3, "a port owns two epoll fds and an eventfd");

    for fd in own {
        assert_eq!(test.port.add(fd, EPOLLIN), Err(AddError::ReservedFd(fd)));
        test.port.remove(fd);
    }

    // Had remove deleted the shutdown eventfd, closing would wait for the
    // 2 s epoll_wait timeout.
    let started = Instant::now();
    test.port.close();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "close took {:?}",
        started.elapsed()
    );
}

#[test]
fn last_dec_ref_closes_port() {
    let _serial = serial();
    // A port closed by an earlier test may still be leaving /proc.
    eventually(|| worker_thread_count() == 0);
    let threads_before = worker_thread_count();
    let fds_before = open_fd_count();
    let mut test = TestPort::new();
    // The port returns once its thread runs under its name.
    assert_eq!(worker_thread_count(), threads_before + 1);
    assert_eq!(open_fd_count(), fds_before + 3);
    let (a, b) = stream_pair();
    let id = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();

    test.port.inc_ref().unwrap();
    assert_eq!(test.port.ref_count(), 2);
    assert!(!test.port.dec_ref());
    assert_eq!(test.port.ref_count(), 1);

    let started = Instant::now();
    assert!(test.port.dec_ref());
    // The worker waits in epoll_wait with a 2 s timeout; the eventfd wakes
    // it, so closing must not take anywhere near that long.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "close took {:?}",
        started.elapsed()
    );

    assert!(test.port.is_closed());
    assert_eq!(test.port.ref_count(), 0);
    // The join returns when the kernel clears the thread's id, which can be
    // a moment before the thread leaves /proc/self/task.
    assert!(
        eventually(|| worker_thread_count() == threads_before),
        "{} worker threads, {threads_before} before the port",
        worker_thread_count()
    );
    let mut completions = Vec::new();
    test.port.take_completions(&mut completions);
    assert_eq!(
        completions,
        vec![completion(id, Action::Abandoned, 0, a.as_raw_fd())]
    );

    drop((a, b));
    assert_eq!(open_fd_count(), fds_before);
}
