//! Running the bucketfs binary (or a helper like mount(8)) to completion from tests.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Run to completion with stdin closed, killing it after `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} still running after {limit:?}; stderr: {}",
                stderr_of(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit status 1 and exactly one line on stderr; that line.
pub fn one_line_failure(out: &Output) -> String {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "want one line, got: {err}");
    lines[0].to_string()
}
