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
