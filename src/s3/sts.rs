//! Keys for a role from a web identity token (`AssumeRoleWithWebIdentity`): what Kubernetes
//! service accounts (EKS IRSA, `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`) and other OIDC
//! setups give a pod. The call is unsigned (the token is the proof); the token file is read
//! again at every fetch, since the platform rotates it. A [`Fetcher`]: refreshed ahead of
//! expiry by [`super::cred_sources::RefreshingCredentials`].

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, Request};

use super::cred_sources::{error_chain, run_on_own_runtime, Expiring, Fetcher};
use super::credentials::Credentials;
use super::transport::{self, ClientSettings};

/// How long one STS request may take.
const STS_TIMEOUT: Duration = Duration::from_secs(10);

/// Assumes `role_arn` with the token in `token_file`, at `endpoint`.
#[derive(Debug, Clone)]
pub struct WebIdentityFetcher {
    /// `https://sts.REGION.amazonaws.com`, or `AWS_ENDPOINT_URL_STS`.
    pub endpoint: String,
    pub role_arn: String,
    pub session_name: String,
    pub token_file: PathBuf,
    /// Extra trusted CAs (`AWS_CA_BUNDLE`).
    pub ca_bundles: Vec<PathBuf>,
}

impl WebIdentityFetcher {
    /// The STS endpoint for `region` (`None`: the global one), unless `AWS_ENDPOINT_URL_STS`
    /// names another.
    pub fn endpoint_for(region: Option<&str>, override_url: Option<&str>) -> String {
        match (override_url, region) {
            (Some(url), _) => url.trim().trim_end_matches('/').to_string(),
            (None, Some(r)) if !r.is_empty() => format!("https://sts.{r}.amazonaws.com"),
            _ => "https://sts.amazonaws.com".to_string(),
        }
    }

    fn form(&self, token: &str) -> String {
        // everything but RFC 3986's unreserved characters
        const FORM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~');
        let enc = |v: &str| percent_encoding::utf8_percent_encode(v, FORM).to_string();
        format!(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName={}\
             &WebIdentityToken={}",
            enc(&self.role_arn),
            enc(&self.session_name),
            enc(token)
        )
    }
}

impl Fetcher for WebIdentityFetcher {
    fn fetch(&self) -> Result<Expiring, String> {
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("cannot read {}: {e}", self.token_file.display()))?;
        let body = self.form(token.trim());
        let https = self.endpoint.starts_with("https://");
        let uri: hyper::Uri = format!("{}/", self.endpoint)
            .parse()
            .map_err(|e| format!("bad STS endpoint {}: {e}", self.endpoint))?;
        let ca_bundles = self.ca_bundles.clone();
        let answer = run_on_own_runtime(async move {
            let client = transport::build_client(&ClientSettings {
                https,
                connect_timeout: STS_TIMEOUT,
                max_idle_per_host: 1,
                ca_bundles: &ca_bundles,
            })
            .map_err(|e| e.to_string())?;
            let request = Request::builder()
                .method(Method::POST)
                .uri(uri)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/xml")
                .body(transport::RequestBody::new(
                    super::payload::Payload::Bytes(Bytes::from(body)),
                    transport::Progress::new(),
                ))
                .map_err(|e| format!("cannot build the STS request: {e}"))?;
            let work = async {
                let resp = client
                    .request(request)
                    .await
                    .map_err(|e| format!("STS request failed: {}", error_chain(&e)))?;
                let status = resp.status().as_u16();
                let bytes = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("STS answer cut: {e}"))?
                    .to_bytes();
                Ok::<_, String>((status, bytes))
            };
            tokio::time::timeout(STS_TIMEOUT, work)
                .await
                .map_err(|_| format!("STS did not answer within {STS_TIMEOUT:?}"))?
        })?;
        let (status, bytes) = answer;
        let (access_key_id, secret_access_key, session_token, expires) =
            super::xml::parse_sts_credentials(&bytes)
                .map_err(|e| format!("{e} (HTTP {status})"))?;
        Ok(Expiring {
            credentials: Credentials {
                access_key_id,
                secret_access_key,
                session_token: Some(session_token),
            },
            expires,
        })
    }

    fn describe(&self) -> String {
        format!(
            "web identity {} for role {}",
            self.token_file.display(),
            self.role_arn
        )
    }
}
