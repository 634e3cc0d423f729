//! Helpers of the credential tests: environments, files, and a fake HTTP server standing in
//! for instance metadata, STS or the SSO portal on 127.0.0.1.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::credentials::CredentialRequest;

/// An environment with `pairs`; instance metadata is off unless a test points it at a fake.
pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut e: HashMap<String, String> = HashMap::new();
    e.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
    for (k, v) in pairs {
        e.insert(k.to_string(), v.to_string());
    }
    e
}

pub fn request(bucket: &str) -> CredentialRequest {
    CredentialRequest {
        bucket: bucket.to_string(),
        ..Default::default()
    }
}

pub fn write(path: &Path, text: &str, mode: u32) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `(method, path, headers)` of every request.
pub type Seen = Arc<std::sync::Mutex<Vec<(String, String, Vec<(String, String)>)>>>;

pub struct FakeMetadata {
    pub url: String,
    pub seen: Seen,
}

pub fn fake_metadata(
    routes: impl Fn(&str, &str, &[(String, String)]) -> (u16, String) + Send + Sync + 'static,
) -> FakeMetadata {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            // a request body, for the routes as a pseudo-header `<body>`
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            if len > 0 {
                let mut body = vec![0u8; len];
                if std::io::Read::read_exact(&mut reader, &mut body).is_ok() {
                    headers.push((
                        "<body>".to_string(),
                        String::from_utf8_lossy(&body).into_owned(),
                    ));
                }
            }
            let (status, body) = routes(&method, &path, &headers);
            seen2.lock().unwrap().push((method, path, headers));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    FakeMetadata { url, seen }
}

pub fn sts_answer(key: &str, expires: SystemTime) -> String {
    format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{key}</AccessKeyId>\
         <SecretAccessKey>sec-{key}</SecretAccessKey><SessionToken>tok-{key}</SessionToken>\
         <Expiration>{}</Expiration></Credentials></AssumeRoleWithWebIdentityResult>\
         </AssumeRoleWithWebIdentityResponse>",
        crate::s3::cred_sources::iso8601_for_tests(expires)
    )
}

/// A fake STS answering AssumeRole for `roles` (role ARN → the key that must sign for
/// it, the key it hands out), checking each signature against the headers as they arrived.
pub fn fake_sts(roles: &'static [(&'static str, &'static str, &'static str)]) -> FakeMetadata {
    fake_metadata(move |method, _, headers| {
        let h = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let body = h("<body>");
        let auth = h("authorization");
        for (arn, signer, hands_out) in roles {
            let enc_arn = arn.replace(':', "%3A").replace('/', "%2F");
            if !(method == "POST"
                && body.contains("Action=AssumeRole&")
                && body.contains(&format!("RoleArn={enc_arn}&")))
            {
                continue;
            }
            // the signature, computed again from what arrived
            let mut signed: Vec<(String, String)> = ["host", "content-type", "x-amz-date"]
                .iter()
                .map(|n| (n.to_string(), h(n)))
                .collect();
            let token = h("x-amz-security-token");
            let date = h("x-amz-date");
            // 20261202T035500Z → 2026-12-02T03:55:00Z
            let iso = if date.len() == 16 {
                format!(
                    "{}-{}-{}T{}:{}:{}Z",
                    &date[0..4],
                    &date[4..6],
                    &date[6..8],
                    &date[9..11],
                    &date[11..13],
                    &date[13..15]
                )
            } else {
                String::new()
            };
            let time = crate::s3::time::parse_iso8601(&iso).unwrap_or(SystemTime::UNIX_EPOCH);
            let secret = format!("sec-{signer}");
            let hash = crate::s3::sigv4::sha256_hex(body.as_bytes());
            let out = crate::s3::sigv4::sign(
                &crate::s3::sigv4::SigningParams {
                    access_key_id: signer,
                    secret_access_key: &secret,
                    session_token: (!token.is_empty()).then_some(token.as_str()),
                    region: "eu-west-3",
                    service: "sts",
                    time,
                },
                &crate::s3::sigv4::SignableRequest {
                    method: "POST",
                    path: "/",
                    query: &[],
                    payload_hash: &hash,
                    content_sha256_header: false,
                },
                &mut signed,
                None,
            );
            if out.authorization == auth {
                let answer = sts_answer(hands_out, SystemTime::now() + Duration::from_secs(3600))
                    .replace("AssumeRoleWithWebIdentity", "AssumeRole");
                return (200, answer);
            }
        }
        (
            403,
            "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>no</Message>\
             </Error></ErrorResponse>"
                .to_string(),
        )
    })
}
