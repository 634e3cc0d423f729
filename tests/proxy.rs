//! The endpoint reached through an HTTP proxy (`--proxy`): every connection is a CONNECT
//! tunnel carrying the proxy's credentials; a proxy that refuses them is a clear error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bucketfs::s3::PutOptions;
use bucketfs_test_server::TestServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[path = "common/core.rs"]
mod core_fs;
use core_fs::client_with;

/// A CONNECT proxy on 127.0.0.1 that wants `Proxy-Authorization: Basic <want>`; counts the
/// tunnels it opened and remembers their targets.
struct FakeProxy {
    url_host: String,
    tunnels: Arc<AtomicUsize>,
    targets: Arc<parking_lot::Mutex<Vec<String>>>,
}

async fn fake_proxy(want: &'static str) -> FakeProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url_host = listener.local_addr().expect("addr").to_string();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let targets = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (t2, g2) = (tunnels.clone(), targets.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tunnels, targets) = (t2.clone(), g2.clone());
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).await.is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.trim().eq_ignore_ascii_case("proxy-authorization") {
                            auth = v.trim().to_string();
                        }
                    }
                }
                let mut client = reader.into_inner();
                if !line.starts_with("CONNECT ") || auth != format!("Basic {want}") {
                    let _ = client
                        .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                        .await;
                    return;
                }
                let Ok(mut server) = TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                tunnels.fetch_add(1, Ordering::SeqCst);
                targets.lock().push(target);
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    FakeProxy {
        url_host,
        tunnels,
        targets,
    }
}

#[tokio::test]
async fn requests_go_through_the_proxys_tunnels_with_its_credentials() {
    let srv = TestServer::start().await;
    // "user:pw"
    let proxy = fake_proxy("dXNlcjpwdw==").await;
    let url = format!("http://user:pw@{}", proxy.url_host);
    let c = client_with(&srv, |cfg| cfg.proxy = Some(url.clone()));
    c.put_object("via/proxy", b"hello".to_vec(), &PutOptions::default())
        .await
        .expect("put through the proxy");
    let got = c.get_object("via/proxy", None, None).await.expect("get");
    assert_eq!(&got.body[..], b"hello");
    assert!(proxy.tunnels.load(Ordering::SeqCst) >= 1);
    let server_host = srv
        .endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    assert!(proxy.targets.lock().iter().all(|t| *t == server_host));
    assert_eq!(srv.get_object("via/proxy").as_deref(), Some(&b"hello"[..]));

    // wrong credentials: refused by the proxy, said as such, nothing reached the server
    let wrong = format!("http://user:nope@{}", proxy.url_host);
    let c = client_with(&srv, |cfg| cfg.proxy = Some(wrong.clone()));
    let before = proxy.tunnels.load(Ordering::SeqCst);
    let err = c
        .put_object("refused", b"x".to_vec(), &PutOptions::default())
        .await
        .expect_err("a proxy refusing the credentials");
    assert!(
        err.to_string().to_lowercase().contains("proxy"),
        "the error names the proxy: {err}"
    );
    assert!(!err.to_string().contains("nope"), "no password in {err}");
    assert_eq!(proxy.tunnels.load(Ordering::SeqCst), before);
    assert!(srv.get_object("refused").is_none());
}

#[tokio::test]
async fn a_proxy_url_that_is_not_http_is_refused_at_once() {
    let srv = TestServer::start().await;
    let mut cfg = core_fs::config(&srv);
    cfg.proxy = Some("socks5://127.0.0.1:1080".into());
    let cfg_err = bucketfs::s3::S3Client::new(cfg).expect_err("not an http proxy");
    assert!(cfg_err.to_string().contains("--proxy"), "{cfg_err}");
}
