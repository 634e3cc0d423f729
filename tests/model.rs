//! Reference-model property test of the filesystem core (issue 17): proptest generates
//! sequences of operations, runs them against the core on the in-process S3 server and against
//! an in-memory model, and fails (with a shrunk sequence) on the first difference in an answer,
//! an inode number, or the objects in the bucket. `PROPTEST_CASES=N` runs more cases.

mod model {
    pub mod concurrent;
    pub mod exec;
    pub mod harness;
    pub mod ops;
    pub mod reference;
}

use model::harness::{run, Caching};
use model::ops::{ops, Mix};
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 48;
/// Longest generated sequence.
const MAX_OPS: usize = 40;

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Run the property for one kind of core; print what was skipped, fail with the minimal case.
fn property(caching: Caching, mix: Mix) {
    let rt = runtime();
    let skipped = std::cell::RefCell::new(std::collections::BTreeMap::<&str, usize>::new());
    let result = runner().run(&ops(mix, MAX_OPS), |ops| {
        let out = rt.block_on(run(caching, &ops));
        match out {
            Ok(s) => {
                for what in s {
                    *skipped.borrow_mut().entry(what).or_default() += 1;
                }
                Ok(())
            }
            Err(e) => Err(TestCaseError::fail(e)),
        }
    });
    if !skipped.borrow().is_empty() {
        eprintln!("not sent to the core: {:?}", skipped.borrow());
    }
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn coherent_core_matches_the_model() {
    property(Caching::Coherent, Mix { outside: true });
}

#[test]
fn caching_core_matches_the_model() {
    property(Caching::Cached, Mix { outside: false });
}

#[test]
fn concurrent_lookups_keep_inode_numbers() {
    let rt = runtime();
    rt.block_on(model::concurrent::lookups_keep_numbers(Caching::Cached, 60));
    rt.block_on(model::concurrent::lookups_keep_numbers(
        Caching::Coherent,
        60,
    ));
}
