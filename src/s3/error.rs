//! `S3Error`: what can go wrong talking to S3, and how to classify it (retry, not found, …).

use thiserror::Error;

/// An error from the S3 client. `Display` never includes credentials or signatures.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum S3Error {
    /// The server answered with an S3 error (an error status, or an `<Error>` body
    /// inside a 200 response for CompleteMultipartUpload / CopyObject / UploadPartCopy,
    /// or a per-key error of DeleteObjects, where `status` is that response's 200).
    #[error("{}", fmt_service(*status, code, message, request_id.as_deref(), key.as_deref()))]
    Service {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
        /// The object key the request was about, when there was one.
        key: Option<String>,
    },
    /// No usable answer at the HTTP level: connection refused or reset, DNS, TLS, a body
    /// cut short. `connect` is true when the connection could not be set up at all.
    #[error("{}: {message}", if *connect { "cannot connect to S3 endpoint" } else { "S3 connection failed" })]
    Transport { message: String, connect: bool },
    /// The endpoint's TLS certificate was refused: not signed by a trusted CA, made for
    /// another host name, expired, … Not retried: the next attempt gets the same certificate.
    #[error("TLS certificate not accepted: {0}")]
    Certificate(String),
    /// A request attempt made no progress for the configured read timeout.
    #[error("S3 request timed out")]
    Timeout,
    /// The server answered something that could not be understood.
    #[error("invalid S3 response: {0}")]
    InvalidResponse(String),
    /// Bad settings (endpoint, CA bundle, …) or a request this client cannot make.
    #[error("S3 client configuration: {0}")]
    Config(String),
    /// A response body did not match the checksum or MD5 ETag the server gave for it: damaged
    /// in transit. Retried; never served.
    #[error("S3 response body damaged: {0}")]
    Corrupt(String),
}

fn fmt_service(
    status: u16,
    code: &str,
    message: &str,
    request_id: Option<&str>,
    key: Option<&str>,
) -> String {
    let mut s = format!("S3 error {code} (HTTP {status})");
    if let Some(k) = key {
        s.push_str(&format!(" for key {k:?}"));
    }
    if !message.is_empty() {
        s.push_str(": ");
        s.push_str(message);
    }
    if let Some(id) = request_id {
        s.push_str(&format!(" [request id {id}]"));
    }
    s
}

impl S3Error {
    /// A service error from its parts.
    pub fn service(
        status: u16,
        code: impl Into<String>,
        message: impl Into<String>,
        request_id: Option<String>,
        key: Option<&str>,
    ) -> Self {
        S3Error::Service {
            status,
            code: code.into(),
            message: message.into(),
            request_id,
            key: key.map(str::to_owned),
        }
    }

    /// The error code S3 would have sent for a status whose response had no (usable) body,
    /// e.g. any HEAD. `bucket_level` picks `NoSuchBucket` over `NoSuchKey` for a 404.
    pub fn code_for_status(status: u16, bucket_level: bool) -> &'static str {
        match status {
            301 | 307 => "PermanentRedirect",
            304 => "NotModified",
            400 => "BadRequest",
            403 => "AccessDenied",
            404 if bucket_level => "NoSuchBucket",
            404 => "NoSuchKey",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            411 => "MissingContentLength",
            412 => "PreconditionFailed",
            416 => "InvalidRange",
            429 => "TooManyRequests",
            500 => "InternalError",
            501 => "NotImplemented",
            503 => "ServiceUnavailable",
            s if s >= 500 => "InternalError",
            _ => "UnknownError",
        }
    }

    /// A transport error.
    pub fn transport(message: impl Into<String>, connect: bool) -> Self {
        S3Error::Transport {
            message: message.into(),
            connect,
        }
    }

    /// The HTTP status of a service error.
    pub fn status(&self) -> Option<u16> {
        match self {
            S3Error::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The S3 error code (`NoSuchKey`, `SlowDown`, …) of a service error.
    pub fn code(&self) -> Option<&str> {
        match self {
            S3Error::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The request id S3 gave, for support tickets.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            S3Error::Service { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The object does not exist (404 / `NoSuchKey` / `NotFound`). A missing bucket
    /// (`NoSuchBucket`) is not "not found": see [`S3Error::is_no_such_bucket`].
    pub fn is_not_found(&self) -> bool {
        match self {
            S3Error::Service { status, code, .. } => {
                code != "NoSuchBucket"
                    && (*status == 404 || code == "NoSuchKey" || code == "NotFound")
            }
            _ => false,
        }
    }

    /// A condition (If-Match, If-None-Match, copy-source-if-match) did not hold (412),
    /// or a conditional write lost a race (409 `ConditionalRequestConflict`).
    pub fn is_precondition_failed(&self) -> bool {
        match self {
            S3Error::Service { status, code, .. } => {
                *status == 412
                    || code == "PreconditionFailed"
                    || code == "ConditionalRequestConflict"
            }
            _ => false,
        }
    }

    /// Permission denied (403, `AccessDenied`, bad or expired keys, bad signature).
    pub fn is_access_denied(&self) -> bool {
        match self {
            S3Error::Service { status, code, .. } => {
                *status == 403
                    || matches!(
                        code.as_str(),
                        "AccessDenied"
                            | "InvalidAccessKeyId"
                            | "SignatureDoesNotMatch"
                            | "ExpiredToken"
                            | "InvalidToken"
                    )
            }
            _ => false,
        }
    }

    /// The server refuses server-side part copies (UploadPartCopy): 501 / `NotImplemented`
    /// (GDC EV2 buckets, some gateways), `NotSupported`, 405, or a 400 `InvalidRequest`.
    /// The copy can still be done by GET + UploadPart.
    pub fn is_copy_refused(&self) -> bool {
        match self {
            S3Error::Service { status, code, .. } => {
                *status == 501
                    || *status == 405
                    || matches!(
                        code.as_str(),
                        "NotImplemented" | "NotSupported" | "InvalidRequest" | "MethodNotAllowed"
                    )
            }
            _ => false,
        }
    }

    /// The bucket does not exist.
    pub fn is_no_such_bucket(&self) -> bool {
        self.code() == Some("NoSuchBucket")
    }

    /// Worth trying again: 5xx, throttling (503 `SlowDown`, 429), 400 `RequestTimeout`,
    /// `InternalError` (even inside a 200), timeouts and transport failures.
    /// Never any other 4xx.
    /// Whether the request may have been carried out although this error came back: the
    /// answer was lost or cut (after the request was sent), the server failed (5xx, but not a
    /// 503 `SlowDown`/`ServiceUnavailable`, which S3 sends for a request it turned away), or a
    /// retried CompleteMultipartUpload found its upload already gone.
    pub fn may_have_been_applied(&self) -> bool {
        match self {
            S3Error::Transport { connect, .. } => !connect,
            S3Error::Timeout | S3Error::InvalidResponse(_) => true,
            S3Error::Service {
                status: 503, code, ..
            } if code == "SlowDown" || code == "ServiceUnavailable" => false,
            S3Error::Service { status, code, .. } => *status >= 500 || code == "NoSuchUpload",
            S3Error::Certificate(_) | S3Error::Config(_) | S3Error::Corrupt(_) => false,
        }
    }

    /// The server refused a request body that did not match its checksum: `Content-MD5` or
    /// `x-amz-checksum-*` (`BadDigest`), or the signed SHA-256 (`XAmzContentSHA256Mismatch`).
    pub fn body_damaged(&self) -> bool {
        matches!(self.code(), Some("BadDigest" | "XAmzContentSHA256Mismatch"))
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            S3Error::Service { status, code, .. } => match *status {
                // 501 NotImplemented is an answer, not a hiccup: the same request fails again.
                501 => false,
                500.. | 429 => code != "NotImplemented",
                // Any other 4xx: never, except S3's `RequestTimeout` (400) and a body
                // damaged on the way (the same bytes sent again arrive whole).
                400..=499 => code == "RequestTimeout" || self.body_damaged(),
                // A 200 carrying an `<Error>` body, or a per-key DeleteObjects error.
                _ => matches!(
                    code.as_str(),
                    "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"
                ),
            },
            S3Error::Timeout | S3Error::Transport { .. } | S3Error::Corrupt(_) => true,
            S3Error::InvalidResponse(_) | S3Error::Config(_) | S3Error::Certificate(_) => false,
        }
    }

    /// The endpoint could not be reached at all (connection refused, DNS, TLS handshake;
    /// a refused certificate is [`S3Error::Certificate`] instead).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, S3Error::Transport { connect: true, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(status: u16, code: &str) -> S3Error {
        S3Error::service(status, code, "m", Some("RID".into()), Some("k"))
    }

    #[test]
    fn retry_classification() {
        assert!(svc(500, "InternalError").is_retryable());
        assert!(svc(502, "BadGateway").is_retryable());
        assert!(svc(503, "SlowDown").is_retryable());
        assert!(svc(503, "ServiceUnavailable").is_retryable());
        assert!(svc(400, "RequestTimeout").is_retryable());
        assert!(svc(400, "BadDigest").is_retryable());
        assert!(svc(400, "XAmzContentSHA256Mismatch").is_retryable());
        assert!(S3Error::Corrupt("md5".into()).is_retryable());
        assert!(svc(429, "TooManyRequests").is_retryable());
        assert!(svc(200, "InternalError").is_retryable());
        assert!(svc(200, "SlowDown").is_retryable());
        assert!(S3Error::Timeout.is_retryable());
        assert!(S3Error::transport("reset", false).is_retryable());
        assert!(S3Error::transport("refused", true).is_retryable());

        assert!(!svc(400, "InvalidArgument").is_retryable());
        assert!(!svc(400, "InternalError").is_retryable());
        assert!(!svc(403, "AccessDenied").is_retryable());
        assert!(!svc(404, "NoSuchKey").is_retryable());
        assert!(!svc(409, "OperationAborted").is_retryable());
        assert!(!svc(412, "PreconditionFailed").is_retryable());
        assert!(!svc(416, "InvalidRange").is_retryable());
        assert!(!svc(200, "NoSuchUpload").is_retryable());
        assert!(!S3Error::InvalidResponse("x".into()).is_retryable());
        assert!(!S3Error::Config("x".into()).is_retryable());
        assert!(!S3Error::Certificate("x".into()).is_retryable());
    }

    #[test]
    fn predicates() {
        assert!(svc(404, "NoSuchKey").is_not_found());
        assert!(svc(404, "NotFound").is_not_found());
        assert!(svc(200, "NoSuchKey").is_not_found());
        assert!(!svc(404, "NoSuchBucket").is_not_found());
        assert!(svc(404, "NoSuchBucket").is_no_such_bucket());
        assert!(svc(412, "PreconditionFailed").is_precondition_failed());
        assert!(svc(403, "AccessDenied").is_access_denied());
        assert!(svc(403, "SignatureDoesNotMatch").is_access_denied());
        assert!(svc(200, "AccessDenied").is_access_denied());
        assert!(!svc(404, "NoSuchKey").is_access_denied());
        assert!(S3Error::transport("x", true).is_unreachable());
        assert!(!S3Error::transport("x", false).is_unreachable());
        assert!(!S3Error::Timeout.is_unreachable());
        let e = svc(404, "NoSuchKey");
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.code(), Some("NoSuchKey"));
        assert_eq!(e.request_id(), Some("RID"));
        assert_eq!(S3Error::Timeout.status(), None);
    }

    #[test]
    fn display() {
        let e = svc(404, "NoSuchKey");
        assert_eq!(
            e.to_string(),
            "S3 error NoSuchKey (HTTP 404) for key \"k\": m [request id RID]"
        );
        assert_eq!(
            S3Error::transport("connection refused", true).to_string(),
            "cannot connect to S3 endpoint: connection refused"
        );
        assert_eq!(S3Error::code_for_status(404, true), "NoSuchBucket");
        assert_eq!(S3Error::code_for_status(404, false), "NoSuchKey");
        assert_eq!(S3Error::code_for_status(503, false), "ServiceUnavailable");
    }
}
