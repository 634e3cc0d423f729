//! Command line: `bucketfs mount|cleanup|stats`, the mount(8) helper form and its `-o` options.
//!
//! mount(8) runs `mount.fuse.bucketfs SOURCE MOUNTPOINT -o OPTS` (or, through mount.fuse,
//! `bucketfs SOURCE MOUNTPOINT -o OPTS`). [`parse_args`] turns that form into
//! `bucketfs mount …` and expands each `-o name=value` into the matching `--name=value` flag, so
//! every mount flag has an `-o` spelling without a second table to keep in step.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::credentials::{CredentialRequest, Env};
use crate::config::dash_o::{expand_dash_o, OptionTable};
pub use crate::config::values::{
    normalize_endpoint, normalize_prefix, parse_bucket, parse_duration, parse_mode, parse_size,
};
use crate::config::FsConfig;
use crate::fuse::MountOptions;
use crate::s3::profile::{profile, Provider};
use crate::s3::{S3Config, ServerSideEncryption, SharedCredentials};

/// Names argv[0] has when mount(8) runs bucketfs as its helper.
const HELPER_NAMES: &[&str] = &["mount.fuse.bucketfs", "mount.bucketfs"];

/// Subcommand names (and top-level flags) that mean "not the mount(8) form".
const TOP_LEVEL_WORDS: &[&str] = &[
    "mount",
    "cleanup",
    "stats",
    "help",
    "-h",
    "--help",
    "-V",
    "--version",
];

/// Smallest part S3 accepts (except the last one of an upload).
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part S3 accepts.
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "bucketfs",
    version,
    about = "Mount an S3-compatible bucket (or a prefix of one) as a directory, with FUSE",
    after_help = "The mount(8) form `bucketfs BUCKET MOUNTPOINT -o opt1,opt2=val` is the same as \
                  `bucketfs mount`.\nRun `bucketfs mount --help` for every mount option."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount BUCKET (or s3://BUCKET/PREFIX) at MOUNTPOINT; runs in the background unless -f.
    #[command(
        args_override_self = true,
        after_help = "Every --flag above is also an -o option, dashes as underscores: \
                      --part-size 16MiB is -o part_size=16MiB, --read-only is -o ro (-o rw undoes \
                      it).\nmount(8)/fstab options _netdev, noauto, auto, nofail, user, users, \
                      defaults, noatime, … and x-* are accepted and ignored.\nExamples:\n  \
                      bucketfs mount my-bucket /mnt/b --endpoint http://127.0.0.1:9000 --path-style\n  \
                      mount -t fuse.bucketfs my-bucket /mnt/b -o endpoint=URL,region=R,ro,allow_other\n  \
                      fstab: my-bucket /mnt/b fuse.bucketfs _netdev,endpoint=URL,allow_other 0 0"
    )]
    Mount(Box<MountArgs>),
    /// Abort incomplete multipart uploads older than a given age.
    Cleanup(Box<CleanupArgs>),
    /// Print the counters of a mounted bucketfs (MOUNTPOINT/.bucketfs/stats).
    Stats(StatsArgs),
}

/// Provider names `--provider` accepts; each selects the quirks profile of the S3 client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderName {
    Aws,
    Obs,
    Oss,
    Gdc,
    Minio,
    Ceph,
    Other,
}

impl ProviderName {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::Aws => "aws",
            ProviderName::Obs => "obs",
            ProviderName::Oss => "oss",
            ProviderName::Gdc => "gdc",
            ProviderName::Minio => "minio",
            ProviderName::Ceph => "ceph",
            ProviderName::Other => "other",
        }
    }
}

/// Server-side encryption modes `--sse` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SseMode {
    /// SSE-S3 (`AES256`).
    #[value(alias = "s3")]
    Aes256,
    /// SSE-KMS (`aws:kms`), with --sse-kms-key-id.
    #[value(alias = "aws:kms")]
    Kms,
    /// SSE-C, with --sse-c-key-file.
    #[value(alias = "customer")]
    C,
}

/// Where the bucket is and how to talk to it.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// S3 endpoint URL [default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS for the region]
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Region to sign for [default: the one the endpoint host names (AWS, OBS), $AWS_REGION, $AWS_DEFAULT_REGION, the profile's region, else us-east-1]
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
    /// Address the bucket as ENDPOINT/BUCKET [default: the provider's usual style]
    #[arg(long, overrides_with = "virtual_hosted")]
    pub path_style: bool,
    /// Address the bucket as BUCKET.ENDPOINT
    #[arg(long, overrides_with = "path_style")]
    pub virtual_hosted: bool,
    /// Provider quirks to use [default: inferred from the endpoint's host]
    #[arg(long, value_enum, value_name = "PROVIDER")]
    pub provider: Option<ProviderName>,
    /// PEM file of CA certificates to trust, in addition to the system's
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// Give up on a request that keeps failing after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub retry_timeout: u64,
    /// Most S3 requests in flight at once
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_inflight: u32,
    /// Sign request bodies with their SHA-256 [default: unsigned]
    #[arg(long, overrides_with = "unsigned_payload")]
    pub sign_payload: bool,
    /// Send UNSIGNED-PAYLOAD instead of hashing request bodies
    #[arg(long, overrides_with = "sign_payload")]
    pub unsigned_payload: bool,
    /// Find out at mount what the server does where S3 servers differ (conditional writes,
    /// ETags, part copy): auto = for servers no provider profile describes, once a day;
    /// off = trust the profile; always = at every mount
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    pub probe: ProbeMode,
    /// Checksum on uploads, so the server refuses a body damaged on the way: auto = CRC32C
    /// (objects and parts) where the server verifies it, else the body's SHA-256 in the
    /// signature where the server verifies that and the CPU hashes it in hardware, else
    /// Content-MD5; crc32c; sha256; md5; off (for servers that refuse them all)
    #[arg(long, value_name = "KIND", default_value = "auto", value_parser = parse_upload_checksums)]
    pub upload_checksums: crate::s3::UploadChecksums,
    /// Reach the endpoint, and STS and SSO for role and SSO profiles, through this HTTP proxy
    /// (CONNECT tunnels), e.g. http://user:password@proxy:3128 [default: HTTPS_PROXY /
    /// HTTP_PROXY / ALL_PROXY, except hosts in NO_PROXY]
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" | "1" => Ok(true),
        "off" | "no" | "false" | "0" => Ok(false),
        _ => Err(format!("{s:?}: expected on or off")),
    }
}

fn parse_upload_checksums(s: &str) -> Result<crate::s3::UploadChecksums, String> {
    crate::s3::UploadChecksums::parse(s)
        .ok_or_else(|| format!("{s:?}: expected auto, crc32c, sha256, md5 or off"))
}

/// When `--probe` asks the server what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeMode {
    Auto,
    Off,
    Always,
}

/// Where the access keys come from.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Credentials")]
pub struct CredentialArgs {
    /// Profile of ~/.aws/credentials and ~/.aws/config [default: $AWS_PROFILE, else default]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// s3fs-style ACCESS:SECRET file, mode 600 [default: ~/.passwd-s3fs, else /etc/passwd-s3fs]
    #[arg(long, value_name = "FILE")]
    pub passwd_file: Option<PathBuf>,
}

/// `bucketfs mount`.
#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// Bucket name, or s3://BUCKET/PREFIX
    #[arg(value_name = "BUCKET")]
    pub bucket: String,
    /// Directory to mount on
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,

    /// Mount options, comma-separated, as in fstab (e.g. -o ro,allow_other,endpoint=URL)
    #[arg(short = 'o', value_name = "OPTS", help_heading = "Mount")]
    pub options: Vec<String>,
    /// Mount only the keys under this prefix
    #[arg(long, value_name = "P", help_heading = "Mount")]
    pub prefix: Option<String>,
    /// Refuse every change
    #[arg(long, overrides_with = "read_write", help_heading = "Mount")]
    pub read_only: bool,
    /// Undo --read-only (`-o rw`)
    #[arg(long, hide = true, overrides_with = "read_only")]
    pub read_write: bool,
    /// Stay in the foreground instead of detaching once mounted
    #[arg(short = 'f', long, help_heading = "Mount")]
    pub foreground: bool,
    /// Allow mounting over a directory that is not empty
    #[arg(long, help_heading = "Mount")]
    pub nonempty: bool,
    /// Threads reading FUSE requests
    #[arg(long, value_name = "N", default_value_t = 2, help_heading = "Mount",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,

    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub credentials: CredentialArgs,

    /// Seconds to trust cached attributes and directory listings
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 60,
        help_heading = "Caching"
    )]
    pub metadata_ttl: u64,
    /// Seconds to trust a "no such file" answer
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 5,
        help_heading = "Caching"
    )]
    pub negative_ttl: u64,
    /// Take the size, time and ETag of a listed file from its directory's listing: `ls -l`,
    /// `du` or `find -ls` over objects other tools wrote send only LIST requests. Mode and
    /// owner show the defaults (and symlinks show as files) until the file is opened or its
    /// attributes are changed, which fetch the real ones
    #[arg(long, help_heading = "Caching")]
    pub stat_from_listing: bool,
    /// Also look for s3fs's oldest directory objects (`dir_$folder$`) when a name is not in a
    /// listing: one HEAD more for each name found missing (s3fs's `compat_dir`). Listings
    /// show them, and `dir` objects typed as directories, without it
    #[arg(long, help_heading = "Caching")]
    pub compat_dir: bool,
    /// Upload part size, at least 5MiB (suffixes K, M, G, KiB, MiB, GiB; KB, MB, GB are powers of 1000)
    #[arg(long, value_name = "BYTES", default_value = "8MiB", value_parser = parse_size,
          help_heading = "Caching")]
    pub part_size: u64,
    /// Memory for write buffers and read-ahead, for the whole mount
    #[arg(long, value_name = "BYTES", default_value = "96MiB", value_parser = parse_size,
          help_heading = "Caching")]
    pub max_memory: u64,
    /// Staging area of files being written (their parts, on disk), the data cache of files
    /// read, and the upload journal; `none` keeps parts in memory and caches no data [default:
    /// $XDG_CACHE_HOME/bucketfs, ~/.cache/bucketfs, or /var/cache/bucketfs for root]
    #[arg(long, value_name = "DIR", help_heading = "Caching")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes in the cache dir: files being written (writers wait for uploads beyond it)
    /// and, in what is left, data read (least recently used evicted first)
    #[arg(long, value_name = "BYTES", default_value = "10GiB", value_parser = parse_size,
          help_heading = "Caching")]
    pub cache_size: u64,
    /// Keep data read through the mount in the cache dir, for later reads and later mounts
    /// (used while the object's ETag is unchanged): on or off
    #[arg(long, value_name = "ON|OFF", default_value = "on", value_parser = parse_on_off,
          action = clap::ArgAction::Set, help_heading = "Caching")]
    pub data_cache: bool,
    /// close() returns once the file is on local disk (in the cache dir, fsynced and
    /// journaled); its upload follows in the background, survives kill -9 and reboots (the
    /// next mount finishes it) and never overwrites a change made elsewhere meanwhile. fsync
    /// and unmount wait for the bucket
    #[arg(long, help_heading = "Caching")]
    pub write_back: bool,

    /// Owner of every file [default: your user id]
    #[arg(long, value_name = "UID", help_heading = "Permissions")]
    pub uid: Option<u32>,
    /// Group of every file [default: your group id]
    #[arg(long, value_name = "GID", help_heading = "Permissions")]
    pub gid: Option<u32>,
    /// Mode of files that carry none in their metadata (octal)
    #[arg(long, value_name = "MODE", default_value = "0644", value_parser = parse_mode,
          help_heading = "Permissions")]
    pub file_mode: u16,
    /// Mode of directories that carry none in their metadata (octal)
    #[arg(long, value_name = "MODE", default_value = "0755", value_parser = parse_mode,
          help_heading = "Permissions")]
    pub dir_mode: u16,
    /// Let other users use the mount (needs user_allow_other in /etc/fuse.conf unless root)
    #[arg(long, help_heading = "Permissions")]
    pub allow_other: bool,
    /// Let root use the mount as well as you
    #[arg(long, help_heading = "Permissions")]
    pub allow_root: bool,
    /// Do not let the kernel check mode bits
    #[arg(long, help_heading = "Permissions")]
    pub no_default_permissions: bool,

    /// Append the log to FILE [default: stderr with -f, else syslog]
    #[arg(long, value_name = "FILE", help_heading = "Logging")]
    pub log_file: Option<PathBuf>,
    /// Log debug detail (RUST_LOG overrides)
    #[arg(long, help_heading = "Logging")]
    pub debug: bool,
    /// Serve the counters at http://ADDR/metrics (Prometheus text format)
    #[arg(long, value_name = "ADDR", help_heading = "Logging")]
    pub metrics_addr: Option<SocketAddr>,

    /// Server-side encryption of new objects: AES256 (SSE-S3), aws:kms, or c (SSE-C)
    #[arg(
        long,
        value_enum,
        ignore_case = true,
        value_name = "MODE",
        help_heading = "Objects"
    )]
    pub sse: Option<SseMode>,
    /// KMS key for --sse aws:kms [default: the bucket's or account's KMS key]
    #[arg(long, value_name = "ID", help_heading = "Objects")]
    pub sse_kms_key_id: Option<String>,
    /// SSE-C: file (mode 600) holding the 32-byte customer key, raw, base64 or hex; implies --sse c
    #[arg(long, value_name = "FILE", help_heading = "Objects")]
    pub sse_c_key_file: Option<PathBuf>,
    /// Storage class of new objects (STANDARD, STANDARD_IA, …) [default: the bucket's]
    #[arg(long, value_name = "CLASS", help_heading = "Objects")]
    pub storage_class: Option<String>,
    /// Send x-amz-request-payer: requester (you pay for the requests to this bucket)
    #[arg(long, help_heading = "Objects")]
    pub requester_pays: bool,
    /// Canned ACL of new objects: private, public-read, bucket-owner-full-control, …
    #[arg(long, value_name = "ACL", help_heading = "Objects")]
    pub acl: Option<String>,
    /// Object lock (WORM) of new objects: COMPLIANCE or GOVERNANCE; needs --object-lock-retain
    #[arg(
        long,
        value_name = "MODE",
        help_heading = "Objects",
        requires = "object_lock_retain"
    )]
    pub object_lock_mode: Option<String>,
    /// Retain new objects until this UTC time (2030-01-01T00:00:00Z) or for this long after
    /// each write (30d, 12h)
    #[arg(
        long,
        value_name = "WHEN",
        help_heading = "Objects",
        requires = "object_lock_mode"
    )]
    pub object_lock_retain: Option<String>,

    /// mount(8) -s: ignore unknown -o options instead of failing
    #[arg(short = 's', hide = true)]
    pub sloppy: bool,
    /// mount(8) -n: do not write /etc/mtab (ignored)
    #[arg(short = 'n', hide = true)]
    pub no_mtab: bool,
    /// mount(8) -v: verbose (same as --debug)
    #[arg(short = 'v', hide = true)]
    pub verbose: bool,
    /// mount(8) -t TYPE (fuse.bucketfs): accepted and ignored
    #[arg(short = 't', hide = true, value_name = "TYPE")]
    pub fs_type: Option<String>,
}

/// `bucketfs cleanup`.
#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// Bucket name, or s3://BUCKET/PREFIX
    #[arg(value_name = "BUCKET")]
    pub bucket: String,
    /// Only uploads of keys under this prefix
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// Only uploads started longer ago than this (e.g. 90m, 24h, 7d)
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub older_than: Duration,
    /// Print what would be aborted, abort nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// `bucketfs stats`.
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Where a bucketfs is mounted
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// Print the `name value` lines of MOUNTPOINT/.bucketfs/stats as they are (for scripts)
    #[arg(long)]
    pub raw: bool,
}

/// The parsed command line.
#[derive(Debug)]
pub struct ParsedArgs {
    pub cli: Cli,
    /// The arguments (without argv[0]) as `bucketfs …` would take them: the mount(8) form
    /// rewritten to start with `mount`, `-o` not yet expanded. What a daemon child re-executes.
    pub args: Vec<OsString>,
    /// Notes for the log once it is set up (ignored unknown `-o` options under `-s`).
    pub warnings: Vec<String>,
}

/// Parse `argv` (argv[0] included), accepting the mount(8) helper form.
pub fn parse_args<I, T>(argv: I) -> Result<ParsedArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    if argv.is_empty() {
        argv.push(OsString::from("bucketfs"));
    }
    let argv0 = argv[0].clone();
    let helper = Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| HELPER_NAMES.contains(&n));
    let mut args: Vec<OsString> = argv[1..].to_vec();
    let implied_mount = match args.first() {
        None => false,
        Some(_) if helper => true,
        Some(first) => !TOP_LEVEL_WORDS.iter().any(|w| first == w),
    };
    if implied_mount {
        args.insert(0, OsString::from("mount"));
    }

    let mut warnings = Vec::new();
    let expanded = if args.first().is_some_and(|a| a == "mount") {
        let mut mount_cmd = MountArgs::augment_args(clap::Command::new("mount"));
        let table = OptionTable::from_command(&mut mount_cmd);
        let mut out = vec![args[0].clone()];
        out.extend(expand_dash_o(&args[1..], &table, &mut warnings)?);
        out
    } else {
        args.clone()
    };

    let mut full = Vec::with_capacity(expanded.len() + 1);
    full.push(OsString::from("bucketfs"));
    full.extend(expanded);
    let cli = Cli::try_parse_from(full)?;
    Ok(ParsedArgs {
        cli,
        args,
        warnings,
    })
}

/// An error about `bucketfs mount` arguments, shown with that subcommand's usage.
pub(crate) fn usage_error(kind: ErrorKind, msg: &str) -> clap::Error {
    let mut cli = Cli::command();
    cli.build();
    let err = clap::Error::raw(kind, msg);
    match cli.find_subcommand_mut("mount") {
        Some(mount) => err.format(mount),
        None => err.format(&mut cli),
    }
}

/// Bucket and prefix from the BUCKET argument and `--prefix`; both may name one, not two.
fn bucket_and_prefix(source: &str, flag: Option<&str>) -> Result<(String, String), String> {
    let (bucket, from_source) = parse_bucket(source)?;
    let from_flag = match flag {
        Some(p) => normalize_prefix(p)?,
        None => String::new(),
    };
    let prefix = match (from_source.is_empty(), from_flag.is_empty()) {
        (_, true) => from_source,
        (true, false) => from_flag,
        (false, false) if from_source == from_flag => from_source,
        (false, false) => {
            return Err(format!(
                "two prefixes given: '{from_source}' in {source} and '{from_flag}' in --prefix; give one"
            ))
        }
    };
    Ok((bucket, prefix))
}

/// Where files being written are staged unless `--cache-dir` says otherwise: root's
/// `/var/cache/bucketfs`, else `$XDG_CACHE_HOME/bucketfs`, else `~/.cache/bucketfs` (`None`
/// when there is no home: parts then stay in memory).
pub fn default_cache_dir() -> Option<PathBuf> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Some(PathBuf::from("/var/cache/bucketfs"));
    }
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("bucketfs"))
}

/// Connection settings, checked; endpoint and region may still come from the environment.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Normalised endpoint URL (scheme included, no trailing `/`), if given.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `Some(true)` path style, `Some(false)` virtual-hosted, `None` the provider's default.
    pub path_style: Option<bool>,
    pub provider: Option<ProviderName>,
    pub ca_bundle: Option<PathBuf>,
    pub retry_timeout: Duration,
    pub max_inflight: usize,
    /// `Some(true)` sign bodies, `Some(false)` UNSIGNED-PAYLOAD, `None` the client's default.
    pub sign_payload: Option<bool>,
    /// Storage class of new objects.
    pub storage_class: Option<String>,
    /// Server-side encryption of new objects (SSE-C key already read and checked).
    pub sse: Option<ServerSideEncryption>,
    /// `x-amz-request-payer: requester`.
    pub requester_pays: bool,
    /// Canned ACL of new objects.
    pub acl: Option<String>,
    /// Object lock (WORM) headers on new objects.
    pub object_lock: Option<crate::s3::ObjectLock>,
    pub probe: ProbeMode,
    pub upload_checksums: crate::s3::UploadChecksums,
    pub proxy: Option<String>,
}

impl ConnectionArgs {
    pub fn settings(&self) -> Result<ConnectionSettings, String> {
        let endpoint = self
            .endpoint
            .as_deref()
            .map(normalize_endpoint)
            .transpose()?;
        let region = self.region.as_deref().map(str::trim).map(str::to_string);
        if region.as_deref() == Some("") {
            return Err("--region is empty".into());
        }
        Ok(ConnectionSettings {
            endpoint,
            region,
            path_style: flag_pair(self.path_style, self.virtual_hosted),
            provider: self.provider,
            ca_bundle: self.ca_bundle.as_deref().map(absolute).transpose()?,
            retry_timeout: Duration::from_secs(self.retry_timeout),
            max_inflight: self.max_inflight as usize,
            sign_payload: flag_pair(self.sign_payload, self.unsigned_payload),
            storage_class: None,
            sse: None,
            requester_pays: false,
            acl: None,
            object_lock: None,
            probe: self.probe,
            upload_checksums: self.upload_checksums,
            proxy: self.proxy.clone(),
        })
    }
}

impl CredentialArgs {
    /// Where to look for keys for `bucket`; STS and the SSO services are reached through the
    /// proxy `connection` names for the endpoint (`--proxy`, else the environment's).
    pub fn request(
        &self,
        bucket: &str,
        connection: &ConnectionSettings,
    ) -> Result<CredentialRequest, String> {
        Ok(CredentialRequest {
            profile: self.profile.clone(),
            passwd_file: self.passwd_file.as_deref().map(absolute).transpose()?,
            bucket: bucket.to_string(),
            proxy: connection.proxy.clone(),
            ca_bundle: connection.ca_bundle.clone(),
        })
    }
}

/// Of two `overrides_with` flags at most one is set: which one, if any.
fn flag_pair(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    }
}

/// The endpoint to use: `--endpoint`, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`,
/// else AWS's endpoint for the region.
pub fn resolve_endpoint(
    conn: &ConnectionSettings,
    region: &str,
    env: &dyn Env,
) -> Result<String, String> {
    if let Some(e) = &conn.endpoint {
        return Ok(e.clone());
    }
    for var in ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"] {
        if let Some(value) = env.var(var).filter(|v| !v.trim().is_empty()) {
            return normalize_endpoint(&value).map_err(|e| format!("{var}: {e}"));
        }
    }
    Ok(format!("https://s3.{region}.amazonaws.com"))
}

/// The S3 client's settings for `bucket` at `endpoint`, signing for `region`.
pub fn s3_config(
    conn: &ConnectionSettings,
    bucket: &str,
    endpoint: &str,
    region: &str,
    credentials: SharedCredentials,
) -> S3Config {
    let provider = match conn.provider {
        Some(name) => Provider::from_name(name.as_str()).unwrap_or(Provider::Other),
        None => Provider::infer_from_host(endpoint),
    };
    let mut config = S3Config::new(endpoint, region, bucket, credentials);
    config.profile = profile(provider);
    config.path_style = conn.path_style.unwrap_or(config.profile.default_path_style);
    config.max_inflight = conn.max_inflight;
    config.retry_timeout = conn.retry_timeout;
    config.ca_bundle = conn.ca_bundle.clone();
    if let Some(sign) = conn.sign_payload {
        config.sign_payload = sign;
    }
    config.storage_class = conn.storage_class.clone();
    config.sse = conn.sse.clone();
    config.requester_pays = conn.requester_pays;
    config.acl = conn.acl.clone();
    config.object_lock = conn.object_lock.clone();
    config.upload_checksums = conn.upload_checksums;
    config.proxy = conn.proxy.clone();
    config
}

/// `--sse`, `--sse-kms-key-id` and `--sse-c-key-file`, checked together; reads the SSE-C key.
pub fn server_side_encryption(
    mode: Option<SseMode>,
    kms_key_id: Option<&str>,
    sse_c_key_file: Option<&Path>,
) -> Result<Option<ServerSideEncryption>, String> {
    let mode = match (mode, sse_c_key_file) {
        (None, Some(_)) => Some(SseMode::C),
        (m, _) => m,
    };
    if kms_key_id.is_some() && mode != Some(SseMode::Kms) {
        return Err("--sse-kms-key-id needs --sse aws:kms".into());
    }
    if sse_c_key_file.is_some() && mode != Some(SseMode::C) {
        return Err("--sse-c-key-file is for SSE-C; it cannot go with another --sse".into());
    }
    Ok(match mode {
        None => None,
        Some(SseMode::Aes256) => Some(ServerSideEncryption::S3),
        Some(SseMode::Kms) => Some(ServerSideEncryption::Kms {
            key_id: kms_key_id.map(str::to_string),
        }),
        Some(SseMode::C) => {
            let path = sse_c_key_file.ok_or("--sse c needs --sse-c-key-file FILE")?;
            let key =
                crate::config::credentials::load_sse_c_key(path).map_err(|e| e.to_string())?;
            Some(ServerSideEncryption::Customer(key))
        }
    })
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("bad path {}: {e}", path.display()))
}

/// `path` (the part cache, the log) must not lie inside the mountpoint: bucketfs would write it
/// through its own mount and wait on itself. Compared with `..` and symlinks resolved.
fn outside_mountpoint(option: &str, path: &Path, mountpoint: &Path) -> Result<(), String> {
    if resolved(path).starts_with(resolved(mountpoint)) {
        return Err(format!(
            "{option} {} is inside the mountpoint {}: bucketfs would write it through its own \
             mount; choose a place outside it",
            path.display(),
            mountpoint.display()
        ));
    }
    Ok(())
}

/// `path` with `.` and `..` folded, and its nearest existing ancestor's symlinks resolved.
fn resolved(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut lexical = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    let mut missing = Vec::new();
    let mut existing = lexical.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                existing = parent;
            }
            _ => return lexical,
        }
    }
}

/// How the process runs and logs.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub foreground: bool,
    pub log_file: Option<PathBuf>,
    pub debug: bool,
    /// Mounting over a non-empty directory is allowed.
    pub nonempty: bool,
    /// Serve the counters over HTTP here.
    pub metrics_addr: Option<SocketAddr>,
}

/// Everything a mount needs, from one `bucketfs mount` command line.
#[derive(Debug, Clone)]
pub struct MountPlan {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
    pub fs: FsConfig,
    /// `mountpoint` is absolute (not canonicalised: it may not exist).
    pub mount: MountOptions,
    pub connection: ConnectionSettings,
    pub credentials: CredentialRequest,
    pub daemon: DaemonSettings,
}

impl MountArgs {
    /// Check the arguments and turn them into the settings of each layer.
    pub fn plan(&self) -> Result<MountPlan, String> {
        let (bucket, prefix) = bucket_and_prefix(&self.bucket, self.prefix.as_deref())?;
        if self.part_size < MIN_PART_SIZE {
            return Err(format!(
                "--part-size {} is below the S3 minimum of 5MiB",
                self.part_size
            ));
        }
        if self.part_size > MAX_PART_SIZE {
            return Err(format!(
                "--part-size {} is above the S3 maximum of 5GiB",
                self.part_size
            ));
        }
        if self.max_memory < self.part_size {
            return Err(format!(
                "--max-memory {} is smaller than --part-size {}: raise it",
                self.max_memory, self.part_size
            ));
        }
        let mountpoint = absolute(&self.mountpoint)?;
        let cache_dir = match self.cache_dir.as_deref() {
            Some(p) if p == Path::new("none") => None,
            Some(p) => Some(absolute(p)?),
            None => default_cache_dir(),
        };
        let log_file = self.log_file.as_deref().map(absolute).transpose()?;
        if let Some(dir) = &cache_dir {
            outside_mountpoint("--cache-dir", dir, &mountpoint)?;
        }
        if self.write_back && cache_dir.is_none() {
            return Err(
                "--write-back keeps closed files on local disk until they are uploaded: \
                        it needs a cache dir (not --cache-dir none)"
                    .into(),
            );
        }
        if let Some(file) = &log_file {
            outside_mountpoint("--log-file", file, &mountpoint)?;
        }
        let read_only = self.read_only && !self.read_write;
        let defaults = FsConfig::default();
        let fs = FsConfig {
            prefix: prefix.clone(),
            read_only,
            metadata_ttl: Duration::from_secs(self.metadata_ttl),
            negative_ttl: Duration::from_secs(self.negative_ttl),
            stat_from_listing: self.stat_from_listing,
            compat_dir: self.compat_dir,
            part_size: self.part_size,
            max_memory: self.max_memory,
            cache_dir,
            cache_size: self.cache_size,
            data_cache: self.data_cache,
            write_back: self.write_back,
            uid: self.uid.unwrap_or(defaults.uid),
            gid: self.gid.unwrap_or(defaults.gid),
            file_mode: self.file_mode,
            dir_mode: self.dir_mode,
            ..defaults
        };
        let mount = MountOptions {
            mountpoint,
            read_only,
            allow_other: self.allow_other,
            allow_root: self.allow_root,
            default_permissions: !self.no_default_permissions,
            fsname: fsname(&bucket, &prefix),
            threads: usize::from(self.threads),
        };
        let mut connection = self.connection.settings()?;
        connection.storage_class = self.storage_class.clone();
        let sse_c_key_file = self.sse_c_key_file.as_deref().map(absolute).transpose()?;
        connection.sse = server_side_encryption(
            self.sse,
            self.sse_kms_key_id.as_deref(),
            sse_c_key_file.as_deref(),
        )?;
        connection.requester_pays = self.requester_pays;
        connection.acl = self.acl.clone();
        connection.object_lock = object_lock(
            self.object_lock_mode.as_deref(),
            self.object_lock_retain.as_deref(),
        )?;
        let credentials = self.credentials.request(&bucket, &connection)?;
        Ok(MountPlan {
            connection,
            credentials,
            daemon: DaemonSettings {
                foreground: self.foreground,
                log_file,
                debug: self.debug || self.verbose,
                nonempty: self.nonempty,
                metrics_addr: self.metrics_addr,
            },
            bucket,
            prefix,
            fs,
            mount,
        })
    }
}

impl CleanupArgs {
    /// Bucket and normalised prefix.
    pub fn bucket_and_prefix(&self) -> Result<(String, String), String> {
        bucket_and_prefix(&self.bucket, self.prefix.as_deref())
    }
}

/// `bucketfs:BUCKET/PREFIX`, with characters that would break the kernel's option string replaced.
pub fn fsname(bucket: &str, prefix: &str) -> String {
    format!("bucketfs:{bucket}/{prefix}")
        .chars()
        .map(|c| {
            if c == ',' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;

/// `--object-lock-mode` and `--object-lock-retain` as the headers' settings.
fn object_lock(
    mode: Option<&str>,
    retain: Option<&str>,
) -> Result<Option<crate::s3::ObjectLock>, String> {
    let (Some(mode), Some(retain)) = (mode, retain) else {
        return Ok(None);
    };
    let mode = mode.trim().to_ascii_uppercase();
    if mode != "COMPLIANCE" && mode != "GOVERNANCE" {
        return Err(format!(
            "--object-lock-mode {mode}: use COMPLIANCE or GOVERNANCE"
        ));
    }
    let retain = retain.trim();
    let until = if retain.contains('T') && retain.ends_with('Z') {
        crate::s3::RetainUntil::Date(retain.to_string())
    } else {
        crate::s3::RetainUntil::For(
            super::values::parse_duration(retain)
                .map_err(|e| format!("--object-lock-retain {retain}: {e}"))?,
        )
    };
    Ok(Some(crate::s3::ObjectLock {
        mode,
        retain: until,
    }))
}
