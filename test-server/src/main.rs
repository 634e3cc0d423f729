//! `bucketfs-test-server`: runs the in-memory S3 test server until killed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use bucketfs_test_server::{ServerConfig, TestServer};
use clap::Parser;

/// In-memory S3 server (SigV4-verifying) for bucketfs demos and benchmarks.
#[derive(Debug, Parser)]
#[command(version)]
struct Opt {
    /// Address to bind (loopback unless you say otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Bucket to create.
    #[arg(long, default_value = "test-bucket")]
    bucket: String,
    #[arg(long, default_value = "AKIATEST")]
    access_key: String,
    #[arg(long, default_value = "testsecret")]
    secret_key: String,
    /// Upload the files under this directory as objects at start
    /// (key = path relative to DIR, with `/` separators).
    #[arg(long, value_name = "DIR")]
    seed_dir: Option<PathBuf>,
    /// Minimum size in bytes of non-last multipart parts.
    #[arg(long, default_value_t = 5 * 1024 * 1024)]
    min_part_size: u64,
    /// Accept unsigned requests too.
    #[arg(long)]
    allow_anonymous: bool,
    /// Do not serve the unsigned `/__control/` API (faults, stats).
    #[arg(long)]
    no_control_api: bool,
}

fn seed(srv: &TestServer, root: &Path, dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            n += seed(srv, root, &path)?;
        } else if ft.is_file() {
            let rel = path.strip_prefix(root).expect("under root");
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            srv.put_object(&key, std::fs::read(&path)?);
            n += 1;
        }
    }
    Ok(n)
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            // s3s logs every 4xx as an error; keep that quiet unless asked.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let opt = Opt::parse();
    let config = ServerConfig {
        host: opt.host,
        port: opt.port,
        bucket: opt.bucket.clone(),
        access_key: opt.access_key,
        secret_key: opt.secret_key,
        min_part_size: opt.min_part_size,
        allow_anonymous: opt.allow_anonymous,
        control_api: !opt.no_control_api,
        ..ServerConfig::default()
    };
    let srv = match TestServer::try_start(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bucketfs-test-server: cannot start: {e}");
            std::process::exit(1);
        }
    };
    if let Some(dir) = &opt.seed_dir {
        match seed(&srv, dir, dir) {
            Ok(n) => eprintln!("seeded {n} objects from {}", dir.display()),
            Err(e) => {
                eprintln!("bucketfs-test-server: seeding from {}: {e}", dir.display());
                std::process::exit(1);
            }
        }
    }
    println!("listening on {} bucket={}", srv.endpoint(), opt.bucket);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
