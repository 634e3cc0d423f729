//! The one place where S3 failures become errno values, and where failed operations are logged.

use std::fmt;

use crate::s3::S3Error;

/// A failed filesystem operation: the errno the caller sees, and why.
#[derive(Debug, Clone)]
pub struct FsError {
    pub errno: i32,
    pub reason: String,
    /// S3 error code, HTTP status and request id behind it, when an S3 request failed.
    pub s3: Option<S3Failure>,
}

/// What S3 said, kept for the log line.
#[derive(Debug, Clone)]
pub struct S3Failure {
    pub code: String,
    pub status: Option<u16>,
    pub request_id: Option<String>,
}

impl FsError {
    /// A failure of the staging area (the cache dir's files).
    pub fn staging(e: std::io::Error) -> FsError {
        FsError::new(libc::EIO, format!("cache dir: {e}"))
    }

    pub fn new(errno: i32, reason: impl Into<String>) -> FsError {
        FsError {
            errno,
            reason: reason.into(),
            s3: None,
        }
    }
    pub fn not_found() -> FsError {
        FsError::new(libc::ENOENT, "no such file or directory")
    }

    /// Map an S3 error on `key` to an errno. Access denied → EACCES, missing → ENOENT,
    /// changed underneath (412) → ESTALE, everything else (5xx after retries, network) → EIO.
    pub fn from_s3(err: &S3Error, key: &str) -> FsError {
        let errno = if err.is_not_found() {
            libc::ENOENT
        } else if err.is_access_denied() {
            libc::EACCES
        } else if err.is_precondition_failed() {
            libc::ESTALE
        } else if err.code() == Some("EntityTooLarge") {
            libc::EFBIG
        } else if err.code() == Some("InvalidObjectState") {
            // e.g. archived (GLACIER) objects that must be restored first
            libc::EAGAIN
        } else {
            libc::EIO
        };
        FsError {
            errno,
            reason: format!("{err} (key {key:?})"),
            s3: Some(S3Failure {
                code: err.code().unwrap_or("-").to_string(),
                status: err.status(),
                request_id: err.request_id().map(str::to_string),
            }),
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)
    }
}

impl std::error::Error for FsError {}

pub type FsResult<T> = Result<T, FsError>;

/// Log one line for a failed operation: operation, path, errno, and the S3 error behind it.
/// ENOENT from lookup is normal and logged at debug only.
pub fn log_failure(op: &str, path: impl FnOnce() -> String, err: &FsError) {
    let errno_name = errno_name(err.errno);
    match (&err.s3, err.errno) {
        (_, libc::ENOENT) if op == "lookup" || op == "getattr" => {
            // the commonest answer of all (a shell's PATH search, a build's probes): the path,
            // which takes the inode lock to make, only when it is shown
            if tracing::enabled!(tracing::Level::DEBUG) {
                let path = path();
                tracing::debug!(op, path, errno = errno_name, "{}", err.reason)
            }
        }
        (Some(s3), _) => tracing::warn!(
            op,
            path = path(),
            errno = errno_name,
            s3_code = %s3.code,
            http_status = s3.status.unwrap_or(0),
            request_id = s3.request_id.as_deref().unwrap_or("-"),
            "{}",
            err.reason
        ),
        (None, _) => tracing::info!(op, path = path(), errno = errno_name, "{}", err.reason),
    }
}

/// Symbolic name of the errno values this filesystem returns.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::EROFS => "EROFS",
        libc::EBUSY => "EBUSY",
        libc::ESTALE => "ESTALE",
        libc::EFBIG => "EFBIG",
        libc::ENOTSUP => "ENOTSUP",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOSPC => "ENOSPC",
        libc::ENODATA => "ENODATA",
        libc::ERANGE => "ERANGE",
        libc::EXDEV => "EXDEV",
        _ => "E?",
    }
}
