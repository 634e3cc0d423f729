//! An S3 server for bucketfs tests: real HTTP on 127.0.0.1 with SigV4
//! verification (by `s3s`), an in-memory store with S3 listing and
//! multipart semantics, and hooks for tests: direct store access, request
//! counting and logging, byte accounting and fault injection.
//!
//! ```no_run
//! use bucketfs_test_server::{Fault, FaultKind, TestServer};
//!
//! let srv = TestServer::start_blocking();
//! srv.put_object("dir/a.txt", "hello");
//! srv.add_fault(Fault::new(FaultKind::slow_down()).op("GetObject").times(1));
//! // ... point a client at srv.endpoint() with srv.access_key()/srv.secret_key() ...
//! assert_eq!(srv.count("GetObject"), 0);
//! ```
//!
//! [`TestServer::start_tls_blocking`] serves https instead, with a certificate for
//! `127.0.0.1`/`localhost` from a private CA made at start ([`TestServer::ca_pem`]);
//! [`ServerConfig::tls`] takes any certificate (see [`TlsConfig::generate`]).
//!
//! With [`ServerConfig::control_api`] (on in the binary) an unsigned HTTP
//! API under `/__control/` does the same for scripts:
//! `POST /__control/fault?op=GetObject&kind=status&status=503&code=SlowDown&times=1`,
//! `POST /__control/random?probability=0.2&seed=7`, `POST /__control/clear-faults`,
//! `POST /__control/reset-stats`, `POST /__control/min-part-size?bytes=N`,
//! `GET /__control/stats` (JSON). Fault kinds: `status`, `delay&ms=N`, `drop`,
//! `truncate`, `corrupt_request`, `corrupt_response`, `error200&code=..`; filters: `op`, `key_prefix`, `times`, `skip`.

pub mod classify;
mod control;
pub mod faults;
mod front;
pub mod list;
mod s3_impl;
mod server;
mod state;
pub mod store;
mod tls;

pub use faults::{Fault, FaultKind, Gate, RandomFaults};
pub use server::{ServerConfig, TestServer};
pub use state::{Dialect, RequestRecord};
pub use store::{ObjectAttrs, ObjectMeta};
pub use tls::TlsConfig;
