//! Directory renames through the filesystem core against the in-process test server: a
//! rename cut short is finished by the next mount, and one whose copies fail leaves nothing
//! at the new name.

use std::sync::Arc;

use bucketfs::fs::{Filesystem, ROOT_INO};
use bucketfs_test_server::{Fault, FaultKind, TestServer};

#[path = "common/core.rs"]
mod core_fs;
use core_fs::journaled;

/// A server with `d/f00` … `d/f19`, and a journaled core that has looked `d` up.
async fn twenty_files_in_d() -> (TestServer, tempfile::TempDir, Arc<Filesystem>) {
    let srv = TestServer::start().await;
    for i in 0..20 {
        srv.put_object(&format!("d/f{i:02}"), format!("body {i}"));
    }
    let cache = tempfile::tempdir().expect("tempdir");
    let fs = journaled(&srv, cache.path());
    fs.lookup(ROOT_INO, "d").await.expect("lookup");
    (srv, cache, fs)
}

#[tokio::test]
async fn a_directory_rename_cut_short_is_finished_by_the_next_mount() {
    let (srv, cache, fs) = twenty_files_in_d().await;
    // the copies land, then the deletes keep failing: the mount goes down halfway
    srv.add_fault(Fault::new(FaultKind::internal_error()).op("DeleteObjects"));
    let err = fs
        .rename(ROOT_INO, "d", ROOT_INO, "e", 0)
        .await
        .expect_err("deletes fail");
    assert_eq!(err.errno, libc::EIO);
    drop(fs);
    assert!(
        srv.keys().iter().any(|k| k.starts_with("d/")),
        "old still there"
    );
    srv.clear_faults();
    // the next mount finishes the rename before anything else
    let fs = journaled(&srv, cache.path());
    let report = fs.recover_uploads().await;
    assert_eq!(report.moved, ["d/"]);
    let keys = srv.keys();
    assert!(!keys.iter().any(|k| k.starts_with("d/")), "{keys:?}");
    for i in 0..20 {
        assert_eq!(
            srv.get_object(&format!("e/f{i:02}")).as_deref(),
            Some(format!("body {i}").as_bytes())
        );
    }
    // and only once
    drop(fs);
    let fs = journaled(&srv, cache.path());
    assert!(fs.recover_uploads().await.moved.is_empty());
}

#[tokio::test]
async fn a_directory_rename_whose_copies_fail_leaves_nothing_at_the_new_name() {
    let (srv, cache, fs) = twenty_files_in_d().await;
    srv.add_fault(
        Fault::new(FaultKind::status(403, "AccessDenied"))
            .op("CopyObject")
            .skip(5),
    );
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", 0)
        .await
        .expect_err("copies refused");
    srv.clear_faults();
    let keys = srv.keys();
    assert_eq!(keys.iter().filter(|k| k.starts_with("d/")).count(), 20);
    assert!(!keys.iter().any(|k| k.starts_with("e/")), "{keys:?}");
    drop(fs);
    let fs = journaled(&srv, cache.path());
    assert!(
        fs.recover_uploads().await.moved.is_empty(),
        "nothing to finish"
    );
}
