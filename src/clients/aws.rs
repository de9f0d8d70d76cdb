//! What the AWS inventory source and the Route 53 target share (feature `aws`): the SDK
//! configuration and the wording of SDK errors.
//!
//! - Credentials come from the SDK's standard chain — environment variables, the `profile`
//!   (or `AWS_PROFILE`) of the shared config and credentials files, web identity, the
//!   instance role — and are resolved on first use, not when the config is loaded.
//! - HTTPS uses the smithy client on rustls with ring, the crypto ipdrift already builds for
//!   TSIG and webhooks, instead of the SDK's default aws-lc.
//! - Each attempt has the controller's timeout; the SDK's standard retries (3 attempts,
//!   backoff with jitter) handle throttling and 5xx answers.
//! - Errors name the operation and the IAM permission it needs. They never contain a
//!   credential: the SDK's messages hold none, and access key ids the service quotes are
//!   redacted.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use super::chain;
use reqwest::Url;
use toml::Spanned;

use crate::config::Fragment;

/// How to reach an AWS API. Credentials come from the SDK's standard chain (environment,
/// `profile`, instance role, web identity) when the source or target is first used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsAccess {
    /// The region whose API is called and that requests are signed for.
    pub region: String,
    /// Another endpoint than AWS's own: a compatible API, or a test server.
    pub endpoint: Option<Url>,
    /// A profile of the shared AWS config and credentials files.
    pub profile: Option<String>,
}

/// `region` (or `default_region` when it is absent), `endpoint` and `profile`, checked.
pub(crate) fn check_access(
    f: &mut Fragment<'_, '_>,
    region: Option<&Spanned<String>>,
    endpoint: Option<&Spanned<String>>,
    profile: Option<&Spanned<String>>,
    default_region: &str,
) -> Option<AwsAccess> {
    let errors_before = f.checker.error_count();
    let region = match region {
        None => default_region.to_string(),
        Some(text) => {
            let value = text.get_ref();
            let valid = !value.is_empty()
                && value.len() <= 32
                && value
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
            if !valid {
                f.error_at(
                    text,
                    "region",
                    format!("{value:?} is not an AWS region; write e.g. \"eu-west-1\""),
                );
            }
            value.clone()
        }
    };
    let endpoint = endpoint.and_then(|text| {
        crate::validate::api_endpoint(text.get_ref())
            .map_err(|message| f.error_at(text, "endpoint", message))
            .ok()
    });
    let profile = profile.map(|text| {
        let value = text.get_ref();
        if value.trim().is_empty() || value.chars().any(char::is_control) {
            f.error_at(
                text,
                "profile",
                "must name a profile of ~/.aws/config, e.g. \"ipdrift\"",
            );
        }
        value.clone()
    });
    (f.checker.error_count() == errors_before).then_some(AwsAccess {
        region,
        endpoint,
        profile,
    })
}

/// The SDK configuration for `access`: region, endpoint, profile, credentials chain,
/// ring-based HTTPS and `timeout` for connecting and for each attempt.
pub(crate) async fn sdk_config(access: &AwsAccess, timeout: Duration) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeout)
        .operation_attempt_timeout(timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(access.region.clone()))
        .http_client(http_client)
        .timeout_config(timeouts);
    if let Some(profile) = &access.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = &access.endpoint {
        // The URL crate adds a `/` to a bare host; the SDK joins paths itself.
        loader = loader.endpoint_url(endpoint.as_str().trim_end_matches('/'));
    }
    loader.load().await
}

/// `error` of the call `operation` as one line that says what to check: for a refusal, the
/// IAM `permission` the call needs; for missing credentials, where they are looked for.
pub(crate) fn explain<E, R>(error: &SdkError<E, R>, operation: &str, permission: &str) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let what = match error {
        SdkError::ServiceError(_) => {
            let code = error.code().unwrap_or("an error");
            let message = error.message().map(redact).unwrap_or_default();
            let hint = if is_refusal(code) {
                format!(
                    "; check that the credentials are valid and allow {permission} (see the README's IAM policy)"
                )
            } else {
                String::new()
            };
            if message.is_empty() {
                format!("AWS answered {code}{hint}")
            } else {
                format!("AWS answered {code}: {message}{hint}")
            }
        }
        SdkError::TimeoutError(_) => "no answer within the timeout (controller.timeout)".into(),
        _ => {
            let text = redact(&chain(error));
            if text.to_ascii_lowercase().contains("credential") {
                format!(
                    "{text}; no usable AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                     give a `profile`, or run with an instance role or web identity"
                )
            } else {
                text
            }
        }
    };
    format!("{operation}: {what}")
}

/// Error codes meaning the credentials were not accepted or lack a permission.
fn is_refusal(code: &str) -> bool {
    matches!(
        code,
        "UnauthorizedOperation"
            | "AccessDenied"
            | "AccessDeniedException"
            | "AuthFailure"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "UnrecognizedClientException"
            | "MissingAuthenticationToken"
    )
}

/// `text` with every access key id (`AKIA…`, `ASIA…`: 20 upper-case letters and digits)
/// replaced: a service may quote the one a request was signed with.
pub(crate) fn redact(text: &str) -> String {
    let is_key_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let looks_like_key =
            word.len() == 20 && (word.starts_with("AKIA") || word.starts_with("ASIA"));
        out.push_str(if looks_like_key {
            "<access key id>"
        } else {
            word
        });
        word.clear();
    };
    for c in text.chars() {
        if is_key_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::error::ErrorMetadata;
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesError;

    #[test]
    fn access_key_ids_are_redacted() {
        assert_eq!(
            redact("key AKIAIOSFODNN7EXAMPLE is not valid; ASIAXXXXXXXXXXXXXXXX."),
            "key <access key id> is not valid; <access key id>."
        );
        assert_eq!(
            redact("AKIA is short, i-0123 stays"),
            "AKIA is short, i-0123 stays"
        );
    }

    #[test]
    fn refusals_name_the_permission_and_quote_no_key() {
        let service_error = DescribeInstancesError::generic(
            ErrorMetadata::builder()
                .code("UnauthorizedOperation")
                .message("You are not authorized; key AKIAIOSFODNN7EXAMPLE")
                .build(),
        );
        let error: SdkError<DescribeInstancesError, ()> =
            SdkError::service_error(service_error, ());
        let text = explain(&error, "DescribeInstances", "ec2:DescribeInstances");
        assert!(
            text.starts_with(
                "DescribeInstances: AWS answered UnauthorizedOperation: You are not authorized"
            ),
            "{text}"
        );
        assert!(text.contains("allow ec2:DescribeInstances"), "{text}");
        assert!(!text.contains("AKIAIOSFODNN7EXAMPLE"), "{text}");
    }
}
