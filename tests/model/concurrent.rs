//! Inode identity under concurrency (defect 7 of issue 17): tasks create, look up and unlink
//! files in one directory at once, and every file that exists keeps one inode number.

use std::collections::HashMap;
use std::sync::Arc;

use bucketfs::fs::{Filesystem, ROOT_INO};

use super::harness::{Caching, Harness, CALLER};

/// Files that exist for the whole run.
const STABLE: usize = 4;
/// Tasks that each create, look up and unlink files of their own.
const OWNERS: usize = 3;
/// Tasks that look up every name (and drop the reference again, as the kernel does).
const LOOKERS: usize = 3;

async fn put_file(fs: &Filesystem, dir: u64, name: &str, body: &[u8]) -> u64 {
    let (attr, opened) = fs
        .create(dir, name, 0o644, libc::O_WRONLY, CALLER)
        .await
        .expect("create");
    fs.write(opened.fh, 0, body).await.expect("write");
    fs.flush(opened.fh, 0).await.expect("flush");
    fs.release(opened.fh).await.expect("release");
    attr.ino
}

/// Run `rounds` rounds of every task; panics with the first number that changed.
pub async fn lookups_keep_numbers(caching: Caching, rounds: usize) {
    let h = Harness::new(caching).await;
    let fs = h.fs.clone();
    let dir = fs
        .mkdir(ROOT_INO, "d", 0o755, CALLER)
        .await
        .expect("mkdir")
        .ino;
    let mut stable = HashMap::new();
    for i in 0..STABLE {
        let name = format!("s{i}");
        let ino = put_file(&fs, dir, &name, name.as_bytes()).await;
        stable.insert(name, ino);
    }
    let stable = Arc::new(stable);
    let mut tasks = Vec::new();
    for t in 0..OWNERS {
        let fs = fs.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..rounds {
                let name = format!("o{t}-{}", round % 3);
                let ino = put_file(&fs, dir, &name, &[t as u8; 100]).await;
                for _ in 0..3 {
                    let got = fs.lookup(dir, &name).await.expect("lookup own file");
                    assert_eq!(
                        got.ino, ino,
                        "{name} (created as inode {ino}) looked up as {} while it existed \
                         (round {round})",
                        got.ino
                    );
                    fs.forget(got.ino, 1);
                    tokio::task::yield_now().await;
                }
                fs.unlink(dir, &name).await.expect("unlink");
                fs.forget(ino, 1);
            }
        }));
    }
    for t in 0..LOOKERS {
        let fs = fs.clone();
        let stable = stable.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..rounds * 3 {
                let i = (round * 7 + t) % (STABLE + OWNERS * 3);
                let name = if i < STABLE {
                    format!("s{i}")
                } else {
                    let j = i - STABLE;
                    format!("o{}-{}", j / 3, j % 3)
                };
                match fs.lookup(dir, &name).await {
                    Ok(attr) => {
                        if let Some(&want) = stable.get(&name) {
                            assert_eq!(
                                attr.ino, want,
                                "{name} (inode {want}) looked up as {} (round {round})",
                                attr.ino
                            );
                        }
                        fs.forget(attr.ino, 1);
                    }
                    Err(e) => {
                        assert!(!stable.contains_key(&name), "lookup of {name}: {e:?}");
                        assert_eq!(e.errno, libc::ENOENT, "lookup of {name}: {e:?}");
                    }
                }
                if round % 16 == 0 {
                    let fh = fs.opendir(dir).await.expect("opendir");
                    let entries = fs.readdir(dir, fh, 0).await.expect("readdir");
                    fs.releasedir(fh);
                    for e in entries {
                        if let Some(&want) = stable.get(&e.name) {
                            assert!(
                                e.ino == want || e.ino & (1 << 63) != 0,
                                "readdir shows {} as inode {}, not {want}",
                                e.name,
                                e.ino
                            );
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}
