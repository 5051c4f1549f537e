//! The napi class behind `CompletionPort` in `index.js`, and the
//! threadsafe function that hands completions to JavaScript.
//!
//! Completions cross to JavaScript as one `Float64Array` per batch, three
//! numbers per completion: registration id, action, event mask. The worker
//! thread never builds them: it queues raw events and calls the threadsafe
//! function, whose callback takes the completions on the JavaScript thread
//! and passes the batch to the dispatch function given to the constructor.

use std::mem;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use completion_port_core::{
    AddError, Completion, CompletionPort, Listener, RegistrationId, SystemError,
};
use napi::bindgen_prelude::{
    Float64Array, FnArgs, Function, JsObjectValue, Object, ObjectFinalize, Result, Status, Unknown,
};
use napi::threadsafe_function::{
    ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};
use napi::{sys, CleanupEnvHook, Env};
use napi_derive::napi;
use nix::errno::Errno;

use crate::system_error::{throw_error, throw_system_error, ErrorKind};

/// Calls the JavaScript dispatch function with one batch. It starts
/// unreferenced (`Weak`), so it keeps the event loop alive only while
/// registrations are pending.
type DispatchFunction = ThreadsafeFunction<(), Unknown<'static>, Float64Array, Status, false, true>;

/// Numbers per completion in a batch: id, action, events.
const BATCH_STRIDE: usize = 3;

const CLOSED_CODE: &str = "ERR_COMPLETION_PORT_CLOSED";

/// Everything the class and the threadsafe function's callback share. Only
/// the JavaScript thread locks it; the worker thread never does, so closing
/// the port while holding the lock cannot deadlock with the worker.
struct PortState {
    port: CompletionPort,
    /// `None` once the port is closed. The callback of this function holds
    /// the state, so dropping it here breaks that cycle.
    dispatch: Option<Arc<DispatchFunction>>,
    /// Whether `dispatch` currently keeps the event loop alive.
    referenced: bool,
    notifier: Arc<Notifier>,
}

type SharedState = Arc<Mutex<PortState>>;

fn lock(state: &SharedState) -> MutexGuard<'_, PortState> {
    lock_mutex(state)
}

fn lock_mutex<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent if a panic unwound while it was locked: each
    // operation on it completes or changes nothing.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PortState {
    /// Takes every decided completion as a batch for JavaScript.
    fn take_batch(&mut self, env: &Env) -> Float64Array {
        let mut completions = Vec::new();
        self.port.take_completions(&mut completions);
        self.update_keep_alive(env);
        Float64Array::new(encode_batch(&completions))
    }

    /// References the threadsafe function while registrations are pending,
    /// so that they keep the process alive, and unreferences it otherwise.
    fn update_keep_alive(&mut self, env: &Env) {
        let Some(dispatch) = &self.dispatch else {
            return;
        };
        let should_reference = self.port.pending_count() > 0;
        if should_reference == self.referenced {
            return;
        }
        // SAFETY: `env` is the environment that created the threadsafe
        // function, and this runs on its JavaScript thread. The function is
        // not released while `self.dispatch` holds it.
        let status = unsafe {
            if should_reference {
                sys::napi_ref_threadsafe_function(env.raw(), dispatch.raw())
            } else {
                sys::napi_unref_threadsafe_function(env.raw(), dispatch.raw())
            }
        };
        if status == sys::Status::napi_ok {
            self.referenced = should_reference;
        }
    }

    /// Closes the port and releases the threadsafe function. Abandoned
    /// registrations stay queued for the next `take`.
    fn close(&mut self) {
        self.port.close();
        lock_mutex(&self.notifier.dispatch).take();
        self.dispatch = None;
        self.referenced = false;
    }
}

fn encode_batch(completions: &[Completion]) -> Vec<f64> {
    let mut batch = Vec::with_capacity(completions.len() * BATCH_STRIDE);
    for completion in completions {
        batch.push(completion.id as f64);
        batch.push(f64::from(completion.action as u8));
        batch.push(f64::from(completion.events));
    }
    batch
}

/// Wakes JavaScript from the worker thread when events are queued or
/// `epoll_wait` failed.
#[derive(Default)]
struct Notifier {
    /// Cleared when the port closes, because the threadsafe function's
    /// callback holds this notifier.
    dispatch: Mutex<Option<Arc<DispatchFunction>>>,
    /// `epoll_wait` errors not yet reported as process warnings.
    wait_errors: Mutex<Vec<Errno>>,
}

impl Notifier {
    fn wake_javascript(&self) {
        if let Some(dispatch) = lock_mutex(&self.dispatch).as_ref() {
            // Non-blocking: the queue is unbounded, and `Closing` only means
            // the environment is shutting down, when nothing is left to do.
            dispatch.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    /// Emits a process warning for each `epoll_wait` error reported since
    /// the last call. `process.on('warning')` and `--no-warnings` apply.
    fn report_wait_errors(&self, env: &Env) {
        let errors = mem::take(&mut *lock_mutex(&self.wait_errors));
        for errno in errors {
            let message = format!(
                "epoll_wait failed: {errno:?} ({}); the completion port's worker thread keeps waiting",
                errno.desc()
            );
            if emit_warning(env, &message).is_err() {
                eprintln!("completion-port: {message}");
            }
        }
    }
}

impl Listener for Notifier {
    fn events_queued(&self) {
        self.wake_javascript();
    }

    // NOTE: no test reaches this path, because epoll_wait fails only on a
    // closed or invalid epoll fd or a bad buffer, which the port never passes.
    fn wait_failed(&self, errno: Errno) {
        lock_mutex(&self.wait_errors).push(errno);
        self.wake_javascript();
    }
}

fn emit_warning(env: &Env, message: &str) -> Result<()> {
    let process: Object = env.get_global()?.get_named_property("process")?;
    let emit: Function<'_, FnArgs<(&str, &str)>, Unknown<'_>> =
        process.get_named_property("emitWarning")?;
    emit.call(FnArgs::from((message, "CompletionPortWarning")))?;
    Ok(())
}

/// Native half of `CompletionPort`. JavaScript code uses it through
/// `index.js`, which validates argument types and owns the callbacks.
#[napi(custom_finalize)]
pub struct NativePort {
    state: SharedState,
    /// Closes the port if the environment shuts down first, for example a
    /// worker thread that terminates. Removed when the port closes.
    cleanup_hook: Option<CleanupEnvHook<SharedState>>,
}

#[napi]
impl NativePort {
    /// Creates the port and its worker thread. `dispatch` receives each
    /// batch of completions.
    #[napi(constructor, ts_args_type = "dispatch: (batch: Float64Array) => void")]
    pub fn new(env: Env, dispatch: Function<'_, Float64Array, Unknown<'static>>) -> Result<Self> {
        let notifier = Arc::new(Notifier::default());
        let port = CompletionPort::new(Arc::clone(&notifier) as Arc<dyn Listener>)
            .map_err(|error| throw_create_error(&env, error))?;

        let state = Arc::new(Mutex::new(PortState {
            port,
            dispatch: None,
            referenced: false,
            notifier: Arc::clone(&notifier),
        }));
        let callback_state = Arc::clone(&state);
        let dispatch: Arc<DispatchFunction> = Arc::new(
            dispatch
                .build_threadsafe_function::<()>()
                .callee_handled::<false>()
                .weak::<true>()
                .build_callback(move |context: ThreadsafeCallContext<()>| {
                    let mut state = lock(&callback_state);
                    let batch = state.take_batch(&context.env);
                    let notifier = Arc::clone(&state.notifier);
                    drop(state);
                    notifier.report_wait_errors(&context.env);
                    Ok(batch)
                })?,
        );

        // No event can be queued before the first add, so the notifier gets
        // its function before the worker could need it.
        *lock_mutex(&notifier.dispatch) = Some(Arc::clone(&dispatch));
        lock(&state).dispatch = Some(dispatch);

        let cleanup_hook = env.add_env_cleanup_hook(Arc::clone(&state), |state| {
            lock(&state).close();
        })?;

        Ok(Self {
            state,
            cleanup_hook: Some(cleanup_hook),
        })
    }

    /// Registers `events` on `fd` and returns the registration id.
    #[napi]
    pub fn add(&mut self, env: Env, fd: i32, events: u32) -> Result<f64> {
        let mut state = lock(&self.state);
        let had_ready = state.port.has_ready_completions();
        let id = state
            .port
            .add(fd, events)
            .map_err(|error| throw_add_error(&env, error))?;
        state.update_keep_alive(&env);

        // The add abandoned registrations whose file was closed under the
        // same fd number: deliver them through the dispatch function.
        if !had_ready && state.port.has_ready_completions() {
            if let Some(dispatch) = &state.dispatch {
                dispatch.call((), ThreadsafeFunctionCallMode::NonBlocking);
            }
        }
        Ok(id as f64)
    }

    /// Abandons one pending registration. Returns false if it is not pending.
    #[napi]
    pub fn cancel(&mut self, env: Env, id: f64) -> bool {
        let Some(id) = registration_id(id) else {
            return false;
        };
        let mut state = lock(&self.state);
        let cancelled = state.port.cancel(id);
        state.update_keep_alive(&env);
        cancelled
    }

    /// Removes `fd` and abandons its registrations. Returns whether
    /// completions are waiting for `take`.
    #[napi]
    pub fn remove(&mut self, env: Env, fd: i32) -> bool {
        let mut state = lock(&self.state);
        state.port.remove(fd);
        state.update_keep_alive(&env);
        state.port.has_ready_completions()
    }

    /// Takes every decided completion as a batch.
    #[napi]
    pub fn take(&mut self, env: Env) -> Float64Array {
        lock(&self.state).take_batch(&env)
    }

    #[napi]
    pub fn inc_ref(&mut self, env: Env) -> Result<()> {
        lock(&self.state)
            .port
            .inc_ref()
            .map_err(|error| throw_error(&env, ErrorKind::Error, CLOSED_CODE, &error.to_string()))
    }

    /// Drops a reference; the last one closes the port. Returns whether
    /// completions are waiting for `take`.
    #[napi]
    pub fn dec_ref(&mut self, env: Env) -> Result<bool> {
        let mut state = lock(&self.state);
        if state.port.is_closed() {
            return Ok(false);
        }
        if state.port.dec_ref() {
            state.close();
            drop(state);
            self.remove_cleanup_hook(&env)?;
            state = lock(&self.state);
        }
        Ok(state.port.has_ready_completions())
    }

    #[napi(getter)]
    pub fn ref_count(&self) -> u32 {
        lock(&self.state).port.ref_count() as u32
    }

    #[napi(getter)]
    pub fn pending_count(&self) -> u32 {
        lock(&self.state).port.pending_count() as u32
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        lock(&self.state).port.is_closed()
    }
}

impl NativePort {
    fn remove_cleanup_hook(&mut self, env: &Env) -> Result<()> {
        match self.cleanup_hook.take() {
            Some(hook) => env.remove_env_cleanup_hook(hook),
            None => Ok(()),
        }
    }
}

impl ObjectFinalize for NativePort {
    /// Closes a port that was collected without its last `decRef`. Only
    /// ports with nothing pending can be collected: `index.js` keeps a port
    /// reachable while registrations wait.
    fn finalize(mut self, env: Env) -> Result<()> {
        lock(&self.state).close();
        self.remove_cleanup_hook(&env)
    }
}

/// Converts a JavaScript number to a registration id, or `None` if no
/// registration can have it.
fn registration_id(id: f64) -> Option<RegistrationId> {
    let valid = id.fract() == 0.0 && id >= 1.0 && id <= 2f64.powi(53);
    valid.then_some(id as RegistrationId)
}

fn throw_create_error(env: &Env, error: SystemError) -> napi::Error {
    let message = format!("failed to create the completion port: {error}");
    throw_system_error(env, error.syscall, error.errno, &message)
}

fn throw_add_error(env: &Env, error: AddError) -> napi::Error {
    let message = error.to_string();
    match error {
        AddError::Epoll { errno, .. } => throw_system_error(env, "epoll_ctl", errno, &message),
        AddError::Closed => throw_error(env, ErrorKind::Error, CLOSED_CODE, &message),
        AddError::InvalidFd(_) | AddError::ReservedFd(_) => {
            throw_error(env, ErrorKind::RangeError, "ERR_OUT_OF_RANGE", &message)
        }
        AddError::UnknownEvents { .. } | AddError::Exclusive { .. } | AddError::NoEvents { .. } => {
            throw_error(env, ErrorKind::RangeError, "ERR_OUT_OF_RANGE", &message)
        }
    }
}
