//! `--metrics-addr`: the mount's counters and gauges over HTTP, in the Prometheus (OpenMetrics)
//! text format.
//!
//! One tiny read-only endpoint (`GET`/`HEAD` `/metrics`, also `/`), served by hyper: the same
//! figures as `.bucketfs/stats` ([`crate::figures`]), each name prefixed with `bucketfs_`
//! (counters also get the `_total` suffix), with `# HELP` and `# TYPE` lines written by
//! `prometheus-client`. One request per connection; a request head may be at most 8 KiB and
//! must arrive within 5 seconds, so a scraper or a stray client cannot hold memory.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::figures::{Figure, Kind};
use crate::fs::Filesystem;

/// Largest request head read (hyper's smallest allowed buffer).
const MAX_HEAD: usize = 8 * 1024;
/// A client must send its request head within this long.
const READ_LIMIT: Duration = Duration::from_secs(5);
const CONTENT_TYPE_METRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bind the listening socket (before the mount goes live, so a bad address fails the mount).
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Answer scrapes of the mount's figures until the runtime shuts down.
pub async fn serve(listener: TcpListener, fs: Arc<Filesystem>) {
    serve_figures(listener, Arc::new(move || fs.stats_values())).await
}

/// Where a scrape gets its figures from.
pub type FigureSource = Arc<dyn Fn() -> Vec<Figure> + Send + Sync>;

/// Answer scrapes of the figures `source` gives, until the runtime shuts down.
pub async fn serve_figures(listener: TcpListener, source: FigureSource) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = source.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let source = source.clone();
                async move { Ok::<_, Infallible>(respond(req.method(), req.uri().path(), || source())) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_LIMIT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("metrics endpoint: request from {peer} failed: {e}");
            }
        });
    }
}

/// The response to one request; `figures` is called only for a scrape. (hyper leaves out the
/// body of a response to `HEAD`.)
pub fn respond(
    method: &Method,
    path: &str,
    figures: impl FnOnce() -> Vec<Figure>,
) -> Response<Full<Bytes>> {
    let (status, body) = match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics" | "/") => match exposition(&figures()) {
            Ok(text) => (StatusCode::OK, text),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the metrics: {e}\n"),
            ),
        },
        (&Method::GET | &Method::HEAD, _) => {
            (StatusCode::NOT_FOUND, "not found; try /metrics\n".into())
        }
        _ => (StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let content_type = if status == StatusCode::OK {
        CONTENT_TYPE_METRICS
    } else {
        "text/plain; charset=utf-8"
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

type Labels = Vec<(&'static str, String)>;

/// The figures as an OpenMetrics text exposition under the `bucketfs` namespace: one metric
/// per name (a family when the name has labels), with its help and type.
pub fn exposition(figures: &[Figure]) -> Result<String, std::fmt::Error> {
    let mut groups: Vec<Vec<&Figure>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for f in figures {
        let i = *index.entry(f.name).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(f);
    }
    let mut registry = Registry::with_prefix("bucketfs");
    for group in groups {
        let first = group[0];
        let labels = |f: &Figure| -> Labels { f.label.iter().cloned().collect() };
        match (first.kind, first.label.is_some()) {
            (Kind::Counter, false) => {
                let c: Counter = Counter::default();
                c.inc_by(first.value);
                registry.register(first.name, first.help, c);
            }
            (Kind::Gauge, false) => {
                let g: Gauge<u64, AtomicU64> = Gauge::default();
                g.set(first.value);
                registry.register(first.name, first.help, g);
            }
            (Kind::Counter, true) => {
                let family: Family<Labels, Counter> = Family::default();
                for f in &group {
                    family.get_or_create(&labels(f)).inc_by(f.value);
                }
                registry.register(first.name, first.help, family);
            }
            (Kind::Gauge, true) => {
                let family: Family<Labels, Gauge<u64, AtomicU64>> = Family::default();
                for f in &group {
                    family.get_or_create(&labels(f)).inc_by(f.value);
                }
                registry.register(first.name, first.help, family);
            }
        }
    }
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn sample() -> Vec<Figure> {
        vec![
            Figure::counter("s3_requests", "requests by op", 7).with_label("op", "get"),
            Figure::counter("s3_requests", "requests by op", 2).with_label("op", "put"),
            Figure::gauge("inodes", "inodes known", 3),
            Figure::counter("s3_retries", "retries", 1),
        ]
    }

    async fn body(r: Response<Full<Bytes>>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn scrape_gets_the_figures_with_help_type_and_namespace() {
        let r = respond(&Method::GET, "/metrics", sample);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], CONTENT_TYPE_METRICS);
        let text = body(r).await;
        for want in [
            "# HELP bucketfs_s3_requests requests by op.\n",
            "# TYPE bucketfs_s3_requests counter\n",
            "bucketfs_s3_requests_total{op=\"get\"} 7\n",
            "bucketfs_s3_requests_total{op=\"put\"} 2\n",
            "# TYPE bucketfs_inodes gauge\n",
            "bucketfs_inodes 3\n",
            "# TYPE bucketfs_s3_retries counter\n",
            "bucketfs_s3_retries_total 1\n",
        ] {
            assert!(text.contains(want), "{want:?} missing in:\n{text}");
        }
        assert_eq!(text.matches("# TYPE bucketfs_s3_requests ").count(), 1);
        assert!(text.ends_with("# EOF\n"), "{text}");
        // the crate keeps a family's labels in a hash map: their order varies between scrapes
        let sorted = |t: &str| {
            let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(
            sorted(&body(respond(&Method::GET, "/", sample)).await),
            sorted(&text),
            "/ is /metrics"
        );
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_refused_without_reading_figures() {
        let r = respond(&Method::GET, "/secret", || panic!("figures read for a 404"));
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = respond(&Method::POST, "/metrics", || {
            panic!("figures read for a POST")
        });
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    /// Send `request` raw to a server of [`sample`] figures; the whole reply.
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply))
            .await
            .expect("the server closes the connection after one answer")
            .unwrap();
        String::from_utf8_lossy(&reply).into_owned()
    }

    #[tokio::test]
    async fn served_over_http() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_figures(listener, Arc::new(sample)));

        let r = exchange(addr, "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(
            body.contains("bucketfs_s3_requests_total{op=\"get\"} 7\n"),
            "{r}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-length: {}", body.len())),
            "{r}"
        );

        let r = exchange(addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n"), "HEAD has no body: {r}");

        let r = exchange(addr, "GET /secret HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = exchange(addr, "DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        let r = exchange(addr, "garbage\r\n\r\n").await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 400 "), "{r}");

        // A client that sends nothing is dropped after the read limit.
        let started = std::time::Instant::now();
        let r = exchange(addr, "").await;
        let waited = started.elapsed();
        assert!(!r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(
            waited >= READ_LIMIT - Duration::from_millis(500)
                && waited < READ_LIMIT + Duration::from_secs(3),
            "dropped after {waited:?}"
        );
    }
}
