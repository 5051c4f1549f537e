//! Readiness actions and the mapping from a reported epoll event mask.

use nix::sys::epoll::EpollFlags;

/// Event bits a registration may ask for. `EPOLLERR` and `EPOLLHUP` are
/// always reported by the kernel, so asking for them changes nothing.
pub const INTEREST_BITS: u32 = EpollFlags::EPOLLIN.bits() as u32
    | EpollFlags::EPOLLPRI.bits() as u32
    | EpollFlags::EPOLLOUT.bits() as u32
    | EpollFlags::EPOLLRDHUP.bits() as u32
    | ALWAYS_REPORTED_BITS;

/// Bits that every registration receives whatever it asked for.
pub const ALWAYS_REPORTED_BITS: u32 =
    EpollFlags::EPOLLERR.bits() as u32 | EpollFlags::EPOLLHUP.bits() as u32;

/// Mode flags that are accepted and ignored, because every registration is
/// one-shot.
pub const IGNORED_MODE_BITS: u32 =
    EpollFlags::EPOLLET.bits() as u32 | EpollFlags::EPOLLONESHOT.bits() as u32;

const EPOLLIN: u32 = EpollFlags::EPOLLIN.bits() as u32;
const EPOLLPRI: u32 = EpollFlags::EPOLLPRI.bits() as u32;
const EPOLLOUT: u32 = EpollFlags::EPOLLOUT.bits() as u32;
const EPOLLRDHUP: u32 = EpollFlags::EPOLLRDHUP.bits() as u32;
const EPOLLHUP: u32 = EpollFlags::EPOLLHUP.bits() as u32;
const EPOLLERR: u32 = EpollFlags::EPOLLERR.bits() as u32;

/// The outcome delivered once to a registration. The discriminants match the
/// C enum `COMPLETION_PORT_EPOLL_ACTION`, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Action {
    /// The peer closed its side (`EPOLLRDHUP` or `EPOLLHUP`) and nothing is
    /// left to read.
    EpollRdHup = 0,
    /// Readable (`EPOLLIN` or `EPOLLPRI`), including data that arrived before
    /// a FIN.
    EpollIn = 1,
    /// Writable (`EPOLLOUT`).
    EpollOut = 2,
    /// The registration ended without readiness: remove, cancel, the last
    /// `dec_ref`, or the file behind its fd was closed.
    Abandoned = 3,
    /// `EPOLLERR` alone, for example a pipe whose read end closed or a UDP
    /// socket after an ICMP error. `SO_ERROR` contains the cause.
    Error = 4,
}

/// Maps the events reported for an fd to the action of one registration that
/// asked for `interest`, or `None` when the event does not concern it.
///
/// Only the bits the registration asked for, plus `EPOLLERR` and `EPOLLHUP`,
/// count. Readable wins over writable, which wins over hang-up, which wins
/// over error, so data that arrived before a FIN is reported as `EpollIn` and
/// can still be read.
pub fn map_events(reported: u32, interest: u32) -> Option<Action> {
    let relevant = reported & (interest | ALWAYS_REPORTED_BITS);
    if relevant & (EPOLLIN | EPOLLPRI) != 0 {
        Some(Action::EpollIn)
    } else if relevant & EPOLLOUT != 0 {
        Some(Action::EpollOut)
    } else if relevant & (EPOLLRDHUP | EPOLLHUP) != 0 {
        Some(Action::EpollRdHup)
    } else if relevant & EPOLLERR != 0 {
        Some(Action::Error)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_wins_over_hangup() {
        let reported = EPOLLIN | EPOLLRDHUP | EPOLLHUP;
        assert_eq!(
            map_events(reported, EPOLLIN | EPOLLRDHUP),
            Some(Action::EpollIn)
        );
    }

    #[test]
    fn priority_data_maps_to_readable() {
        assert_eq!(map_events(EPOLLPRI, EPOLLPRI), Some(Action::EpollIn));
    }

    #[test]
    fn writable_wins_over_error() {
        assert_eq!(
            map_events(EPOLLOUT | EPOLLERR, EPOLLOUT),
            Some(Action::EpollOut)
        );
    }

    #[test]
    fn rdhup_without_data_maps_to_rdhup() {
        assert_eq!(map_events(EPOLLRDHUP, EPOLLRDHUP), Some(Action::EpollRdHup));
        assert_eq!(map_events(EPOLLHUP, EPOLLIN), Some(Action::EpollRdHup));
    }

    #[test]
    fn error_alone_maps_to_error() {
        assert_eq!(map_events(EPOLLERR, EPOLLOUT), Some(Action::Error));
        assert_eq!(map_events(EPOLLERR, EPOLLIN), Some(Action::Error));
    }

    #[test]
    fn bits_not_asked_for_are_ignored() {
        assert_eq!(map_events(EPOLLOUT, EPOLLIN), None);
        assert_eq!(map_events(EPOLLIN, EPOLLOUT), None);
        assert_eq!(map_events(EPOLLRDHUP, EPOLLIN), None);
    }

    #[test]
    fn error_and_hangup_reach_every_interest() {
        assert_eq!(
            map_events(EPOLLIN | EPOLLHUP, EPOLLOUT),
            Some(Action::EpollRdHup)
        );
        assert_eq!(
            map_events(EPOLLIN | EPOLLERR, EPOLLOUT),
            Some(Action::Error)
        );
    }
}
