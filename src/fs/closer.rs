//! Who is closing a file, from /proc: the process that opened it or a child that inherited the
//! descriptor, one dying of a signal, one that still holds another descriptor of the file.
//!
//! FUSE names the closing thread only. Some /proc files of a process inside execve cannot be
//! read until execve is done (`stat` and `fd/` were seen to block; `status` does not), and
//! execve's close of its close-on-exec descriptors is itself a FLUSH waiting on us: so `stat`
//! and `fdinfo/` are read on the blocking pool with a deadline and count as "no" when they do
//! not come in time.

use std::time::Duration;

/// How long a flush waits for a /proc read about the closing process.
const PROC_READ_WAIT: Duration = Duration::from_millis(250);

/// `read` on the blocking pool, `None` unless it returns within [`PROC_READ_WAIT`].
async fn read_proc_in_time<T: Send + 'static>(
    read: impl FnOnce() -> Option<T> + Send + 'static,
) -> Option<T> {
    match tokio::time::timeout(PROC_READ_WAIT, tokio::task::spawn_blocking(read)).await {
        Ok(Ok(v)) => v,
        _ => {
            tracing::debug!("a /proc read about the closing process did not come in time");
            None
        }
    }
}

/// The text of a /proc file, read whole in one or two reads (`read_to_string` stats the file,
/// then grows its buffer from 32 bytes: ten system calls for a /proc/PID/status, paid at every
/// create and close). A command name that is not UTF-8 comes out with replacement characters.
fn read_proc(path: impl AsRef<std::path::Path>) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// The process (thread group) of thread `pid`, as FUSE requests carry the calling thread; 0
/// stays 0 (not known). From /proc/PID/status, which, unlike /proc/PID/stat, can be read while
/// that process is inside execve.
pub(super) fn process_of(pid: u32) -> u32 {
    if pid == 0 {
        return 0;
    }
    read_proc(format!("/proc/{pid}/status"))
        .and_then(|s| tgid_in_status(&s))
        .unwrap_or(pid)
}

/// The `Tgid:` field of a /proc/PID/status text.
fn tgid_in_status(status: &str) -> Option<u32> {
    proc_field(status, "Tgid:")
}

/// The number after `name` (`Tgid:`, `ino:`, …) in a /proc text of `name<TAB>value` lines.
fn proc_field<T: std::str::FromStr>(text: &str, name: &str) -> Option<T> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
}

/// Where the FUSE adapter runs a close ([`Filesystem::close_route`](super::Filesystem::close_route)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseRoute {
    /// A reader's: nothing to send, answered on the FUSE thread.
    Reader,
    /// A writer's that is light work up to its one request: started on the FUSE thread.
    Here,
    /// A writer's that waits for disk or many requests: on the runtime from its start.
    Away,
}

/// The thread closing a file (a FLUSH), from one read of its /proc/PID/status, made where the
/// close arrives (the FUSE thread) so that an everyday close reads no /proc on the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    /// The closing thread (0: not known).
    pub pid: u32,
    /// Its process (thread group); `pid` when not known.
    process: u32,
    /// It may be exiting: it has no memory left, or its status could not be read. A process
    /// exiting (killed or not) lets go of its memory before the kernel closes its files
    /// (`exit_mm` comes before `exit_files`), and its status then has no `VmRSS:` line; one
    /// that closes a file itself, or in execve, still has its memory.
    exiting: bool,
}

impl Closing {
    /// For a close that uploads nothing whoever makes it (a reader's): nothing is read.
    pub fn unread(pid: u32) -> Self {
        Closing {
            pid,
            process: pid,
            exiting: false,
        }
    }

    pub fn of(pid: u32) -> Self {
        if pid == 0 {
            return Closing {
                pid,
                process: 0,
                exiting: false,
            };
        }
        match read_proc(format!("/proc/{pid}/status")) {
            Some(s) => Closing {
                pid,
                process: tgid_in_status(&s).unwrap_or(pid),
                exiting: !s.contains("\nVmRSS:"),
            },
            None => Closing {
                pid,
                process: pid,
                exiting: true,
            },
        }
    }
}

/// Whether a close by `closing` of a file opened by process `opener` uploads it: yes for
/// the opener's threads, for unknown pids, and once the opener is gone (this may be the last
/// copy of the descriptor); no for a child closing its inherited copy while the opener runs.
pub(super) fn closes_for_the_opener(opener: u32, closing: &Closing) -> bool {
    if opener == 0 || closing.pid == 0 || closing.pid == opener {
        return true;
    }
    closing.process == opener || !std::path::Path::new(&format!("/proc/{opener}")).exists()
}

/// If the closing process is exiting because of a signal, that signal (from /proc/PID/stat:
/// the PF_EXITING flag and the exit code, both set before the kernel closes the process's
/// files). Read only for a process that may be exiting ([`Closing`]). A process whose stat
/// does not come in time is execing, not dying.
pub(super) async fn killed_by_signal(closing: &Closing) -> Option<i32> {
    if closing.pid == 0 || !closing.exiting {
        return None;
    }
    let pid = closing.pid;
    let stat = read_proc_in_time(move || read_proc(format!("/proc/{pid}/stat"))).await?;
    fatal_signal_in_stat(&stat)
}

/// Whether process `pid` still holds another descriptor of inode `ino` on the mount `mnt_id`
/// (from /proc/PID/fdinfo/*). Shells and dd open a file, `dup2` it onto stdout and close the
/// original before writing a byte: that close is then not the process's last.
pub(super) async fn holds_another_descriptor(pid: u32, mnt_id: u64, ino: u64) -> bool {
    if pid == 0 || mnt_id == 0 {
        return false;
    }
    read_proc_in_time(move || {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
        Some(
            fds.flatten()
                .any(|fd| read_proc(fd.path()).is_some_and(|t| fdinfo_names(&t, mnt_id, ino))),
        )
    })
    .await
    .unwrap_or(false)
}

/// Whether a /proc/PID/fdinfo/N text is of inode `ino` on mount `mnt_id`.
fn fdinfo_names(fdinfo: &str, mnt_id: u64, ino: u64) -> bool {
    proc_field(fdinfo, "mnt_id:") == Some(mnt_id) && proc_field(fdinfo, "ino:") == Some(ino)
}

/// The signal a process is dying of, from the text of its /proc/PID/stat.
fn fatal_signal_in_stat(stat: &str) -> Option<i32> {
    const PF_EXITING: u64 = 0x4;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // fields[0] is field 3 (state): flags is field 9, exit_code field 52
    let flags: u64 = fields.get(6)?.parse().ok()?;
    let exit_code: i32 = fields.get(49)?.parse().ok()?;
    let signal = exit_code & 0x7f;
    (flags & PF_EXITING != 0 && signal != 0).then_some(signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A /proc/PID/stat line for a process named `comm` with these flags and exit code.
    fn stat_line(comm: &str, flags: u64, exit_code: i32) -> String {
        let mut fields = vec!["0".to_string(); 50];
        fields[0] = "R".into();
        fields[6] = flags.to_string();
        fields[49] = exit_code.to_string();
        format!("4242 ({comm}) {}", fields.join(" "))
    }

    #[test]
    fn a_proc_file_or_a_longer_file_is_read_whole() {
        let status = read_proc("/proc/self/status").expect("own status");
        assert_eq!(tgid_in_status(&status), Some(std::process::id()));
        assert!(status.ends_with('\n'), "status read to its end");
        let dir = tempfile::tempdir().expect("tempdir");
        let long: String = (0..9000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        std::fs::write(dir.path().join("f"), &long).expect("write");
        assert_eq!(
            read_proc(dir.path().join("f")).as_deref(),
            Some(long.as_str())
        );
        assert_eq!(read_proc(dir.path().join("missing")), None);
    }

    #[test]
    fn the_process_of_a_thread_is_its_thread_group() {
        let status = "Name:\tcp\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nPid:\t4250\n";
        assert_eq!(tgid_in_status(status), Some(4242));
        assert_eq!(tgid_in_status("Name:\tcp\n"), None);
        // this test's own thread belongs to this process
        assert_eq!(process_of(std::process::id()), std::process::id());
        assert_eq!(process_of(0), 0);
    }

    #[test]
    fn only_the_opener_or_an_orphaned_copy_uploads_at_close() {
        let me = std::process::id();
        let by = Closing::of;
        assert!(closes_for_the_opener(me, &by(me)));
        assert!(closes_for_the_opener(0, &by(me)));
        assert!(closes_for_the_opener(me, &by(0)));
        // pid 1 is another process, and it is running
        assert!(!closes_for_the_opener(me, &by(1)));
        // an opener that is gone: its children's closes upload
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let gone = child.id();
        child.wait().expect("wait");
        assert!(closes_for_the_opener(gone, &by(me)));
    }

    #[tokio::test]
    async fn a_process_killed_by_a_signal_is_told_from_a_running_one() {
        let me = Closing::of(std::process::id());
        assert!(!me.exiting, "this process has its memory");
        assert_eq!(killed_by_signal(&me).await, None);
        // a process killed by SIGKILL and not yet reaped: its memory is gone, as when the
        // kernel closes a dying process's files, and its stat names the signal
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawn");
        let pid = child.id();
        child.kill().expect("kill -9");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !read_proc(format!("/proc/{pid}/status")).is_some_and(|s| s.contains("State:\tZ")) {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never became a zombie"
            );
            std::thread::yield_now();
        }
        let dying = Closing::of(pid);
        assert!(dying.exiting);
        assert_eq!(killed_by_signal(&dying).await, Some(libc::SIGKILL));
        child.wait().expect("wait");
    }

    #[test]
    fn fdinfo_names_a_file_by_mount_and_inode() {
        let text = "pos:\t0\nflags:\t0100001\nmnt_id:\t57\nino:\t12\n";
        assert!(fdinfo_names(text, 57, 12));
        assert!(!fdinfo_names(text, 57, 1));
        assert!(!fdinfo_names(text, 58, 12));
        assert!(!fdinfo_names("pos:\t0\n", 57, 12));
    }

    #[tokio::test]
    async fn a_second_descriptor_of_a_file_is_found() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("f");
        let first = std::fs::File::create(&path).expect("create");
        let me = std::process::id();
        let fdinfo = |f: &std::fs::File| {
            use std::os::fd::AsRawFd;
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", f.as_raw_fd())).expect("fdinfo")
        };
        let field = |t: &str, name: &str| -> u64 { proc_field(t, name).expect("field") };
        let info = fdinfo(&first);
        let (mnt, ino) = (field(&info, "mnt_id:"), field(&info, "ino:"));
        assert!(holds_another_descriptor(me, mnt, ino).await);
        drop(first);
        assert!(!holds_another_descriptor(me, mnt, ino).await);
        assert!(!holds_another_descriptor(me, 0, ino).await);
    }

    #[test]
    fn a_dying_process_shows_its_signal() {
        assert_eq!(fatal_signal_in_stat(&stat_line("dd", 0x4, 9)), Some(9));
        // a name with spaces and parentheses does not shift the fields
        assert_eq!(
            fatal_signal_in_stat(&stat_line("a) (b", 0x404, 15)),
            Some(15)
        );
    }

    #[test]
    fn a_living_or_normally_exiting_process_shows_none() {
        assert_eq!(fatal_signal_in_stat(&stat_line("dd", 0x400000, 0)), None);
        // exit(1): PF_EXITING with an exit status, no signal
        assert_eq!(fatal_signal_in_stat(&stat_line("dd", 0x4, 1 << 8)), None);
        assert_eq!(fatal_signal_in_stat("4242 (dd) R 1 2"), None);
    }
}
