//! docs/SEMANTICS.md's request-count table, checked: each row names a job run here against the
//! filesystem core on the in-process S3 server, and the requests the job sends must be exactly
//! the ones the row lists. A row without a job, or a job without a row, fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bucketfs::config::FsConfig;
use bucketfs::fs::{Filesystem, SetAttr, ROOT_INO};
use bucketfs_test_server::TestServer;

#[path = "common/core.rs"]
mod core_fs;
use core_fs::{write_file, ME};

const MIB: usize = 1024 * 1024;

/// The table's rows: job name → expected request counts.
fn table() -> BTreeMap<String, BTreeMap<String, u64>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/SEMANTICS.md"))
        .expect("docs/SEMANTICS.md");
    let start = doc
        .find("<!-- request-count table")
        .expect("the request-count table's start marker");
    let end = doc[start..]
        .find("<!-- end of the request-count table -->")
        .expect("the table's end marker")
        + start;
    let mut rows = BTreeMap::new();
    for line in doc[start..end].lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        if cells.len() != 2 || !cells[0].trim_start().starts_with('`') {
            continue; // the marker, the header and its rule
        }
        let job = cells[0]
            .trim()
            .trim_start_matches('`')
            .split('`')
            .next()
            .expect("a job name")
            .to_string();
        let mut counts = BTreeMap::new();
        if cells[1].trim() != "(none)" {
            for item in cells[1].split(',') {
                let (op, n) = item
                    .trim()
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("row {job}: {item:?} is not `Operation N`"));
                let n: u64 = n
                    .parse()
                    .unwrap_or_else(|_| panic!("row {job}: {n:?} is not a count"));
                counts.insert(op.to_string(), n);
            }
        }
        assert!(
            rows.insert(job.clone(), counts).is_none(),
            "row {job} twice"
        );
    }
    rows
}

/// The jobs, by the names the table uses.
const JOBS: &[&str] = &[
    "small-file",
    "small-files-listed-dir",
    "large-file",
    "cold-lookup",
    "listed-lookup",
    "listed-missing",
    "read-small",
    "unlink",
    "rename-file",
    "rename-dir",
    "chmod-utimens",
    "mkdir",
    "rmdir",
    "symlink",
    "append-large",
    "truncate-zero",
    "hole",
    "extend-large",
];

fn config() -> FsConfig {
    FsConfig {
        part_size: 5 * MIB as u64,
        metadata_write_delay: Duration::from_millis(50),
        ..FsConfig::default()
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Lists directory `ino` once (readdir to the end), as `ls` does.
async fn list(fs: &Filesystem, ino: u64) {
    let fh = fs.opendir(ino).await.expect("opendir");
    let mut offset = 0;
    loop {
        let entries = fs.readdir(ino, fh, offset).await.expect("readdir");
        if entries.is_empty() {
            break;
        }
        offset += entries.len() as u64;
    }
    fs.releasedir(fh);
}

/// Runs `job`'s setup, then the job between two count resets: the requests the job sent.
async fn run(job: &str) -> BTreeMap<String, u64> {
    let srv = TestServer::start().await;
    let fs: Arc<Filesystem> = core_fs::fs_with(&srv, config());
    // setup
    match job {
        "small-files-listed-dir" | "listed-lookup" | "listed-missing" | "read-small" => {
            srv.put_object("d/a", data(100 * 1024));
            srv.put_object("d/s.txt", "small");
        }
        "cold-lookup" => {
            srv.put_object("c.txt", "c");
        }
        "unlink" | "rename-file" | "chmod-utimens" | "truncate-zero" => {
            srv.put_object("f", data(1000));
        }
        "rename-dir" => {
            for i in 0..3 {
                srv.put_object(&format!("dd/{i}"), "x");
            }
        }
        "append-large" => {
            srv.put_object("big", data(12 * MIB));
        }
        "extend-large" => {
            srv.put_object("big", data(10 * MIB));
        }
        _ => {}
    }
    let mut ino = 0;
    match job {
        "small-files-listed-dir" | "listed-lookup" | "listed-missing" | "read-small" => {
            ino = fs.lookup(ROOT_INO, "d").await.expect("lookup d").ino;
            list(&fs, ino).await;
        }
        "unlink" | "rename-file" | "chmod-utimens" | "truncate-zero" => {
            ino = fs.lookup(ROOT_INO, "f").await.expect("lookup f").ino;
            if job == "rename-file" {
                // the kernel looks the new name up before the rename
                assert!(fs.lookup(ROOT_INO, "g").await.is_err());
            }
        }
        // the kernel looks a new name up before making it
        "mkdir" => assert!(fs.lookup(ROOT_INO, "nd").await.is_err()),
        "symlink" => assert!(fs.lookup(ROOT_INO, "ln").await.is_err()),
        "rename-dir" => {
            fs.lookup(ROOT_INO, "dd").await.expect("lookup dd");
            // the kernel looks the new name up before the rename
            assert!(fs.lookup(ROOT_INO, "ee").await.is_err());
        }
        "rmdir" => {
            fs.mkdir(ROOT_INO, "ed", 0o755, ME).await.expect("mkdir");
        }
        "append-large" | "extend-large" => {
            ino = fs.lookup(ROOT_INO, "big").await.expect("lookup big").ino;
        }
        _ => {}
    }
    srv.reset_counts();
    // the job
    match job {
        "small-file" => {
            write_file(&fs, ROOT_INO, "new.txt", &data(100 * 1024)).await;
        }
        "small-files-listed-dir" => {
            for i in 0..20 {
                let name = format!("n{i}.txt");
                assert!(fs.lookup(ino, &name).await.is_err(), "{name} exists");
                write_file(&fs, ino, &name, b"small").await;
            }
        }
        "large-file" => {
            write_file(&fs, ROOT_INO, "large.bin", &data(12 * MIB)).await;
        }
        "cold-lookup" => {
            fs.lookup(ROOT_INO, "c.txt").await.expect("lookup");
        }
        "listed-lookup" => {
            fs.lookup(ino, "a").await.expect("lookup");
        }
        "listed-missing" => {
            assert!(fs.lookup(ino, "missing").await.is_err());
        }
        "read-small" => {
            let a = fs.lookup(ino, "s.txt").await.expect("lookup");
            let o = fs.open(a.ino, libc::O_RDONLY, ME).await.expect("open");
            let got = fs.read(o.fh, 0, 4096).await.expect("read");
            assert_eq!(&got[..], b"small");
            fs.release(o.fh).await.expect("release");
        }
        "unlink" => fs.unlink(ROOT_INO, "f").await.expect("unlink"),
        "rename-file" => fs
            .rename(ROOT_INO, "f", ROOT_INO, "g", 0)
            .await
            .expect("rename"),
        "rename-dir" => fs
            .rename(ROOT_INO, "dd", ROOT_INO, "ee", 0)
            .await
            .expect("rename"),
        "chmod-utimens" => {
            let t = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
            let changes = [
                SetAttr {
                    mode: Some(0o600),
                    ..SetAttr::default()
                },
                SetAttr {
                    uid: Some(ME.uid),
                    gid: Some(ME.gid),
                    ..SetAttr::default()
                },
                SetAttr {
                    atime: Some(t),
                    mtime: Some(t),
                    ..SetAttr::default()
                },
            ];
            for c in changes {
                fs.setattr(ino, c, ME).await.expect("setattr");
            }
            assert!(fs.wait_metadata_written(Duration::from_secs(10)).await);
        }
        "mkdir" => {
            fs.mkdir(ROOT_INO, "nd", 0o755, ME).await.expect("mkdir");
        }
        "rmdir" => fs.rmdir(ROOT_INO, "ed").await.expect("rmdir"),
        "symlink" => {
            fs.symlink(ROOT_INO, "ln", "target", ME)
                .await
                .expect("symlink");
        }
        "append-large" => {
            let o = fs
                .open(ino, libc::O_WRONLY | libc::O_APPEND, ME)
                .await
                .expect("open");
            fs.write(o.fh, (12 * MIB) as u64, b"+")
                .await
                .expect("write");
            fs.flush(o.fh, 0).await.expect("close");
            fs.release(o.fh).await.expect("release");
            assert_eq!(srv.get_object("big").map(|b| b.len()), Some(12 * MIB + 1));
        }
        "truncate-zero" => {
            let req = SetAttr {
                size: Some(0),
                ..SetAttr::default()
            };
            fs.setattr(ino, req, ME).await.expect("truncate");
        }
        "hole" => {
            let (_, o) = fs
                .create(ROOT_INO, "hole", 0o644, libc::O_WRONLY, ME)
                .await
                .expect("create");
            fs.write(o.fh, (20 * MIB) as u64, b"x")
                .await
                .expect("write");
            fs.flush(o.fh, 0).await.expect("close");
            fs.release(o.fh).await.expect("release");
            assert_eq!(srv.get_object("hole").map(|b| b.len()), Some(20 * MIB + 1));
        }
        "extend-large" => {
            let req = SetAttr {
                size: Some(30 * MIB as u64),
                ..SetAttr::default()
            };
            fs.setattr(ino, req, ME).await.expect("truncate");
            assert_eq!(srv.get_object("big").map(|b| b.len()), Some(30 * MIB));
        }
        other => panic!("no job {other} here"),
    }
    let counts = srv.counts().into_iter().filter(|(_, n)| *n > 0).collect();
    fs.shutdown().await;
    counts
}

#[test]
fn every_row_has_a_job_and_every_job_a_row() {
    let rows = table();
    let jobs: Vec<&str> = JOBS.to_vec();
    let mut named: Vec<&str> = rows.keys().map(String::as_str).collect();
    named.sort_unstable();
    let mut sorted = jobs.clone();
    sorted.sort_unstable();
    assert_eq!(named, sorted, "rows of the table vs jobs of this test");
}

#[tokio::test]
async fn each_job_sends_what_its_row_says() {
    let rows = table();
    let mut wrong = Vec::new();
    for (job, want) in &rows {
        let got = run(job).await;
        if &got != want {
            wrong.push(format!(
                "{job}: the table says {want:?}, the job sent {got:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
