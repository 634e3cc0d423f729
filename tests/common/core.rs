//! The filesystem core without a mount, for the core tests: an S3 client for the in-process
//! test server and a `Filesystem` on it.

use std::sync::Arc;
use std::time::Duration;

use bucketfs::config::FsConfig;
use bucketfs::fs::Filesystem;
use bucketfs::s3::{Credentials, S3Client, S3Config, StaticCredentials};
use bucketfs_test_server::TestServer;

/// A client for `srv` that gives up after 3 attempts within 5 s.
pub fn client(srv: &TestServer) -> S3Client {
    let creds = Arc::new(StaticCredentials {
        credentials: Credentials {
            access_key_id: srv.access_key(),
            secret_access_key: srv.secret_key(),
            session_token: None,
        },
        origin: "test".into(),
    });
    let mut cfg = S3Config::new(srv.endpoint(), "us-east-1", srv.bucket(), creds);
    cfg.retry_timeout = Duration::from_secs(5);
    cfg.max_attempts = 3;
    S3Client::new(cfg).expect("client")
}

/// A filesystem core on `srv` with `cfg`.
pub fn fs_with(srv: &TestServer, cfg: FsConfig) -> Arc<Filesystem> {
    Filesystem::new(cfg, client(srv))
}
