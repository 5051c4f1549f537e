//! Completion port behaviour on real descriptors: socketpairs, pipes,
//! eventfds and a regular file.

mod common;

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use common::*;
use completion_port_core::{Action, AddError};
use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::unistd::{pipe2, write};

#[test]
fn readable_fd_completes_once() {
    let mut test = TestPort::new();
    let (a, b) = stream_pair();
    write(&b, b"x").unwrap();

    let id = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();

    assert_eq!(
        test.wait_for(1),
        vec![completion(id, Action::EpollIn, EPOLLIN, a.as_raw_fd())]
    );
    // The data is still unread, so a level-triggered entry would fire again.
    assert_eq!(test.completions_after_quiet_period(), vec![]);
    assert_eq!(test.port.pending_count(), 0);
}

#[test]
fn mode_flags_do_not_change_one_shot() {
    let mut test = TestPort::new();
    let (a, b) = stream_pair();
    write(&b, b"x").unwrap();

    for flags in [EPOLLET, EPOLLONESHOT, EPOLLET | EPOLLONESHOT] {
        let id = test.port.add(a.as_raw_fd(), EPOLLIN | flags).unwrap();
        assert_eq!(
            test.wait_for(1),
            vec![completion(id, Action::EpollIn, EPOLLIN, a.as_raw_fd())]
        );
        assert_eq!(test.completions_after_quiet_period(), vec![]);
    }
}

#[test]
fn read_and_write_registrations_share_fd() {
    let mut test = TestPort::new();
    let (a, b) = stream_pair();

    let reader = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();
    let writer = test.port.add(a.as_raw_fd(), EPOLLOUT).unwrap();

    assert_eq!(
        test.wait_for(1),
        vec![completion(
            writer,
            Action::EpollOut,
            EPOLLOUT,
            a.as_raw_fd()
        )]
    );
    assert_eq!(test.completions_after_quiet_period(), vec![]);
    assert_eq!(test.port.pending_count(), 1);

    write(&b, b"x").unwrap();
    let completions = test.wait_for(1);
    assert_eq!(completions.len(), 1);
    assert_eq!(completions[0].id, reader);
    assert_eq!(completions[0].action, Action::EpollIn);
    assert_eq!(test.port.pending_count(), 0);
}

#[test]
fn one_event_completes_every_satisfied_registration() {
    let mut test = TestPort::new();
    let (a, b) = stream_pair();

    let first = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();
    let second = test.port.add(a.as_raw_fd(), EPOLLIN | EPOLLRDHUP).unwrap();
    write(&b, b"x").unwrap();

    let mut ids: Vec<u64> = test.wait_for(2).iter().map(|c| c.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![first, second]);
}

#[test]
fn data_before_fin_completes_as_readable() {
    let mut test = TestPort::new();
    let (a, b) = stream_pair();
    write(&b, b"last words").unwrap();
    drop(b);

    let id = test.port.add(a.as_raw_fd(), EPOLLIN | EPOLLRDHUP).unwrap();

    let completions = test.wait_for(1);
    assert_eq!(completions[0].id, id);
    assert_eq!(completions[0].action, Action::EpollIn);
    assert_ne!(completions[0].events & EPOLLRDHUP, 0);
    let mut buffer = [0u8; 32];
    let read = nix::unistd::read(&a, &mut buffer).unwrap();
    assert_eq!(&buffer[..read], b"last words");
}

#[test]
fn hangup_without_data_completes_as_rdhup() {
    let mut test = TestPort::new();
    let (a, b) = stream_pair();
    drop(b);

    let id = test.port.add(a.as_raw_fd(), EPOLLRDHUP).unwrap();

    let completions = test.wait_for(1);
    assert_eq!(completions[0].id, id);
    assert_eq!(completions[0].action, Action::EpollRdHup);
}

#[test]
fn error_alone_completes_as_error() {
    let mut test = TestPort::new();
    let (read_end, write_end) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();

    // The write end never becomes readable; closing the read end makes the
    // kernel report EPOLLERR on it.
    let id = test.port.add(write_end.as_raw_fd(), EPOLLIN).unwrap();
    drop(read_end);

    let completions = test.wait_for(1);
    assert_eq!(completions[0].id, id);
    assert_eq!(completions[0].action, Action::Error);
    assert_ne!(completions[0].events & EPOLLERR, 0);
}

#[test]
fn eventfd_completes_when_written() {
    let mut test = TestPort::new();
    let eventfd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC).unwrap();

    let id = test.port.add(eventfd.as_fd().as_raw_fd(), EPOLLIN).unwrap();
    assert_eq!(test.completions_after_quiet_period(), vec![]);
    eventfd.write(1).unwrap();

    assert_eq!(
        test.wait_for(1),
        vec![completion(
            id,
            Action::EpollIn,
            EPOLLIN,
            eventfd.as_fd().as_raw_fd()
        )]
    );
}

#[test]
fn remove_abandons_pending_registrations() {
    let mut test = TestPort::new();
    let (a, _b) = stream_pair();
    let reader = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();
    let closer = test.port.add(a.as_raw_fd(), EPOLLRDHUP).unwrap();

    test.port.remove(a.as_raw_fd());

    assert_eq!(
        test.wait_for(2),
        vec![
            completion(reader, Action::Abandoned, 0, a.as_raw_fd()),
            completion(closer, Action::Abandoned, 0, a.as_raw_fd())
        ]
    );
    assert_eq!(test.port.pending_count(), 0);
}

#[test]
fn remove_drops_events_already_collected() {
    let mut test = TestPort::new();
    let (a, b) = stream_pair();
    let id = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();
    write(&b, b"x").unwrap();
    test.wait_for_notification();

    test.port.remove(a.as_raw_fd());

    assert_eq!(
        test.wait_for(1),
        vec![completion(id, Action::Abandoned, 0, a.as_raw_fd())]
    );
    assert_eq!(test.completions_after_quiet_period(), vec![]);
}

#[test]
fn remove_of_closed_fd_still_abandons() {
    let mut test = TestPort::new();
    let (a, _b) = stream_pair();
    let fd = a.as_raw_fd();
    let id = test.port.add(fd, EPOLLIN).unwrap();
    drop(a);

    test.port.remove(fd);

    assert_eq!(
        test.wait_for(1),
        vec![completion(id, Action::Abandoned, 0, fd)]
    );
}

#[test]
fn cancel_abandons_one_registration() {
    let mut test = TestPort::new();
    let (a, b) = stream_pair();
    let cancelled = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();
    let kept = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();

    assert!(test.port.cancel(cancelled));
    assert!(!test.port.cancel(cancelled));
    assert_eq!(
        test.wait_for(1),
        vec![completion(cancelled, Action::Abandoned, 0, a.as_raw_fd())]
    );

    write(&b, b"x").unwrap();
    assert_eq!(
        test.wait_for(1),
        vec![completion(kept, Action::EpollIn, EPOLLIN, a.as_raw_fd())]
    );
    assert!(!test.port.cancel(kept));
}

#[test]
fn cancel_drops_events_already_collected() {
    let mut test = TestPort::new();
    let (a, b) = stream_pair();
    let id = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();
    write(&b, b"x").unwrap();
    test.wait_for_notification();

    assert!(test.port.cancel(id));

    assert_eq!(
        test.wait_for(1),
        vec![completion(id, Action::Abandoned, 0, a.as_raw_fd())]
    );
    assert_eq!(test.completions_after_quiet_period(), vec![]);
}

#[test]
fn add_reports_epoll_ctl_errors() {
    let mut test = TestPort::new();
    let (a, _b) = stream_pair();
    let closed_fd = a.as_raw_fd();
    drop(a);
    assert_eq!(
        test.port.add(closed_fd, EPOLLIN),
        Err(AddError::Epoll {
            fd: closed_fd,
            errno: Errno::EBADF
        })
    );

    let file = tempfile_in_target();
    assert_eq!(
        test.port.add(file.as_raw_fd(), EPOLLIN),
        Err(AddError::Epoll {
            fd: file.as_raw_fd(),
            errno: Errno::EPERM
        })
    );
    assert_eq!(test.port.pending_count(), 0);
    assert_eq!(test.completions_after_quiet_period(), vec![]);
}

fn tempfile_in_target() -> fs::File {
    let path = std::env::temp_dir().join(format!("completion-port-test-{}", std::process::id()));
    let file = fs::File::create(&path).expect("create temporary file");
    fs::remove_file(&path).expect("remove temporary file");
    file
}

#[test]
fn failed_add_keeps_existing_registrations() {
    let mut test = TestPort::new();
    let (a, b) = stream_pair();
    let id = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();

    assert!(test
        .port
        .add(a.as_raw_fd(), EPOLLIN | EPOLLEXCLUSIVE)
        .is_err());
    assert!(test.port.add(a.as_raw_fd(), 0).is_err());

    write(&b, b"x").unwrap();
    assert_eq!(
        test.wait_for(1),
        vec![completion(id, Action::EpollIn, EPOLLIN, a.as_raw_fd())]
    );
}

#[test]
fn add_rejects_invalid_arguments() {
    let mut test = TestPort::new();
    let (a, _b) = stream_pair();
    let fd = a.as_raw_fd();

    assert_eq!(test.port.add(-1, EPOLLIN), Err(AddError::InvalidFd(-1)));
    assert_eq!(
        test.port.add(fd, EPOLLIN | EPOLLEXCLUSIVE),
        Err(AddError::Exclusive {
            events: EPOLLIN | EPOLLEXCLUSIVE
        })
    );
    assert_eq!(
        test.port.add(fd, EPOLLIN | 0x100_0000),
        Err(AddError::UnknownEvents {
            events: EPOLLIN | 0x100_0000,
            unknown: 0x100_0000
        })
    );
    assert_eq!(
        test.port.add(fd, EPOLLET),
        Err(AddError::NoEvents { events: EPOLLET })
    );
}

#[test]
fn closed_port_rejects_new_work() {
    let mut test = TestPort::new();
    let (a, _b) = stream_pair();
    test.port.close();

    assert_eq!(test.port.add(a.as_raw_fd(), EPOLLIN), Err(AddError::Closed));
    assert!(test.port.inc_ref().is_err());
    assert!(!test.port.cancel(1));
    test.port.remove(a.as_raw_fd());
    assert!(test.port.dec_ref());
    assert_eq!(test.port.ref_count(), 0);
}

#[test]
fn many_fds_complete_exactly_once() {
    let mut test = TestPort::new();
    let pairs: Vec<(OwnedFd, OwnedFd)> = (0..500).map(|_| stream_pair()).collect();
    let mut ids = Vec::new();
    for (a, b) in &pairs {
        ids.push(test.port.add(a.as_raw_fd(), EPOLLIN).unwrap());
        write(b, b"x").unwrap();
    }

    let mut completed: Vec<u64> = test.wait_for(ids.len()).iter().map(|c| c.id).collect();
    completed.sort_unstable();
    assert_eq!(completed, ids);
    assert_eq!(test.completions_after_quiet_period(), vec![]);
}

#[test]
fn worker_sleeps_until_poll_finds_nothing() {
    let mut test = TestPort::new();
    let (a, b) = stream_pair();
    let (c, d) = stream_pair();
    write(&b, b"x").unwrap();
    write(&d, b"x").unwrap();

    // The worker reports the first readiness, and a poll takes it.
    let first = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();
    test.wait_for_notification();
    let mut completions = Vec::new();
    assert!(test.port.poll_completions(&mut completions));
    assert_eq!(
        completions,
        vec![completion(first, Action::EpollIn, EPOLLIN, a.as_raw_fd())]
    );

    // That poll found something, so the worker stays asleep: new readiness
    // waits for the owner's next poll.
    let second = test.port.add(c.as_raw_fd(), EPOLLIN).unwrap();
    assert!(
        test.notifications.recv_timeout(QUIET_PERIOD).is_err(),
        "the worker reported readiness before a poll found nothing"
    );
    completions.clear();
    assert!(test.port.poll_completions(&mut completions));
    assert_eq!(
        completions,
        vec![completion(second, Action::EpollIn, EPOLLIN, c.as_raw_fd())]
    );

    // A poll that finds nothing hands readiness back to the worker.
    completions.clear();
    assert!(!test.port.poll_completions(&mut completions));
    assert_eq!(completions, vec![]);
    let third = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();
    assert_eq!(
        test.wait_for(1),
        vec![completion(third, Action::EpollIn, EPOLLIN, a.as_raw_fd())]
    );
}

#[test]
fn worker_arms_itself_after_timeout_without_poll() {
    let mut test = TestPort::new();
    let (a, b) = stream_pair();
    let (c, d) = stream_pair();
    write(&b, b"x").unwrap();
    write(&d, b"x").unwrap();

    let first = test.port.add(a.as_raw_fd(), EPOLLIN).unwrap();
    test.wait_for_notification();
    let mut completions = Vec::new();
    assert!(test.port.poll_completions(&mut completions));
    assert_eq!(completions.len(), 1);
    assert_eq!(completions[0].id, first);

    // The owner never polls again, as if the poll it scheduled was lost.
    // The worker still reports new readiness, after at most two epoll_wait
    // timeouts.
    let second = test.port.add(c.as_raw_fd(), EPOLLIN).unwrap();
    test.wait_for_notification();
    assert_eq!(
        test.wait_for(1),
        vec![completion(second, Action::EpollIn, EPOLLIN, c.as_raw_fd())]
    );
}
