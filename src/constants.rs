//! Epoll flag values exported to JavaScript, taken from the C library so
//! that they match the kernel on every architecture.

use napi_derive::napi;
use nix::sys::epoll::EpollFlags;

const fn bits(flag: EpollFlags) -> u32 {
    flag.bits() as u32
}

#[napi]
pub const EPOLLIN: u32 = bits(EpollFlags::EPOLLIN);
#[napi]
pub const EPOLLPRI: u32 = bits(EpollFlags::EPOLLPRI);
#[napi]
pub const EPOLLOUT: u32 = bits(EpollFlags::EPOLLOUT);
#[napi]
pub const EPOLLERR: u32 = bits(EpollFlags::EPOLLERR);
#[napi]
pub const EPOLLHUP: u32 = bits(EpollFlags::EPOLLHUP);
#[napi]
pub const EPOLLRDHUP: u32 = bits(EpollFlags::EPOLLRDHUP);
#[napi]
pub const EPOLLEXCLUSIVE: u32 = bits(EpollFlags::EPOLLEXCLUSIVE);
#[napi]
pub const EPOLLONESHOT: u32 = bits(EpollFlags::EPOLLONESHOT);
#[napi]
pub const EPOLLET: u32 = bits(EpollFlags::EPOLLET);
