//! Role credentials from a real STS: moto (`moto[server]`, installed by scripts/setup.sh)
//! answers STS on the port it serves S3 on. Each test starts its own moto, finds the keys as
//! a mount does (its command line, the AWS config file, `AWS_ENDPOINT_URL_STS` pointing at
//! moto), writes and reads an object with them, and checks with moto's own record
//! (`/moto-api/data.json`) that these keys are the ones its STS handed out for the role.
//!
//! Without moto the tests print `SKIPPED` and pass, except in CI (`CI` set), where they fail.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bucketfs::config::cli::{self, parse_args};
use bucketfs::config::credentials::{load_shared_with, resolve_region};
use bucketfs::s3::{PutOptions, S3Client, SharedCredentials};

const ACCOUNT: &str = "123456789012";
const BUCKET: &str = "roles";

/// How moto is started here, if it is installed: `moto_server`, else `python3 -m moto.server`.
fn moto_command() -> Option<Vec<String>> {
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("moto_server").is_file())
    });
    if on_path {
        return Some(vec!["moto_server".into()]);
    }
    let module = Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    module.then(|| vec!["python3".into(), "-m".into(), "moto.server".into()])
}

/// moto on a free port of 127.0.0.1, stopped when dropped. Its output (one line per request)
/// is kept.
struct Moto {
    child: Child,
    port: u16,
    log: Arc<parking_lot::Mutex<Vec<String>>>,
}

impl Moto {
    /// moto, started and listening; `None` (after a `SKIPPED` line) when it is not installed
    /// and this is not CI.
    fn start() -> Option<Moto> {
        let Some(command) = moto_command() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the STS tests against moto: it is not installed \
                 (scripts/setup.sh installs moto[server]==5.2.5)"
            );
            eprintln!(
                "SKIPPED: STS against moto: moto is not installed \
                 (pip install 'moto[server]==5.2.5', or run scripts/setup.sh)"
            );
            return None;
        };
        // a port found free may be taken before moto binds it: another one then
        let mut last = String::new();
        for _ in 0..3 {
            match Moto::spawn(&command) {
                Ok(moto) => return Some(moto),
                Err(e) => last = e,
            }
        }
        panic!("moto did not start: {last}");
    }

    fn spawn(command: &[String]) -> Result<Moto, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", command.join(" ")))?;
        let log: Arc<parking_lot::Mutex<Vec<String>>> = Arc::default();
        let (ready_tx, ready) = mpsc::channel::<()>();
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().ok_or("no stdout")?),
            Box::new(child.stderr.take().ok_or("no stderr")?),
        ];
        for stream in streams {
            let (log, ready_tx) = (log.clone(), ready_tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("Running on") {
                        let _ = ready_tx.send(());
                    }
                    log.lock().push(line);
                }
            });
        }
        drop(ready_tx);
        let moto = Moto { child, port, log };
        // werkzeug says "Running on http://127.0.0.1:PORT" once it listens; both streams
        // closing first means moto exited
        match ready.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => Ok(moto),
            Err(_) => Err(format!(
                "moto on port {port} never said it was listening: {}",
                moto.log.lock().join(" | ")
            )),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One plain HTTP/1.0 request (moto takes unsigned ones); status and body.
    fn http(&self, method: &str, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
            self.port
        )
        .expect("send to moto");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("moto's answer");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, body.to_string())
    }

    /// `(role ARN, session name, access key)` of every role moto's STS assumed so far.
    fn assumed_roles(&self) -> Vec<(String, String, String)> {
        let (status, body) = self.http("GET", "/moto-api/data.json");
        assert_eq!(status, 200, "moto-api: {body}");
        let doc: serde_json::Value = serde_json::from_str(&body).expect("moto-api JSON");
        doc["sts"]["AssumedRole"]
            .as_array()
            .map(|roles| {
                roles
                    .iter()
                    .map(|r| {
                        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                        (s("role_arn"), s("session_name"), s("access_key_id"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// A home whose AWS files hold static keys (`base`), a role assumed with them (`first`), a
/// role assumed with `first`'s keys (`second`: a chain) and a web identity role (`web`),
/// and the web identity token file.
fn aws_home() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let home = tempfile::tempdir().expect("home");
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(&aws).expect("mkdir");
    let token = aws.join("web-identity-token");
    let files = [
        (
            aws.join("credentials"),
            "[base]\naws_access_key_id = AKIAMOTOBASE00000000\n\
             aws_secret_access_key = base-secret\n"
                .to_string(),
        ),
        (
            aws.join("config"),
            format!(
                "[profile first]\nrole_arn = {}\nsource_profile = base\nregion = us-east-1\n\
                 role_session_name = first-session\n\
                 [profile second]\nrole_arn = {}\nsource_profile = first\n\
                 role_session_name = second-session\n\
                 [profile web]\nrole_arn = {}\nweb_identity_token_file = {}\n\
                 role_session_name = web-session\n",
                role("first"),
                role("second"),
                role("web"),
                token.display()
            ),
        ),
        // moto takes any token
        (
            token.clone(),
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2ln".to_string(),
        ),
    ];
    for (path, text) in files {
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    home
}

fn base_env(home: &Path, moto: &Moto) -> HashMap<String, String> {
    [
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("HOME", home.display().to_string()),
        ("AWS_ENDPOINT_URL_STS", moto.url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The keys and S3 client a mount of moto's bucket would have, from its command line
/// (`extra`: `--profile NAME`, or nothing) with `env` as its environment.
async fn mount_client(
    moto: &Moto,
    extra: &[&str],
    env: HashMap<String, String>,
) -> (SharedCredentials, S3Client) {
    let url = moto.url();
    let mut argv = vec![
        "bucketfs",
        "mount",
        BUCKET,
        "/mnt/unused",
        "--endpoint",
        &url,
    ];
    argv.extend_from_slice(extra);
    let parsed = parse_args(argv).expect("command line");
    let cli::Command::Mount(args) = parsed.cli.command else {
        panic!("not a mount command");
    };
    let plan = args.plan().expect("mount plan");
    let env = Arc::new(env);
    let (request, env2) = (plan.credentials.clone(), env.clone());
    let creds = tokio::task::spawn_blocking(move || load_shared_with(&request, env2))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("credentials: {e}"));
    let region = resolve_region(
        plan.connection.region.as_deref(),
        plan.credentials.profile.as_deref(),
        env.as_ref(),
    );
    let endpoint = cli::resolve_endpoint(&plan.connection, &region, env.as_ref()).expect("url");
    let config = cli::s3_config(
        &plan.connection,
        &plan.bucket,
        &endpoint,
        &region,
        creds.clone(),
    );
    (creds, S3Client::new(config).expect("client"))
}

/// Writes and reads an object with `client`.
async fn round_trip(client: &S3Client, key: &str) {
    let data = format!("written with the keys of {key}").into_bytes();
    client
        .put_object(key, data.clone(), &PutOptions::default())
        .await
        .expect("PutObject with the role's keys");
    let got = client.get_object(key, None, None).await.expect("GetObject");
    assert_eq!(&got.body[..], &data[..]);
}

fn started() -> Option<(Moto, tempfile::TempDir)> {
    let moto = Moto::start()?;
    let (status, body) = moto.http("PUT", &format!("/{BUCKET}"));
    assert_eq!(status, 200, "create the bucket: {body}");
    Some((moto, aws_home()))
}

#[tokio::test]
async fn a_role_profile_assumes_its_role_at_motos_sts() {
    let Some((moto, home)) = started() else {
        return;
    };
    let env = base_env(home.path(), &moto);
    let (creds, client) = mount_client(&moto, &["--profile", "first"], env).await;
    round_trip(&client, "first").await;
    let keys = creds.current();
    assert!(
        keys.access_key_id.starts_with("ASIA"),
        "{}",
        keys.access_key_id
    );
    assert!(keys.session_token.is_some());
    assert_eq!(
        moto.assumed_roles(),
        vec![(
            role("first"),
            "first-session".to_string(),
            keys.access_key_id.clone()
        )]
    );
}

#[tokio::test]
async fn a_chained_role_is_assumed_with_the_keys_of_the_role_before_it() {
    let Some((moto, home)) = started() else {
        return;
    };
    let env = base_env(home.path(), &moto);
    let (creds, client) = mount_client(&moto, &["--profile", "second"], env).await;
    round_trip(&client, "second").await;
    let keys = creds.current();
    let assumed = moto.assumed_roles();
    assert_eq!(assumed.len(), 2, "{assumed:?}");
    // first the source role, then the role of the profile, whose keys the client uses
    assert_eq!(
        (assumed[0].0.as_str(), assumed[0].1.as_str()),
        (role("first").as_str(), "first-session")
    );
    assert_eq!(
        assumed[1],
        (
            role("second"),
            "second-session".to_string(),
            keys.access_key_id.clone()
        )
    );
    assert_ne!(assumed[0].2, assumed[1].2);
}

#[tokio::test]
async fn a_web_identity_token_is_exchanged_at_motos_sts() {
    let Some((moto, home)) = started() else {
        return;
    };
    // the environment's AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (EKS IRSA)
    let mut env = base_env(home.path(), &moto);
    let token = home.path().join(".aws/web-identity-token");
    env.insert(
        "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
        token.display().to_string(),
    );
    env.insert("AWS_ROLE_ARN".into(), role("irsa"));
    env.insert("AWS_ROLE_SESSION_NAME".into(), "irsa-session".into());
    let (creds, client) = mount_client(&moto, &[], env).await;
    round_trip(&client, "irsa").await;
    let irsa_key = creds.current().access_key_id;
    // a profile's web_identity_token_file
    let env = base_env(home.path(), &moto);
    let (creds, client) = mount_client(&moto, &["--profile", "web"], env).await;
    round_trip(&client, "web").await;
    let web_key = creds.current().access_key_id;
    assert_eq!(
        moto.assumed_roles(),
        vec![
            (role("irsa"), "irsa-session".to_string(), irsa_key),
            (role("web"), "web-session".to_string(), web_key),
        ]
    );
}
