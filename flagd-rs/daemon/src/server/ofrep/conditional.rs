//! Conditional bulk requests: the bulk answer's `ETag`, `If-None-Match` and the `flagConfigEtag`
//! / `flagConfigLastModified` query parameters a re-fetch triggered by an event stream carries
//! (OFREP ADR-0008, as flagd 0.16 serves them).
//!
//! - Every bulk `200` carries a strong `ETag`: the SHA-256 (hex) of the exact uncompressed body.
//!   A validator of the answer itself stays right when only the context changed.
//! - `If-None-Match` is read as RFC 9110 §13.1.2 says: `*`, or a comma-separated list of tags
//!   compared weakly (`W/` ignored); an unquoted tag is tolerated. A match answers `304` with
//!   the `ETag` and no body.
//! - A gzipped answer's tag carries a suffix (`"<hex>-gzip"`, see `gzip.rs`); such a tag matches
//!   only while the request still accepts gzip, since otherwise it names a representation the
//!   client would not get.
//! - `flagConfigEtag` that differs from the selection's configuration version forces a `200`
//!   that no `If-None-Match` can turn into a `304` (ADR-0008 §9). One that matches is not a
//!   validator by itself: without a matching `If-None-Match` the answer is a `200`.
//! - `flagConfigLastModified` (Unix seconds, ISO 8601 or an HTTP date) is a notification's
//!   timestamp, not a validator: it takes no part in the decision, as in flagd, and a value in
//!   any form, or malformed, never fails the request.

use http::{HeaderMap, Uri, header};

use super::gzip;

/// The query parameter carrying the configuration version an event announced.
pub const FLAG_CONFIG_ETAG: &str = "flagConfigEtag";

/// The strong entity tag of a body: its SHA-256 in lower-case hex, quoted.
pub fn etag(body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let mut tag = String::with_capacity(66);
    tag.push('"');
    push_hex(&mut tag, digest.as_ref());
    tag.push('"');
    tag
}

/// Appends `bytes` in lower-case hex.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

/// Whether the request's `If-None-Match` selects the representation tagged `etag` (a quoted
/// strong tag of the uncompressed body). `accepts_gzip`: whether the request accepts gzip, so
/// that a tag a gzipped answer carried still describes what it would get.
pub fn if_none_match(headers: &HeaderMap, etag: &str, accepts_gzip: bool) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_tags)
        .any(|candidate| {
            if candidate == "*" {
                return true;
            }
            let candidate = unquote(candidate.strip_prefix("W/").unwrap_or(candidate));
            let candidate = match candidate.strip_suffix(gzip::ETAG_SUFFIX) {
                Some(plain) if accepts_gzip => plain,
                _ => candidate,
            };
            candidate == unquote(etag)
        })
}

/// The members of an entity-tag list: split at commas outside quotes, trimmed, empty ones
/// skipped.
fn split_tags(list: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(list);
    std::iter::from_fn(move || {
        loop {
            let text = rest?;
            let mut quoted = false;
            let end = text
                .char_indices()
                .find(|&(_, c)| {
                    if c == '"' {
                        quoted = !quoted;
                    }
                    c == ',' && !quoted
                })
                .map(|(i, _)| i);
            let (tag, after) = match end {
                Some(i) => (&text[..i], Some(&text[i + 1..])),
                None => (text, None),
            };
            rest = after;
            let tag = tag.trim_matches([' ', '\t']);
            if !tag.is_empty() {
                return Some(tag);
            }
        }
    })
}

fn unquote(tag: &str) -> &str {
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag)
}

/// Whether the request is a re-fetch for a configuration version other than `version`, the
/// current version of the request's selection (computed only when the parameter is given and
/// not empty): then its answer must be a `200`. The parameter is compared without `W/` and
/// quotes, as entity tags are written either way.
/// The `flagConfigEtag` a re-fetch carries as sent (quotes kept), if any.
pub fn config_etag(uri: &Uri) -> Option<String> {
    query_param(uri, FLAG_CONFIG_ETAG).filter(|v| !v.is_empty())
}

pub fn config_etag_differs(uri: &Uri, version: impl FnOnce() -> String) -> bool {
    match query_param(uri, FLAG_CONFIG_ETAG).filter(|v| !v.is_empty()) {
        None => false,
        Some(sent) => {
            let sent = sent.strip_prefix("W/").unwrap_or(&sent);
            unquote(sent) != version()
        }
    }
}

/// The first value of query parameter `name`, percent-decoded (`+` is a space; a malformed
/// escape is kept as written), as the event-stream routes read their query too.
pub fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(uri.query()?).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inm(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::IF_NONE_MATCH, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn tags_are_sha256_of_the_body() {
        assert_eq!(
            etag(b""),
            "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\""
        );
    }

    #[test]
    fn if_none_match_lists() {
        let tag = "\"abc\"";
        let m = |v: &[&str]| if_none_match(&inm(v), tag, false);
        assert!(m(&["\"abc\""]));
        assert!(m(&["W/\"abc\""]));
        assert!(m(&["\"x\", W/\"abc\""]));
        assert!(m(&["\"x\"", "\"abc\""]));
        assert!(m(&["*"]));
        assert!(m(&["x, abc"]));
        assert!(m(&["abc"]));
        assert!(m(&["\"a,b\",\"abc\""]));
        assert!(m(&[" , \"abc\" ,"]));
        assert!(!m(&["\"abcd\""]));
        assert!(!m(&["\"a,b\""]));
        assert!(!m(&[""]));
        assert!(!m(&["\"ab"]));
        assert!(!m(&["\"\""]));
        assert!(!m(&[]));
    }

    #[test]
    fn gzip_suffixed_tags_match_only_while_gzip_is_accepted() {
        let tag = "\"abc\"";
        for suffixed in ["\"abc-gzip\"", "W/\"abc-gzip\"", "abc-gzip"] {
            assert!(if_none_match(&inm(&[suffixed]), tag, true), "{suffixed}");
            assert!(!if_none_match(&inm(&[suffixed]), tag, false), "{suffixed}");
        }
        // The plain tag matches either way.
        assert!(if_none_match(&inm(&["\"abc\""]), tag, true));
    }

    #[test]
    fn config_etag_veto() {
        let uri = |q: &str| -> Uri { format!("/ofrep/v1/evaluate/flags{q}").parse().unwrap() };
        let v = || "cfg".to_owned();
        assert!(!config_etag_differs(&uri(""), v));
        assert!(!config_etag_differs(&uri("?flagConfigLastModified=1"), v));
        assert!(!config_etag_differs(&uri("?flagConfigEtag=cfg"), v));
        assert!(!config_etag_differs(&uri("?flagConfigEtag=%22cfg%22"), v));
        assert!(!config_etag_differs(&uri("?flagConfigEtag=W/%22cfg%22"), v));
        assert!(config_etag_differs(&uri("?flagConfigEtag=other"), v));
        assert!(config_etag_differs(&uri("?flagConfigEtag=%22other%22"), v));
        assert!(!config_etag_differs(&uri("?flagConfigEtag="), v));
        // The version is computed only when a re-fetch names one.
        assert!(!config_etag_differs(&uri("?x=1"), || unreachable!()));
    }

    #[test]
    fn query_parameters() {
        let uri: Uri = "/p?a=1&flagConfigEtag=%22v%201%22+x&b".parse().unwrap();
        assert_eq!(
            query_param(&uri, "flagConfigEtag").as_deref(),
            Some("\"v 1\" x")
        );
        assert_eq!(query_param(&uri, "b").as_deref(), Some(""));
        assert_eq!(query_param(&uri, "c"), None);
        let malformed: Uri = "/p?x=%zz%4".parse().unwrap();
        assert_eq!(query_param(&malformed, "x").as_deref(), Some("%zz%4"));
    }
}
