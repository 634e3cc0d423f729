//! Finding access keys: environment, then ~/.aws files (keys or `credential_process`), then an
//! s3fs-style passwd file, then the ECS container endpoint and EC2 instance metadata (IMDSv2).
//!
//! Errors name where they looked, never a secret. An explicit `--passwd-file` or `--profile`
//! is the only place looked at: the user asked for those keys and no others.
//!
//! [`load`] hands the client a source that keeps the keys current: files are read again when
//! they change (rotating keys) and after a 403; `credential_process`, container and instance
//! keys are fetched again before they expire.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::{Duration, SystemTime};

use crate::s3::cred_sources::{
    ContainerFetcher, Expiring, Fetcher, FileCredentials, HttpUrl, ImdsFetcher, ProcessFetcher,
    RefreshingCredentials, ECS_DEFAULT_HOST, IMDS_DEFAULT_ENDPOINT, METADATA_TIMEOUT,
};
use crate::s3::sts::ServiceTransport;
use crate::s3::{Credentials, SharedCredentials, SseCustomerKey, StaticCredentials};

/// What the command line says about credentials.
#[derive(Debug, Clone, Default)]
pub struct CredentialRequest {
    /// `--profile`.
    pub profile: Option<String>,
    /// `--passwd-file`, absolute.
    pub passwd_file: Option<PathBuf>,
    /// The bucket, for `BUCKET:ACCESS:SECRET` lines.
    pub bucket: String,
    /// `--proxy`: STS and the SSO services are reached through it as the endpoint is (`None`:
    /// the environment's proxy, by the same rule).
    pub proxy: Option<String>,
    /// `--ca-bundle`: trusted by STS and the SSO services too (a private CA, or a proxy's).
    pub ca_bundle: Option<PathBuf>,
}

/// Why no credentials could be had. Messages name files and profiles, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no credentials found: looked in {tried}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, use --profile, or write ACCESS:SECRET to ~/.passwd-s3fs (mode 600)")]
    NotFound { tried: String },
    #[error("{var} is set but {missing} is not: set both, or neither")]
    IncompleteEnvironment {
        var: &'static str,
        missing: &'static str,
    },
    #[error("profile {profile} not found in {files}: check --profile / AWS_PROFILE")]
    ProfileNotFound { profile: String, files: String },
    #[error("profile {profile} in {file} has no {missing} add aws_access_key_id and aws_secret_access_key, credential_process, role_arn with source_profile, or sso_session")]
    ProfileIncomplete {
        profile: String,
        file: String,
        missing: &'static str,
    },
    #[error(
        "passwd file {path} is readable by group or others (mode {mode:04o}): run chmod 600 {path}"
    )]
    PasswdPermissions { path: String, mode: u32 },
    #[error("passwd file {path}, line {line}: expected ACCESS:SECRET or BUCKET:ACCESS:SECRET")]
    PasswdMalformed { path: String, line: usize },
    #[error("passwd file {path} has no line for bucket {bucket} and no ACCESS:SECRET line")]
    PasswdNoEntry { path: String, bucket: String },
    #[error("{origin}: {message}")]
    Fetch { origin: String, message: String },
    #[error(
        "SSE-C key file {path} is readable by group or others (mode {mode:04o}): run chmod 600 {path}"
    )]
    KeyFilePermissions { path: String, mode: u32 },
    #[error("SSE-C key file {path}: {message}")]
    KeyFileInvalid { path: String, message: String },
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Environment lookups, so tests need not touch the process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A non-empty environment variable.
pub(super) fn nonempty(env: &dyn Env, name: &str) -> Option<String> {
    env.var(name).filter(|v| !v.trim().is_empty())
}

/// Load credentials from the process environment and files.
pub fn load(request: &CredentialRequest) -> Result<SharedCredentials, CredentialsError> {
    load_shared_with(request, Arc::new(ProcessEnv))
}

/// Load credentials as a source that keeps them current, looking variables up in `env`.
pub fn load_shared_with(
    request: &CredentialRequest,
    env: Arc<dyn Env + Send + Sync>,
) -> Result<SharedCredentials, CredentialsError> {
    let (found, kind) = resolve(request, env.as_ref())?;
    let source: SharedCredentials = match kind {
        Kind::Static => Arc::new(found),
        Kind::Passwd(path) => {
            let bucket = request.bucket.clone();
            let env2 = env.clone();
            let p2 = path.clone();
            let loader = move || match from_passwd_file(&p2, &bucket, env2.as_ref()) {
                Ok(Some(c)) => Ok(c.credentials),
                Ok(None) => Err(format!("{} is gone", p2.display())),
                Err(e) => Err(e.to_string()),
            };
            Arc::new(FileCredentials::new(
                vec![path],
                found.origin,
                found.credentials,
                Box::new(loader),
            ))
        }
        Kind::Profile(profile) => {
            let files = AwsFiles::locate(env.as_ref());
            let paths: Vec<PathBuf> = [&files.credentials, &files.config]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            let env2 = env.clone();
            let loader = move || {
                let files = AwsFiles::locate(env2.as_ref());
                match from_profile(&files, &profile, env2.as_ref()) {
                    Ok(Some((c, None))) => Ok(c.credentials),
                    Ok(Some((_, Some(_)))) => {
                        Err("the profile now uses credential_process; remount".to_string())
                    }
                    Ok(None) => Err(format!("profile {profile} has no keys any more")),
                    Err(e) => Err(e.to_string()),
                }
            };
            Arc::new(FileCredentials::new(
                paths,
                found.origin,
                found.credentials,
                Box::new(loader),
            ))
        }
        Kind::Fetched(fetcher, expires) => Arc::new(RefreshingCredentials::with_initial(
            fetcher,
            Expiring {
                credentials: found.credentials,
                expires,
            },
        )),
    };
    Ok(source)
}

/// Load credentials once, looking variables up in `env` (a snapshot: no refreshing).
pub fn load_with(
    request: &CredentialRequest,
    env: &dyn Env,
) -> Result<StaticCredentials, CredentialsError> {
    resolve(request, env).map(|(c, _)| c)
}

/// What kind of place the keys were found in, and so how to keep them current.
enum Kind {
    Static,
    Passwd(PathBuf),
    Profile(String),
    Fetched(Arc<dyn Fetcher>, Option<SystemTime>),
}

fn fetched(fetcher: Arc<dyn Fetcher>) -> Result<(StaticCredentials, Kind), CredentialsError> {
    let got = fetcher.fetch().map_err(|message| CredentialsError::Fetch {
        origin: fetcher.describe(),
        message,
    })?;
    Ok((
        StaticCredentials {
            credentials: got.credentials,
            origin: fetcher.describe(),
        },
        Kind::Fetched(fetcher, got.expires),
    ))
}

fn resolve(
    request: &CredentialRequest,
    env: &dyn Env,
) -> Result<(StaticCredentials, Kind), CredentialsError> {
    if let Some(path) = &request.passwd_file {
        let found = from_passwd_file(path, &request.bucket, env)?.ok_or_else(|| {
            CredentialsError::Read {
                what: "passwd file",
                path: path.display().to_string(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }
        })?;
        return Ok((found, Kind::Passwd(path.clone())));
    }
    let explicit_profile = request.profile.is_some();
    let via = service_transport(request, env);
    if !explicit_profile {
        if let Some(found) = from_environment(env)? {
            return Ok((found, Kind::Static));
        }
        if let Some(fetcher) = web_identity_fetcher(env, &via) {
            return fetched(fetcher);
        }
    }
    let profile = profile_name(request.profile.as_deref(), env);
    let files = AwsFiles::locate(env);
    if let Some(role) = super::role_profiles::role_fetcher(&files, &profile, env, &via)? {
        return fetched(role);
    }
    match from_profile(&files, &profile, env)? {
        Some((found, None)) => return Ok((found, Kind::Profile(profile))),
        Some((_, Some(command))) => {
            return fetched(Arc::new(ProcessFetcher {
                command,
                origin: format!("credential_process of profile {profile}"),
            }))
        }
        None => {}
    }
    if explicit_profile || nonempty(env, "AWS_PROFILE").is_some() {
        return Err(CredentialsError::ProfileNotFound {
            profile,
            files: files.describe(env),
        });
    }
    let mut tried = vec![
        "AWS_ACCESS_KEY_ID".to_string(),
        format!("profile {profile} in {}", files.describe(env)),
    ];
    for path in default_passwd_files(env) {
        if let Some(found) = from_passwd_file(&path, &request.bucket, env)? {
            return Ok((found, Kind::Passwd(path)));
        }
        tried.push(tilde(&path, env));
    }
    if let Some(fetcher) = container_fetcher(env)? {
        return fetched(fetcher);
    }
    if let Some(fetcher) = imds_fetcher(env)? {
        match fetched(fetcher) {
            Ok(found) => return Ok(found),
            Err(e) => {
                tracing::debug!("no instance credentials: {e}");
                tried.push("EC2 instance metadata".to_string());
            }
        }
    }
    Err(CredentialsError::NotFound {
        tried: tried.join(", "),
    })
}

/// The ECS container endpoint, when `AWS_CONTAINER_CREDENTIALS_FULL_URI` or
/// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` says where it is.
pub(super) fn container_fetcher(
    env: &dyn Env,
) -> Result<Option<Arc<dyn Fetcher>>, CredentialsError> {
    let url = match (
        nonempty(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        nonempty(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(rel), _) => format!("{ECS_DEFAULT_HOST}{}", rel.trim()),
        (None, Some(full)) => full,
        (None, None) => return Ok(None),
    };
    let url = HttpUrl::parse(&url).map_err(|message| CredentialsError::Fetch {
        origin: "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        message,
    })?;
    Ok(Some(Arc::new(ContainerFetcher {
        url,
        token: nonempty(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        token_file: nonempty(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
        timeout: metadata_timeout(env),
    })))
}

/// How STS and the SSO services are reached: `--proxy`, else the proxy variables of `env`,
/// decided for each service's host by the rule the S3 client follows for its endpoint;
/// trusting `AWS_CA_BUNDLE` and `--ca-bundle` (a role profile may name its own `ca_bundle`).
fn service_transport(request: &CredentialRequest, env: &dyn Env) -> ServiceTransport {
    ServiceTransport::new(request.proxy.clone(), |name| env.var(name)).with_ca_bundles(
        nonempty(env, "AWS_CA_BUNDLE")
            .map(PathBuf::from)
            .into_iter()
            .chain(request.ca_bundle.clone())
            .collect(),
    )
}

/// A role assumed with a web identity token, when `AWS_WEB_IDENTITY_TOKEN_FILE` and
/// `AWS_ROLE_ARN` say so (Kubernetes service accounts, EKS IRSA): STS at
/// `AWS_ENDPOINT_URL_STS`, else the region's (`AWS_REGION`, `AWS_DEFAULT_REGION`), else the
/// global one; session name `AWS_ROLE_SESSION_NAME`, else `bucketfs-<pid>`.
fn web_identity_fetcher(env: &dyn Env, via: &ServiceTransport) -> Option<Arc<dyn Fetcher>> {
    let token_file = nonempty(env, "AWS_WEB_IDENTITY_TOKEN_FILE")?;
    let role_arn = nonempty(env, "AWS_ROLE_ARN")?;
    let region = nonempty(env, "AWS_REGION").or_else(|| nonempty(env, "AWS_DEFAULT_REGION"));
    let endpoint = crate::s3::sts::WebIdentityFetcher::endpoint_for(
        region.as_deref(),
        nonempty(env, "AWS_ENDPOINT_URL_STS").as_deref(),
    );
    Some(Arc::new(crate::s3::sts::WebIdentityFetcher {
        endpoint,
        role_arn: role_arn.trim().to_string(),
        session_name: nonempty(env, "AWS_ROLE_SESSION_NAME")
            .unwrap_or_else(|| format!("bucketfs-{}", std::process::id())),
        token_file: PathBuf::from(token_file.trim()),
        transport: via.clone(),
    }))
}

/// EC2 instance metadata unless `AWS_EC2_METADATA_DISABLED=true`; the endpoint from
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else 169.254.169.254.
pub(super) fn imds_fetcher(env: &dyn Env) -> Result<Option<Arc<dyn Fetcher>>, CredentialsError> {
    if nonempty(env, "AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let endpoint = nonempty(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or_else(|| IMDS_DEFAULT_ENDPOINT.to_string());
    let url = HttpUrl::parse(&endpoint).map_err(|message| CredentialsError::Fetch {
        origin: "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
        message,
    })?;
    Ok(Some(Arc::new(ImdsFetcher::new(url, metadata_timeout(env)))))
}

/// `AWS_METADATA_SERVICE_TIMEOUT` (seconds), else one second.
fn metadata_timeout(env: &dyn Env) -> Duration {
    nonempty(env, "AWS_METADATA_SERVICE_TIMEOUT")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0 && *s < 60.0)
        .map_or(METADATA_TIMEOUT, Duration::from_secs_f64)
}

/// Reads an SSE-C key file: 32 raw bytes, or their base64 or hex. Like a passwd file, it
/// must not be readable by group or others.
pub fn load_sse_c_key(path: &Path) -> Result<SseCustomerKey, CredentialsError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| CredentialsError::Read {
        what: "SSE-C key file",
        path: shown.clone(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::KeyFilePermissions { path: shown, mode });
    }
    let data = std::fs::read(path).map_err(|source| CredentialsError::Read {
        what: "SSE-C key file",
        path: shown.clone(),
        source,
    })?;
    SseCustomerKey::from_file_contents(&data).map_err(|message| CredentialsError::KeyFileInvalid {
        path: shown,
        message,
    })
}

/// `--profile`, else `AWS_PROFILE`, else `default`.
pub fn profile_name(flag: Option<&str>, env: &dyn Env) -> String {
    flag.map(str::to_string)
        .or_else(|| nonempty(env, "AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_string())
}

/// The region to sign for: `--region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's
/// `region` in the config file, else `us-east-1`.
pub fn resolve_region(flag: Option<&str>, profile: Option<&str>, env: &dyn Env) -> String {
    if let Some(r) = flag.filter(|r| !r.is_empty()) {
        return r.to_string();
    }
    if let Some(r) = nonempty(env, "AWS_REGION").or_else(|| nonempty(env, "AWS_DEFAULT_REGION")) {
        return r;
    }
    let profile = profile_name(profile, env);
    let files = AwsFiles::locate(env);
    if let Some(path) = &files.config {
        if let Ok(Some(text)) = read_optional(path, "config file") {
            if let Some(section) = parse_ini(&text).remove(&config_section(&profile)) {
                if let Some(r) = section.get("region").filter(|r| !r.is_empty()) {
                    return r.clone();
                }
            }
        }
    }
    "us-east-1".to_string()
}

pub(super) fn from_environment(
    env: &dyn Env,
) -> Result<Option<StaticCredentials>, CredentialsError> {
    let key = nonempty(env, "AWS_ACCESS_KEY_ID");
    let secret = nonempty(env, "AWS_SECRET_ACCESS_KEY");
    match (key, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Some(StaticCredentials {
            credentials: Credentials {
                access_key_id,
                secret_access_key,
                session_token: nonempty(env, "AWS_SESSION_TOKEN"),
            },
            origin: "environment".to_string(),
        })),
        (Some(_), None) => Err(CredentialsError::IncompleteEnvironment {
            var: "AWS_ACCESS_KEY_ID",
            missing: "AWS_SECRET_ACCESS_KEY",
        }),
        (None, Some(_)) => Err(CredentialsError::IncompleteEnvironment {
            var: "AWS_SECRET_ACCESS_KEY",
            missing: "AWS_ACCESS_KEY_ID",
        }),
        (None, None) => Ok(None),
    }
}

/// Where the shared credentials and config files are.
pub(super) struct AwsFiles {
    pub(super) credentials: Option<PathBuf>,
    pub(super) config: Option<PathBuf>,
}

impl AwsFiles {
    fn locate(env: &dyn Env) -> AwsFiles {
        let home = nonempty(env, "HOME").map(PathBuf::from);
        let pick = |var: &str, name: &str| {
            nonempty(env, var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
        };
        AwsFiles {
            credentials: pick("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            config: pick("AWS_CONFIG_FILE", "config"),
        }
    }

    fn describe(&self, env: &dyn Env) -> String {
        let names: Vec<String> = [&self.credentials, &self.config]
            .into_iter()
            .flatten()
            .map(|p| tilde(p, env))
            .collect();
        if names.is_empty() {
            "~/.aws (HOME is not set)".to_string()
        } else {
            names.join(" and ")
        }
    }
}

/// The config file's section for a profile: `[default]` or `[profile NAME]`.
pub(super) fn config_section(profile: &str) -> String {
    if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    }
}

/// Keys of a profile; with `Some(command)` the profile names a `credential_process` instead
/// (the keys are then a placeholder).
pub(super) fn from_profile(
    files: &AwsFiles,
    profile: &str,
    env: &dyn Env,
) -> Result<Option<(StaticCredentials, Option<String>)>, CredentialsError> {
    // The credentials file wins over the config file, as in the AWS CLI.
    let mut sources: Vec<(&PathBuf, String)> = Vec::new();
    if let Some(p) = &files.credentials {
        sources.push((p, profile.to_string()));
    }
    if let Some(p) = &files.config {
        sources.push((p, config_section(profile)));
    }
    let mut seen: Option<(String, &'static str)> = None;
    for (path, section_name) in sources {
        let what = if Some(path) == files.credentials.as_ref() {
            "credentials file"
        } else {
            "config file"
        };
        let Some(text) = read_optional(path, what)? else {
            continue;
        };
        let mut sections = parse_ini(&text);
        let section = sections
            .remove(&section_name)
            .or_else(|| (profile == "default").then(|| sections.remove("profile default"))?);
        let Some(section) = section else { continue };
        let key = section.get("aws_access_key_id").filter(|v| !v.is_empty());
        let secret = section
            .get("aws_secret_access_key")
            .filter(|v| !v.is_empty());
        match (key, secret) {
            (Some(key), Some(secret)) => {
                return Ok(Some((
                    StaticCredentials {
                        credentials: Credentials {
                            access_key_id: key.clone(),
                            secret_access_key: secret.clone(),
                            session_token: section
                                .get("aws_session_token")
                                .filter(|v| !v.is_empty())
                                .cloned(),
                        },
                        origin: format!("profile {profile} in {}", tilde(path, env)),
                    },
                    None,
                )))
            }
            (None, _)
                if section
                    .get("credential_process")
                    .is_some_and(|c| !c.is_empty()) =>
            {
                let command = section
                    .get("credential_process")
                    .cloned()
                    .unwrap_or_default();
                return Ok(Some((
                    StaticCredentials {
                        credentials: Credentials {
                            access_key_id: String::new(),
                            secret_access_key: String::new(),
                            session_token: None,
                        },
                        origin: format!("credential_process of profile {profile}"),
                    },
                    Some(command),
                )));
            }
            (None, _) => {
                seen.get_or_insert((tilde(path, env), "aws_access_key_id"));
            }
            (Some(_), None) => {
                seen.get_or_insert((tilde(path, env), "aws_secret_access_key"));
            }
        }
    }
    match seen {
        // A profile that exists (perhaps only for its region) but holds no keys is only an
        // error when no other source could supply them: the caller decides for `default`.
        Some((file, missing)) if profile != "default" => Err(CredentialsError::ProfileIncomplete {
            profile: profile.to_string(),
            file,
            missing,
        }),
        _ => Ok(None),
    }
}

/// Read a file that may be missing (`Ok(None)`).
pub(super) fn read_optional(
    path: &Path,
    what: &'static str,
) -> Result<Option<String>, CredentialsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CredentialsError::Read {
            what,
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Sections of an AWS-style INI file, read with `rust-ini` as the AWS CLI reads them: `[name]`
/// (runs of spaces in the name count as one), `key = value` or `key: value`, `#`/`;` comment
/// lines (a `;` or `#` inside a value is kept: `credential_process = sh -c 'a; b'`), keys
/// lower-cased, the last of a repeated key wins. Indented lines continue the key above, so a
/// nested block (`s3 =` then indented `region = x`) becomes the value of `s3` and never
/// overrides the profile's own keys. No quotes or escapes: secrets are taken as written.
/// A file that is not INI at all (an unclosed `[`) gives no sections, with a warning.
pub(super) fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let options = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: true,
        ..Default::default()
    };
    let parsed = match ini::Ini::load_from_str_opt(text, options) {
        Ok(parsed) => parsed,
        Err(e) => {
            // line:column and what was expected; no part of a value.
            tracing::warn!(
                "AWS config/credentials file is not INI (line {}, column {}); ignored",
                e.line,
                e.col
            );
            return HashMap::new();
        }
    };
    let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
    for (name, properties) in parsed.iter() {
        let Some(name) = name else { continue };
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        let section = sections.entry(name).or_default();
        for (key, value) in properties.iter() {
            section.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    sections
}

/// `--passwd-file` unset: `$HOME/.passwd-s3fs`, then `/etc/passwd-s3fs`.
fn default_passwd_files(env: &dyn Env) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(home) = nonempty(env, "HOME") {
        files.push(Path::new(&home).join(".passwd-s3fs"));
    }
    files.push(PathBuf::from("/etc/passwd-s3fs"));
    files
}

/// Credentials from an s3fs passwd file; `Ok(None)` if the file does not exist.
fn from_passwd_file(
    path: &Path,
    bucket: &str,
    env: &dyn Env,
) -> Result<Option<StaticCredentials>, CredentialsError> {
    let shown = tilde(path, env);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialsError::Read {
                what: "passwd file",
                path: shown,
                source,
            })
        }
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::PasswdPermissions { path: shown, mode });
    }
    let Some(text) = read_optional(path, "passwd file")? else {
        return Ok(None);
    };
    let credentials = parse_passwd(&text, bucket).map_err(|e| match e {
        PasswdError::Malformed(line) => CredentialsError::PasswdMalformed {
            path: shown.clone(),
            line,
        },
        PasswdError::NoEntry => CredentialsError::PasswdNoEntry {
            path: shown.clone(),
            bucket: bucket.to_string(),
        },
    })?;
    Ok(Some(StaticCredentials {
        credentials,
        origin: format!("passwd file {shown}"),
    }))
}

#[derive(Debug, PartialEq, Eq)]
enum PasswdError {
    /// 1-based line number.
    Malformed(usize),
    NoEntry,
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswdError::Malformed(n) => write!(f, "line {n} is malformed"),
            PasswdError::NoEntry => write!(f, "no matching line"),
        }
    }
}

/// `ACCESS:SECRET` and `BUCKET:ACCESS:SECRET` lines; the line for `bucket` wins over a
/// bucket-less one; the first of each kind counts.
fn parse_passwd(text: &str, bucket: &str) -> Result<Credentials, PasswdError> {
    let mut general: Option<Credentials> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(':').map(str::trim).collect();
        let make = |key: &str, secret: &str| Credentials {
            access_key_id: key.to_string(),
            secret_access_key: secret.to_string(),
            session_token: None,
        };
        match fields.as_slice() {
            [key, secret] if !key.is_empty() && !secret.is_empty() => {
                general.get_or_insert_with(|| make(key, secret));
            }
            [b, key, secret] if !b.is_empty() && !key.is_empty() && !secret.is_empty() => {
                if *b == bucket {
                    return Ok(make(key, secret));
                }
            }
            _ => return Err(PasswdError::Malformed(index + 1)),
        }
    }
    general.ok_or(PasswdError::NoEntry)
}

/// A path with `$HOME` shown as `~`.
fn tilde(path: &Path, env: &dyn Env) -> String {
    if let Some(home) = nonempty(env, "HOME") {
        if let Ok(rest) = path.strip_prefix(&home) {
            return format!("~/{}", rest.display());
        }
    }
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::super::cred_test_support::*;
    use super::*;
    use std::sync::Mutex;

    /// Serialises the tests that touch the process environment.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn sts_and_sso_trust_the_ca_bundle_of_the_mount_and_of_the_environment() {
        let req = CredentialRequest {
            ca_bundle: Some(PathBuf::from("/etc/private-ca.pem")),
            ..CredentialRequest::default()
        };
        let e = env(&[("AWS_CA_BUNDLE", "/etc/env-ca.pem")]);
        let via = service_transport(&req, &e);
        assert_eq!(
            via.ca_bundles,
            [
                PathBuf::from("/etc/env-ca.pem"),
                PathBuf::from("/etc/private-ca.pem")
            ]
        );
        let none = service_transport(&CredentialRequest::default(), &env(&[]));
        assert!(none.ca_bundles.is_empty());
    }

    #[test]
    fn environment_comes_first() {
        let home = tempfile::tempdir().unwrap();
        write(
            &home.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = filesecret\n",
            0o600,
        );
        let e = env(&[
            ("HOME", home.path().to_str().unwrap()),
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", "tok"),
        ]);
        let c = load_with(&request("b"), &e).unwrap();
        assert_eq!(c.credentials.access_key_id, "ENVKEY");
        assert_eq!(c.credentials.session_token.as_deref(), Some("tok"));
        assert_eq!(c.origin, "environment");
    }

    #[test]
    fn half_set_environment_is_an_error_without_the_secret() {
        let e = env(&[("AWS_SECRET_ACCESS_KEY", SECRET)]);
        let err = load_with(&request("b"), &e).unwrap_err().to_string();
        assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
        assert!(!err.contains(SECRET));
    }

    #[test]
    fn ini_files_read_as_the_aws_cli_reads_them() {
        let s = parse_ini(
            "# top\n[profile   spaced  name]\nAWS_Access_Key_Id = K\n; note\n\
             aws_session_token = AQoD+/abc==\nregion: r1\ns3 =\n  region = nested\n  \
             max_concurrent_requests = 20\ncredential_process = sh -c 'a; b' # kept\n\
             [default]\nregion = a\n[default]\nregion = b\n",
        );
        let p = &s["profile spaced name"];
        assert_eq!(p["aws_access_key_id"], "K");
        assert_eq!(p["aws_session_token"], "AQoD+/abc==");
        assert_eq!(p["region"], "r1", "the nested block must not override it");
        assert_eq!(p["credential_process"], "sh -c 'a; b' # kept");
        assert_eq!(s["default"]["region"], "b");
        assert!(parse_ini("[default\nregion = x\n").is_empty());
    }

    #[test]
    fn profiles_from_credentials_and_config() {
        let home = tempfile::tempdir().unwrap();
        write(
            &home.path().join(".aws/credentials"),
            "# keys\n[default]\naws_access_key_id = DEFKEY\naws_secret_access_key = defsecret\n\n\
             [work]\naws_access_key_id=WORKKEY\naws_secret_access_key=worksecret\n",
            0o600,
        );
        write(
            &home.path().join(".aws/config"),
            "[default]\nregion = eu-west-1\n[profile work]\nregion = ap-south-1\ns3 =\n  region = nested\n\
             [profile cfgonly]\naws_access_key_id = CFGKEY\naws_secret_access_key = cfgsecret\n",
            0o600,
        );
        let h = home.path().to_str().unwrap();
        let e = env(&[("HOME", h)]);
        let c = load_with(&request("b"), &e).unwrap();
        assert_eq!(c.credentials.access_key_id, "DEFKEY");
        assert_eq!(c.origin, "profile default in ~/.aws/credentials");
        assert_eq!(resolve_region(None, None, &e), "eu-west-1");

        let work = CredentialRequest {
            profile: Some("work".into()),
            ..request("b")
        };
        assert_eq!(
            load_with(&work, &e).unwrap().credentials.access_key_id,
            "WORKKEY"
        );
        assert_eq!(resolve_region(None, Some("work"), &e), "ap-south-1");
        assert_eq!(resolve_region(Some("x-1"), Some("work"), &e), "x-1");

        let e2 = env(&[("HOME", h), ("AWS_PROFILE", "cfgonly")]);
        let c = load_with(&request("b"), &e2).unwrap();
        assert_eq!(c.credentials.access_key_id, "CFGKEY");
        assert_eq!(c.origin, "profile cfgonly in ~/.aws/config");
        assert_eq!(resolve_region(None, None, &e2), "us-east-1");

        let e3 = env(&[
            ("HOME", h),
            ("AWS_REGION", "r1"),
            ("AWS_DEFAULT_REGION", "r2"),
        ]);
        assert_eq!(resolve_region(None, None, &e3), "r1");

        let missing = CredentialRequest {
            profile: Some("nope".into()),
            ..request("b")
        };
        let err = load_with(&missing, &e).unwrap_err().to_string();
        assert!(err.contains("profile nope not found"), "{err}");
    }

    #[test]
    fn explicit_profile_beats_environment() {
        let home = tempfile::tempdir().unwrap();
        write(
            &home.path().join("creds"),
            "[p]\naws_access_key_id = PKEY\naws_secret_access_key = psecret\n",
            0o600,
        );
        let e = env(&[
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                home.path().join("creds").to_str().unwrap(),
            ),
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ]);
        let req = CredentialRequest {
            profile: Some("p".into()),
            ..request("b")
        };
        let c = load_with(&req, &e).unwrap();
        assert_eq!(c.credentials.access_key_id, "PKEY");
        assert!(c.origin.starts_with("profile p in "), "{}", c.origin);
    }

    #[test]
    fn passwd_file_lines() {
        let text = "# comment\nGENKEY:gensecret\nother:OKEY:osecret\nmine:MKEY:msecret\n";
        assert_eq!(parse_passwd(text, "mine").unwrap().access_key_id, "MKEY");
        assert_eq!(parse_passwd(text, "else").unwrap().access_key_id, "GENKEY");
        assert_eq!(
            parse_passwd("mine:MKEY:msecret\n", "x"),
            Err(PasswdError::NoEntry)
        );
        assert_eq!(
            parse_passwd("\nonlyonefield\n", "x"),
            Err(PasswdError::Malformed(2))
        );
    }

    #[test]
    fn passwd_file_default_location_and_precedence() {
        let home = tempfile::tempdir().unwrap();
        write(&home.path().join(".passwd-s3fs"), "K1:s1\nb:K2:s2\n", 0o600);
        let e = env(&[("HOME", home.path().to_str().unwrap())]);
        let c = load_with(&request("b"), &e).unwrap();
        assert_eq!(c.credentials.access_key_id, "K2");
        assert_eq!(c.origin, "passwd file ~/.passwd-s3fs");
    }

    #[test]
    fn readable_passwd_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        write(&path, &format!("KEY:{SECRET}\n"), 0o644);
        let req = CredentialRequest {
            passwd_file: Some(path.clone()),
            ..request("b")
        };
        let err = load_with(&req, &env(&[])).unwrap_err().to_string();
        assert!(err.contains("readable by group or others"), "{err}");
        assert!(err.contains("0644") && err.contains("chmod 600"), "{err}");
        assert!(!err.contains(SECRET));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(load_with(&req, &env(&[])).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        let c = load_with(&req, &env(&[])).unwrap();
        assert_eq!(c.credentials.secret_access_key, SECRET);
        assert!(c.origin.starts_with("passwd file /"));
    }

    #[test]
    fn missing_explicit_passwd_file_is_named() {
        let req = CredentialRequest {
            passwd_file: Some("/nonexistent/bucketfs-passwd".into()),
            ..request("b")
        };
        let err = load_with(&req, &env(&[])).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/bucketfs-passwd"), "{err}");
    }

    #[test]
    fn nothing_found_lists_the_places() {
        let home = tempfile::tempdir().unwrap();
        let e = env(&[("HOME", home.path().to_str().unwrap())]);
        match load_with(&request("b"), &e) {
            // A machine-wide /etc/passwd-s3fs would be found; nothing to check then.
            Ok(c) => assert!(c.origin.contains("/etc/passwd-s3fs")),
            Err(err) => {
                let err = err.to_string();
                assert!(err.contains("no credentials found"), "{err}");
                assert!(err.contains("~/.passwd-s3fs"), "{err}");
            }
        }
    }

    #[test]
    fn process_environment_is_read() {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        std::env::set_var("AWS_ACCESS_KEY_ID", "PROCKEY");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
        let loaded = load(&request("b"));
        std::env::remove_var("AWS_ACCESS_KEY_ID");
        std::env::remove_var("AWS_SECRET_ACCESS_KEY");
        let loaded = loaded.unwrap();
        assert_eq!(loaded.current().access_key_id, "PROCKEY");
        let described = loaded.describe();
        assert!(described.contains("PROCKEY") && described.contains("environment"));
        assert!(!described.contains(SECRET));
    }

    /// A loopback HTTP server answering `(method, path) -> (status, body)`; records
    fn doc(key: &str, expires: SystemTime) -> String {
        format!(
            r#"{{"Code":"Success","AccessKeyId":"{key}","SecretAccessKey":"sec-{key}","Token":"tok-{key}","Expiration":"{}"}}"#,
            crate::s3::cred_sources::iso8601_for_tests(expires)
        )
    }

    #[test]
    fn instance_metadata_v2_with_token() {
        let n = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let n2 = n.clone();
        let fake = fake_metadata(move |method, path, headers| {
            let token = headers
                .iter()
                .find(|(k, _)| k == "x-aws-ec2-metadata-token")
                .map(|(_, v)| v.as_str());
            match (method, path) {
                ("PUT", "/latest/api/token") => (200, "TOKEN123".into()),
                (_, _) if token != Some("TOKEN123") => (401, String::new()),
                ("GET", "/latest/meta-data/iam/security-credentials/") => (200, "role-a\n".into()),
                ("GET", "/latest/meta-data/iam/security-credentials/role-a") => {
                    let i = n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    // the first keys expire at once, so the next use must fetch again
                    let exp = if i == 1 {
                        SystemTime::now() - Duration::from_secs(60)
                    } else {
                        SystemTime::now() + Duration::from_secs(3600)
                    };
                    (200, doc(&format!("IMDS{i}"), exp))
                }
                _ => (404, String::new()),
            }
        });
        let home = tempfile::tempdir().unwrap();
        let e = env(&[
            ("HOME", home.path().to_str().unwrap()),
            ("AWS_EC2_METADATA_DISABLED", ""),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &fake.url),
        ]);
        let src = load_shared_with(&request("b"), Arc::new(e)).unwrap();
        assert!(
            src.describe().contains("EC2 instance metadata"),
            "{}",
            src.describe()
        );
        std::thread::sleep(Duration::from_millis(1100));
        let c = src.current();
        assert_eq!(c.access_key_id, "IMDS2");
        assert_eq!(c.session_token.as_deref(), Some("tok-IMDS2"));
        let seen = fake.seen.lock().unwrap();
        assert_eq!(seen[0].0, "PUT");
        assert!(seen[0]
            .2
            .iter()
            .any(|(k, v)| k == "x-aws-ec2-metadata-token-ttl-seconds" && v == "21600"));
    }

    #[test]
    fn instance_metadata_that_is_not_there_fails_fast() {
        // a closed loopback port: refused at once
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let home = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let e = env(&[
            ("HOME", home.path().to_str().unwrap()),
            ("AWS_EC2_METADATA_DISABLED", ""),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url),
        ]);
        let started = std::time::Instant::now();
        match load_with(&request("b"), &e) {
            Ok(c) => assert!(c.origin.contains("/etc/passwd-s3fs")),
            Err(err) => {
                let err = err.to_string();
                assert!(err.contains("EC2 instance metadata"), "{err}");
            }
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_web_identity_token_is_exchanged_for_role_keys() {
        let fake = fake_metadata(|method, path, headers| {
            let body = headers
                .iter()
                .find(|(k, _)| k == "<body>")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let ok = method == "POST"
                && path == "/"
                && body.contains("Action=AssumeRoleWithWebIdentity")
                && body.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr")
                && body.contains("RoleSessionName=pod-7")
                && body.contains("WebIdentityToken=eyJ.tok");
            if ok {
                (
                    200,
                    sts_answer("ASIA1", SystemTime::now() + Duration::from_secs(3600)),
                )
            } else {
                (
                    403,
                    "<ErrorResponse><Error><Code>AccessDenied</Code><Message>not this role\
                     </Message></Error></ErrorResponse>"
                        .to_string(),
                )
            }
        });
        let home = tempfile::tempdir().unwrap();
        let token = home.path().join("token");
        write(&token, "eyJ.tok\n", 0o600);
        let e = |role: &str| {
            env(&[
                ("HOME", home.path().to_str().unwrap()),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
                ("AWS_ROLE_ARN", role),
                ("AWS_ROLE_SESSION_NAME", "pod-7"),
                ("AWS_ENDPOINT_URL_STS", &fake.url),
            ])
        };
        let src = load_shared_with(&request("b"), Arc::new(e("arn:aws:iam::1:role/r"))).unwrap();
        let keys = src.current();
        assert_eq!(keys.access_key_id, "ASIA1");
        assert_eq!(keys.secret_access_key, "sec-ASIA1");
        assert_eq!(keys.session_token.as_deref(), Some("tok-ASIA1"));
        assert!(
            src.describe().contains("web identity"),
            "{}",
            src.describe()
        );
        // a refusal names STS's answer, not a secret
        let err = load_with(&request("b"), &e("arn:aws:iam::1:role/other"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AccessDenied") && err.contains("not this role"),
            "{err}"
        );
        assert!(!err.contains("eyJ.tok"), "{err}");
    }

    #[test]
    fn container_endpoint_with_authorization() {
        let fake = fake_metadata(|_, path, headers| {
            let auth = headers
                .iter()
                .any(|(k, v)| k == "authorization" && v == "Bearer xyz");
            if path == "/creds" && auth {
                (
                    200,
                    doc("ECS1", SystemTime::now() + Duration::from_secs(3600)),
                )
            } else {
                (403, String::new())
            }
        });
        let home = tempfile::tempdir().unwrap();
        let full = format!("{}/creds", fake.url);
        let e = env(&[
            ("HOME", home.path().to_str().unwrap()),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer xyz"),
        ]);
        let src = load_shared_with(&request("b"), Arc::new(e)).unwrap();
        assert_eq!(src.current().access_key_id, "ECS1");
        assert!(src.describe().contains("container"), "{}", src.describe());
    }

    #[test]
    fn credential_process_is_run_again_when_keys_expire() {
        let home = tempfile::tempdir().unwrap();
        let counter = home.path().join("n");
        let script = home.path().join("creds.sh");
        // each run prints the next key; the first one has already expired
        write(
            &script,
            &format!(
                "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}\n\
                 if [ $n = 1 ]; then exp=2000-01-01T00:00:00Z; else exp=2999-01-01T00:00:00Z; fi\n\
                 printf '{{\"Version\": 1, \"AccessKeyId\": \"PROC%s\", \"SecretAccessKey\": \"s\", \"SessionToken\": \"t\", \"Expiration\": \"%s\"}}' $n $exp\n",
                c = counter.display()
            ),
            0o700,
        );
        write(
            &home.path().join(".aws/config"),
            &format!(
                "[profile proc]\ncredential_process = {}\nregion = r9\n",
                script.display()
            ),
            0o600,
        );
        let e = env(&[
            ("HOME", home.path().to_str().unwrap()),
            ("AWS_PROFILE", "proc"),
        ]);
        let src = load_shared_with(&request("b"), Arc::new(e)).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(src.current().access_key_id, "PROC2");
        // valid keys are not fetched again
        assert_eq!(src.current().access_key_id, "PROC2");
        assert!(src.refresh_after_denied());
        assert_eq!(src.current().access_key_id, "PROC3");
        assert!(src
            .describe()
            .contains("credential_process of profile proc"));

        write(
            &home.path().join(".aws/config"),
            "[profile bad]\ncredential_process = sh -c 'echo oops >&2; exit 3'\n",
            0o600,
        );
        let e = env(&[
            ("HOME", home.path().to_str().unwrap()),
            ("AWS_PROFILE", "bad"),
        ]);
        let err = load_with(&request("b"), &e).unwrap_err().to_string();
        assert!(
            err.contains("credential_process failed") && err.contains("oops"),
            "{err}"
        );
    }

    #[test]
    fn rotated_credentials_file_is_reloaded() {
        let home = tempfile::tempdir().unwrap();
        let creds = home.path().join(".aws/credentials");
        write(
            &creds,
            "[default]\naws_access_key_id = OLD\naws_secret_access_key = s1\n",
            0o600,
        );
        let e = env(&[("HOME", home.path().to_str().unwrap())]);
        let src = load_shared_with(&request("b"), Arc::new(e)).unwrap();
        assert_eq!(src.current().access_key_id, "OLD");
        write(
            &creds,
            "[default]\naws_access_key_id = NEWKEY\naws_secret_access_key = s2\n",
            0o600,
        );
        assert!(src.refresh_after_denied());
        assert_eq!(src.current().access_key_id, "NEWKEY");
        assert_eq!(src.current().secret_access_key, "s2");
    }

    #[test]
    fn sse_c_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write(&path, &"k".repeat(32), 0o644);
        let err = load_sse_c_key(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let raw = load_sse_c_key(&path).unwrap();
        write(&path, &format!("{}\n", hex::encode("k".repeat(32))), 0o600);
        assert_eq!(load_sse_c_key(&path).unwrap(), raw);
        write(&path, "short", 0o400);
        let err = load_sse_c_key(&path).unwrap_err().to_string();
        assert!(err.contains("32 bytes"), "{err}");
        assert!(!format!("{raw:?}").contains(raw.key_b64()));
    }
}
