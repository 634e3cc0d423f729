//! The endpoint reached through an HTTP proxy (`--proxy`): every connection is a CONNECT
//! tunnel carrying the proxy's credentials; a proxy that refuses them is a clear error. STS and
//! the SSO portal are reached through the same proxy by the same rule (`NO_PROXY` included);
//! the ECS container endpoint never is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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

/// `(method, path, body)` of each request a [`FakeServices`] answered.
type Seen = Arc<parking_lot::Mutex<Vec<(String, String, String)>>>;

/// STS (AssumeRole, AssumeRoleWithWebIdentity), the SSO portal, SSO OIDC (`POST /token`)
/// and an ECS container endpoint (`GET /ecs`) on 127.0.0.1, answering each with fixed keys (signatures are
/// checked by the unit tests: here only the way there matters).
struct FakeServices {
    url: String,
    host: String,
    seen: Seen,
}

async fn fake_services() -> FakeServices {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).await.is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.trim().eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; len];
                if tokio::io::AsyncReadExt::read_exact(&mut reader, &mut body)
                    .await
                    .is_err()
                {
                    return;
                }
                let body = String::from_utf8_lossy(&body).into_owned();
                let expires = SystemTime::now() + Duration::from_secs(3600);
                let answer = if method == "POST" && body.contains("Action=AssumeRole") {
                    let action = if body.contains("Action=AssumeRoleWithWebIdentity") {
                        "AssumeRoleWithWebIdentity"
                    } else {
                        "AssumeRole"
                    };
                    format!(
                        "<{action}Response><{action}Result><Credentials>\
                         <AccessKeyId>ASIASTS</AccessKeyId><SecretAccessKey>s</SecretAccessKey>\
                         <SessionToken>t</SessionToken><Expiration>{}</Expiration>\
                         </Credentials></{action}Result></{action}Response>",
                        bucketfs::s3::cred_sources::iso8601_for_tests(expires)
                    )
                } else if method == "POST" && path == "/token" {
                    r#"{"accessToken":"tok-2","expiresIn":3600,"tokenType":"Bearer"}"#.to_string()
                } else if path.starts_with("/federation/credentials") {
                    let ms = expires
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis();
                    format!(
                        r#"{{"roleCredentials":{{"accessKeyId":"ASIASSO","secretAccessKey":"s","sessionToken":"t","expiration":{ms}}}}}"#
                    )
                } else {
                    format!(
                        r#"{{"AccessKeyId":"ECSKEY","SecretAccessKey":"sec-ECSKEY","Token":"t","Expiration":"{}"}}"#,
                        bucketfs::s3::cred_sources::iso8601_for_tests(expires)
                    )
                };
                seen.lock().push((method, path, body));
                let mut stream = reader.into_inner();
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                            answer.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    FakeServices {
        url: format!("http://{host}"),
        host,
        seen,
    }
}

/// A home with role profiles (`role`: keys from `base`; `ecs`: keys from the ECS endpoint),
/// SSO profiles (`dev`; `stale`, whose cached token has expired and is refreshed) and their
/// cached tokens, and a web identity token file.
fn aws_home() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let home = tempfile::tempdir().expect("home");
    let aws = home.path().join(".aws");
    let cache = aws.join("sso/cache");
    std::fs::create_dir_all(&cache).expect("mkdir");
    let files = [
        (
            aws.join("config"),
            "[profile role]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n\
             region = eu-west-3\n\
             [profile ecs]\nrole_arn = arn:aws:iam::1:role/e\ncredential_source = EcsContainer\n\
             region = eu-west-3\n\
             [profile dev]\nsso_session = corp\nsso_account_id = 111122223333\n\
             sso_role_name = Dev\n[sso-session corp]\nsso_region = eu-west-1\n\
             sso_start_url = https://corp.awsapps.com/start\n\
             [profile stale]\nsso_session = old\nsso_account_id = 111122223333\n\
             sso_role_name = Dev\n[sso-session old]\nsso_region = eu-west-1\n\
             sso_start_url = https://corp.awsapps.com/start\n"
                .to_string(),
        ),
        (
            aws.join("credentials"),
            "[base]\naws_access_key_id = AKBASE\naws_secret_access_key = sec\n".to_string(),
        ),
        (
            bucketfs::s3::sso::SsoFetcher::token_file_for(&cache, "corp"),
            format!(
                r#"{{"accessToken":"tok-1","expiresAt":"{}"}}"#,
                bucketfs::s3::cred_sources::iso8601_for_tests(
                    SystemTime::now() + Duration::from_secs(3600)
                )
            ),
        ),
        (
            bucketfs::s3::sso::SsoFetcher::token_file_for(&cache, "old"),
            format!(
                r#"{{"accessToken":"tok-1","expiresAt":"{}","clientId":"c","clientSecret":"cs","refreshToken":"rt","registrationExpiresAt":"{}"}}"#,
                bucketfs::s3::cred_sources::iso8601_for_tests(
                    SystemTime::now() - Duration::from_secs(60)
                ),
                bucketfs::s3::cred_sources::iso8601_for_tests(
                    SystemTime::now() + Duration::from_secs(86_400)
                )
            ),
        ),
        (aws.join("web-token"), "eyJ.token.sig".to_string()),
    ];
    for (path, text) in files {
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    home
}

/// The keys `profile` (or, with `None`, the environment) gives, found as a mount finds them
/// with `--proxy proxy`; fetched off the runtime (the fakes run on it).
async fn keys_of(
    profile: Option<&str>,
    proxy: Option<String>,
    env: &HashMap<String, String>,
) -> String {
    let request = bucketfs::config::credentials::CredentialRequest {
        profile: profile.map(str::to_string),
        bucket: "b".into(),
        proxy,
        ..Default::default()
    };
    let env = Arc::new(env.clone());
    tokio::task::spawn_blocking(move || {
        bucketfs::config::credentials::load_shared_with(&request, env)
            .map(|c| c.current().access_key_id)
            .map_err(|e| e.to_string())
    })
    .await
    .expect("join")
    .expect("credentials")
}

fn services_env(home: &tempfile::TempDir, svc: &FakeServices) -> HashMap<String, String> {
    let home_dir = home.path().to_str().expect("utf-8 path");
    [
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("HOME", home_dir.to_string()),
        ("AWS_ENDPOINT_URL_STS", svc.url.clone()),
        ("AWS_ENDPOINT_URL_SSO", svc.url.clone()),
        ("AWS_ENDPOINT_URL_SSO_OIDC", svc.url.clone()),
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/ecs", svc.url),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[tokio::test]
async fn sts_and_the_sso_portal_go_through_the_proxy_and_the_ecs_endpoint_does_not() {
    let svc = fake_services().await;
    let proxy = fake_proxy("dXNlcjpwdw==").await;
    let url = Some(format!("http://user:pw@{}", proxy.url_host));
    let home = aws_home();
    let env = services_env(&home, &svc);
    let tunnels = || proxy.tunnels.load(Ordering::SeqCst);

    // AssumeRole of a role profile: one tunnel, to STS
    assert_eq!(keys_of(Some("role"), url.clone(), &env).await, "ASIASTS");
    assert_eq!(tunnels(), 1);
    // GetRoleCredentials of an SSO profile
    assert_eq!(keys_of(Some("dev"), url.clone(), &env).await, "ASIASSO");
    assert_eq!(tunnels(), 2);
    // AssumeRoleWithWebIdentity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)
    let mut web = env.clone();
    let token = home.path().join(".aws/web-token");
    web.insert(
        "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
        token.display().to_string(),
    );
    web.insert("AWS_ROLE_ARN".into(), "arn:aws:iam::1:role/w".into());
    assert_eq!(keys_of(None, url.clone(), &web).await, "ASIASTS");
    assert_eq!(tunnels(), 3);
    // a role whose source is the ECS endpoint: AssumeRole through the proxy, the container
    // endpoint directly
    assert_eq!(keys_of(Some("ecs"), url.clone(), &env).await, "ASIASTS");
    assert_eq!(tunnels(), 4, "only the AssumeRole went through the proxy");
    // an expired SSO token: its refresh at SSO OIDC, then GetRoleCredentials
    assert_eq!(keys_of(Some("stale"), url.clone(), &env).await, "ASIASSO");
    assert_eq!(tunnels(), 6);
    assert!(proxy.targets.lock().iter().all(|t| *t == svc.host));
    let seen: Vec<(String, String)> = svc
        .seen
        .lock()
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert!(
        seen.contains(&("POST".to_string(), "/token".to_string())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("GET".to_string(), "/ecs".to_string())),
        "{seen:?}"
    );
}

#[tokio::test]
async fn no_proxy_exempts_sts_and_the_sso_portal_and_the_environments_proxy_skips_loopback() {
    let svc = fake_services().await;
    let proxy = fake_proxy("dXNlcjpwdw==").await;
    let url = format!("http://user:pw@{}", proxy.url_host);
    let home = aws_home();
    let mut env = services_env(&home, &svc);
    env.insert("NO_PROXY".into(), "example.com, 127.0.0.1".into());
    assert_eq!(
        keys_of(Some("role"), Some(url.clone()), &env).await,
        "ASIASTS"
    );
    assert_eq!(
        keys_of(Some("dev"), Some(url.clone()), &env).await,
        "ASIASSO"
    );
    // without --proxy, the environment's proxy is not used for a server on this machine
    // (the S3 client's rule)
    let mut env = services_env(&home, &svc);
    env.insert("HTTP_PROXY".into(), url.clone());
    env.insert("HTTPS_PROXY".into(), url);
    assert_eq!(keys_of(Some("role"), None, &env).await, "ASIASTS");
    assert_eq!(keys_of(Some("dev"), None, &env).await, "ASIASSO");
    assert_eq!(proxy.tunnels.load(Ordering::SeqCst), 0);
    assert_eq!(
        svc.seen.lock().len(),
        4,
        "each reached STS or the portal directly"
    );
}
