//! What OFREP event streams put on the wire: the `eventStreams` entry of a bulk answer, the
//! stream's frames, and the request token that ties a stream to the context of a bulk request.

use std::fmt::Write as _;

use bytes::Bytes;

use super::SseSettings;
use crate::selector::Selector;
use crate::server::sync::gojson::write_str;

/// The stream endpoint; `/ofrep/v1/sse/{selector}` is the same stream for that selector.
pub const SSE_PATH: &str = "/ofrep/v1/sse";

/// The query parameter carrying a [`Token`].
pub const TOKEN_PARAM: &str = "ctx";

/// A keep-alive comment.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Names one (selector, evaluation context) pair of a bulk request: the first 128 bits of the
/// SHA-256 of the selector and the context as canonical JSON (keys sorted). The same request
/// context always gets the same token, so a bulk answer that mentions it stays byte for byte the
/// same (and keeps its `ETag`) while its flags do not change; and a token cannot be bound to any
/// other context than the one it was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u128);

impl Token {
    /// The token of `selector` with a context whose canonical JSON is `context`.
    pub fn of(selector: &Selector, context: &str) -> Token {
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        hash.update(selector_text(selector).as_bytes());
        hash.update(&[0]);
        hash.update(context.as_bytes());
        let digest = hash.finish();
        let mut first = [0u8; 16];
        first.copy_from_slice(digest.as_ref().get(..16).unwrap_or(&[0; 16]));
        Token(u128::from_be_bytes(first))
    }

    /// Reads the 32 hex digits [`Token::to_hex`] writes.
    pub fn parse(text: &str) -> Option<Token> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(Token)
    }

    /// 32 lower-case hex digits.
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

/// The selector as `Flagd-Selector` text: empty, `flagSetId=<id>` or `source=<uri>`.
pub fn selector_text(selector: &Selector) -> String {
    match selector {
        Selector::All => String::new(),
        Selector::FlagSet(id) => format!("flagSetId={id}"),
        Selector::Source(source) => format!("source={source}"),
    }
}

/// The stream's address for `selector` (in the path, as `/ofrep/v1/sse/{selector}`) and an
/// optional token (as `?ctx=`).
pub fn request_uri(selector: &Selector, token: Option<Token>) -> String {
    let mut uri = String::from(SSE_PATH);
    if *selector != Selector::All {
        uri.push('/');
        path_escape(&mut uri, &selector_text(selector));
    }
    if let Some(token) = token {
        let _ = write!(uri, "?{TOKEN_PARAM}={}", token.to_hex());
    }
    uri
}

/// The `eventStreams` array of a bulk answer, pointing at `request_uri`:
/// `[{"type":"sse","endpoint":{"origin":..,"requestUri":..},"inactivityDelaySec":..}]`, the
/// origin only when a public URL is configured.
pub fn event_streams(settings: &SseSettings, request_uri: &str) -> String {
    let mut out = String::with_capacity(128);
    out.push_str(r#"[{"type":"sse","endpoint":{"#);
    if let Some(origin) = &settings.public_url {
        out.push_str(r#""origin":"#);
        write_str(&mut out, origin);
        out.push(',');
    }
    out.push_str(r#""requestUri":"#);
    write_str(&mut out, request_uri);
    let _ = write!(
        out,
        r#"}},"inactivityDelaySec":{}}}]"#,
        settings.inactivity_delay_sec
    );
    out
}

/// One `refetchEvaluation` event:
/// `id: <id>` / `event: message` / `data: {"type":"refetchEvaluation","etag":..,"lastModified":..}`.
pub fn frame(id: u64, etag: &str, last_modified: i64) -> Bytes {
    let mut out = String::with_capacity(160);
    let _ = write!(
        out,
        "id: {id}\nevent: message\ndata: {{\"type\":\"refetchEvaluation\",\"etag\":"
    );
    write_str(&mut out, etag);
    let _ = write!(out, ",\"lastModified\":{last_modified}}}\n\n");
    Bytes::from(out)
}

/// Appends `text` escaped as one path segment, as Go's `url.PathEscape` does: unreserved
/// characters and `$&+,:;=@` stay, everything else (`/` and `?` included) becomes `%XX`.
fn path_escape(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~$&+,:;=@".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_and_bound_to_selector_and_context() {
        let all = Token::of(&Selector::All, r#"{"targetingKey":"u1"}"#);
        assert_eq!(all, Token::of(&Selector::All, r#"{"targetingKey":"u1"}"#));
        assert_ne!(all, Token::of(&Selector::All, r#"{"targetingKey":"u2"}"#));
        assert_ne!(
            all,
            Token::of(&Selector::FlagSet("a".into()), r#"{"targetingKey":"u1"}"#)
        );
        let hex = all.to_hex();
        assert_eq!(hex.len(), 32);
        assert_eq!(Token::parse(&hex), Some(all));
        assert_eq!(Token::parse(&hex.to_uppercase()), Some(all));
        assert_eq!(Token::parse("abc"), None);
        assert_eq!(Token::parse(&"g".repeat(32)), None);
        assert_eq!(Token::parse(&format!("+{}", &hex[1..])), None);
    }

    #[test]
    fn request_uris_carry_selector_and_token() {
        assert_eq!(request_uri(&Selector::All, None), "/ofrep/v1/sse");
        assert_eq!(
            request_uri(&Selector::FlagSet("pay ments".into()), None),
            "/ofrep/v1/sse/flagSetId=pay%20ments"
        );
        assert_eq!(
            request_uri(&Selector::Source("./dir/f.json?x".into()), None),
            "/ofrep/v1/sse/source=.%2Fdir%2Ff.json%3Fx"
        );
        let token = Token::parse("000102030405060708090a0b0c0d0e0f").unwrap();
        assert_eq!(
            request_uri(&Selector::All, Some(token)),
            "/ofrep/v1/sse?ctx=000102030405060708090a0b0c0d0e0f"
        );
    }

    #[test]
    fn event_streams_and_frames() {
        let mut settings = SseSettings::default();
        assert_eq!(
            event_streams(&settings, "/ofrep/v1/sse"),
            r#"[{"type":"sse","endpoint":{"requestUri":"/ofrep/v1/sse"},"inactivityDelaySec":120}]"#
        );
        settings.public_url = Some("https://flags.example.com".into());
        settings.inactivity_delay_sec = 30;
        assert_eq!(
            event_streams(&settings, "/ofrep/v1/sse"),
            r#"[{"type":"sse","endpoint":{"origin":"https://flags.example.com","requestUri":"/ofrep/v1/sse"},"inactivityDelaySec":30}]"#
        );
        assert_eq!(
            &frame(7, "\"abc\"", 1_771_622_898)[..],
            b"id: 7\nevent: message\ndata: {\"type\":\"refetchEvaluation\",\"etag\":\"\\\"abc\\\"\",\"lastModified\":1771622898}\n\n"
        );
    }
}
