//! The bucketfs command: parse, detach, check, mount, serve, and on a signal unmount cleanly.
//!
//! Start-up failures print one line on stderr saying what is wrong and what to do, exit 1.
//! Without `--foreground` the process re-executes itself with `--foreground` in a new session
//! and waits on a pipe (`BUCKETFS_READY_FD`) for the child to say `OK` or `ERR <line>`.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as ProcessCommand, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{debug, error, info, warn, Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use bucketfs::config::cli::{self, CleanupArgs, Command, ConnectionSettings, MountPlan, StatsArgs};
use bucketfs::config::credentials::{self, ProcessEnv};
use bucketfs::config::stats_view;
use bucketfs::s3::{ListRequest, S3Client, S3Error, SharedCredentials};
use bucketfs::{fs, fuse};

/// Names the write end of the readiness pipe in a daemon child.
const READY_FD_ENV: &str = "BUCKETFS_READY_FD";

fn main() -> ExitCode {
    limit_allocator_growth();
    let parsed = match cli::parse_args(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    match parsed.cli.command {
        Command::Mount(args) => {
            let plan = match args.plan() {
                Ok(plan) => plan,
                Err(msg) => return fail_line(&msg),
            };
            mount_command(plan, parsed.args, parsed.warnings)
        }
        Command::Cleanup(args) => cleanup_command(&args),
        Command::Stats(args) => stats_command(&args),
    }
}

/// Print `bucketfs: MSG` on stderr (one line) and return exit code 1.
fn fail_line(msg: &str) -> ExitCode {
    eprintln!("bucketfs: {}", one_line(msg));
    ExitCode::from(1)
}

fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// mount

fn mount_command(plan: MountPlan, args: Vec<OsString>, warnings: Vec<String>) -> ExitCode {
    let ready = Ready::from_env();
    let notes = warnings;

    if !plan.daemon.foreground && !ready.is_child() {
        for note in &notes {
            eprintln!("bucketfs: warning: {note}");
        }
        return spawn_daemon(&plan, &args);
    }

    let target = match (&plan.daemon.log_file, ready.is_child()) {
        (Some(path), _) => LogTarget::File(path.clone()),
        (None, true) => LogTarget::Syslog,
        (None, false) => LogTarget::Stderr,
    };
    let mut start = Startup {
        ready,
        stderr_is_log: matches!(target, LogTarget::Stderr),
    };
    if let Err(msg) = init_logging(&target, plan.daemon.debug) {
        return start.fail(&msg);
    }
    for note in &notes {
        warn!("{note}");
    }
    run_foreground(plan, start)
}

/// The start-up phase of the serving process: where failures and readiness are reported.
struct Startup {
    ready: Ready,
    /// Logging goes to stderr (so a failure is printed, not logged as well).
    stderr_is_log: bool,
}

impl Startup {
    fn fail(&mut self, msg: &str) -> ExitCode {
        let msg = one_line(msg);
        if self.ready.is_child() {
            error!("{msg}");
            self.ready.send(&format!("ERR {msg}"));
        } else {
            if !self.stderr_is_log {
                error!("{msg}");
            }
            eprintln!("bucketfs: {msg}");
        }
        ExitCode::from(1)
    }
}

fn run_foreground(plan: MountPlan, mut start: Startup) -> ExitCode {
    let mountpoint = match check_mountpoint(&plan.mount.mountpoint, plan.daemon.nonempty)
        .and_then(|mp| check_fuse_device().map(|()| mp))
    {
        Ok(mp) => mp,
        Err(msg) => return start.fail(&msg),
    };
    if let Some(dir) = &plan.fs.cache_dir {
        if let Err(msg) = check_cache_dir(dir) {
            return start.fail(&msg);
        }
    }
    // held until this daemon exits, after its last upload
    let _mount_lock = lock_mountpoint(&plan, &mountpoint);
    let creds = match credentials::load(&plan.credentials) {
        Ok(c) => c,
        Err(e) => return start.fail(&e.to_string()),
    };
    // --region, else the region the endpoint's host names, else environment and profile
    let region_flag = plan.connection.region.clone().or_else(|| {
        plan.connection
            .endpoint
            .as_deref()
            .and_then(bucketfs::config::values::region_from_endpoint)
    });
    let region = credentials::resolve_region(
        region_flag.as_deref(),
        plan.credentials.profile.as_deref(),
        &ProcessEnv,
    );
    let endpoint = match cli::resolve_endpoint(&plan.connection, &region, &ProcessEnv) {
        Ok(e) => e,
        Err(msg) => return start.fail(&msg),
    };
    let runtime = match build_runtime() {
        Ok(rt) => rt,
        Err(e) => return start.fail(&format!("cannot start the async runtime: {e}")),
    };
    let client = match runtime
        .block_on(async { connect(&plan.connection, &plan.bucket, &endpoint, &region, creds) })
    {
        Ok(c) => c,
        Err(msg) => return start.fail(&msg),
    };
    debug!(
        "checking bucket {} at {endpoint} (region {region}, {})",
        plan.bucket,
        client.describe_credentials()
    );
    if let Err(msg) = runtime.block_on(check_bucket(&client, &plan, &endpoint, &region)) {
        return start.fail(&msg);
    }
    learn_server(&runtime, &client, &plan, &endpoint);

    // Catch SIGTERM/SIGINT before the mount goes live, so none can kill us uncleanly.
    let signals = match runtime.block_on(async { Signals::register(start.ready.is_child()) }) {
        Ok(s) => s,
        Err(e) => return start.fail(&format!("cannot handle signals: {e}")),
    };

    let metrics = match plan.daemon.metrics_addr {
        Some(addr) => match runtime.block_on(bucketfs::metrics::bind(addr)) {
            Ok(l) => Some(l),
            Err(e) => return start.fail(&format!("cannot serve metrics at {addr}: {e}")),
        },
        None => None,
    };

    let filesystem = fs::Filesystem::new(plan.fs.clone(), client);
    let mut options = plan.mount.clone();
    options.mountpoint = mountpoint.clone();
    let session = match fuse::mount(filesystem.clone(), runtime.handle().clone(), &options) {
        Ok(s) => s,
        Err(e) => {
            let hint = mount_hint(&e, &options);
            return start.fail(&format!(
                "cannot mount at {}: {e}{hint}",
                mountpoint.display()
            ));
        }
    };
    start.ready.send("OK");
    info!(
        "mounted {}/{} at {}",
        plan.bucket,
        plan.prefix,
        mountpoint.display()
    );
    if start.ready.is_child() {
        // A daemon must not keep the directory it was started from busy.
        if let Err(e) = std::env::set_current_dir("/") {
            warn!("cannot change directory to /: {e}");
        }
    }

    if let Some(listener) = metrics {
        if let Ok(addr) = listener.local_addr() {
            info!("serving metrics at http://{addr}/metrics");
        }
        runtime.spawn(bucketfs::metrics::serve(listener, filesystem.clone()));
    }
    // Uploads a crashed earlier run left behind: resumed or aborted, off the start-up path.
    let recovering = filesystem.clone();
    runtime.spawn(async move {
        recovering.recover_uploads().await;
    });
    let progress = UploadProgress::new(filesystem.clone(), runtime.handle().clone());
    runtime.spawn(signals.unmount_on_signal(session.unmounter(), progress.clone()));
    if let Err(e) = session.wait() {
        error!("FUSE session ended with an error: {e}");
    }
    info!("unmounted {}", mountpoint.display());
    progress.start();
    let report = runtime.block_on(filesystem.shutdown());
    for name in &report.finished {
        info!("finished pending upload of {name}");
    }
    for (name, reason) in &report.failed {
        error!("UPLOAD FAILED, the data written to {name} is NOT in the bucket: {reason}");
    }
    let stats = filesystem.stats_text();
    if !stats.trim().is_empty() {
        info!("stats at unmount:\n{}", stats.trim_end());
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        error!(
            "{} file(s) could not be uploaded; see the errors above",
            report.failed.len()
        );
        ExitCode::from(1)
    }
}

/// How long a mount waits for the daemon of an earlier mount of the same place to finish.
const MOUNT_LOCK_WAIT: Duration = Duration::from_secs(300);

/// One daemon at a time per mountpoint, bucket and prefix: `umount` returns once the kernel has
/// let go, while the daemon may still be writing deferred changes and uploads; a new mount of
/// the same waits for it (`flock` on a file in the state directory), so `umount && mount` never
/// shows a state older than what was written. `None` when there is nowhere to keep the lock.
fn lock_mountpoint(plan: &MountPlan, mountpoint: &Path) -> Option<File> {
    use std::os::fd::AsRawFd;
    let dir = plan.fs.state_dir()?.join("locks");
    let id = format!("{}\n{}\n{}", mountpoint.display(), plan.bucket, plan.prefix);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(id.as_bytes());
    std::fs::create_dir_all(&dir).ok()?;
    let file = File::create(dir.join(format!("{}.lock", hex::encode(&digest[..8])))).ok()?;
    // SAFETY: flock on a descriptor this File owns.
    let try_lock = || unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 };
    if try_lock() {
        return Some(file);
    }
    info!(
        "waiting for the bucketfs that served {} before to finish its uploads",
        mountpoint.display()
    );
    let deadline = std::time::Instant::now() + MOUNT_LOCK_WAIT;
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        if try_lock() {
            return Some(file);
        }
    }
    warn!(
        "the earlier bucketfs of {} is still running after {}s; mounting anyway",
        mountpoint.display(),
        MOUNT_LOCK_WAIT.as_secs()
    );
    Some(file)
}

/// The staging directory must take files; else one line says why, at mount.
fn check_cache_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            let probe = dir.join(format!(".bucketfs-write-test-{}", std::process::id()));
            std::fs::write(&probe, b"x")?;
            std::fs::remove_file(&probe)
        })
        .map_err(|e| {
            format!(
                "cache dir {} is not writable: {e} (choose another with --cache-dir DIR, or \
                 --cache-dir none to keep parts in memory)",
                dir.display()
            )
        })
}

fn build_runtime() -> io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.max(2))
        .thread_name("bucketfs-rt")
        .enable_all()
        .build()
}

/// Build the S3 client (inside the runtime: the HTTP client may need it).
fn connect(
    conn: &ConnectionSettings,
    bucket: &str,
    endpoint: &str,
    region: &str,
    creds: SharedCredentials,
) -> Result<S3Client, String> {
    let config = cli::s3_config(conn, bucket, endpoint, region, creds);
    S3Client::new(config).map_err(|e| format!("cannot set up the S3 client for {endpoint}: {e}"))
}

/// How long a probe's findings are trusted.
const PROBE_FRESH: Duration = Duration::from_secs(24 * 3600);

/// What the server does where S3 servers differ: the provider profile's answers, or (for a
/// server no profile describes, or `--probe always`) a probe, kept a day per endpoint and
/// bucket in the state directory. A read-only mount writes nothing, so probes nothing. Each
/// guarantee weaker than AWS's is said once in the log.
fn learn_server(
    runtime: &tokio::runtime::Runtime,
    client: &S3Client,
    plan: &MountPlan,
    endpoint: &str,
) {
    use cli::ProbeMode;
    let mode = plan.connection.probe;
    let wanted = match mode {
        ProbeMode::Off => false,
        ProbeMode::Auto => client.profile().probe,
        ProbeMode::Always => true,
    };
    if wanted && !plan.fs.read_only {
        let cache = plan.fs.state_dir().map(|d| {
            let id = hex::encode(format!("{endpoint}/{}/{}", plan.bucket, plan.prefix));
            d.join("probes").join(id)
        });
        let cached = cache
            .as_deref()
            .filter(|_| mode == ProbeMode::Auto)
            .filter(|p| {
                std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < PROBE_FRESH))
            })
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| bucketfs::s3::profile::Capabilities::from_text(&text));
        match cached {
            Some(caps) => {
                debug!("what the server does, as probed earlier: {caps:?}");
                client.set_capabilities(caps);
            }
            None => match runtime.block_on(client.probe(&plan.prefix)) {
                Ok(caps) => {
                    info!(
                        "probed the server: {}",
                        caps.to_text().trim_end().replace('\n', ", ")
                    );
                    client.set_capabilities(caps);
                    if let Some(path) = &cache {
                        let written = path
                            .parent()
                            .map_or(Ok(()), std::fs::create_dir_all)
                            .and_then(|()| std::fs::write(path, caps.to_text()));
                        if let Err(e) = written {
                            debug!("cannot keep the probe's result in {}: {e}", path.display());
                        }
                    }
                }
                Err(e) => warn!(
                    "cannot probe what the server does ({e}); assuming what the {} profile says",
                    client.profile().name
                ),
            },
        }
    }
    if !plan.fs.read_only {
        for line in client.capabilities().weaker_guarantees() {
            warn!("{line}");
        }
    }
}

/// One small listing, to turn bad keys, names and endpoints into one clear line.
async fn check_bucket(
    client: &S3Client,
    plan: &MountPlan,
    endpoint: &str,
    region: &str,
) -> Result<(), String> {
    let request = ListRequest {
        prefix: plan.prefix.clone(),
        max_keys: Some(1),
        ..Default::default()
    };
    match client.list_objects_v2(&request).await {
        Ok(_) => Ok(()),
        Err(e) => Err(describe_s3_error(
            &e,
            client,
            &plan.bucket,
            endpoint,
            region,
        )),
    }
}

fn describe_s3_error(
    e: &S3Error,
    client: &S3Client,
    bucket: &str,
    endpoint: &str,
    region: &str,
) -> String {
    if e.is_access_denied() {
        return format!(
            "access denied by {bucket} at {endpoint} for {}: check the keys",
            client.describe_credentials()
        );
    }
    if e.is_no_such_bucket() {
        return format!(
            "no such bucket {bucket} at {endpoint}: check the bucket name, --endpoint and --region"
        );
    }
    if let S3Error::Certificate(why) = e {
        return format!(
            "TLS certificate of {endpoint} not accepted: {why}: if a private CA signed it, \
             add that CA with --ca-bundle FILE (or AWS_CA_BUNDLE=FILE); check the host name \
             in --endpoint"
        );
    }
    if e.is_unreachable() {
        let why = match e {
            S3Error::Transport { message, .. } => message.clone(),
            other => other.to_string(),
        };
        return format!("cannot reach {endpoint}: {why}: check --endpoint and the network");
    }
    let hint = match e.code() {
        Some(
            "AuthorizationHeaderMalformed"
            | "PermanentRedirect"
            | "IllegalLocationConstraintException",
        ) => format!(": the bucket may be in another region than {region}; check --region"),
        _ => String::new(),
    };
    format!("{bucket} at {endpoint} refused the first request: {e}{hint}")
}

/// What to add to a failed mount's message.
fn mount_hint(e: &io::Error, options: &fuse::MountOptions) -> &'static str {
    // SAFETY: geteuid cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    match e.kind() {
        io::ErrorKind::PermissionDenied if options.allow_other && !root => {
            ": allow_other needs user_allow_other in /etc/fuse.conf"
        }
        io::ErrorKind::PermissionDenied | io::ErrorKind::NotFound if !root => {
            ": mounting as a user needs fusermount3 (package fuse3) installed"
        }
        _ => "",
    }
}

/// The mountpoint exists, is a directory, and is empty (unless `nonempty`); its canonical path.
fn check_mountpoint(path: &Path, nonempty: bool) -> Result<PathBuf, String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "mountpoint {shown} does not exist: create it with mkdir -p {shown}"
            ))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(format!(
                "mountpoint {shown} is a dead FUSE mount (transport endpoint is not connected): \
                 unmount it with fusermount3 -u {shown} or umount -l {shown}"
            ))
        }
        Err(e) => return Err(format!("cannot use mountpoint {shown}: {e}")),
        Ok(meta) if !meta.is_dir() => {
            return Err(format!(
                "mountpoint {shown} is not a directory: give an empty directory"
            ))
        }
        Ok(_) => {}
    }
    if !nonempty {
        let mut entries =
            std::fs::read_dir(path).map_err(|e| format!("cannot read mountpoint {shown}: {e}"))?;
        if entries.next().is_some() {
            return Err(format!(
                "mountpoint {shown} is not empty: use an empty directory, or add -o nonempty"
            ));
        }
    }
    std::fs::canonicalize(path).map_err(|e| format!("cannot use mountpoint {shown}: {e}"))
}

/// /dev/fuse exists and can be opened.
fn check_fuse_device() -> Result<(), String> {
    match OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(
            "FUSE not available: /dev/fuse is missing; load the fuse module (modprobe fuse), \
             or run the container with --device /dev/fuse"
                .to_string(),
        ),
        Err(e) => Err(format!(
            "FUSE not available: cannot open /dev/fuse ({e}); load the fuse module, or run the \
             container with --device /dev/fuse (and --cap-add SYS_ADMIN)"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// daemon

/// The write end of the readiness pipe, when this process is a daemon child.
struct Ready {
    pipe: Option<File>,
    child: bool,
}

impl Ready {
    /// Take the pipe named by `BUCKETFS_READY_FD`, and remove the variable.
    fn from_env() -> Ready {
        let Some(value) = std::env::var_os(READY_FD_ENV) else {
            return Ready {
                pipe: None,
                child: false,
            };
        };
        // Single-threaded here: nothing else reads the environment concurrently.
        std::env::remove_var(READY_FD_ENV);
        let fd: Option<RawFd> = value
            .to_str()
            .and_then(|v| v.parse().ok())
            .filter(|fd| *fd > 2);
        // SAFETY: F_GETFD/F_SETFD only inspect and flag the descriptor.
        let valid = fd.filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } != -1);
        let pipe = valid.map(|fd| {
            // Keep it from leaking into anything this process starts.
            // SAFETY: the descriptor was just checked to be open; F_SETFD only sets its flag.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            // SAFETY: the parent created this descriptor for us alone and nothing else owns it.
            unsafe { File::from_raw_fd(fd) }
        });
        Ready { pipe, child: true }
    }

    fn is_child(&self) -> bool {
        self.child
    }

    /// Send one line to the waiting parent; only the first call counts.
    fn send(&mut self, line: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            if let Err(e) = pipe.write_all(format!("{line}\n").as_bytes()) {
                warn!("cannot tell the starting process: {e}");
            }
        }
    }
}

/// Re-execute with `--foreground` in a new session; wait for the child to report.
fn spawn_daemon(plan: &MountPlan, args: &[OsString]) -> ExitCode {
    if let Err(msg) = check_mountpoint(&plan.mount.mountpoint, plan.daemon.nonempty)
        .and_then(|_| check_fuse_device())
    {
        return fail_line(&msg);
    }
    let stderr = match &plan.daemon.log_file {
        Some(path) => match open_log(path) {
            Ok(file) => Stdio::from(file),
            Err(msg) => return fail_line(&msg),
        },
        None => Stdio::null(),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return fail_line(&format!("cannot find the bucketfs executable: {e}")),
    };
    let (read_end, write_end) = match ready_pipe() {
        Ok(p) => p,
        Err(e) => return fail_line(&format!("cannot create a pipe: {e}")),
    };
    let write_fd = write_end.as_raw_fd();

    let mut command = ProcessCommand::new(&exe);
    command
        .arg("mount")
        .arg("--foreground")
        .args(args.iter().skip(1))
        .env(READY_FD_ENV, write_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: setsid, close_range and fcntl are async-signal-safe system calls that allocate nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            // Descriptors the caller leaked to us (a pipe of `$(…)`, say) must not stay open
            // for the daemon's lifetime. Best effort: kernels before 5.11 lack the flag.
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if libc::fcntl(write_fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return fail_line(&format!("cannot start {}: {e}", exe.display())),
    };
    drop(write_end);

    let mut line = String::new();
    let read = BufReader::new(File::from(read_end)).read_line(&mut line);
    let line = line.trim_end();
    if read.is_ok() && line == "OK" {
        return ExitCode::SUCCESS;
    }
    if let Some(msg) = line.strip_prefix("ERR ") {
        // The child exits on its own; init reaps it. Waiting could only add a hang.
        return fail_line(msg);
    }
    let status = child
        .wait()
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string());
    let log = match &plan.daemon.log_file {
        Some(path) => path.display().to_string(),
        None => "the system log (journalctl -t bucketfs)".to_string(),
    };
    fail_line(&format!(
        "bucketfs exited during start-up ({status}), see {log}"
    ))
}

/// A close-on-exec pipe whose write end is not one of the standard descriptors.
fn ready_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read_end, mut write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    if write_end.as_raw_fd() <= 2 {
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor or -1.
        let dup = unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if dup == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `dup` is a fresh descriptor owned by nobody else.
        write_end = unsafe { OwnedFd::from_raw_fd(dup) };
    }
    Ok((read_end, write_end))
}

fn open_log(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// signals

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    /// SIGHUP is ignored by a daemon and means "terminal gone, unmount" in the foreground.
    daemon: bool,
}

impl Signals {
    /// Must run inside the runtime.
    fn register(daemon: bool) -> io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            daemon,
        })
    }

    /// On each SIGTERM/SIGINT, unmount (retrying on later signals if the mount is busy), then
    /// log what is still to upload until the process ends.
    async fn unmount_on_signal(mut self, unmounter: fuse::Unmounter, progress: UploadProgress) {
        let mut unmounted = false;
        loop {
            let name = tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
                _ = self.hup.recv() => {
                    if self.daemon {
                        info!("SIGHUP ignored");
                        continue;
                    }
                    "SIGHUP"
                }
            };
            if unmounted {
                let fs = &progress.fs;
                if fs.config().write_back {
                    // what waits is journaled: the next mount with this cache dir sends it
                    let (files, bytes, loose) = fs.journaled_pending().await;
                    if loose == 0 {
                        warn!(
                            "{name}: stopping with {files} file(s), {} not uploaded yet; they \
                             are journaled in the cache dir and the next mount with it uploads \
                             them first",
                            stats_view::human_bytes(bytes)
                        );
                        std::process::exit(0);
                    }
                    warn!(
                        "{name}: still finishing {loose} upload(s) not journaled yet; send the \
                         signal again once they are (SIGKILL would lose them)"
                    );
                    continue;
                }
                warn!("{name}: still finishing pending uploads; SIGKILL would lose them");
                continue;
            }
            info!("{name}: unmounting: finishing pending uploads");
            let unmounter = unmounter.clone();
            match tokio::task::spawn_blocking(move || unmounter.unmount()).await {
                Ok(Ok(())) => {
                    unmounted = true;
                    progress.start();
                }
                Ok(Err(e)) => error!(
                    "cannot unmount: {e}; close files using the mount and send the signal again"
                ),
                Err(e) => error!("cannot unmount: {e}"),
            }
        }
    }
}

/// How often the progress of pending uploads is logged while unmounting.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(3);

/// Logs, from the moment an unmount was asked for until the process ends, how many files and
/// bytes are still to upload, every [`PROGRESS_INTERVAL`] while there are any.
#[derive(Clone)]
struct UploadProgress {
    fs: Arc<fs::Filesystem>,
    runtime: tokio::runtime::Handle,
    started: Arc<std::sync::atomic::AtomicBool>,
}

impl UploadProgress {
    fn new(fs: Arc<fs::Filesystem>, runtime: tokio::runtime::Handle) -> UploadProgress {
        UploadProgress {
            fs,
            runtime,
            started: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Start logging (once; later calls do nothing).
    fn start(&self) {
        if self.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let fs = self.fs.clone();
        self.runtime.spawn(async move {
            let mut reported = false;
            loop {
                // A file whose upload is being completed answers only once it is done: do not
                // let that silence the log.
                match tokio::time::timeout(PROGRESS_INTERVAL, fs.pending_uploads()).await {
                    Ok((0, _)) => {
                        if reported {
                            info!("unmounting: all pending uploads finished");
                            reported = false;
                        }
                        tokio::time::sleep(PROGRESS_INTERVAL).await;
                    }
                    Ok((files, bytes)) => {
                        info!(
                            files,
                            bytes,
                            "unmounting: {files} file(s), {} still to upload",
                            stats_view::human_bytes(bytes)
                        );
                        reported = true;
                        tokio::time::sleep(PROGRESS_INTERVAL).await;
                    }
                    Err(_) => {
                        info!(
                            "unmounting: still to upload: a file whose upload is being completed"
                        );
                        reported = true;
                    }
                }
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// logging

enum LogTarget {
    Stderr,
    File(PathBuf),
    Syslog,
}

/// Info for bucketfs and warnings for everything else; `--debug` or RUST_LOG for more.
///
/// fuser's own unmount at the end of a session fails with EINVAL whenever the user already
/// unmounted (`umount`, `fusermount3 -u`: the normal way to stop), and warns about it; that
/// warning is noise, so only its errors are kept.
fn init_logging(target: &LogTarget, debug: bool) -> Result<(), String> {
    let default = if debug {
        "warn,fuser::mnt=error,bucketfs=debug"
    } else {
        "warn,fuser::mnt=error,bucketfs=info"
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match target {
        LogTarget::Stderr => builder
            .with_ansi(io::stderr().is_terminal())
            .with_writer(io::stderr)
            .try_init(),
        LogTarget::File(path) => {
            let file = open_log(path)?;
            builder
                .with_ansi(false)
                .with_writer(Arc::new(file))
                .try_init()
        }
        LogTarget::Syslog => {
            // SAFETY: the identifier is a static C string, as openlog requires.
            unsafe { libc::openlog(c"bucketfs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
            builder
                .with_ansi(false)
                .without_time()
                .with_level(false)
                .with_writer(SyslogWriters)
                .try_init()
        }
    };
    result.map_err(|e| format!("cannot set up logging: {e}"))
}

/// Makes one [`SyslogLine`] per event, at the event's priority.
struct SyslogWriters;

impl<'a> MakeWriter<'a> for SyslogWriters {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        SyslogLine::new(libc::LOG_INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        let priority = match *meta.level() {
            Level::ERROR => libc::LOG_ERR,
            Level::WARN => libc::LOG_WARNING,
            Level::INFO => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        SyslogLine::new(priority)
    }
}

/// Collects one formatted event; sends each of its lines to syslog when dropped.
struct SyslogLine {
    priority: libc::c_int,
    buf: Vec<u8>,
}

impl SyslogLine {
    fn new(priority: libc::c_int) -> SyslogLine {
        SyslogLine {
            priority,
            buf: Vec::new(),
        }
    }
}

impl Write for SyslogLine {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        for line in self.buf.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let clean: Vec<u8> = line
                .iter()
                .map(|&b| if b == 0 { b' ' } else { b })
                .collect();
            if let Ok(text) = std::ffi::CString::new(clean) {
                // SAFETY: a constant "%s" format with one valid C string argument.
                unsafe { libc::syslog(self.priority, c"%s".as_ptr(), text.as_ptr()) };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cleanup and stats

fn cleanup_command(args: &CleanupArgs) -> ExitCode {
    if let Err(msg) = init_logging(&LogTarget::Stderr, false) {
        return fail_line(&msg);
    }
    let (bucket, prefix) = match args.bucket_and_prefix() {
        Ok(bp) => bp,
        Err(msg) => return fail_line(&msg),
    };
    let settings = match args.connection.settings() {
        Ok(s) => s,
        Err(msg) => return fail_line(&msg),
    };
    let request = match args.credentials.request(&bucket, &settings) {
        Ok(r) => r,
        Err(msg) => return fail_line(&msg),
    };
    let creds = match credentials::load(&request) {
        Ok(c) => c,
        Err(e) => return fail_line(&e.to_string()),
    };
    let region_flag = settings.region.clone().or_else(|| {
        settings
            .endpoint
            .as_deref()
            .and_then(bucketfs::config::values::region_from_endpoint)
    });
    let region = credentials::resolve_region(
        region_flag.as_deref(),
        request.profile.as_deref(),
        &ProcessEnv,
    );
    let endpoint = match cli::resolve_endpoint(&settings, &region, &ProcessEnv) {
        Ok(e) => e,
        Err(msg) => return fail_line(&msg),
    };
    let runtime = match build_runtime() {
        Ok(rt) => rt,
        Err(e) => return fail_line(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async {
        let client = match connect(&settings, &bucket, &endpoint, &region, creds) {
            Ok(c) => c,
            Err(msg) => return fail_line(&msg),
        };
        let uploads = match client.list_multipart_uploads(&prefix).await {
            Ok(u) => u,
            Err(e) => {
                return fail_line(&describe_s3_error(&e, &client, &bucket, &endpoint, &region))
            }
        };
        let now = SystemTime::now();
        let mut failed = 0usize;
        let mut out = io::stdout().lock();
        for upload in uploads {
            let Some(started) = upload.initiated else {
                let _ = writeln!(
                    out,
                    "skipped {} (upload {}): no start time",
                    upload.key, upload.upload_id
                );
                continue;
            };
            let age = now.duration_since(started).unwrap_or_default();
            if age < args.older_than {
                continue;
            }
            if args.dry_run {
                let _ = writeln!(
                    out,
                    "would abort {} (upload {}, started {} ago)",
                    upload.key,
                    upload.upload_id,
                    format_age(age)
                );
                continue;
            }
            match client
                .abort_multipart_upload(&upload.key, &upload.upload_id)
                .await
            {
                Ok(()) => {
                    let _ = writeln!(
                        out,
                        "aborted {} (upload {}, started {} ago)",
                        upload.key,
                        upload.upload_id,
                        format_age(age)
                    );
                }
                Err(e) => {
                    failed += 1;
                    let _ = writeln!(
                        out,
                        "failed to abort {} (upload {}): {e}",
                        upload.key, upload.upload_id
                    );
                }
            }
        }
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    })
}

/// `26h`, `3d`, `45m`: coarse, for humans.
fn format_age(age: Duration) -> String {
    let secs = age.as_secs();
    if secs >= 2 * 86_400 {
        format!("{}d", secs / 86_400)
    } else if secs >= 2 * 3600 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}m", secs / 60)
    }
}

fn stats_command(args: &StatsArgs) -> ExitCode {
    let path = args.mountpoint.join(".bucketfs").join("stats");
    match std::fs::read(&path) {
        Ok(raw) => {
            let text = if args.raw {
                raw
            } else {
                let shown = std::fs::canonicalize(&args.mountpoint)
                    .unwrap_or_else(|_| args.mountpoint.clone());
                stats_view::render(&String::from_utf8_lossy(&raw), &shown.to_string_lossy())
                    .into_bytes()
            };
            let mut out = io::stdout().lock();
            match out.write_all(&text).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => fail_line(&format!("cannot write the stats: {e}")),
            }
        }
        Err(e) => fail_line(&format!(
            "cannot read {}: {e}: is {} a bucketfs mount?",
            path.display(),
            args.mountpoint.display()
        )),
    }
}

/// glibc raises its mmap threshold each time a large block is freed, after which multi-MiB part
/// and read buffers come from the heap and are not given back: resident memory creeps far past
/// `--max-memory`. A fixed threshold keeps every buffer of 256 KiB or more (data-cache blocks,
/// random-read chunks, parts) in its own mapping, returned when freed; two arenas are plenty for a daemon whose threads mostly wait on I/O.
fn limit_allocator_growth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
