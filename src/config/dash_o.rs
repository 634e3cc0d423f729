//! `-o opt1,opt2=val` of the mount(8) form: each option becomes the matching long flag.
//!
//! The table of names comes from the clap definition of `bucketfs mount` itself, so every
//! mount flag has an `-o` spelling (dashes as underscores) without a second list to keep.

use std::ffi::OsString;

use clap::error::ErrorKind;

use crate::config::cli::usage_error;

/// `-o` options mount(8) and fstab pass that mean nothing for bucketfs: accepted, ignored.
const IGNORED_OPTIONS: &[&str] = &[
    "_netdev",
    "noauto",
    "auto",
    "nofail",
    "user",
    "users",
    "nouser",
    "owner",
    "defaults",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "nodiratime",
    "diratime",
    "async",
    "default_permissions",
];

/// Ignored `-o` options that carry a value (`user=NAME` is added by mount(8) for user mounts).
const IGNORED_VALUE_OPTIONS: &[&str] = &["user", "subtype", "fsname", "comment"];

/// Long flags that have no `-o` spelling.
const NOT_MOUNT_OPTIONS: &[&str] = &["help", "options", "read-write"];

/// Which `-o` names exist and whether each takes a value.
pub(crate) struct OptionTable {
    /// (`-o` name, long flag, takes a value)
    entries: Vec<(String, String, bool)>,
}

impl OptionTable {
    pub(crate) fn from_command(cmd: &mut clap::Command) -> OptionTable {
        cmd.build();
        let mut entries = Vec::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if arg.is_hide_set() || NOT_MOUNT_OPTIONS.contains(&long) {
                continue;
            }
            let takes_value = arg.get_action().takes_values();
            entries.push((long.replace('-', "_"), long.to_string(), takes_value));
        }
        // mount(8)'s own spellings.
        entries.push(("ro".into(), "read-only".into(), false));
        entries.push(("rw".into(), "read-write".into(), false));
        OptionTable { entries }
    }

    fn find(&self, name: &str) -> Option<&(String, String, bool)> {
        self.entries.iter().find(|(n, _, _)| n == name)
    }

    /// One line naming every accepted option.
    fn describe(&self) -> String {
        let mut names: Vec<String> = self
            .entries
            .iter()
            .map(|(n, _, v)| if *v { format!("{n}=") } else { n.clone() })
            .collect();
        names.extend(IGNORED_VALUE_OPTIONS.iter().map(|n| format!("{n}=")));
        names.extend(IGNORED_OPTIONS.iter().map(|n| n.to_string()));
        names.push("x-*".into());
        names.join(", ")
    }
}

/// Replace each `-o OPTS` / `-oOPTS` in `args` by the long flags it stands for.
pub(crate) fn expand_dash_o(
    args: &[OsString],
    table: &OptionTable,
    warnings: &mut Vec<String>,
) -> Result<Vec<OsString>, clap::Error> {
    let sloppy = args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "-s" || a == "--sloppy");
    let mut out = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            out.extend_from_slice(&args[i..]);
            break;
        }
        let opts: Option<OsString> = if arg == "-o" {
            i += 1;
            match args.get(i) {
                Some(v) => Some(v.clone()),
                None => {
                    return Err(usage_error(
                        ErrorKind::InvalidValue,
                        "-o needs a value, e.g. -o ro,allow_other",
                    ))
                }
            }
        } else {
            arg.to_str()
                .and_then(|s| s.strip_prefix("-o"))
                .filter(|rest| !rest.is_empty() && !arg.to_string_lossy().starts_with("--"))
                .map(OsString::from)
        };
        match opts {
            Some(opts) => {
                let Some(opts) = opts.to_str() else {
                    return Err(usage_error(
                        ErrorKind::InvalidUtf8,
                        "-o options must be valid UTF-8",
                    ));
                };
                for (name, value) in split_options(opts) {
                    if let Some(mapped) = s3fs_option(&name, value.as_deref(), warnings) {
                        let flags = mapped.map_err(|m| usage_error(ErrorKind::InvalidValue, &m))?;
                        out.extend(flags.into_iter().map(OsString::from));
                        continue;
                    }
                    match option_to_flag(&name, value.as_deref(), table) {
                        Ok(Some(flag)) => out.push(OsString::from(flag)),
                        Ok(None) => {}
                        Err(msg) if sloppy && msg.starts_with("unknown") => {
                            warnings.push(format!("ignoring {msg}"));
                        }
                        Err(msg) => return Err(usage_error(ErrorKind::InvalidValue, &msg)),
                    }
                }
            }
            None => out.push(arg.clone()),
        }
        i += 1;
    }
    Ok(out)
}

/// Split `a,b=c,d="x,y"` into (name, value) pairs; double quotes protect commas.
pub(crate) fn split_options(opts: &str) -> Vec<(String, Option<String>)> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in opts.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => items.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    items.push(current);
    items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((n, v)) => (n.trim().to_string(), Some(v.trim().to_string())),
            None => (s, None),
        })
        .collect()
}

/// An s3fs-fuse option, so that an s3fs fstab line mounts as it is: the bucketfs flags it
/// stands for (none when bucketfs needs nothing: then a warning says so once). `None` when
/// `name` is not an s3fs option bucketfs lacks (bucketfs options of the same name, as
/// `passwd_file` or `allow_other`, mean the same).
fn s3fs_option(
    name: &str,
    value: Option<&str>,
    warnings: &mut Vec<String>,
) -> Option<Result<Vec<String>, String>> {
    let needs = |v: Option<&str>| {
        v.filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("s3fs option '{name}' needs a value: -o {name}=VALUE"))
    };
    let octal = |v: Option<&str>| {
        let v = needs(v)?;
        u32::from_str_radix(v.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| format!("s3fs option '{name}={v}': not an octal umask"))
    };
    let mut no_effect = |why: &str| {
        warnings.push(format!(
            "s3fs option '{name}' has no effect in bucketfs: {why}"
        ));
        Ok(Vec::new())
    };
    let flags = match (name, value) {
        ("url", v) => needs(v).map(|v| vec![format!("--endpoint={v}")]),
        // s3fs's `endpoint` is the region (before s3fs 1.96); a URL is bucketfs's own option
        ("endpoint", Some(v)) if !v.contains("://") => Ok(vec![format!("--region={v}")]),
        ("use_path_request_style", None) => Ok(vec!["--path-style".into()]),
        ("umask", v) => octal(v).map(|u| {
            vec![
                format!("--file-mode={:o}", 0o666 & !u),
                format!("--dir-mode={:o}", 0o777 & !u),
            ]
        }),
        ("use_cache", Some("")) => Ok(Vec::new()),
        ("use_cache", v) => needs(v).map(|v| vec![format!("--cache-dir={v}")]),
        ("stat_cache_expire", v) => needs(v).map(|v| vec![format!("--metadata-ttl={v}")]),
        ("multipart_size", v) => needs(v).map(|v| vec![format!("--part-size={v}MiB")]),
        ("dbglevel", Some("dbg" | "debug")) => Ok(vec!["--debug".into()]),
        ("dbglevel", Some(_)) => Ok(Vec::new()),
        ("sigv4", None) => Ok(Vec::new()),
        ("sigv2", None) => no_effect("it signs every request with SigV4"),
        ("mp_umask", v) => octal(v)
            .and_then(|_| no_effect("the mount point shows the bucket root's mode (--dir-mode)")),
        ("ssl_verify_hostname", Some("0")) => {
            no_effect("TLS host names are always verified; --ca-bundle trusts a private CA")
        }
        ("ssl_verify_hostname", Some(_)) => Ok(Vec::new()),
        ("nomultipart", None) => no_effect("large files always go as multipart uploads"),
        ("max_stat_cache_size", Some(_)) => {
            no_effect("its caches are bounded by themselves (docs/SEMANTICS.md)")
        }
        ("enable_noobj_cache", None) => {
            no_effect("names found missing are always cached (--negative-ttl)")
        }
        ("parallel_count", Some(_)) => no_effect("parts go in parallel up to --max-inflight"),
        ("curldbg", _) => no_effect("--debug logs each request"),
        ("notsup_compat_dir", None) => {
            no_effect("older directory objects are looked for only with compat_dir")
        }
        _ => return None,
    };
    Some(flags)
}

/// The long flag one `-o` option stands for; `None` for options accepted and ignored.
fn option_to_flag(
    name: &str,
    value: Option<&str>,
    table: &OptionTable,
) -> Result<Option<String>, String> {
    if name.starts_with("x-") {
        return Ok(None);
    }
    if value.is_none() && IGNORED_OPTIONS.contains(&name) {
        return Ok(None);
    }
    if value.is_some() && IGNORED_VALUE_OPTIONS.contains(&name) {
        return Ok(None);
    }
    let Some((_, long, takes_value)) = table.find(name) else {
        return Err(format!(
            "unknown mount option '{name}'; valid options are: {}",
            table.describe()
        ));
    };
    match (value, takes_value) {
        (Some(v), true) => Ok(Some(format!("--{long}={v}"))),
        (None, true) => Err(format!(
            "mount option '{name}' needs a value: -o {name}=VALUE"
        )),
        (None, false) => Ok(Some(format!("--{long}"))),
        (Some(_), false) => Err(format!("mount option '{name}' takes no value")),
    }
}
