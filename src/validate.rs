//! Validation of everything that ends up inside a DNS message or a HAProxy runtime-API
//! command. Pure. Inventory data is untrusted: a name such as
//! `web-01;shutdown sessions server web/web-02` must be refused here, never sent.

use std::net::IpAddr;

use crate::model::DnsName;

/// The base URL of an API, checked: `https`, or `http` to a loopback address (a test
/// server), since the token goes with every request; no query, fragment or credentials.
pub fn api_endpoint(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| {
        format!("{text:?} is not a URL ({e}); write e.g. \"https://api.example.com\"")
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL must not hold credentials (not shown); use token_env or token_file".into(),
        );
    }
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" if !host.is_empty() => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "{text:?} must use https: the API token is sent with every request (http is accepted only for a loopback test server)"
            ));
        }
        _ => return Err(format!("{text:?} must be an https:// URL")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    Ok(url)
}

/// Why a value was refused; the text is meant for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Parses an absolute DNS name (a trailing dot is added when missing) made of LDH labels
/// (letters, digits, hyphen; `_` is accepted for service labels such as `_ipdrift`).
pub fn dns_name(text: &str) -> Result<DnsName, Invalid> {
    if text == "." {
        return Ok(DnsName(".".to_string()));
    }
    let trimmed = text.strip_suffix('.').unwrap_or(text);
    if trimmed.is_empty() {
        return Err(Invalid("a DNS name must not be empty".into()));
    }
    if trimmed.len() > 253 {
        return Err(Invalid(format!(
            "DNS name {} is longer than 253 characters",
            printable(text)
        )));
    }
    for label in trimmed.split('.') {
        dns_label(label).map_err(|Invalid(why)| {
            Invalid(format!("DNS name {} is invalid: {why}", printable(text)))
        })?;
    }
    // One allocation: this runs once per instance and record rule.
    let mut name = String::with_capacity(trimmed.len() + 1);
    name.push_str(trimmed);
    name.make_ascii_lowercase();
    name.push('.');
    Ok(DnsName(name))
}

/// A host name (RFC 952, RFC 1123 §2.1): every label of letters, digits and hyphens. DNS
/// servers that check names (BIND's `check-names`, on by default for primary zones) refuse
/// an UPDATE that gives an address to any other owner — the whole message, not only it.
pub fn host_name(name: &DnsName) -> Result<(), Invalid> {
    let trimmed = name.as_str().strip_suffix('.').unwrap_or(name.as_str());
    match trimmed.split('.').find(|label| {
        !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }) {
        None => Ok(()),
        Some(label) => Err(Invalid(format!(
            "{} is not a host name: label {} may hold only letters, digits and hyphens (RFC 952/1123), and DNS servers that check names refuse it",
            printable(name.as_str()),
            printable(label)
        ))),
    }
}

/// One label: 1–63 characters of letters, digits, `-` and `_`, not starting or ending with `-`.
pub fn dns_label(label: &str) -> Result<(), Invalid> {
    if label.is_empty() {
        return Err(Invalid("it has an empty label".into()));
    }
    if label.len() > 63 {
        return Err(Invalid(format!(
            "label {} is longer than 63 characters",
            printable(label)
        )));
    }
    if let Some(bad) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(Invalid(format!(
            "label {} contains {:?}; only letters, digits, '-' and '_' are allowed",
            printable(label),
            bad
        )));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(Invalid(format!(
            "label {} starts or ends with '-'",
            printable(label)
        )));
    }
    Ok(())
}

/// A HAProxy backend or server name: what HAProxy itself accepts for identifiers
/// (letters, digits, `-`, `_`, `.`, `:`), at most 64 characters here. Anything else
/// (spaces, `;`, `/`, newlines) could split or redirect a runtime-API command.
pub fn haproxy_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid("a HAProxy name must not be empty".into()));
    }
    if name.len() > 64 {
        return Err(Invalid(format!(
            "HAProxy name {} is longer than 64 characters",
            printable(name)
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(Invalid(format!(
            "HAProxy name {} contains {:?}; only letters, digits, '-', '_', '.' and ':' are allowed",
            printable(name),
            bad
        )));
    }
    Ok(())
}

/// A TCP port: 1–65535. HAProxy silently wraps larger numbers, so this is checked here.
pub fn port(value: i64) -> Result<u16, Invalid> {
    match u16::try_from(value) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(Invalid(format!(
            "port {value} is out of range; use 1–65535"
        ))),
    }
}

/// An address a record or server may point at: not unspecified, not multicast.
pub fn target_addr(addr: IpAddr) -> Result<IpAddr, Invalid> {
    let never_a_server = addr.is_unspecified()
        || addr.is_multicast()
        || match addr {
            IpAddr::V4(v4) => v4.is_broadcast(),
            // fe80::/10 means nothing without the interface it belongs to, and neither a
            // DNS record nor a load balancer's server can say which.
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
        };
    if never_a_server {
        return Err(Invalid(format!(
            "address {addr} cannot be the address of a server"
        )));
    }
    Ok(addr)
}

/// Quotes untrusted text for an error message without letting control characters through.
pub fn printable(text: &str) -> String {
    format!("{:?}", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_normalised_and_checked() {
        assert_eq!(
            dns_name("WWW.Example.com").unwrap().as_str(),
            "www.example.com."
        );
        assert_eq!(
            dns_name("_ipdrift.www.example.com.").unwrap().as_str(),
            "_ipdrift.www.example.com."
        );
        assert!(dns_name("bad name.example.com.").is_err());
        assert!(dns_name("a..b.").is_err());
        assert!(dns_name("-a.example.com.").is_err());
        assert!(dns_name("web;rm.example.com.").is_err());
        assert!(dns_name(&format!("{}.com.", "a".repeat(64))).is_err());
        assert!(dns_name("").is_err());
    }

    #[test]
    fn haproxy_names_refuse_command_injection() {
        assert!(haproxy_name("web-01").is_ok());
        assert!(haproxy_name("web_01.a:b").is_ok());
        for hostile in [
            "web-01;shutdown sessions server web/web-02",
            "web 01",
            "web\n01",
            "web/01",
            "",
        ] {
            assert!(haproxy_name(hostile).is_err(), "{hostile:?} was accepted");
        }
    }

    #[test]
    fn ports_are_range_checked() {
        assert_eq!(port(80), Ok(80));
        assert_eq!(port(65535), Ok(65535));
        assert!(port(0).is_err());
        assert!(port(65536).is_err());
        assert!(port(99999).is_err());
        assert!(port(-1).is_err());
    }

    #[test]
    fn unusable_addresses_are_refused() {
        assert!(target_addr("0.0.0.0".parse().unwrap()).is_err());
        assert!(target_addr("224.0.0.1".parse().unwrap()).is_err());
        assert!(target_addr("::".parse().unwrap()).is_err());
        assert!(target_addr("255.255.255.255".parse().unwrap()).is_err());
        assert!(host_name(&dns_name("web-01.Example.com.").unwrap()).is_ok());
        let underscore = host_name(&dns_name("web_05.example.com.").unwrap()).unwrap_err();
        assert!(underscore.0.contains("\"web_05\""), "{}", underscore.0);
        assert!(target_addr("fe80::1".parse().unwrap()).is_err());
        assert!(target_addr("febf::1".parse().unwrap()).is_err());
        assert!(target_addr("fec0::1".parse().unwrap()).is_ok());
        assert!(target_addr("2001:db8::1".parse().unwrap()).is_ok());
        assert!(target_addr("192.0.2.1".parse().unwrap()).is_ok());
    }
}
