//! Node.js binding of the completion port. The public JavaScript API in
//! `index.js` wraps [`NativePort`] and owns the callbacks; this crate moves
//! registrations and completions across the boundary.

mod cleanup_hook;
pub mod constants;
mod native_port;
mod notifier;
mod sync;
mod system_error;

pub use native_port::NativePort;
