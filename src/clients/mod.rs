//! What several kinds share to reach a cloud API:
//! - [`http`]: the JSON-over-HTTPS client — reads and writes, timeouts, retries, rate
//!   limits (the headers are read in `ratelimit.rs`), error wording;
//! - [`paging`]: every page of a listing, by page number or by cursor, or an error;
//! - [`token`]: the API token, which is never shown;
//! - `gcp`, `azure`: the Google and Azure credential chains ([`oauth`]: their token cache);
//! - [`keystone`]: OpenStack Keystone v3 tokens and the service catalog;
//! - `aws` (feature `aws`): the AWS SDK set-up and error wording that the EC2 source and
//!   the Route 53 target share.

#[cfg(feature = "aws")]
pub(crate) mod aws;
pub mod azure;
pub mod gcp;
pub mod http;
pub mod keystone;
pub mod oauth;
pub mod paging;
mod ratelimit;
pub mod token;

/// An error and its causes on one line, each said once: libraries often repeat their
/// cause's text in their own, and their chain printers add `Debug` dumps of every layer.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn an_error_chain_is_one_line_with_each_cause_once() {
        let inner = Layer("connection refused", None);
        let middle = Layer(
            "tcp connect error: connection refused",
            Some(Box::new(inner)),
        );
        let outer = Layer("dispatch failure", Some(Box::new(middle)));
        assert_eq!(
            chain(&outer),
            "dispatch failure: tcp connect error: connection refused"
        );
        assert_eq!(chain(&Layer("alone", None)), "alone");
    }
}
