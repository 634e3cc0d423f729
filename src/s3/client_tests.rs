//! Tests of `S3Client` against a scripted in-process HTTP server on an ephemeral port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::s3::credentials::{CredentialSource, Credentials, StaticCredentials};

fn creds() -> SharedCredentials {
    Arc::new(StaticCredentials {
        credentials: Credentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "secret/key+value".into(),
            session_token: None,
        },
        origin: "test".into(),
    })
}

fn client_for(endpoint: &str, path_style: bool) -> S3Client {
    let mut cfg = S3Config::new(endpoint, "us-east-1", "bucket", creds());
    cfg.path_style = path_style;
    cfg.connect_timeout = Duration::from_millis(500);
    cfg.read_timeout = Duration::from_millis(500);
    cfg.max_attempts = 4;
    cfg.retry_timeout = Duration::from_secs(10);
    S3Client::new(cfg).unwrap()
}

#[test]
fn path_style_urls_keep_odd_keys() {
    let c = client_for("http://127.0.0.1:9000", true);
    assert_eq!(
        c.object_url("a b/../c//d.txt").unwrap(),
        "http://127.0.0.1:9000/bucket/a%20b/../c//d.txt"
    );
    assert_eq!(
        c.object_url("./x/.").unwrap(),
        "http://127.0.0.1:9000/bucket/./x/."
    );
    assert_eq!(
        c.object_url("100%+?#&=é~").unwrap(),
        "http://127.0.0.1:9000/bucket/100%25%2B%3F%23%26%3D%C3%A9~"
    );
    assert_eq!(
        c.object_url("/lead").unwrap(),
        "http://127.0.0.1:9000/bucket//lead"
    );
    assert!(matches!(c.object_url(""), Err(S3Error::Config(_))));
    assert_eq!(
        c.target(None).unwrap(),
        ("127.0.0.1:9000".to_owned(), "/bucket".to_owned())
    );
}

#[test]
fn virtual_hosted_urls() {
    let c = client_for("https://s3.eu-west-1.amazonaws.com", false);
    assert_eq!(
        c.object_url("dir/file name").unwrap(),
        "https://bucket.s3.eu-west-1.amazonaws.com/dir/file%20name"
    );
    assert_eq!(
        c.object_url("../up").unwrap(),
        "https://bucket.s3.eu-west-1.amazonaws.com/../up"
    );
    assert_eq!(
        c.target(None).unwrap(),
        (
            "bucket.s3.eu-west-1.amazonaws.com".to_owned(),
            "/".to_owned()
        )
    );
    let based = client_for("http://minio.local:9000/base/", true);
    assert_eq!(
        based.object_url("k").unwrap(),
        "http://minio.local:9000/base/bucket/k"
    );
    let mut cfg = S3Config::new("http://127.0.0.1:9000", "r", "bucket", creds());
    cfg.path_style = false;
    assert!(matches!(S3Client::new(cfg), Err(S3Error::Config(_))));
    let cfg = S3Config::new("localhost:9000", "r", "bucket", creds());
    assert!(matches!(S3Client::new(cfg), Err(S3Error::Config(_))));
}

#[test]
fn range_headers() {
    assert_eq!(range_header(&(0..10)).as_deref(), Some("bytes=0-9"));
    assert_eq!(range_header(&(5..6)).as_deref(), Some("bytes=5-5"));
    assert_eq!(range_header(&(7..7)), None);
    assert_eq!(
        parse_content_range("bytes 0-9/1234"),
        Some((Some(0), Some(9), Some(1234)))
    );
    assert_eq!(
        parse_content_range("bytes */0"),
        Some((None, None, Some(0)))
    );
    assert_eq!(
        parse_content_range("bytes 0-9/*"),
        Some((Some(0), Some(9), None))
    );
    assert_eq!(parse_content_range("items 0-9/10"), None);
}

#[test]
fn backoff_bounds() {
    assert_eq!(backoff_ceiling(1), Duration::from_millis(50));
    assert_eq!(backoff_ceiling(2), Duration::from_millis(100));
    assert_eq!(backoff_ceiling(7), Duration::from_millis(3200));
    assert_eq!(backoff_ceiling(8), Duration::from_secs(5));
    assert_eq!(backoff_ceiling(1000), Duration::from_secs(5));
    for retry in 1..20 {
        for _ in 0..50 {
            assert!(backoff_delay(retry) <= backoff_ceiling(retry));
        }
    }
}

#[test]
fn etag_quoting() {
    assert_eq!(quote_etag("abc"), "\"abc\"");
    assert_eq!(quote_etag("\"abc\""), "\"abc\"");
    assert_eq!(quote_etag("*"), "*");
}

// ---- scripted server -------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    /// Which accepted connection it came on (from 0).
    conn: usize,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Reply {
    /// Raw bytes to write; the connection stays open.
    Raw(Vec<u8>),
    /// Write these bytes, then close the connection (a body cut short).
    RawThenClose(Vec<u8>),
    /// Say nothing for this long, then close.
    Stall(Duration),
}

fn resp(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Reply::Raw(bytes)
}

type Script = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    buf.drain(..head_end + 4);
    while buf.len() < len {
        let mut chunk = [0u8; 65536];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    Some(Seen {
        method,
        target,
        conn: 0,
        headers,
        body,
    })
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Script = Arc::new(script);
        let count = Arc::new(AtomicUsize::new(0));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            let mut conns = 0;
            while let Ok((mut sock, _)) = listener.accept().await {
                let (seen, script, count) = (seen2.clone(), script.clone(), count.clone());
                let conn = conns;
                conns += 1;
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    while let Some(mut req) = read_request(&mut sock, &mut buf).await {
                        req.conn = conn;
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        seen.lock().push(req.clone());
                        match script(&req, n) {
                            Reply::Raw(b) => {
                                if sock.write_all(&b).await.is_err() {
                                    return;
                                }
                            }
                            Reply::RawThenClose(b) => {
                                let _ = sock.write_all(&b).await;
                                return;
                            }
                            Reply::Stall(d) => {
                                tokio::time::sleep(d).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        Server { addr, seen }
    }

    fn client(&self) -> S3Client {
        client_for(&format!("http://{}", self.addr), true)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

#[tokio::test]
async fn a_connection_whose_request_body_may_be_unread_is_not_reused() {
    // RGW answers some PUTs before reading their body: the rest of the body would be taken
    // for the next request on that connection. After an error answer to a request with a
    // body, the connection is dropped; after one to a bodiless request it is kept.
    let srv = Server::start(|req, _| match req.method.as_str() {
        "PUT" => resp(400, &[], b"<Error><Code>KeyTooLongError</Code></Error>"),
        "HEAD" => resp(404, &[], b""),
        _ => resp(200, &[], b"<ListBucketResult></ListBucketResult>"),
    })
    .await;
    let c = srv.client();
    assert!(c.head_object("a").await.is_err());
    assert!(c.head_object("b").await.is_err());
    let put = c
        .put_object("k", Bytes::from_static(b"body"), &PutOptions::default())
        .await;
    assert_eq!(put.unwrap_err().status(), Some(400));
    assert!(c.head_object("c").await.is_err());
    let conns: Vec<usize> = srv.seen().iter().map(|s| s.conn).collect();
    assert_eq!(conns[0], conns[1], "a 404 to a HEAD keeps its connection");
    assert_eq!(conns[1], conns[2], "the PUT goes on the same connection");
    assert_ne!(
        conns[2], conns[3],
        "the connection of the refused PUT was reused"
    );
}

#[tokio::test]
async fn dot_segments_and_signing_headers_on_the_wire() {
    let srv = Server::start(|_, _| resp(200, &[("etag", "\"e1\"")], b"")).await;
    let c = srv.client();
    let meta = c
        .put_object(
            "a/../b/./c//d e",
            Bytes::from_static(b"hello"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(meta.etag.as_deref(), Some("e1"));
    assert_eq!(meta.size, 5);
    let seen = srv.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(r.target, "/bucket/a/../b/./c//d%20e");
    assert_eq!(r.body, b"hello");
    assert_eq!(r.header("x-amz-content-sha256"), Some("UNSIGNED-PAYLOAD"));
    assert!(r.header("x-amz-date").is_some());
    assert_eq!(r.header("host"), Some(format!("{}", srv.addr).as_str()));
    let auth = r.header("authorization").unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"));
    // the body's Content-MD5 is signed with the rest
    assert_eq!(r.header("content-md5"), Some("XUFAKrxLKna5cZ2REBfFkg=="));
    assert!(auth.contains("SignedHeaders=content-md5;host;x-amz-content-sha256;x-amz-date,"));
    assert_eq!(c.stats().requests_for("put"), 1);
    assert_eq!(c.stats().bytes_sent, 5);
}

#[tokio::test]
async fn retries_5xx_then_succeeds() {
    let srv = Server::start(|_, n| {
        if n < 2 {
            resp(
                503,
                &[],
                b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>",
            )
        } else {
            resp(200, &[("content-length", "3")], b"abc")
        }
    })
    .await;
    let c = srv.client();
    let out = c.get_object("k", None, None).await.unwrap();
    assert_eq!(&out.body[..], b"abc");
    assert_eq!(srv.seen().len(), 3);
    let stats = c.stats();
    assert_eq!(stats.retries, 2);
    assert_eq!(stats.requests_for("get"), 3);
    assert_eq!(stats.bytes_received, 3 + 2 * 80);
}

#[tokio::test]
async fn gives_up_after_max_attempts_and_never_retries_4xx() {
    let srv = Server::start(|_, _| resp(500, &[("x-amz-request-id", "RID1")], b"")).await;
    let c = srv.client();
    let err = c.head_object("k").await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.request_id(), Some("RID1"));
    assert_eq!(srv.seen().len(), 4);
    assert_eq!(c.stats().errors.get("InternalError"), Some(&1));

    let srv = Server::start(|_, _| resp(404, &[], b"")).await;
    let c = srv.client();
    let err = c.head_object("missing").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.code(), Some("NoSuchKey"));
    assert_eq!(srv.seen().len(), 1);
    assert!(matches!(c.head_bucket().await, Err(e) if e.is_no_such_bucket()));

    let srv = Server::start(|_, _| {
        resp(
            412,
            &[],
            b"<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>",
        )
    })
    .await;
    let c = srv.client();
    let opts = PutOptions {
        if_none_match_any: true,
        ..PutOptions::default()
    };
    let err = c
        .put_object("k", Bytes::from_static(b"x"), &opts)
        .await
        .unwrap_err();
    assert!(err.is_precondition_failed());
    let seen = srv.seen();
    // the 412 is not retried; one HEAD checks whether the object is this very write (an
    // earlier attempt whose answer was lost)
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("if-none-match"), Some("*"));
    assert_eq!(seen[1].method, "HEAD");
}

#[derive(Debug)]
struct Rotating {
    refreshed: AtomicBool,
}

impl CredentialSource for Rotating {
    fn current(&self) -> Credentials {
        let id = if self.refreshed.load(Ordering::SeqCst) {
            "NEWKEY"
        } else {
            "OLDKEY"
        };
        Credentials {
            access_key_id: id.into(),
            secret_access_key: "s".into(),
            session_token: Some("tok".into()),
        }
    }
    fn refresh_after_denied(&self) -> bool {
        !self.refreshed.swap(true, Ordering::SeqCst)
    }
    fn describe(&self) -> String {
        "rotating test keys".into()
    }
}

#[tokio::test]
async fn refreshes_credentials_once_after_403() {
    let srv = Server::start(|req, _| {
        if req
            .header("authorization")
            .is_some_and(|a| a.contains("NEWKEY"))
        {
            resp(200, &[], b"")
        } else {
            resp(
                403,
                &[],
                b"<Error><Code>InvalidAccessKeyId</Code><Message>no</Message></Error>",
            )
        }
    })
    .await;
    let mut cfg = S3Config::new(format!("http://{}", srv.addr), "r", "bucket", {
        let c: SharedCredentials = Arc::new(Rotating {
            refreshed: AtomicBool::new(false),
        });
        c
    });
    cfg.max_attempts = 3;
    let c = S3Client::new(cfg).unwrap();
    assert_eq!(c.describe_credentials(), "rotating test keys");
    c.delete_object("k").await.unwrap();
    let seen = srv.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("x-amz-security-token"), Some("tok"));
    assert!(seen[1]
        .header("authorization")
        .unwrap()
        .contains("x-amz-security-token"));
    // The refreshed keys stay in use.
    assert!(c.head_bucket().await.is_ok());
}

#[tokio::test]
async fn stalled_server_times_out_and_retries() {
    let srv = Server::start(|_, n| {
        if n == 0 {
            Reply::Stall(Duration::from_secs(3))
        } else {
            resp(200, &[], b"")
        }
    })
    .await;
    let c = srv.client();
    let t = std::time::Instant::now();
    c.head_bucket().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(450));
    assert_eq!(srv.seen().len(), 2);
    assert_eq!(c.stats().retries, 1);
}

#[tokio::test]
async fn body_cut_short_is_retried() {
    let srv = Server::start(|_, n| {
        if n == 0 {
            Reply::RawThenClose(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec())
        } else {
            resp(200, &[], b"0123456789")
        }
    })
    .await;
    let c = srv.client();
    let out = c.get_object("k", None, None).await.unwrap();
    assert_eq!(&out.body[..], b"0123456789");
    assert_eq!(srv.seen().len(), 2);
}

#[tokio::test]
async fn connection_refused_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = S3Config::new(format!("http://{addr}"), "r", "bucket", creds());
    cfg.max_attempts = 2;
    let c = S3Client::new(cfg).unwrap();
    let err = c.head_bucket().await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(c.stats().requests_for("head_bucket"), 2);
    assert_eq!(c.stats().errors.get("connect"), Some(&1));
}

#[tokio::test]
async fn ranged_gets() {
    let srv = Server::start(|req, _| match req.header("range") {
        Some("bytes=0-4095") if req.target.contains("empty") => resp(
            416,
            &[("content-range", "bytes */0")],
            b"<Error><Code>InvalidRange</Code><Message>The requested range is not satisfiable</Message></Error>",
        ),
        Some("bytes=2-4") => resp(
            206,
            &[("content-range", "bytes 2-4/10"), ("etag", "\"v1\"")],
            b"234",
        ),
        Some("bytes=100-199") => resp(416, &[("content-range", "bytes */10")], b""),
        Some("bytes=5-6") => resp(200, &[], b"0123456789"),
        _ => resp(400, &[], b""),
    })
    .await;
    let c = srv.client();
    let out = c.get_object("empty", Some(0..4096), None).await.unwrap();
    assert!(out.body.is_empty());
    assert_eq!(out.meta.size, 0);
    let out = c.get_object("k", Some(2..5), Some("v1")).await.unwrap();
    assert_eq!(&out.body[..], b"234");
    assert_eq!(out.meta.size, 10);
    assert_eq!(out.meta.etag.as_deref(), Some("v1"));
    let out = c.get_object("k", Some(100..200), None).await.unwrap();
    assert!(out.body.is_empty());
    assert_eq!(out.meta.size, 10);
    let out = c.get_object("k", Some(5..7), None).await.unwrap();
    assert_eq!(&out.body[..], b"56");
    let seen = srv.seen();
    assert_eq!(seen[1].header("if-match"), Some("\"v1\""));
}

#[tokio::test]
async fn a_ranged_get_gives_the_crc32c_of_each_unit_of_its_body() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 1000) as u8).collect();
    let served = body.clone();
    let srv = Server::start(move |req, _| match req.header("range") {
        Some("bytes=0-199999") => resp(206, &[("content-range", "bytes 0-199999/300000")], &served),
        // a server that ignores the range: the units it would give are the whole object's
        _ => resp(200, &[], &served),
    })
    .await;
    let c = srv.client();
    let unit = 64 * 1024;
    let out = c
        .get_object_units("k", Some(0..200_000), None, Some(unit))
        .await
        .unwrap();
    let want: Vec<u32> = body.chunks(unit).map(crc32c::crc32c).collect();
    assert_eq!(out.unit_crcs.len(), 4);
    assert_eq!(out.unit_crcs, want);
    let out = c
        .get_object_units("k", Some(10..20), None, Some(unit))
        .await
        .unwrap();
    assert_eq!(&out.body[..], &body[10..20]);
    assert!(
        out.unit_crcs.is_empty(),
        "a cut body's units are not its own"
    );
    let out = c.get_object("k", Some(0..200_000), None).await.unwrap();
    assert!(out.unit_crcs.is_empty(), "not asked for");
}

#[tokio::test]
async fn head_object_metadata() {
    let srv = Server::start(|_, _| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\netag: \"abc\"\r\nlast-modified: Mon, 12 Oct 2009 17:50:00 GMT\r\ncontent-type: text/plain\r\nx-amz-meta-Mode: 33188\r\nx-amz-storage-class: STANDARD_IA\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let c = srv.client();
    let m = c.head_object("k").await.unwrap();
    assert_eq!(m.size, 1234);
    assert_eq!(m.etag.as_deref(), Some("abc"));
    assert!(m.last_modified.is_some());
    assert_eq!(m.content_type.as_deref(), Some("text/plain"));
    assert_eq!(m.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(
        m.user_metadata.get("mode").map(String::as_str),
        Some("33188")
    );
}

#[tokio::test]
async fn multipart_flow_and_error_inside_200() {
    let srv = Server::start(|req, n| {
        let t = &req.target;
        if req.method == "POST" && t.ends_with("?uploads") {
            resp(200, &[], b"<InitiateMultipartUploadResult><UploadId>U1</UploadId></InitiateMultipartUploadResult>")
        } else if req.method == "PUT" && req.header("x-amz-copy-source").is_some() {
            resp(200, &[], b"<CopyPartResult><ETag>\"p2\"</ETag></CopyPartResult>")
        } else if req.method == "PUT" {
            resp(200, &[("etag", "\"p1\"")], b"")
        } else if req.method == "POST" && n == 3 {
            resp(200, &[], b"<Error><Code>InternalError</Code><Message>try again</Message></Error>")
        } else if req.method == "POST" {
            resp(200, &[], b"<CompleteMultipartUploadResult><ETag>\"final-2\"</ETag></CompleteMultipartUploadResult>")
        } else {
            resp(204, &[], b"")
        }
    })
    .await;
    let c = srv.client();
    let opts = PutOptions {
        content_type: Some("text/plain".into()),
        ..PutOptions::default()
    };
    let id = c.create_multipart_upload("big file", &opts).await.unwrap();
    assert_eq!(id, "U1");
    let e1 = c
        .upload_part("big file", &id, 1, Bytes::from_static(b"part-one"))
        .await
        .unwrap();
    assert_eq!(e1.etag, "p1");
    let e2 = c
        .upload_part_copy("big file", &id, 2, "src/ky+", 0..5, Some("srcetag"))
        .await
        .unwrap();
    assert_eq!(e2.etag, "p2");
    let parts = vec![e1, e2];
    let etag = c
        .complete_multipart_upload("big file", &id, &parts, &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(etag, "final-2");
    c.abort_multipart_upload("big file", &id).await.unwrap();

    let seen = srv.seen();
    assert_eq!(seen[0].target, "/bucket/big%20file?uploads");
    assert_eq!(seen[0].header("content-type"), Some("text/plain"));
    assert_eq!(
        seen[1].target,
        "/bucket/big%20file?partNumber=1&uploadId=U1"
    );
    assert_eq!(
        seen[2].header("x-amz-copy-source"),
        Some("/bucket/src/ky%2B")
    );
    assert_eq!(seen[2].header("x-amz-copy-source-range"), Some("bytes=0-4"));
    assert_eq!(
        seen[2].header("x-amz-copy-source-if-match"),
        Some("\"srcetag\"")
    );
    // Complete was answered once with a 200 carrying <Error>, then retried.
    assert_eq!(seen[3].method, "POST");
    assert_eq!(seen[4].method, "POST");
    let body = String::from_utf8_lossy(&seen[4].body).into_owned();
    assert!(body.contains("<PartNumber>2</PartNumber><ETag>\"p2\"</ETag>"));
    assert_eq!(seen[5].method, "DELETE");
    assert_eq!(seen[5].target, "/bucket/big%20file?uploadId=U1");
}

#[tokio::test]
async fn copy_and_delete_objects() {
    let srv = Server::start(|req, _| {
        if req.method == "PUT" {
            resp(200, &[], b"<CopyObjectResult><ETag>\"c1\"</ETag><LastModified>2009-10-28T22:32:00.000Z</LastModified></CopyObjectResult>")
        } else if req.method == "POST" {
            resp(200, &[], b"<DeleteResult><Error><Key>b&amp;c</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error><Error><Key>gone</Key><Code>NoSuchKey</Code><Message>x</Message></Error></DeleteResult>")
        } else {
            resp(404, &[], b"<Error><Code>NoSuchKey</Code><Message>x</Message></Error>")
        }
    })
    .await;
    let c = srv.client();
    let opts = PutOptions {
        content_type: Some("application/x-test".into()),
        user_metadata: [("Mode".to_owned(), "644".to_owned())].into(),
        ..PutOptions::default()
    };
    let etag = c
        .copy_object("from dir/a", "to/b", Some(&opts), Some("\"src\""))
        .await
        .unwrap();
    assert_eq!(etag, "c1");
    let keys = vec!["a".to_owned(), "b&c".to_owned(), "gone".to_owned()];
    let failures = c.delete_objects(&keys).await.unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, "b&c");
    assert!(failures[0].1.is_access_denied());
    c.delete_object("already-gone").await.unwrap();
    assert!(c.delete_objects(&[]).await.unwrap().is_empty());

    let seen = srv.seen();
    assert_eq!(
        seen[0].header("x-amz-copy-source"),
        Some("/bucket/from%20dir/a")
    );
    assert_eq!(seen[0].header("x-amz-metadata-directive"), Some("REPLACE"));
    assert_eq!(seen[0].header("x-amz-meta-mode"), Some("644"));
    assert_eq!(
        seen[0].header("x-amz-copy-source-if-match"),
        Some("\"src\"")
    );
    assert_eq!(seen[1].target, "/bucket?delete");
    let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&seen[1].body));
    assert_eq!(seen[1].header("content-md5"), Some(md5.as_str()));
    let body = String::from_utf8_lossy(&seen[1].body).into_owned();
    assert!(body.contains("<Key>b&amp;c</Key>"));
    assert!(body.contains("<Quiet>true</Quiet>"));
}

#[tokio::test]
async fn listing_queries_and_pages() {
    let srv = Server::start(|req, _| {
        if req.target.contains("uploads") && !req.target.contains("key-marker") {
            resp(200, &[], b"<ListMultipartUploadsResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><NextKeyMarker>k%201</NextKeyMarker><NextUploadIdMarker>u1</NextUploadIdMarker><Upload><Key>k%201</Key><UploadId>u1</UploadId></Upload></ListMultipartUploadsResult>")
        } else if req.target.contains("uploads") {
            resp(200, &[], b"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated><Upload><Key>k2</Key><UploadId>u2</UploadId></Upload></ListMultipartUploadsResult>")
        } else {
            resp(200, &[], b"<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated><Contents><Key>dir/a+b</Key><Size>5</Size></Contents><CommonPrefixes><Prefix>dir/sub/</Prefix></CommonPrefixes></ListBucketResult>")
        }
    })
    .await;
    let c = srv.client();
    let req = ListRequest {
        prefix: "dir/".into(),
        delimiter: Some("/".into()),
        continuation_token: Some("tok/+=".into()),
        start_after: None,
        max_keys: Some(2),
    };
    let page = c.list_objects_v2(&req).await.unwrap();
    assert_eq!(page.objects[0].key, "dir/a b");
    assert_eq!(page.common_prefixes, vec!["dir/sub/"]);
    let uploads = c.list_multipart_uploads("k").await.unwrap();
    assert_eq!(uploads.len(), 2);
    assert_eq!(uploads[0].key, "k 1");
    let seen = srv.seen();
    assert_eq!(
        seen[0].target,
        "/bucket?continuation-token=tok%2F%2B%3D&delimiter=%2F&encoding-type=url&list-type=2&max-keys=2&prefix=dir%2F"
    );
    assert_eq!(
        seen[2].target,
        "/bucket?encoding-type=url&key-marker=k%201&prefix=k&upload-id-marker=u1&uploads"
    );
}

#[tokio::test]
async fn x_id_follows_profile_and_signed_payload() {
    let srv = Server::start(|_, _| resp(200, &[("etag", "\"e\"")], b"")).await;
    let mut cfg = S3Config::new(format!("http://{}", srv.addr), "r", "bucket", creds());
    cfg.profile = profile(Provider::Aws);
    cfg.sign_payload = true;
    cfg.storage_class = Some("STANDARD_IA".into());
    let c = S3Client::new(cfg).unwrap();
    c.put_object("k", Bytes::from_static(b"abc"), &PutOptions::default())
        .await
        .unwrap();
    let seen = srv.seen();
    assert_eq!(seen[0].target, "/bucket/k?x-id=PutObject");
    assert_eq!(
        seen[0].header("x-amz-content-sha256"),
        Some(sigv4::sha256_hex(b"abc").as_str())
    );
    assert_eq!(seen[0].header("x-amz-storage-class"), Some("STANDARD_IA"));
}

/// Manual smoke test against moto (`moto_server -H 127.0.0.1 -p 5055`); not run by default.
#[tokio::test]
#[ignore]
async fn moto_smoke() {
    let endpoint =
        std::env::var("BUCKETFS_TEST_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5055".into());
    let bucket = format!(
        "smoke-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let mut cfg = S3Config::new(endpoint, "us-east-1", bucket, creds());
    cfg.max_attempts = 2;
    let c = S3Client::new(cfg).unwrap();
    // moto creates buckets on PUT /bucket; do it with a bucket-level PUT.
    let mut call = Call::new(Op::Put, Method::PUT, None);
    call.body = Payload::default();
    let _ = c.execute(&call).await;
    c.head_bucket().await.unwrap();
    let keys = [
        "plain",
        "sp ace/x",
        "a+b%c&d",
        "uni/é日",
        "dots/../x",
        "dots/./y",
        "sl//ash",
    ];
    for k in keys {
        c.put_object(
            k,
            Bytes::from(k.as_bytes().to_vec()),
            &PutOptions::default(),
        )
        .await
        .unwrap();
        let got = c.get_object(k, None, None).await.unwrap();
        assert_eq!(&got.body[..], k.as_bytes(), "{k}");
        let part = c.get_object(k, Some(1..3), None).await.unwrap();
        assert_eq!(&part.body[..], &k.as_bytes()[1..3], "{k}");
        assert_eq!(c.head_object(k).await.unwrap().size, k.len() as u64);
    }
    let page = c.list_objects_v2(&ListRequest::default()).await.unwrap();
    let mut listed: Vec<_> = page.objects.iter().map(|o| o.key.clone()).collect();
    listed.sort();
    let mut want: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    let id = c
        .create_multipart_upload("mpu", &PutOptions::default())
        .await
        .unwrap();
    let big = Bytes::from(vec![b'x'; 5 * 1024 * 1024]);
    let e1 = c.upload_part("mpu", &id, 1, big).await.unwrap();
    let e2 = c
        .upload_part_copy("mpu", &id, 2, "plain", 0..5, None)
        .await
        .unwrap();
    assert_eq!(c.list_multipart_uploads("").await.unwrap().len(), 1);
    let parts = vec![e1, e2];
    c.complete_multipart_upload("mpu", &id, &parts, &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        c.head_object("mpu").await.unwrap().size,
        5 * 1024 * 1024 + 5
    );
    c.copy_object("mpu", "mpu copy", None, None).await.unwrap();
    let all: Vec<String> = keys
        .iter()
        .map(|s| s.to_string())
        .chain(["mpu".into(), "mpu copy".into()])
        .collect();
    assert!(c.delete_objects(&all).await.unwrap().is_empty());
    assert!(c.head_object("plain").await.unwrap_err().is_not_found());
    println!("{}", c.stats().to_text());
}

#[tokio::test]
async fn wrong_region_is_named() {
    let srv = Server::start(|_, _| resp(301, &[("x-amz-bucket-region", "eu-west-3")], b"")).await;
    let err = srv.client().head_bucket().await.unwrap_err();
    assert_eq!(err.code(), Some("PermanentRedirect"));
    assert!(err
        .to_string()
        .contains("bucket is in region eu-west-3; configured region is us-east-1"));
    assert!(!err.is_retryable());
}
