//! Access keys used to sign requests, and where the client gets the current ones from.

use std::fmt;
use std::sync::Arc;

/// An access key pair and an optional session token. `Debug` never prints the secret or token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where the client asks for credentials before signing each request.
/// Implementations may reload or refresh them (rotating keys, instance metadata).
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// The credentials to sign the next request with.
    fn current(&self) -> Credentials;
    /// Called once after a 403 that may mean the keys rotated; return true if they changed.
    fn refresh_after_denied(&self) -> bool {
        false
    }
    /// Where these credentials came from, for error messages ("environment", "profile default", …).
    fn describe(&self) -> String;
}

/// Credentials that never change.
#[derive(Debug, Clone)]
pub struct StaticCredentials {
    pub credentials: Credentials,
    pub origin: String,
}

impl CredentialSource for StaticCredentials {
    fn current(&self) -> Credentials {
        self.credentials.clone()
    }
    fn describe(&self) -> String {
        format!(
            "access key {} from {}",
            self.credentials.access_key_id, self.origin
        )
    }
}

/// Shared handle to a credential source.
pub type SharedCredentials = Arc<dyn CredentialSource>;
