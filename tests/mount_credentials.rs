//! Credentials on a real mount: keys a `credential_process` hands out that expire during a
//! long copy are replaced ahead of expiry, without a failed request or write.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn keys_expiring_during_a_long_copy_are_replaced_without_a_failed_request() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    // the in-process server's key list (SKIP against another server)
    let counting = srv.counting().expect(SKIP_EXTERNAL);
    counting.add_credentials("AKIDFIRSTKEY", "first-secret-key");
    counting.add_credentials("AKIDSECONDKEY", "second-secret-key");
    let home = tempfile::tempdir().expect("home");
    let runs = home.path().join("runs");
    let script = home.path().join("creds.sh");
    // the first run hands out keys that expire in 90 s (within the 5 minutes bucketfs
    // refreshes ahead of); later runs, other keys valid for an hour
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nn=$(cat {r} 2>/dev/null || echo 0); echo $((n+1)) > {r}\n\
             if [ \"$n\" = 0 ]; then k=AKIDFIRSTKEY; s=first-secret-key; e=$(date -u -d '+90 sec' +%Y-%m-%dT%H:%M:%SZ);\n\
             else k=AKIDSECONDKEY; s=second-secret-key; e=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ); fi\n\
             printf '{{\"Version\":1,\"AccessKeyId\":\"%s\",\"SecretAccessKey\":\"%s\",\"Expiration\":\"%s\"}}' $k $s $e\n",
            r = runs.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(&aws).expect("mkdir");
    std::fs::write(
        aws.join("config"),
        format!("[default]\ncredential_process = {}\n", script.display()),
    )
    .expect("config");
    let home_path = home.path().to_path_buf();
    let m = Mount::with_command(&srv, &[], &move |cmd| {
        cmd.env("HOME", &home_path)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_CONFIG_FILE")
            .env_remove("AWS_SHARED_CREDENTIALS_FILE");
    });
    // a long copy: 24 MiB in 1 MiB writes, the keys replaced a third of the way through
    let mut f = std::fs::File::create(m.p("long.bin")).expect("create");
    let data = pattern(24 << 20, 5);
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        f.write_all(chunk).expect("write");
        if i == 8 {
            // requests go on (lookups of new names) until bucketfs has fetched new keys ahead
            // of expiry in the background (fetches are at least 1 s apart)
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut n = 0;
            while !m.log_text().contains("credentials refreshed") {
                assert!(
                    Instant::now() < deadline,
                    "never refreshed:\n{}",
                    m.log_text()
                );
                n += 1;
                let _ = std::fs::metadata(m.p(&format!("probe-{n}")));
                std::thread::sleep(Duration::from_millis(100));
            }
            // the first keys go, as an expiring session's would
            counting.set_credentials("AKIDSECONDKEY", "second-secret-key");
        }
    }
    close_checked(f);
    assert_eq!(std::fs::read_to_string(&runs).expect("runs").trim(), "2");
    assert_eq!(
        sha256(&srv.get_object("long.bin").expect("in the bucket")),
        sha256(&data)
    );
    let refused: Vec<_> = counting
        .request_log()
        .into_iter()
        .filter(|r| r.status == Some(403))
        .map(|r| format!("{} {}", r.op, r.path))
        .collect();
    assert!(refused.is_empty(), "requests refused: {refused:?}");
}
