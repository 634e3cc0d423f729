//! Profiles whose keys come from a service: a role (`role_arn`: STS `AssumeRole`, signed with
//! the keys of `source_profile` (static keys, `credential_process`, SSO, or another role: a
//! chain) or of `credential_source` (Environment, Ec2InstanceMetadata, EcsContainer); or
//! `AssumeRoleWithWebIdentity` when the profile names a `web_identity_token_file`), or IAM
//! Identity Center (`sso_session`, or the legacy `sso_start_url`: the token `aws sso login`
//! cached, exchanged at the SSO portal).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::credentials::{
    config_section, container_fetcher, from_environment, from_profile, imds_fetcher, nonempty,
    parse_ini, read_optional, AwsFiles, CredentialsError, Env,
};
use crate::s3::cred_sources::{Fetcher, ProcessFetcher};
use crate::s3::sso::SsoFetcher;
use crate::s3::sts::{AssumeRoleFetcher, FixedFetcher, ServiceTransport, WebIdentityFetcher};

/// Longest chain of roles followed (a profile naming itself through others is a loop).
const MAX_CHAIN: usize = 5;

/// The settings of `profile` from both files (the credentials file wins, as in the AWS CLI).
fn settings(
    files: &AwsFiles,
    profile: &str,
) -> Result<Option<HashMap<String, String>>, CredentialsError> {
    sections(files, config_section(profile), Some(profile))
}

/// Section `in_config` of the config file, merged with section `in_credentials` of the
/// credentials file (which wins).
fn sections(
    files: &AwsFiles,
    in_config: String,
    in_credentials: Option<&str>,
) -> Result<Option<HashMap<String, String>>, CredentialsError> {
    let mut merged: Option<HashMap<String, String>> = None;
    let mut places = vec![(files.config.as_ref(), in_config, "config file")];
    if let Some(profile) = in_credentials {
        places.push((
            files.credentials.as_ref(),
            profile.to_string(),
            "credentials file",
        ));
    }
    for (path, section, what) in places {
        let Some(path) = path else { continue };
        let Some(text) = read_optional(path, what)? else {
            continue;
        };
        let mut sections = parse_ini(&text);
        let found = sections.remove(&section).or_else(|| {
            (in_credentials == Some("default")).then(|| sections.remove("profile default"))?
        });
        if let Some(found) = found {
            merged.get_or_insert_with(HashMap::new).extend(found);
        }
    }
    Ok(merged)
}

fn refused(profile: &str, message: String) -> CredentialsError {
    CredentialsError::Fetch {
        origin: format!("profile {profile}"),
        message,
    }
}

/// The keys of a profile that names a role or SSO, as a fetcher; `None` for any other profile.
/// STS and the SSO services are reached `via` (a role profile's `ca_bundle` trusted too).
pub(super) fn role_fetcher(
    files: &AwsFiles,
    profile: &str,
    env: &dyn Env,
    via: &ServiceTransport,
) -> Result<Option<Arc<dyn Fetcher>>, CredentialsError> {
    role_in_chain(files, profile, env, via, &mut Vec::new())
}

/// An SSO profile: `sso_session` (its `[sso-session NAME]` section names `sso_region`), or
/// the legacy form with `sso_start_url` and `sso_region` in the profile; both with
/// `sso_account_id` and `sso_role_name`. Only the `sso_session` form's token is refreshed
/// (at SSO OIDC), as in the AWS SDKs.
fn sso_fetcher(
    files: &AwsFiles,
    profile: &str,
    s: &HashMap<String, String>,
    env: &dyn Env,
    via: &ServiceTransport,
) -> Result<Option<Arc<dyn Fetcher>>, CredentialsError> {
    let get = |k: &str| s.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let refreshable = get("sso_session").is_some();
    let (cache_key, region) = match (get("sso_session"), get("sso_start_url")) {
        (Some(session), _) => {
            let Some(sso) = sections(files, format!("sso-session {session}"), None)? else {
                return Err(refused(
                    profile,
                    format!("its sso_session {session} has no [sso-session {session}] section"),
                ));
            };
            let region = sso.get("sso_region").map(|r| r.trim().to_string());
            (session.to_string(), region)
        }
        (None, Some(url)) => (url.to_string(), get("sso_region").map(str::to_string)),
        (None, None) => return Ok(None),
    };
    let region = region
        .filter(|r| !r.is_empty())
        .ok_or_else(|| refused(profile, "SSO without sso_region".into()))?;
    let (Some(account_id), Some(role_name)) = (get("sso_account_id"), get("sso_role_name")) else {
        return Err(refused(
            profile,
            "SSO needs sso_account_id and sso_role_name".into(),
        ));
    };
    let cache_dir = PathBuf::from(nonempty(env, "HOME").unwrap_or_default()).join(".aws/sso/cache");
    Ok(Some(Arc::new(SsoFetcher {
        portal: SsoFetcher::portal_for(&region, nonempty(env, "AWS_ENDPOINT_URL_SSO").as_deref()),
        token_file: SsoFetcher::token_file_for(&cache_dir, &cache_key),
        account_id: account_id.to_string(),
        role_name: role_name.to_string(),
        profile: profile.to_string(),
        oidc: refreshable.then(|| {
            SsoFetcher::oidc_for(
                &region,
                nonempty(env, "AWS_ENDPOINT_URL_SSO_OIDC").as_deref(),
            )
        }),
        transport: via.clone(),
    })))
}

fn role_in_chain(
    files: &AwsFiles,
    profile: &str,
    env: &dyn Env,
    via: &ServiceTransport,
    chain: &mut Vec<String>,
) -> Result<Option<Arc<dyn Fetcher>>, CredentialsError> {
    let Some(s) = settings(files, profile)? else {
        return Ok(None);
    };
    let get = |k: &str| s.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let Some(role_arn) = get("role_arn") else {
        return sso_fetcher(files, profile, &s, env, via);
    };
    if chain.iter().any(|p| p == profile) || chain.len() >= MAX_CHAIN {
        chain.push(profile.to_string());
        return Err(refused(
            profile,
            format!(
                "the roles' source_profile chain loops or is too long: {}",
                chain.join(" -> ")
            ),
        ));
    }
    chain.push(profile.to_string());
    let region = get("region")
        .map(str::to_string)
        .or_else(|| nonempty(env, "AWS_REGION"))
        .or_else(|| nonempty(env, "AWS_DEFAULT_REGION"));
    let endpoint = WebIdentityFetcher::endpoint_for(
        region.as_deref(),
        nonempty(env, "AWS_ENDPOINT_URL_STS").as_deref(),
    );
    let session_name = get("role_session_name")
        .map(str::to_string)
        .unwrap_or_else(|| format!("bucketfs-{}", std::process::id()));
    let transport = match get("ca_bundle") {
        Some(bundle) => via.clone().with_ca_bundles(vec![PathBuf::from(bundle)]),
        None => via.clone(),
    };
    if let Some(token_file) = get("web_identity_token_file") {
        return Ok(Some(Arc::new(WebIdentityFetcher {
            endpoint,
            role_arn: role_arn.to_string(),
            session_name,
            token_file: PathBuf::from(token_file),
            transport,
        })));
    }
    let source = match (get("source_profile"), get("credential_source")) {
        (Some(source), _) => source_profile(files, profile, source, env, via, chain)?,
        (None, Some(kind)) => credential_source(profile, kind, env)?,
        (None, None) => {
            return Err(refused(
                profile,
                "role_arn needs source_profile, credential_source or web_identity_token_file"
                    .into(),
            ))
        }
    };
    let duration_seconds = match get("duration_seconds") {
        Some(d) => Some(d.parse::<u32>().map_err(|_| {
            refused(
                profile,
                format!("duration_seconds {d:?} is not a number of seconds"),
            )
        })?),
        None => None,
    };
    Ok(Some(Arc::new(AssumeRoleFetcher {
        endpoint,
        region: region.unwrap_or_else(|| "us-east-1".to_string()),
        role_arn: role_arn.to_string(),
        session_name,
        external_id: get("external_id").map(str::to_string),
        duration_seconds,
        source,
        profile: profile.to_string(),
        transport,
    })))
}

/// The keys `source_profile` names: another role (a chain), a `credential_process`, or
/// static keys (a role profile may name itself when it holds keys too).
fn source_profile(
    files: &AwsFiles,
    profile: &str,
    source: &str,
    env: &dyn Env,
    via: &ServiceTransport,
    chain: &mut Vec<String>,
) -> Result<Arc<dyn Fetcher>, CredentialsError> {
    if source != profile {
        if let Some(role) = role_in_chain(files, source, env, via, chain)? {
            return Ok(role);
        }
    }
    match from_profile(files, source, env) {
        Ok(Some((found, None))) => Ok(Arc::new(FixedFetcher {
            credentials: found.credentials,
            origin: found.origin,
        })),
        Ok(Some((_, Some(command)))) => Ok(Arc::new(ProcessFetcher {
            command,
            origin: format!("credential_process of profile {source}"),
        })),
        Ok(None) => Err(refused(
            profile,
            format!("its source_profile {source} is not in the config or credentials file"),
        )),
        Err(e) => Err(refused(profile, format!("its source_profile: {e}"))),
    }
}

/// The keys `credential_source` names.
fn credential_source(
    profile: &str,
    kind: &str,
    env: &dyn Env,
) -> Result<Arc<dyn Fetcher>, CredentialsError> {
    let missing = |what: &str| refused(profile, format!("credential_source {kind}: {what}"));
    match kind {
        "Environment" => {
            let found = from_environment(env)?
                .ok_or_else(|| missing("AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set"))?;
            Ok(Arc::new(FixedFetcher {
                credentials: found.credentials,
                origin: found.origin,
            }))
        }
        "Ec2InstanceMetadata" => {
            imds_fetcher(env)?.ok_or_else(|| missing("AWS_EC2_METADATA_DISABLED is set"))
        }
        "EcsContainer" => container_fetcher(env)?
            .ok_or_else(|| missing("no AWS_CONTAINER_CREDENTIALS_*_URI is set")),
        other => Err(refused(
            profile,
            format!(
                "credential_source {other:?}: expected Environment, Ec2InstanceMetadata or \
                 EcsContainer"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::super::cred_test_support::*;
    use super::super::credentials::{load_shared_with, load_with, CredentialRequest};

    #[test]
    fn a_role_profile_assumes_its_role_with_its_source_profiles_keys() {
        // role a from role b (a chain) from the static keys of profile c, signed at each step
        // by the keys the step before gave
        let fake = fake_sts(&[
            ("arn:aws:iam::1:role/b", "AKC", "ASIAB"),
            ("arn:aws:iam::1:role/a", "ASIAB", "ASIAA"),
        ]);
        let home = tempfile::tempdir().unwrap();
        write(
            &home.path().join(".aws/config"),
            "[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n\
             region = eu-west-3\nrole_session_name = s1\n\
             [profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = c\n\
             region = eu-west-3\n\
             [profile loop]\nrole_arn = arn:aws:iam::1:role/l\nsource_profile = loop2\n\
             [profile loop2]\nrole_arn = arn:aws:iam::1:role/l2\nsource_profile = loop\n\
             [profile nosource]\nrole_arn = arn:aws:iam::1:role/n\n",
            0o600,
        );
        write(
            &home.path().join(".aws/credentials"),
            "[c]\naws_access_key_id = AKC\naws_secret_access_key = sec-AKC\n",
            0o600,
        );
        let e = env(&[
            ("HOME", home.path().to_str().unwrap()),
            ("AWS_ENDPOINT_URL_STS", &fake.url),
        ]);
        let req = |p: &str| CredentialRequest {
            profile: Some(p.into()),
            ..request("b")
        };
        let src = load_shared_with(&req("a"), Arc::new(e.clone())).unwrap();
        let keys = src.current();
        assert_eq!(keys.access_key_id, "ASIAA");
        assert_eq!(keys.session_token.as_deref(), Some("tok-ASIAA"));
        assert!(
            src.describe().contains("role arn:aws:iam::1:role/a"),
            "{}",
            src.describe()
        );
        let bodies: Vec<String> = fake
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, _, h)| {
                h.iter()
                    .find(|(k, _)| k == "<body>")
                    .map(|(_, v)| v.clone())
            })
            .collect();
        assert_eq!(bodies.len(), 2, "one AssumeRole per role in the chain");
        assert!(bodies[1].contains("RoleSessionName=s1"), "{}", bodies[1]);
        // a chain that loops, a role without a source: one clear line each
        let err = load_with(&req("loop"), &e).unwrap_err().to_string();
        assert!(err.contains("loop -> loop2 -> loop"), "{err}");
        let err = load_with(&req("nosource"), &e).unwrap_err().to_string();
        assert!(err.contains("needs source_profile"), "{err}");
    }

    #[test]
    fn an_sso_profile_exchanges_the_cached_token_at_the_portal() {
        let fake = fake_metadata(|method, path, headers| {
            let token = headers
                .iter()
                .any(|(k, v)| k == "x-amz-sso_bearer_token" && v == "tok-1");
            if method == "GET"
                && path == "/federation/credentials?account_id=111122223333&role_name=Dev"
                && token
            {
                let ms = (SystemTime::now() + Duration::from_secs(3600))
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_millis();
                (
                    200,
                    format!(
                        r#"{{"roleCredentials":{{"accessKeyId":"ASIASSO","secretAccessKey":"s","sessionToken":"t","expiration":{ms}}}}}"#
                    ),
                )
            } else {
                (
                    401,
                    r#"{"message":"Session token not found or invalid"}"#.into(),
                )
            }
        });
        let home = tempfile::tempdir().unwrap();
        write(
            &home.path().join(".aws/config"),
            "[profile dev]\nsso_session = corp\nsso_account_id = 111122223333\n\
             sso_role_name = Dev\n[sso-session corp]\nsso_region = eu-west-1\n\
             sso_start_url = https://corp.awsapps.com/start\n",
            0o600,
        );
        let cache =
            crate::s3::sso::SsoFetcher::token_file_for(&home.path().join(".aws/sso/cache"), "corp");
        // the name the AWS CLI gives it: the SHA-1 of the session name
        assert!(
            cache.ends_with("ee0bfd2552fbd840c02cc48b6e823320543c450f.json"),
            "{}",
            cache.display()
        );
        let e = env(&[
            ("HOME", home.path().to_str().unwrap()),
            ("AWS_ENDPOINT_URL_SSO", &fake.url),
        ]);
        let req = CredentialRequest {
            profile: Some("dev".into()),
            ..request("b")
        };
        // not logged in yet: one line that says what to do
        let err = load_with(&req, &e).unwrap_err().to_string();
        assert!(err.contains("aws sso login --profile dev"), "{err}");
        let soon = crate::s3::cred_sources::iso8601_for_tests(
            SystemTime::now() + Duration::from_secs(3600),
        );
        write(
            &cache,
            &format!(r#"{{"accessToken":"tok-1","expiresAt":"{soon}"}}"#),
            0o600,
        );
        let c = load_with(&req, &e).unwrap();
        assert_eq!(c.credentials.access_key_id, "ASIASSO");
        assert_eq!(c.credentials.session_token.as_deref(), Some("t"));
        // an expired token is not sent
        let past =
            crate::s3::cred_sources::iso8601_for_tests(SystemTime::now() - Duration::from_secs(60));
        write(
            &cache,
            &format!(r#"{{"accessToken":"tok-1","expiresAt":"{past}"}}"#),
            0o600,
        );
        let err = load_with(&req, &e).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
    }

    /// A fake SSO OIDC (`POST /token`: refresh token `rt-1` of client `cid`/`csecret` gives
    /// `tok-2` and `rt-2`) and portal (`tok-1` gives the keys ASIAOLD, `tok-2` ASIANEW) in one.
    fn fake_oidc_and_portal() -> FakeMetadata {
        fake_metadata(|method, path, headers| {
            let h = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            if method == "POST" && path == "/token" {
                let body: serde_json::Value =
                    serde_json::from_str(&h("<body>")).unwrap_or_default();
                let json = h("content-type") == "application/json";
                if json
                    && body["grantType"] == "refresh_token"
                    && body["clientId"] == "cid"
                    && body["clientSecret"] == "csecret"
                    && body["refreshToken"] == "rt-1"
                {
                    return (
                        200,
                        r#"{"accessToken":"tok-2","expiresIn":28800,"refreshToken":"rt-2","tokenType":"Bearer"}"#
                            .into(),
                    );
                }
                return (
                    400,
                    r#"{"error":"invalid_grant","error_description":"Invalid refresh token provided"}"#
                        .into(),
                );
            }
            let key = match h("x-amz-sso_bearer_token").as_str() {
                "tok-1" => "ASIAOLD",
                "tok-2" => "ASIANEW",
                _ => {
                    return (
                        401,
                        r#"{"message":"Session token not found or invalid"}"#.into(),
                    )
                }
            };
            let ms = (SystemTime::now() + Duration::from_secs(3600))
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis();
            (
                200,
                format!(
                    r#"{{"roleCredentials":{{"accessKeyId":"{key}","secretAccessKey":"s","sessionToken":"t","expiration":{ms}}}}}"#
                ),
            )
        })
    }

    /// What `aws sso login` caches: `tok-1` valid until `expires`, with refresh token `rt`
    /// and a client registration valid until `registration`.
    fn sso_cache(expires: SystemTime, rt: &str, registration: SystemTime) -> String {
        let iso = crate::s3::cred_sources::iso8601_for_tests;
        format!(
            r#"{{"startUrl":"https://corp.awsapps.com/start","region":"eu-west-1","accessToken":"tok-1","expiresAt":"{}","clientId":"cid","clientSecret":"csecret","registrationExpiresAt":"{}","refreshToken":"{rt}"}}"#,
            iso(expires),
            iso(registration)
        )
    }

    #[test]
    fn an_sso_session_token_expired_or_about_to_is_refreshed_and_cached_again() {
        use std::os::unix::fs::PermissionsExt as _;
        let fake = fake_oidc_and_portal();
        let home = tempfile::tempdir().unwrap();
        write(
            &home.path().join(".aws/config"),
            "[profile dev]\nsso_session = corp\nsso_account_id = 111122223333\n\
             sso_role_name = Dev\n[sso-session corp]\nsso_region = eu-west-1\n\
             sso_start_url = https://corp.awsapps.com/start\n\
             [profile legacy]\nsso_start_url = https://corp.awsapps.com/start\n\
             sso_region = eu-west-1\nsso_account_id = 111122223333\nsso_role_name = Dev\n",
            0o600,
        );
        let cache_dir = home.path().join(".aws/sso/cache");
        let cache = crate::s3::sso::SsoFetcher::token_file_for(&cache_dir, "corp");
        let e = env(&[
            ("HOME", home.path().to_str().unwrap()),
            ("AWS_ENDPOINT_URL_SSO", &fake.url),
            ("AWS_ENDPOINT_URL_SSO_OIDC", &fake.url),
        ]);
        let req = |p: &str| CredentialRequest {
            profile: Some(p.into()),
            ..request("b")
        };
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let refreshes = || {
            fake.seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(m, p, _)| m == "POST" && p == "/token")
                .count()
        };

        // expired: refreshed, the new token used and written back (the other fields kept)
        write(&cache, &sso_cache(now - day, "rt-1", now + 30 * day), 0o600);
        let c = load_with(&req("dev"), &e).unwrap();
        assert_eq!(c.credentials.access_key_id, "ASIANEW");
        assert_eq!(refreshes(), 1);
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
        assert_eq!(doc["accessToken"], "tok-2");
        assert_eq!(doc["refreshToken"], "rt-2");
        assert_eq!(doc["clientId"], "cid");
        assert_eq!(doc["startUrl"], "https://corp.awsapps.com/start");
        let until = crate::s3::time::parse_iso8601(doc["expiresAt"].as_str().unwrap()).unwrap();
        assert!(until > now + Duration::from_secs(28_000), "{doc}");
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(&cache_dir)
            .unwrap()
            .map(|d| d.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        // the rewritten token is valid for hours: used as it is
        let c = load_with(&req("dev"), &e).unwrap();
        assert_eq!(c.credentials.access_key_id, "ASIANEW");
        assert_eq!(refreshes(), 1);

        // within 5 minutes of expiry: refreshed too
        write(
            &cache,
            &sso_cache(now + Duration::from_secs(120), "rt-1", now + 30 * day),
            0o600,
        );
        let c = load_with(&req("dev"), &e).unwrap();
        assert_eq!(c.credentials.access_key_id, "ASIANEW");
        assert_eq!(refreshes(), 2);

        // the refresh refused while the token is still valid: the token is used, the cache
        // left as it was
        let soon = sso_cache(now + Duration::from_secs(120), "rt-revoked", now + 30 * day);
        write(&cache, &soon, 0o600);
        let c = load_with(&req("dev"), &e).unwrap();
        assert_eq!(c.credentials.access_key_id, "ASIAOLD");
        assert_eq!(refreshes(), 3);
        assert_eq!(std::fs::read_to_string(&cache).unwrap(), soon);

        // refused with the token expired: one line saying what to do, without the secrets
        write(
            &cache,
            &sso_cache(now - day, "rt-revoked", now + 30 * day),
            0o600,
        );
        let err = load_with(&req("dev"), &e).unwrap_err().to_string();
        assert!(err.contains("aws sso login --profile dev"), "{err}");
        assert!(err.contains("invalid_grant"), "{err}");
        assert!(
            !err.contains("csecret") && !err.contains("rt-revoked") && !err.contains("tok-1"),
            "{err}"
        );

        // a client registration that has expired is not used
        write(&cache, &sso_cache(now - day, "rt-1", now - day), 0o600);
        let before = refreshes();
        let err = load_with(&req("dev"), &e).unwrap_err().to_string();
        assert!(err.contains("registration has expired"), "{err}");
        assert!(err.contains("aws sso login --profile dev"), "{err}");
        assert_eq!(refreshes(), before);

        // a legacy sso_start_url profile is not refreshed (as in the AWS SDKs)
        let legacy = crate::s3::sso::SsoFetcher::token_file_for(
            &cache_dir,
            "https://corp.awsapps.com/start",
        );
        write(
            &legacy,
            &sso_cache(now - day, "rt-1", now + 30 * day),
            0o600,
        );
        let err = load_with(&req("legacy"), &e).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
        assert!(err.contains("aws sso login --profile legacy"), "{err}");
        assert_eq!(refreshes(), before);
    }

    #[test]
    fn a_role_profile_can_take_its_source_from_the_environment() {
        let fake = fake_sts(&[("arn:aws:iam::1:role/e", "AKENV", "ASIAE")]);
        let home = tempfile::tempdir().unwrap();
        write(
            &home.path().join(".aws/config"),
            "[profile e]\nrole_arn = arn:aws:iam::1:role/e\ncredential_source = Environment\n\
             region = eu-west-3\n",
            0o600,
        );
        let e = env(&[
            ("HOME", home.path().to_str().unwrap()),
            ("AWS_ENDPOINT_URL_STS", &fake.url),
            ("AWS_ACCESS_KEY_ID", "AKENV"),
            ("AWS_SECRET_ACCESS_KEY", "sec-AKENV"),
        ]);
        let req = CredentialRequest {
            profile: Some("e".into()),
            ..request("b")
        };
        let c = load_with(&req, &e).unwrap();
        assert_eq!(c.credentials.access_key_id, "ASIAE");
    }
}
