//! S3 client: SigV4 signing, XML bodies, retries, provider profiles. Knows nothing of files.

pub mod client;
pub mod cred_sources;
pub mod credentials;
pub mod error;
mod list_scan;
pub mod payload;
pub mod profile;
mod proxy;
pub mod sigv4;
pub mod sso;
pub mod stats;
pub mod sts;
pub(crate) mod time;
mod transport;
pub mod types;
mod wire;
pub mod xml;

pub use client::{S3Client, S3Config};
pub use credentials::{CredentialSource, Credentials, SharedCredentials, StaticCredentials};
pub use error::S3Error;
pub use payload::Payload;
pub use profile::{EtagStyle, Profile, Provider};
pub use stats::StatsSnapshot;
pub use types::*;
