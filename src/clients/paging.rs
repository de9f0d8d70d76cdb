//! Reading a paginated listing: every page, or an error — never a shorter list.
//!
//! One routine ([`ApiClient::list_pages`]) serves both kinds of pagination: page numbers
//! (DigitalOcean, Hetzner, Cloudflare) and cursors or next links (Azure `nextLink`, Google
//! `pageToken`). The provider's part is a reader that turns one decoded page into its
//! items and where the listing goes on ([`Page`]); the routine fetches, follows, guards
//! against pagination that loops or never ends, and checks that the pages add up.

use std::collections::BTreeSet;

use anyhow::anyhow;
use reqwest::header::HeaderName;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::http::{ApiClient, Call, deadline_after};

/// Most pages one listing may have: a guard against pagination that never ends.
pub const MAX_PAGES: u32 = 1000;

/// Where a listing goes on after a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextPage {
    /// Page number `n`. Its URL is built from the listing's own base, never taken from the
    /// answer, so a next link naming the provider's host still goes to the configured
    /// endpoint (a proxy, a test server).
    Number(u32),
    /// The next page's URL: a next link (Azure `nextLink`), or the listing's URL with the
    /// cursor the page gave (Google `pageToken`). It must be on the listing's own scheme,
    /// host and port, since the token goes with it.
    Url(Url),
}

/// One page as the provider's reader makes of it.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// `None` on the last page.
    pub next: Option<NextPage>,
    /// The size of the whole listing, when the page announces it: the pages must add up.
    pub total: Option<u64>,
}

/// What a listing is, for its requests and its errors.
#[derive(Debug)]
pub struct Listing<'a, T> {
    /// What it lists, singular: `droplet`.
    pub noun: &'a str,
    /// The answer's field that says where the listing goes on: `links.pages.next`.
    pub next_field: &'a str,
    /// The config key that narrows the listing, named when it has too many pages: `tag`.
    pub narrow: Option<&'a str>,
    /// What a refused token is told it needs ([`Call::new`]).
    pub needs: &'a str,
    /// An item's id; no id may be listed twice.
    pub id: fn(&T) -> &str,
}

/// Page `page` of a page-number listing at `base`: `per_page`, then `page` from the second
/// page on, then the provider's filter parameter when one is configured.
pub fn page_url(base: &Url, per_page: u32, page: u32, filter: Option<(&str, &str)>) -> Url {
    let mut url = base.clone();
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("per_page", &per_page.to_string());
        if page > 1 {
            query.append_pair("page", &page.to_string());
        }
        if let Some((key, value)) = filter {
            query.append_pair(key, value);
        }
    }
    url
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

impl ApiClient {
    /// Every page of `listing`, in order: `page_url(1)` first, then wherever each page's
    /// `read` says. A page that fails after its retries, a page `read` refuses (its error
    /// becomes `malformed response: …`), pagination that goes back or loops, more than
    /// [`MAX_PAGES`] pages, or pages that do not add up — is an error. All pages share one
    /// deadline, [`super::http::HttpOptions::listing_limit`] from now.
    pub async fn list_pages<P, T>(
        &self,
        listing: &Listing<'_, T>,
        page_url: impl Fn(u32) -> Url,
        read: impl FnMut(P, &Url) -> Result<Page<T>, String>,
    ) -> anyhow::Result<Vec<T>>
    where
        P: DeserializeOwned,
    {
        self.list_pages_with(listing, None, page_url, read).await
    }

    /// [`Self::list_pages`], sending `header` (name, value) with every page: APIs that take
    /// their filter in a header (Linode's `X-Filter`).
    pub async fn list_pages_with<P, T>(
        &self,
        listing: &Listing<'_, T>,
        header: Option<(HeaderName, &str)>,
        page_url: impl Fn(u32) -> Url,
        mut read: impl FnMut(P, &Url) -> Result<Page<T>, String>,
    ) -> anyhow::Result<Vec<T>>
    where
        P: DeserializeOwned,
    {
        let deadline = deadline_after(self.options().listing_limit());
        let first = page_url(1);
        let mut fetched = BTreeSet::from([first.to_string()]);
        let mut items = Vec::new();
        let mut totals = Vec::new();
        let (mut number, mut url) = (1, first.clone());
        loop {
            let mut call = Call::new(format!("page {number}"), listing.needs).until(deadline);
            if let Some((name, value)) = &header {
                call = call.header(name.clone(), value);
            }
            let body: P = self.get_json(&url, &call).await?;
            let context = self.context(&Method::GET, &url, &call);
            let page =
                read(body, &url).map_err(|e| anyhow!("{context}: malformed response: {e}"))?;
            if let Some(total) = page.total {
                totals.push((number, total));
            }
            items.extend(page.items);
            let field = listing.next_field;
            let (next_number, next_url) = match page.next {
                None => break,
                Some(NextPage::Number(next)) if next <= number => {
                    return Err(anyhow!(
                        "{context}: malformed response: {field} goes back to page {next}"
                    ));
                }
                Some(NextPage::Number(next)) => (next, page_url(next)),
                Some(NextPage::Url(next)) if !same_origin(&next, &first) => {
                    return Err(anyhow!(
                        "{context}: malformed response: {field} leads to another server ({}); not followed, the token would go with it",
                        next.origin().ascii_serialization()
                    ));
                }
                Some(NextPage::Url(next)) if fetched.contains(next.as_str()) => {
                    return Err(anyhow!(
                        "{context}: malformed response: {field} leads back to a page already read"
                    ));
                }
                Some(NextPage::Url(next)) => (number + 1, next),
            };
            if next_number > MAX_PAGES {
                let narrow = listing
                    .narrow
                    .map(|key| format!("; narrow it with `{key}`"))
                    .unwrap_or_default();
                return Err(anyhow!(
                    "{context}: the listing has more than {MAX_PAGES} pages{narrow}"
                ));
            }
            fetched.insert(next_url.to_string());
            (number, url) = (next_number, next_url);
        }
        self.check_complete(items.iter().map(listing.id), &totals, listing.noun)?;
        Ok(items)
    }

    /// Checks that the pages add up to the whole listing the provider announced: no id
    /// twice, the same total on every page that gave one, and that many items. Anything
    /// else is a listing that changed while it was read, or a partial one.
    fn check_complete<'i>(
        &self,
        ids: impl IntoIterator<Item = &'i str>,
        totals: &[(u32, u64)],
        noun: &str,
    ) -> anyhow::Result<()> {
        let (owner, provider) = (self.owner(), self.provider());
        let mut seen = BTreeSet::new();
        let mut count = 0u64;
        for id in ids {
            count += 1;
            if !seen.insert(id) {
                return Err(anyhow!(
                    "{owner}: {provider} listed {noun} {id} twice; the listing changed while it was read (the next pass reads it again)"
                ));
            }
        }
        if let Some(((first_page, first), (page, other))) = totals
            .first()
            .and_then(|first| totals.iter().find(|t| t.1 != first.1).map(|o| (first, o)))
        {
            return Err(anyhow!(
                "{owner}: {provider} reported {first} {noun}s on page {first_page} and {other} on page {page}; the listing changed while it was read (the next pass reads it again)"
            ));
        }
        if let Some((_, total)) = totals.last()
            && *total != count
        {
            return Err(anyhow!(
                "{owner}: partial listing: {provider} reported {total} {noun}s but the pages held {count}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::http::HttpOptions;
    use crate::clients::token::Token;
    use std::time::Duration;

    fn client() -> ApiClient {
        ApiClient::new(
            "DigitalOcean",
            "inventory \"do\"".into(),
            Token::new("dop_v1_0123456789abcdef").unwrap(),
            HttpOptions::new(Duration::from_secs(1)),
        )
        .unwrap()
    }

    #[test]
    fn incomplete_listings_are_errors() {
        let c = client();
        let ids = |n: u32| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
        let check = |ids: &[String], totals: &[(u32, u64)]| {
            c.check_complete(ids.iter().map(String::as_str), totals, "droplet")
        };
        assert!(check(&ids(3), &[(1, 3)]).is_ok());
        assert!(check(&ids(3), &[]).is_ok());
        let e = check(&ids(2), &[(1, 3)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "inventory \"do\": partial listing: DigitalOcean reported 3 droplets but the pages held 2"
        );
        let e = check(&ids(4), &[(1, 3), (2, 4)]).unwrap_err();
        assert!(e.to_string().contains("changed while it was read"), "{e}");
        let e = check(&["1".into(), "1".into()], &[(1, 2)]).unwrap_err();
        assert!(e.to_string().contains("droplet 1 twice"), "{e}");
    }

    #[test]
    fn page_urls_add_the_page_from_the_second_on() {
        let base = Url::parse("https://api.example/v1/servers").unwrap();
        assert_eq!(
            page_url(&base, 50, 1, None).as_str(),
            "https://api.example/v1/servers?per_page=50"
        );
        assert_eq!(
            page_url(&base, 50, 2, Some(("label_selector", "a=b"))).as_str(),
            "https://api.example/v1/servers?per_page=50&page=2&label_selector=a%3Db"
        );
    }

    #[test]
    fn next_links_must_stay_on_the_listing_s_server() {
        let first = Url::parse("https://management.azure.com/x?api-version=1").unwrap();
        let same = Url::parse("https://management.azure.com:443/x?$skiptoken=a").unwrap();
        assert!(same_origin(&same, &first));
        for other in [
            "http://management.azure.com/x",
            "https://evil.example/x",
            "https://management.azure.com:8443/x",
        ] {
            assert!(!same_origin(&Url::parse(other).unwrap(), &first), "{other}");
        }
    }
}
