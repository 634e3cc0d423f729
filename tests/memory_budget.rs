//! The memory budget against the in-process server: a chunk nobody waits for any more has its
//! GET cancelled, a chunk's memory stays counted until its bytes are gone, and parts the client
//! reads back for a refused copy take their memory from the budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bucketfs::fs::memory::MemoryBudget;
use bucketfs::fs::prefetch::Prefetcher;
use bucketfs_test_server::{Fault, FaultKind, TestServer};

#[path = "common/core.rs"]
mod core_fs;
use core_fs::client;

const MIB: u64 = 1024 * 1024;

/// Waits (up to `limit`) for `cond`; whether it came true.
async fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

#[tokio::test]
async fn a_seek_cancels_the_read_ahead_left_behind_and_frees_its_memory() {
    let srv = TestServer::start().await;
    let c = client(&srv);
    let size = 64 * MIB;
    let data: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
    let meta = srv.put_object("big", data.clone());
    let budget = Arc::new(MemoryBudget::new(64 * MIB));
    let mut p = Prefetcher::new(
        c.clone(),
        "big".into(),
        Some(meta.etag.clone()),
        size,
        budget.clone(),
        8 * MIB,
    );
    // every GET answers 30 s late: the read-ahead is still under way at the seek
    srv.add_fault(Fault::new(FaultKind::Delay(Duration::from_secs(30))).op("GetObject"));
    let first = p.plan(0, 128 * 1024);
    let ahead = budget.in_use();
    assert!(ahead >= 2 * MIB, "read-ahead reserved {ahead}");
    drop(first);
    assert!(
        until(Duration::from_secs(5), || c.stats().inflight > 1).await,
        "read-ahead GETs under way"
    );
    // the reader jumps elsewhere: the chunks it left are cancelled, their memory given back
    srv.clear_faults();
    let jump = p.plan(40 * MIB, 4096);
    let left_behind = until(Duration::from_secs(5), || c.stats().inflight <= 1).await;
    assert!(
        left_behind,
        "GETs nobody waits for are cancelled: {}",
        c.stats().inflight
    );
    let got = jump.bytes().await.expect("read after the seek");
    assert_eq!(&got[..], &data[40 * MIB as usize..40 * MIB as usize + 4096]);
    assert!(budget.in_use() < ahead, "{} of {ahead}", budget.in_use());
}

#[tokio::test]
async fn bytes_a_read_needs_now_count_against_the_budget() {
    let srv = TestServer::start().await;
    let c = client(&srv);
    let size = 4 * MIB;
    let data: Vec<u8> = (0..size).map(|i| (i % 239) as u8).collect();
    let meta = srv.put_object("f", data.clone());
    let budget = Arc::new(MemoryBudget::new(16 * MIB));
    let mut p = Prefetcher::new(c, "f".into(), Some(meta.etag), size, budget.clone(), MIB);
    // a random read far into the file: its chunk holds memory while its bytes are held
    let plan = p.plan(3 * MIB, 4096);
    let got = plan.bytes().await.expect("read");
    assert_eq!(&got[..], &data[3 * MIB as usize..3 * MIB as usize + 4096]);
    assert!(budget.in_use() > 0, "the random chunk is counted");
    p.reset();
    drop(got);
    assert_eq!(budget.in_use(), 0, "and given back with it");
}

#[tokio::test]
async fn parts_read_back_for_a_refused_copy_count_against_the_budget() {
    use bucketfs::fs::memory::BudgetGate;
    let srv = TestServer::start().await;
    let c = client(&srv);
    let size = 12 * MIB;
    let data: Vec<u8> = (0..size).map(|i| (i % 233) as u8).collect();
    srv.put_object("src", data.clone());
    srv.add_fault(Fault::new(FaultKind::not_implemented()).op("UploadPartCopy"));
    // a budget of 6 MiB, parts of 5 MiB: one part read back at a time, the next waits
    let budget = Arc::new(MemoryBudget::new(6 * MIB));
    c.set_memory_gate(Arc::new(BudgetGate(budget.clone())));
    let held = budget.try_reserve(6 * MIB).expect("all of it");
    let copy = {
        let c = c.clone();
        tokio::spawn(async move {
            c.copy_object_multipart("src", "dst", size, 5 * MIB, None, None)
                .await
        })
    };
    // nothing is read back while the budget is full
    assert!(
        until(Duration::from_secs(5), || srv.count("UploadPartCopy") >= 1).await,
        "the copy was refused"
    );
    assert!(!until(Duration::from_millis(300), || srv.count("GetObject") > 0).await);
    drop(held);
    copy.await
        .expect("join")
        .expect("copy through this machine");
    assert!(srv.get_object("dst").expect("dst") == data);
    // nothing holds memory any more but idle buffers, which give it up to who asks
    let all = budget
        .reserve_within(6 * MIB, Duration::ZERO)
        .await
        .expect("all of the budget again");
    drop(all);
    assert_eq!(budget.overruns(), 0);
}
