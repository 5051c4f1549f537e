//! The napi class behind `CompletionPort` in `index.js`, and the
//! threadsafe function that hands completions to JavaScript.
//!
//! Completions cross to JavaScript through `poll`, which writes a batch into
//! a `Float64Array` that JavaScript owns and reuses: four numbers per
//! completion, registration id, action, event mask and fd. The worker thread
//! never builds them: it queues raw events and calls the threadsafe
//! function, which calls the dispatch function given to the constructor on
//! the JavaScript thread, and that polls. After each batch JavaScript polls
//! again, collecting what is ready on its own thread, until a poll returns
//! nothing.

use std::sync::{Arc, Mutex};

use completion_port_core::{
    AddError, Completion, CompletionPort, Listener, RegistrationId, SystemError,
};
use napi::bindgen_prelude::{Float64ArraySlice, Function, ObjectFinalize, Result, Status, Unknown};
use napi::threadsafe_function::{ThreadsafeCallContext, ThreadsafeFunction};
use napi::Env;
use napi_derive::napi;

use crate::cleanup_hook::CleanupHook;
use crate::notifier::Notifier;
use crate::sync::lock;
use crate::system_error::{throw_error, throw_system_error, ErrorKind};

/// Calls the JavaScript dispatch function, which polls the port. It starts
/// unreferenced (`Weak`), and `update_keep_alive` references it only while
/// registrations are pending or completions wait to be taken.
pub type DispatchFunction = ThreadsafeFunction<bool, Unknown<'static>, bool, Status, false, true>;

/// Numbers per completion in a batch: id, action, events, fd. `index.js`
/// uses the fd to abandon the rest of a batch when a callback removes it.
const BATCH_STRIDE: usize = 4;

const CLOSED_CODE: &str = "ERR_COMPLETION_PORT_CLOSED";

/// Everything the class and the threadsafe function's callback share. Only
/// the JavaScript thread locks it: the worker thread reaches JavaScript
/// through the notifier alone, so closing the port while holding the lock
/// cannot deadlock with the worker.
pub struct PortState {
    port: CompletionPort,
    /// Owner of the dispatch function, shared with the worker thread.
    notifier: Arc<Notifier>,
    /// Whether the dispatch function currently keeps the event loop alive.
    referenced: bool,
    /// Completions taken by a `poll` whose batch array was too small, kept
    /// for the next `poll`, and otherwise an empty reused buffer.
    completions: Vec<Completion>,
}

pub type SharedState = Arc<Mutex<PortState>>;

impl PortState {
    /// Writes every decided completion, and the readiness the kernel reports
    /// now, to `batch`, and returns how many there are. If `batch` is too
    /// small for them, writes nothing and keeps them for the next call.
    /// After a batch that is not empty, the worker reports nothing new until
    /// a poll returns 0.
    fn poll(&mut self, env: &Env, batch: &mut [f64]) -> usize {
        if self.completions.is_empty() {
            self.port.poll_completions(&mut self.completions);
            self.update_keep_alive(env);
        }
        let count = self.completions.len();
        if count * BATCH_STRIDE <= batch.len() {
            encode_batch(&self.completions, batch);
            self.completions.clear();
        }
        count
    }

    /// References the threadsafe function while registrations are pending or
    /// completions wait to be taken, so that they keep the process alive,
    /// and unreferences it otherwise.
    fn update_keep_alive(&mut self, env: &Env) {
        let should_reference = self.port.pending_count() > 0 || self.port.has_ready_completions();
        if should_reference != self.referenced
            && self.notifier.set_referenced(env, should_reference)
        {
            self.referenced = should_reference;
        }
    }

    /// Closes the port and releases the threadsafe function. Abandoned
    /// registrations stay queued for the next `poll`.
    pub fn close(&mut self) {
        self.port.close();
        self.notifier.set_dispatch(None);
        self.referenced = false;
    }
}

fn encode_batch(completions: &[Completion], batch: &mut [f64]) {
    for (completion, slot) in completions.iter().zip(batch.chunks_exact_mut(BATCH_STRIDE)) {
        slot[0] = completion.id as f64;
        slot[1] = f64::from(completion.action as u8);
        slot[2] = f64::from(completion.events);
        slot[3] = f64::from(completion.fd);
    }
}

/// Native half of `CompletionPort`. JavaScript code uses it through
/// `index.js`, which validates argument types and owns the callbacks.
#[napi(custom_finalize)]
pub struct NativePort {
    state: SharedState,
    /// Closes the port if the environment shuts down first, for example a
    /// worker thread that terminates. Removed when the port closes.
    cleanup_hook: Option<CleanupHook>,
}

#[napi]
impl NativePort {
    /// Creates the port and its worker thread. The worker calls `dispatch`
    /// on the JavaScript thread when it has collected events, and
    /// `dispatch` is expected to `poll`. Its argument is true when a poll
    /// that JavaScript scheduled did not run within a whole `epoll_wait`
    /// timeout.
    #[napi(constructor, ts_args_type = "dispatch: (overdue: boolean) => void")]
    pub fn new(env: Env, dispatch: Function<'_, bool, Unknown<'static>>) -> Result<Self> {
        let notifier = Arc::new(Notifier::default());
        let port = CompletionPort::new(Arc::clone(&notifier) as Arc<dyn Listener>)
            .map_err(|error| throw_create_error(&env, error))?;

        let state = Arc::new(Mutex::new(PortState {
            port,
            notifier: Arc::clone(&notifier),
            referenced: false,
            completions: Vec::new(),
        }));
        // Weak: the notifier owns this function.
        let callback_notifier = Arc::downgrade(&notifier);
        let dispatch: DispatchFunction = dispatch
            .build_threadsafe_function::<bool>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |context: ThreadsafeCallContext<bool>| {
                if let Some(notifier) = callback_notifier.upgrade() {
                    notifier.report_wait_errors(&context.env);
                }
                Ok(context.value)
            })?;

        // No event can be queued before the first add, so the notifier gets
        // its function before the worker could need it.
        notifier.set_dispatch(Some(dispatch));

        let cleanup_hook = CleanupHook::add(&env, &state)?;

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
        let result = state.port.add(fd, events);
        state.update_keep_alive(&env);

        // The add abandoned registrations whose file was closed under the
        // same fd number, even if it then failed: deliver them through the
        // dispatch function, which stays referenced until they are taken.
        if !had_ready && state.port.has_ready_completions() {
            state.notifier.wake_javascript(false);
        }
        drop(state);

        let id = result.map_err(|error| throw_add_error(&env, error))?;
        Ok(id as f64)
    }

    /// Records that JavaScript scheduled a poll on a path that fake timers
    /// may hold back. If no poll comes within a whole `epoll_wait` timeout,
    /// the worker calls the dispatch function with `overdue` set.
    #[napi]
    pub fn expect_poll(&self) {
        lock(&self.state).port.expect_take();
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
    /// completions are waiting for `poll`.
    #[napi]
    pub fn remove(&mut self, env: Env, fd: i32) -> bool {
        let mut state = lock(&self.state);
        state.port.remove(fd);
        state.update_keep_alive(&env);
        state.port.has_ready_completions()
    }

    /// Writes every decided completion, and the readiness the kernel reports
    /// now, to `batch` without waiting for the worker thread, and returns
    /// how many there are. If `batch` is too small for them, it writes
    /// nothing, and the next call with a large enough array gets them.
    ///
    /// After a call that returns more than 0, the caller must poll again:
    /// until a poll returns 0, the worker reports nothing new.
    #[napi]
    pub fn poll(&mut self, env: Env, mut batch: Float64ArraySlice<'_>) -> u32 {
        // SAFETY: index.js allocates the array on this thread and never
        // shares its memory with another thread, and JavaScript on this
        // thread is blocked in this call, so nothing else reads or writes it
        // while the slice lives. The slice ends before this returns.
        let batch = unsafe { batch.as_mut() };
        lock(&self.state).poll(&env, batch) as u32
    }

    #[napi]
    pub fn inc_ref(&mut self, env: Env) -> Result<()> {
        lock(&self.state)
            .port
            .inc_ref()
            .map_err(|error| throw_error(&env, ErrorKind::Error, CLOSED_CODE, &error.to_string()))
    }

    /// Drops a reference; the last one closes the port. Returns whether
    /// completions are waiting for `poll`.
    #[napi]
    pub fn dec_ref(&mut self, env: Env) -> Result<bool> {
        let mut state = lock(&self.state);
        if state.port.is_closed() {
            return Ok(false);
        }
        if state.port.dec_ref() {
            state.close();
            drop(state);
            self.remove_cleanup_hook(&env);
            state = lock(&self.state);
        }
        Ok(state.port.has_ready_completions())
    }

    #[napi(getter)]
    pub fn ref_count(&self) -> u32 {
        lock(&self.state).port.ref_count() as u32
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        lock(&self.state).port.is_closed()
    }
}

impl NativePort {
    fn remove_cleanup_hook(&mut self, env: &Env) {
        if let Some(hook) = self.cleanup_hook.take() {
            hook.remove(env);
        }
    }
}

impl ObjectFinalize for NativePort {
    /// Closes a port that was collected without its last `decRef`. Only
    /// ports with nothing pending can be collected: `index.js` keeps a port
    /// reachable while registrations wait.
    fn finalize(mut self, env: Env) -> Result<()> {
        lock(&self.state).close();
        self.remove_cleanup_hook(&env);
        Ok(())
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
