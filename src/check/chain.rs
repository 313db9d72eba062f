//! The credential provider chain: which source an SDK here takes its credentials from before the
//! instance profile, what makes botocore raise instead, and the check built on it
//! (`sdk.credential_source`).
//!
//! Owns: the sources, in botocore's order, and the configurations botocore raises on
//! (`ProfileNotFound`, `PartialCredentialsError`, `InvalidConfigError`). Does not own: the profile
//! and the files (`settings`, through `SharedFiles`) or reading them (`ini`). Secrets never
//! travel: a source is described by the names of its variables and keys and the paths of its
//! files, never a value.
//!
//! The chain order is botocore's (`botocore/credentials.py`, `create_credential_resolver`):
//! environment, assume-role profile, web identity, SSO, shared credentials file,
//! `credential_process`, config file keys, container credentials, instance profile. The other
//! SDKs also start with the environment and end with the container and the instance profile;
//! they differ only in the order of the profile-based sources in between.
//!
//! Web identity follows `AssumeRoleWithWebIdentityProvider._get_config`: the token file and the
//! role ARN are each read from the environment if the variable is set (even empty), else from the
//! profile, so the two may come from different places (EKS IRSA sets both variables). A profile
//! `role_arn` without `web_identity_token_file` is claimed first by the assume-role provider,
//! whatever the environment says.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::ini::Section;
use super::model::{Check, CheckId};
use super::settings::{EnvView, SharedFiles, profile_name};

/// The places an SDK looks for credentials, in botocore's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    Environment,
    AssumeRoleProfile,
    WebIdentity,
    Sso,
    SharedCredentialsFile,
    CredentialProcess,
    ConfigFile,
    Container,
    InstanceProfile,
}

impl CredentialSource {
    pub fn describe(self) -> &'static str {
        match self {
            CredentialSource::Environment => "environment variables",
            CredentialSource::AssumeRoleProfile => "an assume-role profile",
            CredentialSource::WebIdentity => "web identity (IRSA)",
            CredentialSource::Sso => "an SSO profile",
            CredentialSource::SharedCredentialsFile => "the shared credentials file",
            CredentialSource::CredentialProcess => "a credential_process",
            CredentialSource::ConfigFile => "keys in the config file",
            CredentialSource::Container => "container credentials (ECS, EKS Pod Identity)",
            CredentialSource::InstanceProfile => "the instance profile (IMDS)",
        }
    }
}

/// One source found, with where (names and paths only).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub source: CredentialSource,
    pub detail: String,
}

/// A configuration on which botocore raises instead of returning credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Broken {
    /// How many sources come before it in the chain: botocore raises only if none of them
    /// returns credentials, so only `after == 0` fails clients (0 also for what is raised before
    /// the chain starts, such as `ProfileNotFound`).
    pub after: usize,
    pub value: String,
    pub cause: String,
    pub fix: String,
}

/// What the chain looks like here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chain {
    /// Sources present, in chain order.
    pub found: Vec<Found>,
    /// Configurations botocore raises on, in chain order.
    pub broken: Vec<Broken>,
    /// Files that exist but could not be read (the SDK, running as another user, may).
    pub unreadable: Vec<String>,
    /// The profile botocore uses.
    pub profile: String,
    /// `AWS_DEFAULT_PROFILE` and `AWS_PROFILE` disagree: (value, cause).
    pub profile_conflict: Option<(String, String)>,
}

impl Chain {
    /// What botocore raises before any source answers, if anything.
    pub fn blocked(&self) -> Option<&Broken> {
        self.broken.iter().find(|b| b.after == 0)
    }

    /// The source botocore takes credentials from: the first one found, unless it raises first.
    pub fn first_source(&self) -> Option<&Found> {
        match self.blocked() {
            Some(_) => None,
            None => self.found.first(),
        }
    }

    fn push_broken(&mut self, value: String, cause: String, fix: String) {
        self.broken.push(Broken {
            after: self.found.len(),
            value,
            cause,
            fix,
        });
    }
}

/// Where a web identity setting comes from (`AssumeRoleWithWebIdentityProvider._get_config`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Origin {
    /// The variable is set and not empty.
    Env,
    /// The variable is set but empty: botocore takes it as the value and never reads the profile.
    EnvEmpty,
    /// The variable is unset and the profile has the key.
    Profile,
    Nowhere,
}

fn web_identity_origin(env: &EnvView, var: &str, section: &Section, key: &str) -> Origin {
    match env.raw(var) {
        Some("") => Origin::EnvEmpty,
        Some(_) => Origin::Env,
        None if section.has(key) => Origin::Profile,
        None => Origin::Nowhere,
    }
}

/// Works out which credential sources are configured, in chain order.
pub fn credential_chain(env: &EnvView, imds_disabled: bool) -> Chain {
    let mut chain = Chain::default();
    let files = SharedFiles::load(env);
    let default_var = env.raw("AWS_DEFAULT_PROFILE");
    let profile_var = env.raw("AWS_PROFILE");
    let explicit_profile = files.explicit.as_ref().map(|(v, p)| (*v, p.as_str()));
    if let (Some(d), Some(p)) = (default_var, profile_var)
        && d != p
    {
        let (d, p) = (profile_name(d), profile_name(p));
        chain.profile_conflict = Some((
            format!("AWS_DEFAULT_PROFILE={d} and AWS_PROFILE={p} disagree"),
            format!(
                "botocore (boto3, the AWS CLI v1) reads AWS_DEFAULT_PROFILE first and uses \
                 profile {d}, which this check follows; the AWS CLI v2 and the other SDKs prefer \
                 AWS_PROFILE and use profile {p}: clients in this environment do not agree on \
                 their credentials."
            ),
        ));
    }
    let profile = files.profile.clone();
    chain.profile = profile.clone();
    chain.unreadable = files.unreadable.clone();
    let (creds_path, config_path) = (&files.creds_path, &files.config_path);
    let empty = Section::default();
    let in_creds = files.in_creds();
    let in_config = files.in_config();
    let creds_section = in_creds.unwrap_or(&empty);
    let config_section = in_config.unwrap_or(&empty);
    // botocore merges the credentials file's profiles into the config's.
    let merged = Section {
        keys: creds_section
            .keys
            .union(&config_section.keys)
            .cloned()
            .collect(),
        credential_source: config_section
            .credential_source
            .clone()
            .or_else(|| creds_section.credential_source.clone()),
        imds: BTreeMap::new(),
    };
    let display = |p: &Result<PathBuf, String>| match p {
        Ok(p) => p.display().to_string(),
        Err(none) => none.clone(),
    };
    let profile_ref = format!("profile [{}]", profile_name(&profile));

    // Raised when the session loads the profile, before any provider runs.
    match explicit_profile {
        Some((var, "")) => chain.push_broken(
            format!("{var} is set but empty"),
            format!(
                "botocore takes a set variable as the profile name even when it is empty: it \
                 looks for a profile named \"\" and raises ProfileNotFound whenever a client is \
                 created, before any credential source is tried (the AWS CLI v2 and the other \
                 SDKs treat an empty {var} as unset)."
            ),
            format!(
                "Unset the variable where it is set, or give it a profile name:\n$ unset {var}"
            ),
        ),
        Some((var, name)) if in_creds.is_none() && in_config.is_none() => chain.push_broken(
            format!("{var}={name}, but no such profile"),
            format!(
                "Neither {} nor {} has a profile named {name:?}: botocore raises ProfileNotFound \
                 whenever a client is created, before any credential source is tried.",
                display(creds_path),
                display(config_path)
            ),
            format!("Unset the variable, or create the profile:\n$ unset {var}"),
        ),
        _ => {}
    }

    // 1. Environment.
    if env.get("AWS_ACCESS_KEY_ID").is_some() {
        if env.get("AWS_SECRET_ACCESS_KEY").is_some() {
            let mut vars = vec!["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
            if env.get("AWS_SESSION_TOKEN").is_some() {
                vars.push("AWS_SESSION_TOKEN");
            }
            chain.found.push(Found {
                source: CredentialSource::Environment,
                detail: format!("{} set", vars.join(", ")),
            });
        } else {
            chain.push_broken(
                "AWS_ACCESS_KEY_ID set without AWS_SECRET_ACCESS_KEY".into(),
                "botocore's environment provider raises PartialCredentialsError when it finds an \
                 access key id without a secret key: clients fail instead of moving on to the \
                 instance profile."
                    .into(),
                "Remove the stray variable where it is set:\n$ unset AWS_ACCESS_KEY_ID \
                 AWS_SESSION_TOKEN"
                    .into(),
            );
        }
    }
    let token_origin = web_identity_origin(
        env,
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        &merged,
        "web_identity_token_file",
    );
    // 2. Assume-role profile. botocore's AssumeRoleProvider takes every profile with role_arn
    //    and no web_identity_token_file (`_has_assume_role_config_vars`), whatever the
    //    environment holds, and requires exactly one of source_profile and credential_source.
    if merged.has("role_arn") && !merged.has("web_identity_token_file") {
        match (
            merged.has("source_profile"),
            merged.has("credential_source"),
        ) {
            (true, true) => chain.push_broken(
                format!("role_arn with both source_profile and credential_source in {profile_ref}"),
                format!(
                    "botocore's assume-role provider raises InvalidConfigError (\"The profile \
                     \"{profile}\" contains both source_profile and credential_source\"): clients \
                     fail instead of moving on to the instance profile."
                ),
                format!("Keep one of source_profile and credential_source in [{profile}]."),
            ),
            (false, false) => {
                let web = if token_origin == Origin::Env {
                    " AWS_WEB_IDENTITY_TOKEN_FILE does not make it web identity: botocore's web \
                     identity provider comes after the assume-role provider and is never reached, \
                     because the profile has no web_identity_token_file."
                } else {
                    ""
                };
                let fix = if token_origin == Origin::Env {
                    format!(
                        "For web identity (IRSA), remove role_arn from [{profile}] and name the \
                         role in AWS_ROLE_ARN, or add web_identity_token_file to [{profile}] too; \
                         to assume the role from the instance profile instead, add \
                         credential_source = Ec2InstanceMetadata to [{profile}]."
                    )
                } else {
                    format!(
                        "Add source_profile (or credential_source = Ec2InstanceMetadata) to \
                         [{profile}], or remove role_arn from it."
                    )
                };
                chain.push_broken(
                    format!(
                        "role_arn without source_profile or credential_source in {profile_ref}"
                    ),
                    format!(
                        "botocore's assume-role provider claims every profile with role_arn and \
                         no web_identity_token_file, and raises PartialCredentialsError \
                         (\"missing: source_profile or credential_source\"): clients fail \
                         instead of moving on to the instance profile.{web}"
                    ),
                    fix,
                );
            }
            _ => {
                let via = match &merged.credential_source {
                    Some(s) => format!("credential_source = {s}"),
                    None if merged.has("credential_source") => "credential_source".into(),
                    None => "source_profile".into(),
                };
                chain.found.push(Found {
                    source: CredentialSource::AssumeRoleProfile,
                    detail: format!("role_arn with {via} in {profile_ref}"),
                });
            }
        }
    }
    // 3. Web identity: each setting from its variable if set (even empty), else the profile.
    //    An empty token file path skips the provider; a token file without a role ARN raises.
    let role_origin = web_identity_origin(env, "AWS_ROLE_ARN", &merged, "role_arn");
    if matches!(token_origin, Origin::Env | Origin::Profile) {
        let token_from = match token_origin {
            Origin::Env => "AWS_WEB_IDENTITY_TOKEN_FILE set".to_string(),
            _ => format!("web_identity_token_file in {profile_ref}"),
        };
        match (token_origin, role_origin) {
            (Origin::Env, Origin::Env) => chain.found.push(Found {
                source: CredentialSource::WebIdentity,
                detail: "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN set, as EKS IRSA sets them"
                    .into(),
            }),
            (Origin::Profile, Origin::Profile) => chain.found.push(Found {
                source: CredentialSource::WebIdentity,
                detail: format!("web_identity_token_file and role_arn in {profile_ref}"),
            }),
            (_, Origin::Env) => chain.found.push(Found {
                source: CredentialSource::WebIdentity,
                detail: format!("{token_from}, AWS_ROLE_ARN set"),
            }),
            (_, Origin::Profile) => chain.found.push(Found {
                source: CredentialSource::WebIdentity,
                detail: format!("{token_from}, role_arn in {profile_ref}"),
            }),
            (_, role) => {
                let role_arn = if role == Origin::EnvEmpty {
                    "AWS_ROLE_ARN is set but empty, and botocore takes that as the role ARN (it \
                     then never reads role_arn from the profile)"
                        .to_string()
                } else {
                    format!("neither AWS_ROLE_ARN nor role_arn in {profile_ref} names a role")
                };
                chain.push_broken(
                    format!("{token_from}, but no role ARN"),
                    format!(
                        "botocore's web identity provider finds a token file, but {role_arn}: \
                         it raises InvalidConfigError (\"configured to assume role with web \
                         identity but has no role ARN configured\") and clients fail instead of \
                         moving on to the instance profile. EKS IRSA sets both \
                         AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN; one without the other is \
                         usually a partly copied or partly removed IRSA setup."
                    ),
                    "Name the role (on EKS, annotate the service account with \
                     eks.amazonaws.com/role-arn and recreate the pod), or remove the token file \
                     setting where it is set:\n$ export \
                     AWS_ROLE_ARN=arn:aws:iam::<account-id>:role/<role>\n$ unset \
                     AWS_WEB_IDENTITY_TOKEN_FILE"
                        .into(),
                );
            }
        }
    }
    // 4. SSO.
    if merged.has("sso_start_url") || merged.has("sso_session") {
        chain.found.push(Found {
            source: CredentialSource::Sso,
            detail: format!("sso settings in {profile_ref}"),
        });
    }
    // 5. Shared credentials file.
    if creds_section.has("aws_access_key_id") {
        let path = display(creds_path);
        if creds_section.has("aws_secret_access_key") {
            chain.found.push(Found {
                source: CredentialSource::SharedCredentialsFile,
                detail: format!("aws_access_key_id in [{profile}] of {path}"),
            });
        } else {
            chain.push_broken(
                format!("aws_access_key_id without aws_secret_access_key in [{profile}] of {path}"),
                "botocore raises PartialCredentialsError for a profile with an access key id and \
                 no secret key: clients fail instead of moving on to the instance profile."
                    .into(),
                format!("Complete or remove the [{profile}] section of {path}."),
            );
        }
    }
    // 6. credential_process.
    if merged.has("credential_process") {
        chain.found.push(Found {
            source: CredentialSource::CredentialProcess,
            detail: format!("credential_process in {profile_ref}"),
        });
    }
    // 7. Keys in the config file.
    if config_section.has("aws_access_key_id") && config_section.has("aws_secret_access_key") {
        chain.found.push(Found {
            source: CredentialSource::ConfigFile,
            detail: format!(
                "aws_access_key_id in {profile_ref} of {}",
                display(config_path)
            ),
        });
    }
    // 8. Container credentials.
    for var in [
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        if env.get(var).is_some() {
            chain.found.push(Found {
                source: CredentialSource::Container,
                detail: format!("{var} set"),
            });
            break;
        }
    }
    // 9. The instance profile.
    if !imds_disabled {
        chain.found.push(Found {
            source: CredentialSource::InstanceProfile,
            detail: String::new(),
        });
    }
    chain
}

pub(super) fn credential_source_check(chain: &Chain) -> Check {
    const ID: CheckId = CheckId::SdkCredentialSource;
    let also = |skip: usize| {
        let rest: Vec<String> = chain
            .found
            .iter()
            .skip(skip)
            .map(|f| {
                if f.detail.is_empty() {
                    f.source.describe().to_string()
                } else {
                    format!("{} ({})", f.source.describe(), f.detail)
                }
            })
            .collect();
        if rest.is_empty() {
            String::new()
        } else {
            format!(" Later in the chain: {}.", rest.join("; "))
        }
    };
    let unreadable = if chain.unreadable.is_empty() {
        String::new()
    } else {
        format!(
            " Not readable by this check: {} (an SDK running as another user may read it).",
            chain.unreadable.join(", ")
        )
    };
    let conflict = chain
        .profile_conflict
        .as_ref()
        .map_or(String::new(), |(v, c)| format!(" {v}: {c}"));
    const CONFLICT_FIX: &str = "Keep one of the two variables (or set both to the same \
         profile):\n$ unset AWS_DEFAULT_PROFILE";
    if let Some(first) = chain.blocked() {
        let mut cause = first.cause.clone();
        for b in chain.broken.iter().filter(|b| b.after == 0).skip(1) {
            cause.push_str(&format!(" Also: {}: {}", b.value, b.cause));
        }
        cause.push_str(&conflict);
        return Check::fail(ID, first.value.clone())
            .cause(cause)
            .fix(first.fix.clone());
    }
    let Some(first) = chain.first_source() else {
        return Check::fail(ID, "no credential source at all")
            .cause(format!(
                "Nothing in the chain is configured and AWS_EC2_METADATA_DISABLED=true removes the \
                 instance profile: SDKs raise \"Unable to locate credentials\".{unreadable}{conflict}"
            ))
            .fix("$ unset AWS_EC2_METADATA_DISABLED");
    };
    // Misconfigurations behind a source that answers: botocore never gets that far.
    let unreached: Vec<&str> = chain.broken.iter().map(|b| b.value.as_str()).collect();
    let unreached = if unreached.is_empty() {
        String::new()
    } else {
        format!(
            " Not reached while an earlier source answers, but botocore would raise on it \
             otherwise: {}.",
            unreached.join("; ")
        )
    };
    if first.source == CredentialSource::InstanceProfile {
        if let Some((value, _)) = &chain.profile_conflict {
            return Check::warn(
                ID,
                format!("the instance profile (IMDS) for botocore, but {value}"),
            )
            .cause(format!(
                "Nothing earlier in the chain is configured in profile [{}].{conflict}{unreadable}",
                profile_name(&chain.profile)
            ))
            .fix(CONFLICT_FIX);
        }
        let mut c = Check::ok(
            ID,
            "the instance profile (IMDS): nothing earlier in the chain is configured",
        );
        if !unreadable.is_empty() {
            c.value
                .push_str(&format!(" (unreadable: {})", chain.unreadable.join(", ")));
        }
        return c;
    }
    let mut fix = match first.source {
        CredentialSource::Environment => "If the instance role should be used, remove the keys where they are set (the pod spec, a Secret, the service unit, /etc/environment, a shell profile):\n$ unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN".to_string(),
        CredentialSource::WebIdentity | CredentialSource::Container => "If this is IRSA, EKS Pod Identity or an ECS task role, it is intended: the IMDS results above describe the node, not this process. Otherwise remove the variables from the pod or task definition.".to_string(),
        CredentialSource::SharedCredentialsFile | CredentialSource::ConfigFile => format!("If the instance role should be used, delete the keys from [{}] (or point AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE elsewhere).", profile_name(&chain.profile)),
        _ => format!("If the instance role should be used, remove those settings from [{}], or select another profile with AWS_PROFILE.", profile_name(&chain.profile)),
    };
    if chain.profile_conflict.is_some() {
        fix = format!("{fix}\n{CONFLICT_FIX}");
    }
    Check::warn(
        ID,
        format!(
            "{} ({}): used before the instance profile",
            first.source.describe(),
            first.detail
        ),
    )
    .cause(format!(
        "SDKs take the first source in the chain (environment, assume-role profile, web \
         identity, SSO, shared credentials file, credential_process, config file, container, \
         instance profile) and never look further: applications in this environment do not use \
         the instance role the IMDS checks describe.{}{unreached}{conflict}{unreadable}",
        also(1)
    ))
    .fix(fix)
}
