//! Errors of [`CompletionPort`](crate::CompletionPort) operations.

use std::fmt;
use std::os::fd::RawFd;

use nix::errno::Errno;

/// Why [`CompletionPort::add`](crate::CompletionPort::add) rejected a
/// registration. No registration was made and no callback will follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddError {
    /// The port's reference count reached 0.
    Closed,
    /// The fd is negative.
    InvalidFd(RawFd),
    /// The fd is the port's own epoll instance or shutdown eventfd.
    ReservedFd(RawFd),
    /// `events` has bits that are not epoll event or mode flags.
    UnknownEvents { events: u32, unknown: u32 },
    /// `events` contains `EPOLLEXCLUSIVE`, which the kernel rejects together
    /// with `EPOLLONESHOT`.
    Exclusive { events: u32 },
    /// `events` requests no event at all.
    NoEvents { events: u32 },
    /// `epoll_ctl` failed.
    Epoll { fd: RawFd, errno: Errno },
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => ClosedError.fmt(f),
            Self::InvalidFd(fd) => write!(f, "invalid fd {fd}: expected an open descriptor (>= 0)"),
            Self::ReservedFd(fd) => write!(
                f,
                "fd {fd} is the completion port's own epoll or eventfd descriptor; pass a descriptor you opened"
            ),
            Self::UnknownEvents { events, unknown } => write!(
                f,
                "invalid events {events:#x}: unknown bits {unknown:#x}; combine EPOLLIN, EPOLLPRI, \
                 EPOLLOUT, EPOLLRDHUP, EPOLLERR, EPOLLHUP, EPOLLET and EPOLLONESHOT"
            ),
            Self::Exclusive { events } => write!(
                f,
                "invalid events {events:#x}: EPOLLEXCLUSIVE is not supported because every \
                 registration is one-shot; remove it"
            ),
            Self::NoEvents { events } => write!(
                f,
                "invalid events {events:#x}: no event requested; include at least one of EPOLLIN, \
                 EPOLLPRI, EPOLLOUT, EPOLLRDHUP, EPOLLERR or EPOLLHUP"
            ),
            Self::Epoll { fd, errno } => write!(
                f,
                "epoll_ctl failed for fd {fd}: {errno:?} ({}); {}",
                describe_errno(*errno),
                epoll_ctl_hint(*errno)
            ),
        }
    }
}

impl std::error::Error for AddError {}

/// Returns the C library's description of `errno`, as strerror(3) gives it
/// and Node shows it.
pub fn describe_errno(errno: Errno) -> String {
    let text = std::io::Error::from_raw_os_error(errno as i32).to_string();
    // The standard library appends " (os error N)" to the description.
    match text.rfind(" (os error ") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// Returns what a caller can do about an `epoll_ctl` failure.
fn epoll_ctl_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EBADF => "the fd is not open; pass an open descriptor and remove it before closing",
        Errno::EPERM => {
            "the file does not support epoll (regular files and directories never block); \
             read it directly"
        }
        Errno::ENOSPC => {
            "the per-user limit of epoll watches is reached; remove unused fds or raise \
             /proc/sys/fs/epoll/max_user_watches"
        }
        Errno::ENOMEM => "the kernel is out of memory for epoll entries",
        Errno::EINVAL => {
            "the kernel does not accept this fd for epoll (an epoll fd cannot watch itself, \
             including through a dup of the port's own epoll descriptor)"
        }
        Errno::ELOOP => {
            "adding this epoll fd would create a loop or too deep a nesting of epoll instances"
        }
        _ => "see epoll_ctl(2)",
    }
}

/// The port's reference count already reached 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClosedError;

impl fmt::Display for ClosedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the completion port is closed (its reference count reached 0); create a new port",
        )
    }
}

impl std::error::Error for ClosedError {}

/// A system call failed while creating a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemError {
    pub syscall: &'static str,
    pub errno: Errno,
}

impl SystemError {
    pub(crate) fn new(syscall: &'static str, errno: Errno) -> Self {
        Self { syscall, errno }
    }

    pub(crate) fn from_io(syscall: &'static str, error: &std::io::Error) -> Self {
        let errno = error
            .raw_os_error()
            .map_or(Errno::UnknownErrno, Errno::from_raw);
        Self { syscall, errno }
    }
}

impl fmt::Display for SystemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {:?} ({})",
            self.syscall,
            self.errno,
            describe_errno(self.errno)
        )
    }
}

impl std::error::Error for SystemError {}
