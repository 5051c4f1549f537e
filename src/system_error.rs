//! JavaScript errors shaped like Node's own system errors.

use napi::bindgen_prelude::{Error, JsObjectValue, Object, Result, Status};
use napi::Env;
use nix::errno::Errno;

/// Throws an `Error` with `code` (such as `EBADF`), `errno` (negative, as
/// Node reports it) and `syscall`, the properties Node sets on its own
/// system errors. Returns the error that marks the exception as already
/// pending for napi-rs.
pub fn throw_system_error(env: &Env, syscall: &str, errno: Errno, message: &str) -> Error {
    match create_system_error(env, syscall, errno, message) {
        Ok(error) => match env.throw(error) {
            Ok(()) => Error::from_status(Status::PendingException),
            Err(error) => error,
        },
        Err(error) => error,
    }
}

fn create_system_error<'env>(
    env: &'env Env,
    syscall: &str,
    errno: Errno,
    message: &str,
) -> Result<Object<'env>> {
    let mut error = env.create_error(Error::new(Status::GenericFailure, message))?;
    error.set_named_property("code", format!("{errno:?}"))?;
    error.set_named_property("errno", -(errno as i32))?;
    error.set_named_property("syscall", syscall)?;
    Ok(error)
}

/// Throws an error of the given JavaScript class with a Node-style `code`.
pub fn throw_error(env: &Env, kind: ErrorKind, code: &str, message: &str) -> Error {
    let thrown = match kind {
        ErrorKind::Error => env.throw_error(message, Some(code)),
        ErrorKind::RangeError => env.throw_range_error(message, Some(code)),
    };
    match thrown {
        Ok(()) => Error::from_status(Status::PendingException),
        Err(error) => error,
    }
}

/// The JavaScript class of a thrown error.
#[derive(Clone, Copy)]
pub enum ErrorKind {
    Error,
    RangeError,
}
