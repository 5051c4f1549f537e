//! An epoll completion port: register a one-shot interest in a file
//! descriptor and receive exactly one completion for it, with readiness or
//! abandoned.
//!
//! A [`CompletionPort`] owns an epoll instance and a worker thread that waits
//! in `epoll_wait` (2 s timeout, woken at once by an eventfd on shutdown). The
//! worker only collects events and notifies a [`Listener`]; the owner turns
//! them into [`Completion`]s with [`CompletionPort::take_completions`] on its
//! own thread. This crate has no JavaScript types; the Node.js binding builds
//! on it.

mod action;
mod error;
mod port;
mod registry;
mod worker;

pub use action::{map_events, Action};
pub use error::{describe_errno, AddError, ClosedError, SystemError};
pub use port::{CompletionPort, BACKGROUND_CLOSE_MIN_FDS};
pub use registry::{Completion, RegistrationId};
pub use worker::{Listener, CLOSE_THREAD_NAME, WAIT_TIMEOUT_MS, WORKER_THREAD_NAME};
