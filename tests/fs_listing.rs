//! Listings and the lookups they answer, driven through the filesystem core against the
//! in-process test server: what a walk with no lookup keeps, and what a page boundary between
//! a file and the directory of the same name leaves.

use std::sync::Arc;

use bucketfs::config::FsConfig;
use bucketfs::fs::{FileKind, Filesystem, ROOT_INO};
use bucketfs_test_server::{Fault, FaultKind, Gate, TestServer};

#[path = "common/core.rs"]
mod core_fs;
use core_fs::{dir_names, fs_with, read_rest, ME};

fn fs(srv: &TestServer) -> Arc<Filesystem> {
    fs_with(srv, FsConfig::default())
}

/// A server with `n` one-byte keys `big/f00000`…, a core over it, and the directory `big`.
async fn big_directory(n: usize) -> (TestServer, Arc<Filesystem>, u64) {
    let srv = TestServer::start().await;
    for i in 0..n {
        srv.put_object(&format!("big/f{i:05}"), "x");
    }
    let fs = fs(&srv);
    let d = fs.lookup(ROOT_INO, "big").await.expect("lookup");
    (srv, fs, d.ino)
}

#[tokio::test]
async fn a_listing_read_through_with_no_lookup_keeps_its_entries_and_builds_no_name_map() {
    let (srv, fs, dir) = big_directory(2_500).await;
    let fh = fs.opendir(dir).await.expect("opendir");
    assert_eq!(read_rest(&fs, dir, fh, 0).await.len(), 2_502);
    fs.releasedir(fh);
    assert_eq!(
        fs.listing_name_map_built(dir),
        Some(false),
        "`ls -f` copies nothing for lookups"
    );
    // the cached listing still answers lookups, with no request
    srv.reset_counts();
    let f = fs.lookup(dir, "f02000").await.expect("f02000");
    assert_eq!(f.kind, FileKind::File);
    assert_eq!(
        fs.lookup(dir, "f99999").await.expect_err("absent").errno,
        libc::ENOENT
    );
    assert_eq!(
        srv.count("HeadObject") + srv.count("ListObjectsV2"),
        0,
        "{:?}",
        srv.counts()
    );
    assert_eq!(fs.listing_name_map_built(dir), Some(true));
}

/// The file `d/x` near the end of the first page (1,000 keys), `d/x-1` and `d/x.txt` after it
/// (they sort before `d/x/`), and the prefix `d/x/` starting the second.
async fn a_file_and_its_directory_twin_across_pages() -> TestServer {
    let srv = TestServer::start().await;
    for i in 0..997 {
        srv.put_object(&format!("d/a{i:04}"), "x");
    }
    srv.put_object("d/x", "file twin");
    srv.put_object("d/x-1", "x");
    srv.put_object("d/x.txt", "x");
    srv.put_object("d/x/y", "inside");
    for i in 0..10 {
        srv.put_object(&format!("d/z{i}"), "x");
    }
    srv
}

#[tokio::test]
async fn a_directory_replacing_its_file_twin_on_the_next_page_is_found_by_lookups() {
    for lookup_during in [false, true] {
        let srv = a_file_and_its_directory_twin_across_pages().await;
        let fs = fs(&srv);
        let d = fs.lookup(ROOT_INO, "d").await.expect("lookup");
        let fh = fs.opendir(d.ino).await.expect("opendir");
        // the first reply: the first page only (a reply waits for no page it does not need)
        let first = fs.readdir(d.ino, fh, 0).await.expect("readdir");
        let offset = first.last().expect("entries").next_offset;
        if lookup_during {
            // `ls -l`: a lookup while the listing comes (it shows each page to lookups)
            fs.lookup(d.ino, "a0001").await.expect("a0001");
        }
        let rest = read_rest(&fs, d.ino, fh, offset).await;
        fs.releasedir(fh);
        let x: Vec<_> = first
            .iter()
            .chain(&rest)
            .filter(|e| e.name == "x")
            .collect();
        assert_eq!(x.len(), 1, "lookup during: {lookup_during}");
        assert_eq!(x[0].kind, FileKind::Directory);
        let attr = fs.lookup(d.ino, "x").await.expect("x is there");
        assert_eq!(
            attr.kind,
            FileKind::Directory,
            "lookup during: {lookup_during}"
        );
        let y = fs.lookup(attr.ino, "y").await.expect("y");
        assert_eq!(y.kind, FileKind::File);
    }
}

/// Names of what `readdir` gives for open directory handle `fh`, `.` and `..` left out.
async fn names_of(fs: &Filesystem, ino: u64, fh: u64) -> Vec<String> {
    let mut names: Vec<String> = read_rest(fs, ino, fh, 0)
        .await
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    names
}

/// A file being written is in no listing of the bucket; readdir adds it to the listing. It
/// leaves that set when its upload lands. A directory opened from the cached listing before
/// the landing and read after it showed neither, and cached its old copy of the listing again
/// (a walk missed a file right as the write-back uploader landed it, found by the soak).
#[tokio::test]
async fn a_file_landing_between_opendir_and_readdir_of_a_cached_listing_is_shown() {
    let srv = TestServer::start().await;
    srv.put_object("a", "x");
    let fs = fs(&srv);
    assert_eq!(dir_names(&fs, ROOT_INO).await, [".", "..", "a"]);
    let (_, o) = fs
        .create(ROOT_INO, "c", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(o.fh, 0, b"c").await.expect("write");
    srv.reset_counts();
    let fh = fs.opendir(ROOT_INO).await.expect("opendir");
    fs.flush(o.fh, 0).await.expect("close lands");
    fs.release(o.fh).await.expect("release");
    assert_eq!(names_of(&fs, ROOT_INO, fh).await, ["a", "c"]);
    fs.releasedir(fh);
    // and the cached listing is the one with the landed file, not the handle's older copy
    let again = fs.opendir(ROOT_INO).await.expect("opendir");
    assert_eq!(names_of(&fs, ROOT_INO, again).await, ["a", "c"]);
    fs.releasedir(again);
    assert_eq!(srv.count("ListObjectsV2"), 0, "{:?}", srv.counts());
}

/// The same while the listing is fetched: its page was made before the file landed, and is
/// read after it.
#[tokio::test]
async fn a_file_landing_while_its_directory_is_listed_is_shown() {
    let srv = TestServer::start().await;
    srv.put_object("a", "x");
    let fs = fs(&srv);
    let (_, o) = fs
        .create(ROOT_INO, "c", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(o.fh, 0, b"c").await.expect("write");
    let gate = Gate::new();
    srv.add_fault(
        Fault::new(FaultKind::HoldResponse(gate.clone()))
            .op("ListObjectsV2")
            .times(1),
    );
    let fh = fs.opendir(ROOT_INO).await.expect("opendir");
    let reader = tokio::spawn({
        let fs = fs.clone();
        async move { names_of(&fs, ROOT_INO, fh).await }
    });
    gate.held().await;
    fs.flush(o.fh, 0).await.expect("close lands");
    fs.release(o.fh).await.expect("release");
    gate.open();
    assert_eq!(reader.await.expect("reader"), ["a", "c"]);
    fs.releasedir(fh);
    assert_eq!(dir_names(&fs, ROOT_INO).await, [".", "..", "a", "c"]);
}

/// A reader that has taken k pages of a listing lets the walk run k parsed pages ahead of it
/// (from 2, up to 32): one that takes a directory in batches (fts, under `find`, `du`,
/// `chmod -R`, keeps 100,000 entries, then sorts and prints them before it reads on) finds
/// the next pages fetched meanwhile. A reader that goes through still costs one request per
/// page of 1,000.
#[tokio::test]
async fn the_walk_runs_as_many_pages_ahead_as_its_reader_has_taken() {
    let (srv, fs, dir) = big_directory(20_000).await;
    srv.reset_counts();
    // a reader of 8 pages lets 8 parsed pages wait, with the 17th parsed and the 18th asked
    // for (with 2 waiting, the walk stopped at the 12th)
    let gate = Gate::new();
    srv.add_fault(
        Fault::new(FaultKind::HoldRequest(gate.clone()))
            .op("ListObjectsV2")
            .skip(17)
            .times(1),
    );
    let fh = fs.opendir(dir).await.expect("opendir");
    let (mut taken, mut offset) = (0usize, 0u64);
    while taken < 7_500 {
        fs.readdir_into(dir, fh, offset, |next, _, _, _| {
            offset = next;
            taken += 1;
            taken >= 7_500
        })
        .await
        .expect("readdir");
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), gate.held())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the walk stopped short of 8 pages ahead of the reader: {:?}",
                srv.counts()
            )
        });
    gate.open();
    let rest = read_rest(&fs, dir, fh, offset).await;
    fs.releasedir(fh);
    assert_eq!(taken + rest.len(), 2 + 20_000, "every entry once");
    assert_eq!(srv.count("ListObjectsV2"), 20, "{:?}", srv.counts());
}
