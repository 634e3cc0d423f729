//! Optional HTTP control API under `/__control/` (for scripts driving the
//! binary): inject faults, read counters, reset. Unsigned, not counted.
//!
//! - `POST /__control/fault?kind=status&status=503&code=SlowDown[&op=..][&key_prefix=..][&times=N][&skip=N]`
//!   (`kind` = `status` | `delay&ms=N` | `drop` | `truncate` | `corrupt_request` | `corrupt_response` | `error200&code=..`)
//! - `POST /__control/random?probability=0.2&seed=7[&ops=GetObject,PutObject]`
//! - `POST /__control/clear-faults`, `POST /__control/reset-stats`
//! - `POST /__control/min-part-size?bytes=N`
//! - `GET /__control/stats`: JSON with counts, bytes and faults fired.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::classify::query_pairs;
use crate::faults::{Fault, FaultKind, RandomFaults};
use crate::state::Shared;

/// Path prefix of the control API (no bucket name can start with `_`).
pub(crate) const PREFIX: &str = "/__control/";

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn stats_json(shared: &Shared) -> String {
    let counts = shared.stats.lock().counts.clone();
    let counts: Vec<String> = counts
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_str(k)))
        .collect();
    format!(
        "{{\"counts\":{{{}}},\"bytes_received\":{},\"bytes_sent\":{},\"faults_injected\":{},\"op_mismatches\":{}}}\n",
        counts.join(","),
        shared.bytes_received.load(Ordering::Relaxed),
        shared.bytes_sent.load(Ordering::Relaxed),
        shared.faults.lock().injected(),
        shared.op_mismatches.lock().len(),
    )
}

fn fault_from(q: &[(String, String)]) -> Result<Fault, String> {
    let get = |n: &str| q.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let num = |n: &str| -> Result<Option<u64>, String> {
        get(n)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("bad number for {n}: {v}"))
            })
            .transpose()
    };
    let kind = match get("kind").unwrap_or("status") {
        "status" => FaultKind::Status {
            status: num("status")?.unwrap_or(500) as u16,
            code: get("code").unwrap_or("InternalError").to_owned(),
        },
        "delay" => FaultKind::Delay(Duration::from_millis(num("ms")?.unwrap_or(2000))),
        "drop" => FaultKind::DropConnection,
        "truncate" => FaultKind::TruncateBody,
        "corrupt_request" => FaultKind::CorruptRequest,
        "corrupt_response" => FaultKind::CorruptResponse,
        "error200" => FaultKind::ErrorIn200 {
            code: get("code").unwrap_or("InternalError").to_owned(),
        },
        other => return Err(format!("unknown kind {other}")),
    };
    let mut f = Fault::new(kind);
    f.op = get("op").map(str::to_owned);
    f.key_prefix = get("key_prefix").map(str::to_owned);
    f.times = num("times")?.map(|n| n as u32);
    f.skip = num("skip")?.unwrap_or(0) as u32;
    Ok(f)
}

/// Handles a control request: (status, body).
pub(crate) fn handle(
    shared: &Shared,
    method: &http::Method,
    path: &str,
    query: Option<&str>,
) -> (u16, String) {
    let q = query_pairs(query);
    let cmd = path.strip_prefix(PREFIX).unwrap_or("");
    let post = method == http::Method::POST;
    match (cmd, post) {
        ("stats", false) => (200, stats_json(shared)),
        ("fault", true) => match fault_from(&q) {
            Ok(f) => {
                shared.faults.lock().add(f);
                (200, "ok\n".into())
            }
            Err(e) => (400, format!("{e}\n")),
        },
        ("random", true) => {
            let get = |n: &str| q.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            let (Some(Ok(p)), Some(Ok(seed))) = (
                get("probability").map(str::parse::<f64>),
                get("seed").map(str::parse::<u64>),
            ) else {
                return (400, "need probability and seed\n".into());
            };
            let mut r = RandomFaults::new(p, seed);
            r.ops = get("ops").map(|s| s.split(',').map(str::to_owned).collect());
            shared.faults.lock().set_random(Some(r));
            (200, "ok\n".into())
        }
        ("clear-faults", true) => {
            shared.faults.lock().clear();
            (200, "ok\n".into())
        }
        ("reset-stats", true) => {
            let mut stats = shared.stats.lock();
            stats.counts.clear();
            stats.log.clear();
            shared.bytes_received.store(0, Ordering::Relaxed);
            shared.bytes_sent.store(0, Ordering::Relaxed);
            (200, "ok\n".into())
        }
        ("min-part-size", true) => match q
            .iter()
            .find(|(k, _)| k == "bytes")
            .map(|(_, v)| v.parse::<u64>())
        {
            Some(Ok(n)) => {
                shared.store.lock().min_part_size = n;
                (200, "ok\n".into())
            }
            _ => (400, "need bytes=N\n".into()),
        },
        _ => (404, "unknown control command\n".into()),
    }
}
