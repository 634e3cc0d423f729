//! Keys for an IAM Identity Center (SSO) profile: the access token `aws sso login` left in
//! `~/.aws/sso/cache` is exchanged for the role's keys at the SSO portal
//! (`GetRoleCredentials`). The token file is read again at every refresh, so a new
//! `aws sso login` is picked up while mounted; an expired token is an error that says to run it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::Method;

use super::cred_sources::{Expiring, Fetcher};
use super::credentials::Credentials;
use super::sts::ServiceTransport;

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
    pub transport: ServiceTransport,
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

    /// The access token, if it has not expired.
    fn token(&self) -> Result<String, String> {
        let login = format!("run `aws sso login --profile {}`", self.profile);
        let text = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("no SSO token ({}: {e}): {login}", self.token_file.display()))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("SSO token cache: bad JSON: {e}"))?;
        let token = doc["accessToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("SSO token cache without accessToken: {login}"))?;
        let expires = doc["expiresAt"]
            .as_str()
            .and_then(super::time::parse_iso8601);
        if expires.is_some_and(|t| t <= SystemTime::now()) {
            return Err(format!("the SSO token has expired: {login}"));
        }
        Ok(token.to_string())
    }
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
