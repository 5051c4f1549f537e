//! The worker thread's way into JavaScript: it calls the threadsafe function
//! when events are queued, and reports `epoll_wait` errors as process
//! warnings.

use std::mem;
use std::sync::Mutex;

use completion_port_core::Listener;
use napi::bindgen_prelude::{FnArgs, Function, JsObjectValue, Object, Result, Unknown};
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::{sys, Env};
use nix::errno::Errno;

use crate::native_port::DispatchFunction;
use crate::sync::lock;

/// Wakes JavaScript from the worker thread when events are queued or
/// `epoll_wait` failed.
#[derive(Default)]
pub struct Notifier {
    /// The only owner of the dispatch function. Cleared when the port
    /// closes, because the function's callback keeps this notifier alive.
    dispatch: Mutex<Option<DispatchFunction>>,
    /// `epoll_wait` errors not yet reported as process warnings.
    wait_errors: Mutex<Vec<Errno>>,
}

impl Notifier {
    pub fn set_dispatch(&self, dispatch: Option<DispatchFunction>) {
        *lock(&self.dispatch) = dispatch;
    }

    /// Queues a call of the dispatch function, from any thread. `overdue`
    /// is passed to it: true when a poll that JavaScript scheduled did not
    /// run in time.
    pub fn wake_javascript(&self, overdue: bool) {
        if let Some(dispatch) = lock(&self.dispatch).as_ref() {
            // Non-blocking: the queue is unbounded, and `Closing` only means
            // the environment is shutting down, when nothing is left to do.
            dispatch.call(overdue, ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    /// References or unreferences the dispatch function, so that it keeps
    /// the event loop alive or not. Returns false if that failed or the port
    /// is closed.
    pub fn set_referenced(&self, env: &Env, referenced: bool) -> bool {
        let dispatch = lock(&self.dispatch);
        let Some(dispatch) = dispatch.as_ref() else {
            return false;
        };
        // SAFETY: `env` is the environment that created the threadsafe
        // function, and this runs on its JavaScript thread. The function is
        // not released while the lock on `self.dispatch` is held.
        let status = unsafe {
            if referenced {
                sys::napi_ref_threadsafe_function(env.raw(), dispatch.raw())
            } else {
                sys::napi_unref_threadsafe_function(env.raw(), dispatch.raw())
            }
        };
        status == sys::Status::napi_ok
    }

    /// Emits a process warning for each `epoll_wait` error reported since
    /// the last call. `process.on('warning')` and `--no-warnings` apply.
    pub fn report_wait_errors(&self, env: &Env) {
        let errors = mem::take(&mut *lock(&self.wait_errors));
        for errno in errors {
            let message = format!(
                "epoll_wait failed: {errno:?} ({}); the completion port's worker thread keeps waiting",
                completion_port_core::describe_errno(errno)
            );
            if emit_warning(env, &message).is_err() {
                eprintln!("completion-port: {message}");
            }
        }
    }
}

impl Listener for Notifier {
    fn events_queued(&self) {
        self.wake_javascript(false);
    }

    fn take_overdue(&self) {
        self.wake_javascript(true);
    }

    fn wait_failed(&self, errno: Errno) {
        lock(&self.wait_errors).push(errno);
        self.wake_javascript(false);
    }
}

fn emit_warning(env: &Env, message: &str) -> Result<()> {
    let process: Object = env.get_global()?.get_named_property("process")?;
    let emit: Function<'_, FnArgs<(&str, &str)>, Unknown<'_>> =
        process.get_named_property("emitWarning")?;
    emit.call(FnArgs::from((message, "CompletionPortWarning")))?;
    Ok(())
}
