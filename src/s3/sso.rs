//! Keys for an IAM Identity Center (SSO) profile: the access token `aws sso login` left in
//! `~/.aws/sso/cache` is exchanged for the role's keys at the SSO portal
//! (`GetRoleCredentials`). The token file is read again at every refresh, so a new
//! `aws sso login` is picked up while mounted.
//!
//! For an `sso_session` profile, a token expired or within 5 minutes of expiry is first
//! refreshed at SSO OIDC (`CreateToken` with the refresh token and client registration the
//! cache holds), and the cache file rewritten with the new token, as the AWS CLI and SDKs do.
//! Legacy `sso_start_url` profiles are not refreshed (nor are they by the SDKs). An expired
//! token that cannot be refreshed is an error that says to run `aws sso login`.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::Method;
use serde_json::{Map, Value};

use super::cred_sources::{Expiring, Fetcher};
use super::credentials::Credentials;
use super::sts::ServiceTransport;

/// A token this close to its expiry is refreshed (as the AWS SDKs do).
const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);

/// A role of an account, through the SSO portal of `region`.
pub struct SsoFetcher {
    /// `https://portal.sso.REGION.amazonaws.com`, or `AWS_ENDPOINT_URL_SSO`.
    pub portal: String,
    /// The cached token: `~/.aws/sso/cache/<sha1 of the session name or start URL>.json`.
    pub token_file: PathBuf,
    pub account_id: String,
    pub role_name: String,
    /// Which profile asked, for messages.
    pub profile: String,
    /// `sso_session` profiles: the SSO OIDC endpoint the token is refreshed at
    /// (`https://oidc.REGION.amazonaws.com`, or `AWS_ENDPOINT_URL_SSO_OIDC`); `None` for the
    /// legacy `sso_start_url` ones, whose token is not refreshed.
    pub oidc: Option<String>,
    pub transport: ServiceTransport,
}

/// What refreshing a token takes, from the cache file.
struct Grant {
    client_id: String,
    client_secret: String,
    refresh_token: String,
}

impl Grant {
    /// The cache's refresh token and client registration, if the registration is still valid.
    fn from_cache(doc: &Value, now: SystemTime) -> Result<Grant, &'static str> {
        let field = |name: &str| {
            doc[name]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let (Some(client_id), Some(client_secret), Some(refresh_token)) = (
            field("clientId"),
            field("clientSecret"),
            field("refreshToken"),
        ) else {
            return Err("the cache has no refresh token and client registration");
        };
        match doc["registrationExpiresAt"]
            .as_str()
            .and_then(super::time::parse_iso8601)
        {
            Some(t) if t > now => Ok(Grant {
                client_id,
                client_secret,
                refresh_token,
            }),
            Some(_) => Err("the client registration has expired"),
            None => Err("the cache does not say until when the client registration is valid"),
        }
    }
}

/// A token SSO OIDC handed out.
struct Fresh {
    access_token: String,
    expires_in: Duration,
    refresh_token: Option<String>,
}

impl SsoFetcher {
    /// The cache file `aws sso login` writes for `session` (an `sso_session` name, or the
    /// start URL of a legacy profile), under `cache_dir` (`~/.aws/sso/cache`).
    pub fn token_file_for(cache_dir: &std::path::Path, session: &str) -> PathBuf {
        use sha1::Digest as _;
        cache_dir.join(format!(
            "{}.json",
            hex::encode(sha1::Sha1::digest(session.as_bytes()))
        ))
    }

    pub fn portal_for(region: &str, override_url: Option<&str>) -> String {
        match override_url {
            Some(url) => url.trim().trim_end_matches('/').to_string(),
            None => format!("https://portal.sso.{region}.amazonaws.com"),
        }
    }

    /// The SSO OIDC endpoint of `region`, unless `AWS_ENDPOINT_URL_SSO_OIDC` names another.
    pub fn oidc_for(region: &str, override_url: Option<&str>) -> String {
        match override_url {
            Some(url) => url.trim().trim_end_matches('/').to_string(),
            None => format!("https://oidc.{region}.amazonaws.com"),
        }
    }

    fn login(&self) -> String {
        format!("run `aws sso login --profile {}`", self.profile)
    }

    /// The access token: the cached one, refreshed first when it is expired or about to be
    /// (and this profile's can be).
    fn token(&self) -> Result<String, String> {
        let login = self.login();
        let text = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("no SSO token ({}: {e}): {login}", self.token_file.display()))?;
        let doc: Value =
            serde_json::from_str(&text).map_err(|e| format!("SSO token cache: bad JSON: {e}"))?;
        let token = doc["accessToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("SSO token cache without accessToken: {login}"))?;
        let expires = doc["expiresAt"]
            .as_str()
            .and_then(super::time::parse_iso8601);
        let now = SystemTime::now();
        let expired = expires.is_some_and(|t| t <= now);
        if expires.is_none_or(|t| t > now + REFRESH_AHEAD) {
            return Ok(token);
        }
        let Some(oidc) = &self.oidc else {
            return if expired {
                Err(format!("the SSO token has expired: {login}"))
            } else {
                Ok(token)
            };
        };
        let refreshed = Grant::from_cache(&doc, now)
            .map_err(str::to_string)
            .and_then(|grant| self.refresh(oidc, &grant));
        match refreshed {
            Ok(fresh) => {
                let until = now + fresh.expires_in;
                if let Err(e) = self.save(doc, &fresh, until) {
                    // the new token still serves this fetch; the next one refreshes again
                    tracing::warn!(
                        "SSO token of profile {} refreshed, but {} could not be rewritten: {e}",
                        self.profile,
                        self.token_file.display()
                    );
                } else {
                    tracing::info!(
                        "SSO token of profile {} refreshed (valid until {})",
                        self.profile,
                        super::time::iso8601(until)
                    );
                }
                Ok(fresh.access_token)
            }
            Err(e) if !expired => {
                tracing::warn!(
                    "cannot refresh the SSO token of profile {} ({e}); using the cached one \
                     until it expires",
                    self.profile
                );
                Ok(token)
            }
            Err(e) => Err(format!(
                "the SSO token has expired and cannot be refreshed ({e}): {login}"
            )),
        }
    }

    /// `CreateToken` with the refresh token at `oidc`.
    fn refresh(&self, oidc: &str, grant: &Grant) -> Result<Fresh, String> {
        let body = serde_json::json!({
            "grantType": "refresh_token",
            "clientId": grant.client_id,
            "clientSecret": grant.client_secret,
            "refreshToken": grant.refresh_token,
        })
        .to_string();
        let (status, answer) = super::sts::exchange(
            Method::POST,
            &format!("{oidc}/token"),
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("accept".to_string(), "application/json".to_string()),
            ],
            Bytes::from(body),
            &self.transport,
        )
        .map_err(|e| format!("SSO OIDC: {e}"))?;
        let doc: Value = serde_json::from_slice(&answer)
            .map_err(|_| format!("SSO OIDC answered HTTP {status} without JSON"))?;
        if status != 200 {
            // the error code and its description: never a token or secret
            let text = |name: &str| doc[name].as_str().unwrap_or("").to_string();
            let code = text("error");
            let description = [text("error_description"), text("message")]
                .into_iter()
                .find(|d| !d.is_empty())
                .unwrap_or_default();
            return Err(format!(
                "SSO OIDC refused the refresh (HTTP {status}): {code} {description}"
            )
            .trim_end()
            .to_string());
        }
        let access_token = doc["accessToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or("SSO OIDC answer without accessToken")?
            .to_string();
        let expires_in = doc["expiresIn"]
            .as_u64()
            .filter(|s| *s > 0)
            .ok_or("SSO OIDC answer without expiresIn")?;
        Ok(Fresh {
            access_token,
            expires_in: Duration::from_secs(expires_in),
            refresh_token: doc["refreshToken"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        })
    }

    /// Writes the refreshed token into the cache document (its other fields kept) and the
    /// document back to the cache file.
    fn save(&self, doc: Value, fresh: &Fresh, until: SystemTime) -> Result<(), String> {
        let mut doc: Map<String, Value> = match doc {
            Value::Object(map) => map,
            _ => return Err("the cache is not a JSON object".into()),
        };
        doc.insert("accessToken".into(), fresh.access_token.clone().into());
        doc.insert("expiresAt".into(), super::time::iso8601(until).into());
        if let Some(refresh) = &fresh.refresh_token {
            doc.insert("refreshToken".into(), refresh.clone().into());
        }
        let text = serde_json::to_string(&Value::Object(doc)).map_err(|e| e.to_string())?;
        replace_file(&self.token_file, text.as_bytes()).map_err(|e| e.to_string())
    }
}

/// Replaces `path` with `data` at once (a file beside it, mode 0600, renamed over it): a
/// reader (the AWS CLI, another mount) sees the old token or the new one, never half of one.
fn replace_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.bucketfs-{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        // a file left by an earlier run may have had another mode
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

impl Fetcher for SsoFetcher {
    fn fetch(&self) -> Result<Expiring, String> {
        let token = self.token()?;
        const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~');
        let enc = |v: &str| percent_encoding::utf8_percent_encode(v, QUERY).to_string();
        let url = format!(
            "{}/federation/credentials?account_id={}&role_name={}",
            self.portal,
            enc(&self.account_id),
            enc(&self.role_name)
        );
        let (status, body) = super::sts::exchange(
            Method::GET,
            &url,
            vec![("x-amz-sso_bearer_token".to_string(), token)],
            Bytes::new(),
            &self.transport,
        )
        .map_err(|e| format!("SSO portal: {e}"))?;
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| format!("SSO portal answered HTTP {status} without JSON"))?;
        if status != 200 {
            let message = doc["message"].as_str().unwrap_or("");
            return Err(format!("SSO portal refused (HTTP {status}): {message}"));
        }
        let creds = &doc["roleCredentials"];
        let field = |name: &str| {
            creds[name]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("SSO portal answer without {name}"))
        };
        let expires = creds["expiration"]
            .as_u64()
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        Ok(Expiring {
            credentials: Credentials {
                access_key_id: field("accessKeyId")?,
                secret_access_key: field("secretAccessKey")?,
                session_token: Some(field("sessionToken")?),
            },
            expires,
        })
    }

    fn describe(&self) -> String {
        format!(
            "SSO role {} of account {} (profile {})",
            self.role_name, self.account_id, self.profile
        )
    }
}
