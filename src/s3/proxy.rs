//! HTTP proxies: which one (if any) the endpoint is reached through (`--proxy`, else
//! `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` and their lower-case forms, unless `NO_PROXY`
//! names the host or the host is this machine's loopback), and the connector that opens each connection as a `CONNECT` tunnel through
//! it (TLS to the endpoint then runs inside the tunnel, so the endpoint's certificate is checked
//! as without a proxy). Credentials in the proxy URL become `Proxy-Authorization: Basic`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::header::HeaderValue;
use hyper::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::S3Error;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The proxy a client goes through.
#[derive(Clone, Debug)]
pub(crate) struct Proxy {
    pub uri: Uri,
    pub auth: Option<HeaderValue>,
}

impl Proxy {
    /// The proxy for `endpoint`: `explicit` (`--proxy URL`, which `NO_PROXY` still exempts
    /// hosts from), else the environment's, as curl reads it.
    pub fn for_endpoint(endpoint: &Uri, explicit: Option<&str>) -> Result<Option<Proxy>, S3Error> {
        Proxy::for_endpoint_with(endpoint, explicit, &|name| std::env::var(name).ok())
    }

    /// [`Proxy::for_endpoint`], with the environment's variables looked up by `var` (the
    /// credential services' requests follow the same rule, with the credential code's
    /// environment).
    pub fn for_endpoint_with(
        endpoint: &Uri,
        explicit: Option<&str>,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>, S3Error> {
        // the first of a variable's two spellings that is set (set but empty included), as
        // hyper-util's `Matcher::from_env` reads them
        let first = |names: [&str; 2]| names.iter().find_map(|n| var(n)).unwrap_or_default();
        let no = first(["NO_PROXY", "no_proxy"]);
        let matcher = match explicit {
            Some(url) => {
                url.parse::<Uri>()
                    .ok()
                    .filter(|u| u.scheme_str() == Some("http") && u.host().is_some())
                    .ok_or_else(|| {
                        S3Error::Config(format!(
                            "--proxy {url:?}: expected http://[user:password@]host:port"
                        ))
                    })?;
                Matcher::builder().all(url.to_string()).no(no).build()
            }
            // as Go's ProxyFromEnvironment: a server on this machine is never reached through
            // the environment's proxy (a proxy set for package downloads must not capture it)
            None if is_loopback(endpoint) => return Ok(None),
            // under CGI, HTTP_PROXY may come from a request's `Proxy:` header: no proxy from
            // the environment then (as hyper-util's `Matcher::from_env`)
            None if var("REQUEST_METHOD").is_some() => return Ok(None),
            None => Matcher::builder()
                .all(first(["ALL_PROXY", "all_proxy"]))
                .http(first(["HTTP_PROXY", "http_proxy"]))
                .https(first(["HTTPS_PROXY", "https_proxy"]))
                .no(no)
                .build(),
        };
        Ok(matcher.intercept(endpoint).map(|i| Proxy {
            uri: i.uri().clone(),
            auth: i.basic_auth().cloned(),
        }))
    }

    /// The proxy's address, without its credentials (for logs).
    pub fn describe(&self) -> String {
        let host = self.uri.host().unwrap_or("?");
        match self.uri.port_u16() {
            Some(port) => format!("http://{host}:{port}"),
            None => format!("http://{host}"),
        }
    }
}

fn is_loopback(uri: &Uri) -> bool {
    let host = uri
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Opens connections directly, or as `CONNECT` tunnels through a proxy.
#[derive(Clone)]
pub(crate) struct Connector {
    direct: HttpConnector,
    tunnel: Option<Tunnel<HttpConnector>>,
}

impl Connector {
    pub fn new(http: HttpConnector, proxy: Option<&Proxy>) -> Connector {
        let tunnel = proxy.map(|p| {
            let t = Tunnel::new(p.uri.clone(), http.clone());
            match &p.auth {
                Some(auth) => t.with_auth(auth.clone()),
                None => t,
            }
        });
        Connector {
            direct: http,
            tunnel,
        }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // both connectors are always ready: each call opens its own connection
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match &mut self.tunnel {
            Some(tunnel) => {
                let connecting = tunnel.call(dst);
                Box::pin(async move { connecting.await.map_err(|e| Box::new(e) as BoxError) })
            }
            None => {
                let connecting = self.direct.call(dst);
                Box::pin(async move { connecting.await.map_err(|e| Box::new(e) as BoxError) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_never_taken_for_the_environments_proxy() {
        for url in [
            "http://127.0.0.1:9000",
            "http://localhost",
            "http://[::1]:80",
        ] {
            assert!(is_loopback(&url.parse().unwrap()), "{url}");
        }
        assert!(!is_loopback(&"https://s3.amazonaws.com".parse().unwrap()));
        // named explicitly, a proxy is used even for a local server, without its password in
        // what the log shows
        let p = Proxy::for_endpoint(
            &"http://127.0.0.1:9000".parse().unwrap(),
            Some("http://u:secret@10.1.2.3:3128"),
        )
        .unwrap()
        .expect("the explicit proxy");
        assert_eq!(p.describe(), "http://10.1.2.3:3128");
        assert!(p.auth.is_some());
    }

    #[test]
    fn the_environment_can_be_looked_up_elsewhere_than_in_the_process() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let sts: Uri = "https://sts.eu-west-1.amazonaws.com/".parse().unwrap();
        let env = vars(&[("HTTPS_PROXY", "http://10.0.0.1:3128")]);
        let p = Proxy::for_endpoint_with(&sts, None, &env).unwrap();
        assert_eq!(
            p.map(|p| p.describe()).as_deref(),
            Some("http://10.0.0.1:3128")
        );
        // NO_PROXY exempts a host from the environment's proxy and from --proxy
        let env = vars(&[
            ("HTTPS_PROXY", "http://10.0.0.1:3128"),
            ("no_proxy", ".amazonaws.com"),
        ]);
        assert!(Proxy::for_endpoint_with(&sts, None, &env)
            .unwrap()
            .is_none());
        let explicit = Some("http://10.0.0.2:3128");
        assert!(Proxy::for_endpoint_with(&sts, explicit, &env)
            .unwrap()
            .is_none());
        // an http endpoint takes HTTP_PROXY, falling back on ALL_PROXY
        let http: Uri = "http://storage.example.com/".parse().unwrap();
        let env = vars(&[("ALL_PROXY", "http://10.0.0.3:8080")]);
        let p = Proxy::for_endpoint_with(&http, None, &env).unwrap();
        assert_eq!(
            p.map(|p| p.describe()).as_deref(),
            Some("http://10.0.0.3:8080")
        );
        // CGI: no proxy from the environment
        let env = vars(&[
            ("HTTPS_PROXY", "http://10.0.0.1:3128"),
            ("REQUEST_METHOD", "GET"),
        ]);
        assert!(Proxy::for_endpoint_with(&sts, None, &env)
            .unwrap()
            .is_none());
    }
}
