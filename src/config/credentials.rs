//! Finding access keys: environment, then ~/.aws files, then an s3fs-style passwd file.
//!
//! Errors name where they looked, never a secret. An explicit `--passwd-file` or `--profile`
//! is the only place looked at: the user asked for those keys and no others.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::s3::{Credentials, SharedCredentials, StaticCredentials};

/// What the command line says about credentials.
#[derive(Debug, Clone, Default)]
pub struct CredentialRequest {
    /// `--profile`.
    pub profile: Option<String>,
    /// `--passwd-file`, absolute.
    pub passwd_file: Option<PathBuf>,
    /// The bucket, for `BUCKET:ACCESS:SECRET` lines.
    pub bucket: String,
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
    #[error("profile {profile} in {file} has no {missing} (role, SSO and credential_process profiles are not supported): add aws_access_key_id and aws_secret_access_key")]
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
fn nonempty(env: &dyn Env, name: &str) -> Option<String> {
    env.var(name).filter(|v| !v.trim().is_empty())
}

/// Load credentials from the process environment and files.
pub fn load(request: &CredentialRequest) -> Result<SharedCredentials, CredentialsError> {
    Ok(Arc::new(load_with(request, &ProcessEnv)?))
}

/// Load credentials, looking variables up in `env`.
pub fn load_with(
    request: &CredentialRequest,
    env: &dyn Env,
) -> Result<StaticCredentials, CredentialsError> {
    if let Some(path) = &request.passwd_file {
        return from_passwd_file(path, &request.bucket, env)?.ok_or_else(|| {
            CredentialsError::Read {
                what: "passwd file",
                path: path.display().to_string(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }
        });
    }
    let explicit_profile = request.profile.is_some();
    if !explicit_profile {
        if let Some(found) = from_environment(env)? {
            return Ok(found);
        }
    }
    let profile = profile_name(request.profile.as_deref(), env);
    let files = AwsFiles::locate(env);
    if let Some(found) = from_profile(&files, &profile, env)? {
        return Ok(found);
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
            return Ok(found);
        }
        tried.push(tilde(&path, env));
    }
    Err(CredentialsError::NotFound {
        tried: tried.join(", "),
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

fn from_environment(env: &dyn Env) -> Result<Option<StaticCredentials>, CredentialsError> {
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
struct AwsFiles {
    credentials: Option<PathBuf>,
    config: Option<PathBuf>,
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
fn config_section(profile: &str) -> String {
    if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    }
}

fn from_profile(
    files: &AwsFiles,
    profile: &str,
    env: &dyn Env,
) -> Result<Option<StaticCredentials>, CredentialsError> {
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
                return Ok(Some(StaticCredentials {
                    credentials: Credentials {
                        access_key_id: key.clone(),
                        secret_access_key: secret.clone(),
                        session_token: section
                            .get("aws_session_token")
                            .filter(|v| !v.is_empty())
                            .cloned(),
                    },
                    origin: format!("profile {profile} in {}", tilde(path, env)),
                }))
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
fn read_optional(path: &Path, what: &'static str) -> Result<Option<String>, CredentialsError> {
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

/// Sections of an AWS-style INI file: `[name]`, `key = value`, `#`/`;` comments. Keys are
/// lower-cased; indented lines under a `key =` with no value (nested settings) are skipped.
fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current: Option<String> = None;
    let mut in_nested = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let indented = raw.starts_with([' ', '\t']);
        if in_nested && indented {
            continue;
        }
        in_nested = false;
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            sections.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let (Some(section), Some((key, value))) = (&current, line.split_once('=')) else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            in_nested = true;
        }
        sections
            .entry(section.clone())
            .or_default()
            .insert(key.trim().to_ascii_lowercase(), value.to_string());
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
    use super::*;
    use std::sync::Mutex;

    /// Serialises the tests that touch the process environment.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn request(bucket: &str) -> CredentialRequest {
        CredentialRequest {
            bucket: bucket.to_string(),
            ..Default::default()
        }
    }

    fn write(path: &Path, text: &str, mode: u32) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
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
    fn role_profiles_are_explained() {
        let home = tempfile::tempdir().unwrap();
        write(
            &home.path().join(".aws/config"),
            "[profile role]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n",
            0o600,
        );
        let e = env(&[("HOME", home.path().to_str().unwrap())]);
        let req = CredentialRequest {
            profile: Some("role".into()),
            ..request("b")
        };
        let err = load_with(&req, &e).unwrap_err().to_string();
        assert!(err.contains("not supported"), "{err}");
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
}
