//! Keys for a role from STS: with a web identity token (`AssumeRoleWithWebIdentity`, unsigned:
//! the token is the proof; what Kubernetes service accounts, EKS IRSA and other OIDC setups give
//! a pod; the token file is read again at every fetch, since the platform rotates it), or with
//! other keys (`AssumeRole`, signed with SigV4 by the source's keys: `role_arn` profiles, chained
//! roles). Each is a [`Fetcher`], refreshed ahead of expiry by
//! [`super::cred_sources::RefreshingCredentials`].
//!
//! STS and the SSO services are reached as the S3 endpoint is: through `--proxy` or the
//! environment's proxy, by the same rule ([`ServiceTransport`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, Request};

use super::cred_sources::{error_chain, run_on_own_runtime, Expiring, Fetcher};
use super::credentials::Credentials;
use super::proxy::Proxy;
use super::transport::{self, ClientSettings};

/// How long one STS request may take.
const STS_TIMEOUT: Duration = Duration::from_secs(10);

/// How a credentials service (STS, the SSO portal, SSO OIDC) is reached: as the S3 endpoint
/// is, through `--proxy` or the environment's proxy, decided for each service's host by the
/// S3 client's rule ([`Proxy::for_endpoint_with`]: `NO_PROXY` exempts a host, a server on
/// this machine is never reached through the environment's proxy), with extra trusted CAs.
/// Instance metadata and the ECS endpoint never go through a proxy (link-local or local
/// addresses, as in the AWS SDKs): they do not use this.
#[derive(Debug, Clone, Default)]
pub struct ServiceTransport {
    /// Extra trusted CAs (a profile's `ca_bundle`, `AWS_CA_BUNDLE`).
    pub ca_bundles: Vec<PathBuf>,
    /// `--proxy URL`; `None`: the environment's.
    pub proxy: Option<String>,
    /// The environment's proxy variables that were set, as read when the source was built.
    pub proxy_env: Vec<(String, String)>,
}

impl ServiceTransport {
    /// The variables [`Proxy::for_endpoint_with`] reads.
    pub const PROXY_VARS: [&'static str; 9] = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "REQUEST_METHOD",
    ];

    /// `proxy` (`--proxy`), and the environment's proxy variables as `var` gives them.
    pub fn new(proxy: Option<String>, var: impl Fn(&str) -> Option<String>) -> ServiceTransport {
        ServiceTransport {
            ca_bundles: Vec::new(),
            proxy,
            proxy_env: Self::PROXY_VARS
                .iter()
                .filter_map(|name| var(name).map(|v| (name.to_string(), v)))
                .collect(),
        }
    }

    /// The same, trusting `ca_bundles` too.
    pub fn with_ca_bundles(mut self, ca_bundles: Vec<PathBuf>) -> ServiceTransport {
        self.ca_bundles = ca_bundles;
        self
    }

    /// The proxy `uri` is reached through, if any.
    fn proxy_for(&self, uri: &hyper::Uri) -> Result<Option<Proxy>, String> {
        let var = |name: &str| {
            self.proxy_env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        Proxy::for_endpoint_with(uri, self.proxy.as_deref(), &var).map_err(|e| e.to_string())
    }
}

/// Assumes `role_arn` with the token in `token_file`, at `endpoint`.
#[derive(Debug, Clone)]
pub struct WebIdentityFetcher {
    /// `https://sts.REGION.amazonaws.com`, or `AWS_ENDPOINT_URL_STS`.
    pub endpoint: String,
    pub role_arn: String,
    pub session_name: String,
    pub token_file: PathBuf,
    pub transport: ServiceTransport,
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
        post_form(
            &self.endpoint,
            &self.transport,
            self.form(token.trim()),
            None,
        )
    }

    fn describe(&self) -> String {
        format!(
            "web identity {} for role {}",
            self.token_file.display(),
            self.role_arn
        )
    }
}

/// Percent-encodes a form value (everything but RFC 3986's unreserved characters).
fn enc(v: &str) -> String {
    const FORM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(v, FORM).to_string()
}

/// Keys that do not change (a profile's static keys, the environment's): the source of a role.
pub struct FixedFetcher {
    pub credentials: Credentials,
    pub origin: String,
}

impl Fetcher for FixedFetcher {
    fn fetch(&self) -> Result<Expiring, String> {
        Ok(Expiring {
            credentials: self.credentials.clone(),
            expires: None,
        })
    }

    fn describe(&self) -> String {
        self.origin.clone()
    }
}

/// Assumes `role_arn` with the keys `source` gives (fetched again at every refresh, so a
/// chain of roles, or a source whose keys expire, stays current).
pub struct AssumeRoleFetcher {
    /// `https://sts.REGION.amazonaws.com`, or `AWS_ENDPOINT_URL_STS`.
    pub endpoint: String,
    /// The region the request is signed for (`us-east-1` for the global endpoint).
    pub region: String,
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    pub duration_seconds: Option<u32>,
    pub source: Arc<dyn Fetcher>,
    /// Which profile asked, for messages.
    pub profile: String,
    pub transport: ServiceTransport,
}

impl AssumeRoleFetcher {
    fn form(&self) -> String {
        let mut form = format!(
            "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName={}",
            enc(&self.role_arn),
            enc(&self.session_name)
        );
        if let Some(id) = &self.external_id {
            form.push_str(&format!("&ExternalId={}", enc(id)));
        }
        if let Some(d) = self.duration_seconds {
            form.push_str(&format!("&DurationSeconds={d}"));
        }
        form
    }
}

impl Fetcher for AssumeRoleFetcher {
    fn fetch(&self) -> Result<Expiring, String> {
        let source = self
            .source
            .fetch()
            .map_err(|e| format!("source {}: {e}", self.source.describe()))?;
        let keys = source.credentials;
        let body = self.form();
        let uri: hyper::Uri = format!("{}/", self.endpoint)
            .parse()
            .map_err(|e| format!("bad STS endpoint {}: {e}", self.endpoint))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| format!("STS endpoint {} has no host", self.endpoint))?;
        let mut headers = vec![
            ("host".to_string(), host),
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
        ];
        let payload_hash = super::sigv4::sha256_hex(body.as_bytes());
        super::sigv4::sign(
            &super::sigv4::SigningParams {
                access_key_id: &keys.access_key_id,
                secret_access_key: &keys.secret_access_key,
                session_token: keys.session_token.as_deref(),
                region: &self.region,
                service: "sts",
                time: SystemTime::now(),
            },
            &super::sigv4::SignableRequest {
                method: "POST",
                path: "/",
                query: &[],
                payload_hash: &payload_hash,
                content_sha256_header: false,
            },
            &mut headers,
            None,
        );
        post_form(&self.endpoint, &self.transport, body, Some(headers))
    }

    fn describe(&self) -> String {
        format!(
            "role {} of profile {} (keys from {})",
            self.role_arn,
            self.profile,
            self.source.describe()
        )
    }
}

/// POSTs a form to STS and reads the keys out of its answer; `headers`: the signed headers
/// (host included), or `None` for an unsigned call.
fn post_form(
    endpoint: &str,
    via: &ServiceTransport,
    body: String,
    headers: Option<Vec<(String, String)>>,
) -> Result<Expiring, String> {
    let headers = headers.unwrap_or_else(|| {
        vec![(
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        )]
    });
    let (status, bytes) = exchange(
        Method::POST,
        &format!("{endpoint}/"),
        headers,
        Bytes::from(body),
        via,
    )?;
    let (access_key_id, secret_access_key, session_token, expires) =
        super::xml::parse_sts_credentials(&bytes).map_err(|e| format!("{e} (HTTP {status})"))?;
    Ok(Expiring {
        credentials: Credentials {
            access_key_id,
            secret_access_key,
            session_token: Some(session_token),
        },
        expires,
    })
}

/// One request to a credentials service (STS, the SSO portal, SSO OIDC) on a runtime of its
/// own (the caller is a blocking fetch), through the proxy `via` decides for its host, within
/// [`STS_TIMEOUT`]; its status and body. `accept: application/xml` unless `headers` say.
pub(super) fn exchange(
    method: Method,
    url: &str,
    headers: Vec<(String, String)>,
    body: Bytes,
    via: &ServiceTransport,
) -> Result<(u16, Bytes), String> {
    let https = url.starts_with("https://");
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let proxy = via.proxy_for(&uri)?;
    if let Some(p) = &proxy {
        tracing::debug!(
            "reaching {} through the proxy {}",
            uri.authority().map_or("?", |a| a.as_str()),
            p.describe()
        );
    }
    let ca_bundles = via.ca_bundles.clone();
    run_on_own_runtime(async move {
        let client = transport::build_client(&ClientSettings {
            https,
            connect_timeout: STS_TIMEOUT,
            max_idle_per_host: 1,
            ca_bundles: &ca_bundles,
            proxy: proxy.as_ref(),
        })
        .map_err(|e| e.to_string())?;
        let mut request = Request::builder().method(method).uri(uri);
        if !headers.iter().any(|(name, _)| name == "accept") {
            request = request.header("accept", "application/xml");
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(transport::RequestBody::new(
                super::payload::Payload::Bytes(body),
                transport::Progress::new(),
            ))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let work = async {
            let resp = client
                .request(request)
                .await
                .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("answer cut: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, bytes))
        };
        tokio::time::timeout(STS_TIMEOUT, work)
            .await
            .map_err(|_| format!("no answer within {STS_TIMEOUT:?}"))?
    })
}
