//! Unit tests of the command line: s3:// parsing, sizes, modes, `-o` options, the mount(8) form.

use super::*;
use crate::config::dash_o::split_options;

fn parse(args: &[&str]) -> Result<ParsedArgs, clap::Error> {
    parse_args(args.iter().copied())
}

fn mount_args(args: &[&str]) -> MountArgs {
    match parse(args).map(|p| p.cli.command) {
        Ok(Command::Mount(m)) => *m,
        other => panic!("not a mount: {other:?}"),
    }
}

#[test]
fn s3_url_parsing() {
    assert_eq!(parse_bucket("b").unwrap(), ("b".into(), "".into()));
    assert_eq!(parse_bucket("s3://b").unwrap(), ("b".into(), "".into()));
    assert_eq!(parse_bucket("s3://b/").unwrap(), ("b".into(), "".into()));
    assert_eq!(
        parse_bucket("s3://my-bucket/some/prefix").unwrap(),
        ("my-bucket".into(), "some/prefix/".into())
    );
    assert_eq!(
        parse_bucket("s3://b/p/").unwrap(),
        ("b".into(), "p/".into())
    );
    assert_eq!(parse_bucket("b:/p").unwrap(), ("b".into(), "p/".into()));
    assert!(parse_bucket("s3://").is_err());
    assert!(parse_bucket("s3://b/a//c").is_err());
    assert!(parse_bucket("s3://b/a/../c").is_err());
}

#[test]
fn prefix_flag_and_url_combine() {
    let plan = mount_args(&["bucketfs", "mount", "b", "/mnt", "--prefix", "/x/y"])
        .plan()
        .unwrap();
    assert_eq!((plan.bucket.as_str(), plan.prefix.as_str()), ("b", "x/y/"));
    assert_eq!(plan.fs.prefix, "x/y/");
    assert_eq!(plan.mount.fsname, "bucketfs:b/x/y/");
    let same = mount_args(&["bucketfs", "mount", "s3://b/x/y", "/m", "--prefix", "x/y/"]);
    assert_eq!(same.plan().unwrap().prefix, "x/y/");
    let clash = mount_args(&["bucketfs", "mount", "s3://b/x", "/m", "--prefix", "z"]);
    assert!(clash.plan().unwrap_err().contains("two prefixes"));
}

#[test]
fn size_suffixes() {
    assert_eq!(parse_size("8388608").unwrap(), 8 * 1024 * 1024);
    assert_eq!(parse_size("8M").unwrap(), 8 * 1024 * 1024);
    assert_eq!(parse_size("8MiB").unwrap(), 8 * 1024 * 1024);
    assert_eq!(parse_size("8mib").unwrap(), 8 * 1024 * 1024);
    assert_eq!(parse_size("8MB").unwrap(), 8_000_000);
    assert_eq!(parse_size("1.5G").unwrap(), 3 * 512 * 1024 * 1024);
    assert_eq!(parse_size("64k").unwrap(), 65536);
    assert_eq!(parse_size("2 GiB").unwrap(), 2 << 30);
    assert!(parse_size("8X").is_err());
    assert!(parse_size("M").is_err());
    assert!(parse_size("").is_err());
    assert!(parse_size("99999999999999999999T").is_err());
}

#[test]
fn part_size_limits() {
    let small = mount_args(&["bucketfs", "mount", "b", "/m", "--part-size", "4M"]);
    assert!(small.plan().unwrap_err().contains("5MiB"));
    let ok = mount_args(&["bucketfs", "mount", "b", "/m", "--part-size", "16MiB"]);
    assert_eq!(ok.plan().unwrap().fs.part_size, 16 << 20);
    let defaults = mount_args(&["bucketfs", "mount", "b", "/m"])
        .plan()
        .unwrap();
    assert_eq!(defaults.fs.part_size, 8 << 20);
    assert_eq!(defaults.fs.max_memory, 96 << 20);
    let tight = mount_args(&["bucketfs", "mount", "b", "/m", "--max-memory", "6M"]);
    assert!(tight.plan().unwrap_err().contains("--max-memory"));
}

#[test]
fn octal_modes() {
    assert_eq!(parse_mode("0644").unwrap(), 0o644);
    assert_eq!(parse_mode("755").unwrap(), 0o755);
    assert_eq!(parse_mode("0o600").unwrap(), 0o600);
    assert_eq!(parse_mode("1777").unwrap(), 0o1777);
    assert!(parse_mode("0648").is_err());
    assert!(parse_mode("17777").is_err());
    assert!(parse_mode("rw-r--r--").is_err());
    let m = mount_args(&["bucketfs", "mount", "b", "/m", "--file-mode", "0600"]);
    let plan = m.plan().unwrap();
    assert_eq!((plan.fs.file_mode, plan.fs.dir_mode), (0o600, 0o755));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
    assert_eq!(
        parse_duration("7d").unwrap(),
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    assert_eq!(
        parse_duration("1d12h").unwrap(),
        Duration::from_secs(129_600)
    );
    assert!(parse_duration("h").is_err());
    assert!(parse_duration("3y").is_err());
}

#[test]
fn dash_o_options() {
    let m = mount_args(&[
        "bucketfs",
        "mount",
        "b",
        "/m",
        "-o",
        "ro,allow_other,uid=1000,endpoint=http://127.0.0.1:9000,path_style",
        "-oprefix=data,metadata_ttl=5,part_size=16M,_netdev,noatime,x-systemd.automount",
    ]);
    let plan = m.plan().unwrap();
    assert!(plan.fs.read_only && plan.mount.read_only);
    assert!(plan.mount.allow_other);
    assert_eq!(plan.fs.uid, 1000);
    assert_eq!(plan.prefix, "data/");
    assert_eq!(plan.fs.metadata_ttl, Duration::from_secs(5));
    assert_eq!(plan.fs.part_size, 16 << 20);
    assert_eq!(
        plan.connection.endpoint.as_deref(),
        Some("http://127.0.0.1:9000")
    );
    assert_eq!(plan.connection.path_style, Some(true));
}

#[test]
fn an_s3fs_fstab_line_mounts_with_its_meaning() {
    // bucket:/path source, and s3fs's option names
    let parsed = parse(&[
        "bucketfs",
        "mount",
        "photos:/2024",
        "/m",
        "-o",
        "_netdev,allow_other,url=https://obs.example.com,use_path_request_style,endpoint=eu-west-1,\
         umask=0027,mp_umask=022,use_cache=/var/cache/s3,stat_cache_expire=30,multipart_size=64,\
         sigv4,sigv2,ssl_verify_hostname=0,nomultipart,max_stat_cache_size=100000,\
         enable_noobj_cache,parallel_count=10,curldbg,dbglevel=info",
    ])
    .expect("an s3fs line parses");
    let Command::Mount(m) = parsed.cli.command else {
        panic!("not a mount")
    };
    let plan = m.plan().expect("plan");
    assert_eq!(plan.bucket, "photos");
    assert_eq!(plan.prefix, "2024/");
    assert_eq!(
        plan.connection.endpoint.as_deref(),
        Some("https://obs.example.com")
    );
    assert_eq!(plan.connection.region.as_deref(), Some("eu-west-1"));
    assert_eq!(plan.connection.path_style, Some(true));
    assert_eq!(plan.fs.file_mode, 0o640);
    assert_eq!(plan.fs.dir_mode, 0o750);
    assert_eq!(
        plan.fs.cache_dir.as_deref(),
        Some(std::path::Path::new("/var/cache/s3"))
    );
    assert_eq!(plan.fs.metadata_ttl, Duration::from_secs(30));
    assert_eq!(plan.fs.part_size, 64 << 20);
    assert!(plan.mount.allow_other);
    // the ones bucketfs needs nothing for say so, one line each
    for name in [
        "mp_umask",
        "sigv2",
        "ssl_verify_hostname",
        "nomultipart",
        "max_stat_cache_size",
        "enable_noobj_cache",
        "parallel_count",
        "curldbg",
    ] {
        assert_eq!(
            parsed
                .warnings
                .iter()
                .filter(|w| w.contains(&format!("'{name}'")))
                .count(),
            1,
            "{name}: {:?}",
            parsed.warnings
        );
    }
    assert!(!parsed.warnings.iter().any(|w| w.contains("'sigv4'")));
    // a bad umask is refused in one line
    let err = parse(&["bucketfs", "mount", "b", "/m", "-o", "umask=99"]).unwrap_err();
    assert!(err.to_string().contains("not an octal umask"), "{err}");
    // bucketfs's own endpoint= (a URL) still means the endpoint
    let m = mount_args(&["bucketfs", "mount", "b", "/m", "-o", "endpoint=http://h:9"]);
    assert_eq!(
        m.plan().unwrap().connection.endpoint.as_deref(),
        Some("http://h:9")
    );
}

#[test]
fn dash_o_rw_undoes_ro_and_last_wins() {
    let m = mount_args(&["bucketfs", "mount", "b", "/m", "-o", "ro", "-o", "rw"]);
    assert!(!m.plan().unwrap().fs.read_only);
    let m = mount_args(&["bucketfs", "mount", "b", "/m", "-o", "region=a,region=b"]);
    assert_eq!(m.plan().unwrap().connection.region.as_deref(), Some("b"));
}

#[test]
fn dash_o_unknown_is_refused_with_the_list() {
    let err = parse(&["bucketfs", "mount", "b", "/m", "-o", "ro,frobnicate"]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unknown mount option 'frobnicate'"), "{text}");
    assert!(text.contains("endpoint="), "{text}");
    assert!(text.contains("allow_other"), "{text}");
    assert!(text.contains("_netdev"), "{text}");
    assert!(
        !text.contains("help,") && !text.contains("read_write"),
        "{text}"
    );
    assert!(text.contains("bucketfs mount"), "{text}");
}

#[test]
fn dash_o_value_mistakes() {
    let err = parse(&["bucketfs", "mount", "b", "/m", "-o", "endpoint"]).unwrap_err();
    assert!(err.to_string().contains("needs a value"));
    let err = parse(&["bucketfs", "mount", "b", "/m", "-o", "ro=1"]).unwrap_err();
    assert!(err.to_string().contains("takes no value"));
}

#[test]
fn dash_o_quotes_protect_commas() {
    assert_eq!(
        split_options(r#"a,b="x,y",c"#),
        vec![
            ("a".to_string(), None),
            ("b".to_string(), Some("x,y".to_string())),
            ("c".to_string(), None)
        ]
    );
}

#[test]
fn sloppy_ignores_unknown_options() {
    let p = parse(&[
        "mount.fuse.bucketfs",
        "b",
        "/m",
        "-s",
        "-o",
        "frobnicate,ro",
    ])
    .unwrap();
    assert_eq!(p.warnings.len(), 1);
    match p.cli.command {
        Command::Mount(m) => assert!(m.read_only),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mount8_argv_form() {
    for argv0 in ["/sbin/mount.fuse.bucketfs", "mount.bucketfs", "bucketfs"] {
        let p = parse(&[argv0, "s3://b/p", "/mnt/b", "-o", "rw,_netdev,allow_other"]).unwrap();
        assert_eq!(p.args[0], "mount");
        match p.cli.command {
            Command::Mount(m) => {
                assert!(!m.foreground, "helpers detach by default");
                let plan = m.plan().unwrap();
                assert_eq!(plan.bucket, "b");
                assert_eq!(plan.prefix, "p/");
                assert!(plan.mount.allow_other);
                assert_eq!(plan.mount.mountpoint, PathBuf::from("/mnt/b"));
            }
            other => panic!("{other:?}"),
        }
    }
    // A helper whose bucket is called like a subcommand.
    let p = parse(&["mount.fuse.bucketfs", "stats", "/mnt", "-o", "ro"]).unwrap();
    match p.cli.command {
        Command::Mount(m) => assert_eq!(m.bucket, "stats"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn subcommands_parse() {
    match parse(&["bucketfs", "stats", "/mnt"]).unwrap().cli.command {
        Command::Stats(s) => assert_eq!(s.mountpoint, PathBuf::from("/mnt")),
        other => panic!("{other:?}"),
    }
    let p = parse(&[
        "bucketfs",
        "cleanup",
        "s3://b/x",
        "--older-than",
        "7d",
        "--dry-run",
        "--endpoint",
        "http://h:1",
    ])
    .unwrap();
    match p.cli.command {
        Command::Cleanup(c) => {
            assert_eq!(c.older_than, Duration::from_secs(7 * 86_400));
            assert!(c.dry_run);
            assert_eq!(c.bucket_and_prefix().unwrap(), ("b".into(), "x/".into()));
        }
        other => panic!("{other:?}"),
    }
    match parse(&["bucketfs", "cleanup", "b"]).unwrap().cli.command {
        Command::Cleanup(c) => assert_eq!(c.older_than, Duration::from_secs(86_400)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn flags_and_defaults() {
    let m = mount_args(&[
        "bucketfs",
        "mount",
        "b",
        "/m",
        "-f",
        "--virtual-hosted",
        "--unsigned-payload",
        "--provider",
        "minio",
        "--no-default-permissions",
        "--threads",
        "4",
        "--sse",
        "kms",
    ]);
    let plan = m.plan().unwrap();
    assert!(plan.daemon.foreground);
    assert_eq!(plan.connection.path_style, Some(false));
    assert_eq!(plan.connection.sign_payload, Some(false));
    assert_eq!(plan.connection.provider, Some(ProviderName::Minio));
    assert!(!plan.mount.default_permissions);
    assert_eq!(plan.mount.threads, 4);
    assert_eq!(plan.daemon.metrics_addr, None);
    assert_eq!(
        plan.connection.sse,
        Some(crate::s3::ServerSideEncryption::Kms { key_id: None })
    );
    let d = mount_args(&["bucketfs", "mount", "b", "/m"])
        .plan()
        .unwrap();
    assert_eq!(d.connection.retry_timeout, Duration::from_secs(60));
    assert_eq!(d.connection.max_inflight, 64);
    assert_eq!(d.fs.negative_ttl, Duration::from_secs(5));
    assert_eq!(d.mount.threads, 2);
    assert!(d.mount.default_permissions && !d.daemon.foreground);
    assert_eq!(d.connection.path_style, None);
}

#[test]
fn endpoints() {
    assert_eq!(
        normalize_endpoint("http://h:9000/").unwrap(),
        "http://h:9000"
    );
    assert_eq!(
        normalize_endpoint("minio.lan").unwrap(),
        "https://minio.lan"
    );
    assert!(normalize_endpoint("ftp://x").is_err());
}

fn creds() -> SharedCredentials {
    std::sync::Arc::new(crate::s3::StaticCredentials {
        credentials: crate::s3::Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        },
        origin: "test".into(),
    })
}

#[test]
fn s3_config_from_the_command_line() {
    let plan = mount_args(&[
        "bucketfs",
        "mount",
        "b",
        "/m",
        "--endpoint",
        "http://127.0.0.1:9000",
        "--max-inflight",
        "8",
        "--retry-timeout",
        "7",
        "--storage-class",
        "STANDARD_IA",
    ])
    .plan()
    .unwrap();
    let c = s3_config(&plan.connection, "b", "http://127.0.0.1:9000", "r", creds());
    assert_eq!(c.profile.provider, Provider::Other);
    assert!(c.path_style, "path style is the default off AWS");
    assert_eq!(c.max_inflight, 8);
    assert_eq!(c.retry_timeout, Duration::from_secs(7));
    assert_eq!(c.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!((c.region.as_str(), c.bucket.as_str()), ("r", "b"));

    let plan = mount_args(&["bucketfs", "mount", "b", "/m", "--sign-payload"])
        .plan()
        .unwrap();
    let aws = "https://s3.eu-west-1.amazonaws.com";
    let c = s3_config(&plan.connection, "b", aws, "eu-west-1", creds());
    assert_eq!(c.profile.provider, Provider::Aws);
    assert!(!c.path_style && c.sign_payload);

    let plan = mount_args(&[
        "bucketfs",
        "mount",
        "b",
        "/m",
        "--provider",
        "gdc",
        "--virtual-hosted",
    ])
    .plan()
    .unwrap();
    let c = s3_config(
        &plan.connection,
        "b",
        "https://s3.example.net",
        "r",
        creds(),
    );
    assert_eq!(c.profile.provider, Provider::Gdc);
    assert!(!c.path_style);
}

#[test]
fn endpoint_resolution() {
    use std::collections::HashMap;
    let settings = mount_args(&["bucketfs", "mount", "b", "/m"])
        .plan()
        .unwrap()
        .connection;
    let mut env: HashMap<String, String> = HashMap::new();
    assert_eq!(
        resolve_endpoint(&settings, "eu-west-1", &env).unwrap(),
        "https://s3.eu-west-1.amazonaws.com"
    );
    env.insert("AWS_ENDPOINT_URL".into(), "http://generic:1/".into());
    assert_eq!(
        resolve_endpoint(&settings, "r", &env).unwrap(),
        "http://generic:1"
    );
    env.insert("AWS_ENDPOINT_URL_S3".into(), "http://s3only:2".into());
    assert_eq!(
        resolve_endpoint(&settings, "r", &env).unwrap(),
        "http://s3only:2"
    );
    let explicit = mount_args(&["bucketfs", "mount", "b", "/m", "--endpoint", "minio:9000"])
        .plan()
        .unwrap()
        .connection;
    assert_eq!(
        resolve_endpoint(&explicit, "r", &env).unwrap(),
        "https://minio:9000"
    );
}

#[test]
fn help_has_groups() {
    let mut cmd = Cli::command();
    let mount = cmd.find_subcommand_mut("mount").unwrap();
    let help = mount.render_long_help().to_string();
    for heading in [
        "Connection",
        "Credentials",
        "Caching",
        "Permissions",
        "Logging",
    ] {
        assert!(
            help.contains(&format!("{heading}:")),
            "{heading} missing:\n{help}"
        );
    }
    assert!(help.contains("[default: 8MiB]"));
    Cli::command().debug_assert();
}

#[test]
fn server_side_encryption_flags() {
    let plan = |extra: &[&str]| {
        let mut argv = vec!["bucketfs", "mount", "b", "/m"];
        argv.extend_from_slice(extra);
        mount_args(&argv).plan()
    };
    let p = plan(&["--sse", "AES256", "--requester-pays", "--acl", "private"]).unwrap();
    assert_eq!(p.connection.sse, Some(crate::s3::ServerSideEncryption::S3));
    assert!(p.connection.requester_pays);
    assert_eq!(p.connection.acl.as_deref(), Some("private"));
    let p = plan(&["--sse", "aws:kms", "--sse-kms-key-id", "k1"]).unwrap();
    assert_eq!(
        p.connection.sse,
        Some(crate::s3::ServerSideEncryption::Kms {
            key_id: Some("k1".into())
        })
    );
    assert!(plan(&["--sse-kms-key-id", "k1"])
        .unwrap_err()
        .contains("--sse aws:kms"));
    assert!(plan(&["--sse", "c"])
        .unwrap_err()
        .contains("--sse-c-key-file"));
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let k = key.to_str().unwrap();
    assert!(plan(&["--sse-c-key-file", k])
        .unwrap_err()
        .contains("chmod 600"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let p = plan(&["--sse-c-key-file", k]).unwrap();
    assert!(matches!(
        p.connection.sse,
        Some(crate::s3::ServerSideEncryption::Customer(_))
    ));
}

#[test]
fn mount8_helper_arguments_are_accepted() {
    // What mount(8) may run: flags -s -n -v, `-t fuse.bucketfs`, fstab-only options.
    let m = mount_args(&[
        "/sbin/mount.fuse.bucketfs",
        "my-bucket",
        "/mnt/b",
        "-n",
        "-v",
        "-t",
        "fuse.bucketfs",
        "-o",
        "rw,_netdev,noauto,nofail,user,users,defaults,x-systemd.automount,user=alice,\
         endpoint=http://127.0.0.1:9000,region=r1,path_style,ro,allow_other,uid=1000,gid=1000,\
         prefix=photos/",
    ]);
    assert_eq!(m.fs_type.as_deref(), Some("fuse.bucketfs"));
    let plan = m.plan().unwrap();
    assert_eq!(plan.bucket, "my-bucket");
    assert_eq!(plan.prefix, "photos/");
    assert!(plan.fs.read_only && plan.mount.read_only);
    assert!(plan.mount.allow_other);
    assert_eq!((plan.fs.uid, plan.fs.gid), (1000, 1000));
    assert!(plan.daemon.debug, "-v is --debug");
    assert_eq!(plan.connection.region.as_deref(), Some("r1"));
}

#[test]
fn stats_raw_flag() {
    match parse(&["bucketfs", "stats", "--raw", "/mnt/b"]).map(|p| p.cli.command) {
        Ok(Command::Stats(s)) => assert!(s.raw),
        other => panic!("not stats: {other:?}"),
    }
}

#[test]
fn object_lock_flags_become_worm_headers() {
    let plan = mount_args(&[
        "bucketfs",
        "mount",
        "b",
        "/m",
        "--object-lock-mode",
        "compliance",
        "--object-lock-retain",
        "2030-01-01T00:00:00Z",
    ])
    .plan()
    .unwrap();
    let c = s3_config(&plan.connection, "b", "http://127.0.0.1:9000", "r", creds());
    let lock = c.object_lock.expect("object lock");
    assert_eq!(lock.mode, "COMPLIANCE");
    assert_eq!(
        lock.retain,
        crate::s3::RetainUntil::Date("2030-01-01T00:00:00Z".into())
    );
    let plan = mount_args(&[
        "bucketfs",
        "mount",
        "b",
        "/m",
        "--object-lock-mode",
        "GOVERNANCE",
        "--object-lock-retain",
        "30d",
    ])
    .plan()
    .unwrap();
    let c = s3_config(&plan.connection, "b", "http://127.0.0.1:9000", "r", creds());
    assert_eq!(
        c.object_lock.map(|l| l.retain),
        Some(crate::s3::RetainUntil::For(Duration::from_secs(30 * 86400)))
    );
    assert!(mount_args(&[
        "bucketfs",
        "mount",
        "b",
        "/m",
        "--object-lock-mode",
        "FOREVER",
        "--object-lock-retain",
        "1d",
    ])
    .plan()
    .is_err());
    assert!(parse(&[
        "bucketfs",
        "mount",
        "b",
        "/m",
        "--object-lock-mode",
        "GOVERNANCE"
    ])
    .is_err());
}

#[test]
fn cache_dir_and_log_file_inside_the_mountpoint_are_refused() {
    let tmp = std::env::temp_dir().join(format!("bucketfs-cli-{}", std::process::id()));
    let mnt = tmp.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let link = tmp.join("link-to-mnt");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&mnt, &link).unwrap();
    let m = mnt.to_str().unwrap();
    let plan = |extra: &[&str]| {
        let mut args = vec!["bucketfs", "mount", "b", m];
        args.extend_from_slice(extra);
        mount_args(&args).plan()
    };
    let inside = format!("{m}/parts");
    let err = plan(&["--cache-dir", &inside]).unwrap_err();
    assert!(
        err.contains("--cache-dir") && err.contains("inside the mountpoint"),
        "{err}"
    );
    // through `..` and through a symlink to the mountpoint
    let dotdot = format!("{m}/../mnt/x/bucketfs.log");
    let err = plan(&["--log-file", &dotdot]).unwrap_err();
    assert!(err.contains("--log-file"), "{err}");
    let via_link = link.join("cache");
    let err = plan(&["--cache-dir", via_link.to_str().unwrap()]).unwrap_err();
    assert!(err.contains("inside the mountpoint"), "{err}");
    // beside it is fine, even with a name that starts the same
    let beside = format!("{m}-cache");
    let ok = plan(&["--cache-dir", &beside, "--log-file", &format!("{m}.log")]);
    assert!(ok.is_ok(), "{:?}", ok.err());
    let _ = std::fs::remove_dir_all(&tmp);
}
