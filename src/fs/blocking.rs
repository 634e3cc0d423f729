//! Blocking file work (staging files, the journal's fsync, removing staging dirs) done from
//! async code without stalling the runtime: the worker hands its other tasks to another thread
//! while the call runs.

/// Runs `f`, which may block on the disk, telling a multi-threaded runtime first so that its
/// other tasks move to another worker (no copy of the data, unlike `spawn_blocking`). Outside a
/// runtime, or on a single-threaded one (the core's tests), `f` just runs.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::blocking;

    #[test]
    fn runs_everywhere() {
        assert_eq!(blocking(|| 1), 1);
        let single = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        assert_eq!(single.block_on(async { blocking(|| 2) }), 2);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("rt");
        // on a worker, and in block_on
        let on_worker = multi.block_on(async { tokio::spawn(async { blocking(|| 3) }).await });
        assert_eq!(on_worker.expect("task"), 3);
        assert_eq!(multi.block_on(async { blocking(|| 4) }), 4);
        // on a blocking-pool thread (a Drop run there)
        let in_pool =
            multi.block_on(async { tokio::task::spawn_blocking(|| blocking(|| 5)).await });
        assert_eq!(in_pool.expect("blocking task"), 5);
    }

    #[test]
    fn other_tasks_run_while_a_worker_blocks() {
        // one worker: without block_in_place the second task could not run until the first's
        // blocking call returned, and the first waits for the second
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("rt");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        rt.block_on(async move {
            let waiter = tokio::spawn(async move {
                let _ = started_tx.send(());
                blocking(move || rx.recv_timeout(std::time::Duration::from_secs(20)).is_ok())
            });
            // the only worker is inside the blocking call (or about to be) before the sender
            // is spawned
            started_rx.await.expect("started");
            let sender = tokio::spawn(async move { tx.send(()) });
            assert!(waiter.await.expect("waiter"), "the other task never ran");
            sender.await.expect("sender").expect("send");
        });
    }
}
