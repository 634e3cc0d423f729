//! Profiles that name a role (`role_arn`): the keys come from STS `AssumeRole`, signed with the
//! keys of `source_profile` (static keys, `credential_process`, or another role: a chain) or
//! of `credential_source` (Environment, Ec2InstanceMetadata, EcsContainer); or from
//! `AssumeRoleWithWebIdentity` when the profile names a `web_identity_token_file`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::credentials::{
    config_section, container_fetcher, from_environment, from_profile, imds_fetcher, nonempty,
    parse_ini, read_optional, AwsFiles, CredentialsError, Env,
};
use crate::s3::cred_sources::{Fetcher, ProcessFetcher};
use crate::s3::sts::{AssumeRoleFetcher, FixedFetcher, WebIdentityFetcher};

/// Longest chain of roles followed (a profile naming itself through others is a loop).
const MAX_CHAIN: usize = 5;

/// The settings of `profile` from both files (the credentials file wins, as in the AWS CLI).
fn settings(
    files: &AwsFiles,
    profile: &str,
) -> Result<Option<HashMap<String, String>>, CredentialsError> {
    let mut merged: Option<HashMap<String, String>> = None;
    let places = [
        (
            files.config.as_ref(),
            config_section(profile),
            "config file",
        ),
        (
            files.credentials.as_ref(),
            profile.to_string(),
            "credentials file",
        ),
    ];
    for (path, section, what) in places {
        let Some(path) = path else { continue };
        let Some(text) = read_optional(path, what)? else {
            continue;
        };
        let mut sections = parse_ini(&text);
        let found = sections
            .remove(&section)
            .or_else(|| (profile == "default").then(|| sections.remove("profile default"))?);
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

/// The keys of a profile that names `role_arn`, as a fetcher; `None` for any other profile.
pub(super) fn role_fetcher(
    files: &AwsFiles,
    profile: &str,
    env: &dyn Env,
) -> Result<Option<Arc<dyn Fetcher>>, CredentialsError> {
    role_in_chain(files, profile, env, &mut Vec::new())
}

fn role_in_chain(
    files: &AwsFiles,
    profile: &str,
    env: &dyn Env,
    chain: &mut Vec<String>,
) -> Result<Option<Arc<dyn Fetcher>>, CredentialsError> {
    let Some(s) = settings(files, profile)? else {
        return Ok(None);
    };
    let get = |k: &str| s.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let Some(role_arn) = get("role_arn") else {
        return Ok(None);
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
    let ca_bundles: Vec<PathBuf> = get("ca_bundle")
        .map(str::to_string)
        .or_else(|| nonempty(env, "AWS_CA_BUNDLE"))
        .map(|p| vec![PathBuf::from(p)])
        .unwrap_or_default();
    if let Some(token_file) = get("web_identity_token_file") {
        return Ok(Some(Arc::new(WebIdentityFetcher {
            endpoint,
            role_arn: role_arn.to_string(),
            session_name,
            token_file: PathBuf::from(token_file),
            ca_bundles,
        })));
    }
    let source = match (get("source_profile"), get("credential_source")) {
        (Some(source), _) => source_profile(files, profile, source, env, chain)?,
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
        ca_bundles,
    })))
}

/// The keys `source_profile` names: another role (a chain), a `credential_process`, or
/// static keys (a role profile may name itself when it holds keys too).
fn source_profile(
    files: &AwsFiles,
    profile: &str,
    source: &str,
    env: &dyn Env,
    chain: &mut Vec<String>,
) -> Result<Arc<dyn Fetcher>, CredentialsError> {
    if source != profile {
        if let Some(role) = role_in_chain(files, source, env, chain)? {
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
