//! S3 client: SigV4 signing, XML bodies, retries, provider profiles. Knows nothing of files.

pub mod client;
pub mod credentials;
pub mod error;
pub mod profile;
pub mod sigv4;
pub mod types;
pub mod xml;

pub use client::{S3Client, S3Config};
pub use credentials::{CredentialSource, Credentials, SharedCredentials, StaticCredentials};
pub use error::S3Error;
pub use types::*;
