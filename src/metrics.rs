//! `--metrics-addr`: the mount's counters over plain HTTP, in Prometheus text format.
//!
//! One tiny read-only endpoint (`GET /metrics`, also `/`): the same figures as
//! `.bucketfs/stats` and `bucketfs stats`, each name prefixed with `bucketfs_`. It answers one
//! request per connection and closes it, reads at most 8 KiB of request head and gives up on a
//! client that sends nothing for 5 seconds, so a scraper or a stray client cannot hold memory.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::fs::Filesystem;

const MAX_HEAD: usize = 8 * 1024;
const READ_LIMIT: Duration = Duration::from_secs(5);

/// Bind the listening socket (before the mount goes live, so a bad address fails the mount).
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Answer scrapes until the runtime shuts down.
pub async fn serve(listener: TcpListener, fs: Arc<Filesystem>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let fs = fs.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &fs).await {
                tracing::debug!("metrics endpoint: request from {peer} failed: {e}");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, fs: &Filesystem) -> io::Result<()> {
    let head = match tokio::time::timeout(READ_LIMIT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let reply = respond(&head, || fs.stats_text());
    stream.write_all(&reply).await?;
    stream.shutdown().await
}

/// Read up to the blank line ending the request head, at most [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_HEAD {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The whole HTTP/1.1 response to a request head; `stats` is called only for a scrape.
pub fn respond(head: &str, stats: impl FnOnce() -> String) -> Vec<u8> {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics" | "/") => ("200 OK", exposition(&stats())),
        ("GET" | "HEAD", _) => ("404 Not Found", "not found; try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "only GET\n".to_string()),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// `name{labels} value` lines with the `bucketfs_` namespace, blank and comment lines dropped.
fn exposition(stats: &str) -> String {
    stats
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| format!("bucketfs_{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reply: &[u8]) -> String {
        String::from_utf8_lossy(reply).into_owned()
    }

    #[test]
    fn scrape_gets_the_counters_with_the_namespace() {
        let r = text(&respond("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", || {
            "s3_requests{op=\"get\"} 7\n\ninodes 3\n".into()
        }));
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let body = r.split("\r\n\r\n").nth(1).unwrap_or("");
        assert_eq!(
            body,
            "bucketfs_s3_requests{op=\"get\"} 7\nbucketfs_inodes 3\n"
        );
        assert!(
            r.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{r}"
        );
    }

    #[test]
    fn other_paths_and_methods_are_refused_without_reading_stats() {
        let r = text(&respond("GET /secret HTTP/1.1\r\n\r\n", || {
            panic!("stats read for a 404")
        }));
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = text(&respond("POST /metrics HTTP/1.1\r\n\r\n", || {
            panic!("stats read for a POST")
        }));
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        let r = text(&respond("", || panic!("stats read for garbage")));
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    }

    #[test]
    fn head_has_no_body() {
        let r = text(&respond("HEAD /metrics HTTP/1.1\r\n\r\n", || {
            "inodes 1\n".into()
        }));
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n"), "{r}");
        assert!(r.contains("Content-Length: 18\r\n"), "{r}");
    }
}
