//! An environment cleanup hook that closes a port when its environment shuts
//! down first, for example a worker thread that terminates.
//!
//! napi-rs 3.16's `Env::add_env_cleanup_hook` never frees the data of a hook
//! that is removed, which would keep every closed port's state alive, so this
//! module owns the data itself.

use std::cell::Cell;
use std::ffi::c_void;
use std::rc::Rc;

use napi::{sys, Env, Error, Result, Status};

use crate::native_port::SharedState;
use crate::sync::lock;

/// The data of one hook, shared by Node's hook list and [`CleanupHook`].
/// Only the JavaScript thread of the environment touches it.
struct HookData {
    state: SharedState,
    /// Whether Node ran the hook, which releases the reference Node held.
    ran: Cell<bool>,
}

/// A registered hook. At environment teardown Node may run the hook and
/// then finalize the port, which calls [`remove`](Self::remove), in that
/// order, so both paths must agree on who frees the data.
pub struct CleanupHook {
    data: Rc<HookData>,
}

impl CleanupHook {
    pub fn add(env: &Env, state: &SharedState) -> Result<Self> {
        let data = Rc::new(HookData {
            state: SharedState::clone(state),
            ran: Cell::new(false),
        });
        // Node's hook list holds one reference, released by `close_port` or
        // by `remove`.
        let node_reference = Rc::into_raw(Rc::clone(&data));
        // SAFETY: `env` is the current environment, and the pointer stays
        // valid while Node's reference is not released.
        let status = unsafe {
            sys::napi_add_env_cleanup_hook(
                env.raw(),
                Some(close_port),
                node_reference.cast_mut().cast(),
            )
        };
        if status != sys::Status::napi_ok {
            // SAFETY: the hook was not registered, so the reference is unused.
            drop(unsafe { Rc::from_raw(node_reference) });
            return Err(Error::new(
                Status::from(status),
                "failed to add the environment cleanup hook",
            ));
        }
        Ok(Self { data })
    }

    /// Unregisters the hook, unless it already ran.
    pub fn remove(self, env: &Env) {
        if self.data.ran.get() {
            return;
        }
        let node_reference = Rc::as_ptr(&self.data);
        // SAFETY: the hook was registered with exactly this function and
        // pointer in the same environment, and it has not run.
        let status = unsafe {
            sys::napi_remove_env_cleanup_hook(
                env.raw(),
                Some(close_port),
                node_reference.cast_mut().cast(),
            )
        };
        if status == sys::Status::napi_ok {
            // SAFETY: Node no longer holds the hook, so its reference, taken
            // in `add`, is released here once.
            drop(unsafe { Rc::from_raw(node_reference) });
        }
    }
}

unsafe extern "C" fn close_port(data: *mut c_void) {
    // SAFETY: `data` is the reference that `CleanupHook::add` gave to Node.
    // Node runs a hook at most once and only while it is registered, and
    // `remove` does nothing after this sets `ran`.
    let data = unsafe { Rc::from_raw(data.cast_const().cast::<HookData>()) };
    data.ran.set(true);
    lock(&data.state).close();
}
