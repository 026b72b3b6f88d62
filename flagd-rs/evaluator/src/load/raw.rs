//! Borrowed pieces of a JSON flag document: strings that point into the input when they have no
//! escapes, object members in document order, and values kept as raw text until needed.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// A JSON string, borrowed from the document unless it had escapes.
#[derive(Debug)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor(PhantomData))
    }
}

/// Sorts `items` by `order` and keeps, of items that order equal, the last one (stable sort),
/// as a parsed JSON map keeps the last of repeated names.
pub(crate) fn sort_last_wins<T>(items: &mut Vec<T>, order: impl Fn(&T, &T) -> std::cmp::Ordering) {
    // Strictly ascending already: nothing to sort, nothing repeated.
    if items.is_sorted_by(|a, b| order(a, b).is_lt()) {
        return;
    }
    items.sort_by(&order);
    items.dedup_by(|later, earlier| {
        if order(later, earlier).is_eq() {
            std::mem::swap(later, earlier);
            true
        } else {
            false
        }
    });
}

/// The members of a JSON object in document order, repeated names included. Only an object
/// decodes into it (`null` and arrays do not).
#[derive(Debug)]
pub(super) struct Entries<'a, V>(pub(super) Vec<(Text<'a>, V)>);

impl<V> Default for Entries<'_, V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de: 'a, 'a, V: Deserialize<'de>> Deserialize<'de> for Entries<'a, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<'a, V>(PhantomData<(&'a (), V)>);
        impl<'de: 'a, 'a, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<'a, V> {
            type Value = Entries<'a, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(key) = map.next_key::<Text<'a>>()? {
                    out.push((key, map.next_value::<V>()?));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// `raw` (one JSON value as written) without the whitespace between tokens, in one pass that
/// copies the text between gaps; borrowed when there is none to remove. What the reader writes
/// of a rule as it reads it is checked against this.
#[cfg(test)]
pub(super) fn compact(raw: &str) -> Cow<'_, str> {
    let bytes = raw.as_bytes();
    let mut out = String::new();
    let (mut i, mut start) = (0, 0);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => i = string_end(bytes, i + 1),
            b' ' | b'\t' | b'\n' | b'\r' => {
                if out.is_empty() {
                    out.reserve(bytes.len());
                }
                out.push_str(raw.get(start..i).unwrap_or_default());
                i = gap_end(bytes, i + 1);
                start = i;
            }
            _ => i += 1,
        }
    }
    if start == 0 {
        return Cow::Borrowed(raw);
    }
    out.push_str(raw.get(start..).unwrap_or_default());
    Cow::Owned(out)
}

/// The position just past the string whose contents start at `from` (past the end of `bytes`
/// when it is not closed).
#[cfg(test)]
fn string_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    loop {
        match quote_or_backslash(bytes, i) {
            Some(n) if bytes.get(n) == Some(&b'"') => return n + 1,
            Some(n) => i = n + 2,
            None => return bytes.len(),
        }
    }
}

/// The position of the first `"` or `\\` at or after `from`, eight bytes at a time.
#[inline]
fn quote_or_backslash(bytes: &[u8], from: usize) -> Option<usize> {
    string_stop::<false>(bytes, from)
}

/// The position of the first `"` or `\\` (with `CONTROLS`, also of the first control
/// character) at or after `from`, eight bytes at a time; `None` when there is none.
#[inline]
pub(super) fn string_stop<const CONTROLS: bool>(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // High bit set in each byte of `word` equal to `byte` (and possibly in bytes after the
    // first such one, which the lowest set bit ignores).
    let matches = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let mut i = from;
    // Whole words first (one length check a word), then the bytes left over.
    let mut words = bytes.get(from..)?.chunks_exact(8);
    for chunk in &mut words {
        let word = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).ok()?);
        let mut found = matches(word, b'"') | matches(word, b'\\');
        if CONTROLS {
            found |= word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        }
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || (CONTROLS && b < 0x20))
        .map(|n| i + n)
}

/// The end of the run of whitespace at `from` (an indented document is mostly such runs: a line
/// break and the next line's indentation).
#[inline]
pub(super) fn gap_end(bytes: &[u8], from: usize) -> usize {
    const SPACES: u128 = u128::from_ne_bytes([b' '; 16]);
    let mut i = from;
    loop {
        match bytes.get(i) {
            Some(b'\n' | b'\r' | b'\t') => i += 1,
            Some(b' ') => {}
            _ => return i,
        }
        // The run of spaces from `i` (none, when another line break or tab follows), sixteen
        // bytes at a time up to the first that is not a space: one step for most indentation.
        loop {
            if let Some(Ok(chunk)) = bytes.get(i..i + 16).map(<[u8; 16]>::try_from) {
                let other = u128::from_le_bytes(chunk) ^ SPACES;
                if other != 0 {
                    i += (other.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 16;
            } else {
                while bytes.get(i) == Some(&b' ') {
                    i += 1;
                }
                break;
            }
        }
    }
}

/// Whether `bytes` hold a JSON document that is not cut short: something besides whitespace,
/// and every string, array and object opened in it closed. Not a syntax check (the load is):
/// a cheap way to tell a file that is still being written from a finished one.
pub fn closed(bytes: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut any = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'"' => {
                any = true;
                match closed_string_end(bytes, i) {
                    Some(end) => i = end,
                    None => return false,
                }
            }
            b'[' | b'{' => {
                any = true;
                depth += 1;
            }
            b']' | b'}' => {
                any = true;
                depth = depth.saturating_sub(1);
            }
            b' ' | b'\n' | b'\r' | b'\t' => i = gap_end(bytes, i),
            _ => any = true,
        }
    }
    any && depth == 0
}

/// The position just past the string whose contents start at `from`; `None` when it is not
/// closed.
#[inline]
fn closed_string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let n = quote_or_backslash(bytes, i)?;
        if bytes.get(n) == Some(&b'"') {
            return Some(n + 1);
        }
        i = n + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings_and_drops_gaps() {
        assert!(matches!(compact(r#"{"a":[1,2]}"#), Cow::Borrowed(_)));
        assert_eq!(
            compact("{ \"a b\" : [1, \"x \\\" y\" ],\n\t\"c\":null }"),
            "{\"a b\":[1,\"x \\\" y\"],\"c\":null}"
        );
        assert_eq!(compact(r#"["\\", 1]"#), r#"["\\",1]"#);
        assert_eq!(compact(r#"["\" ",  "a" ]"#), r#"["\" ","a"]"#);
        assert_eq!(compact(" [1]\n"), "[1]");
        let indented = "{\n                \"a\" :\n\t                        [1,\r\n        \n         2 ]\n}";
        assert_eq!(compact(indented), r#"{"a":[1,2]}"#);
        assert!(closed(indented.as_bytes()));
        assert!(!closed(&indented.as_bytes()[..indented.len() - 1]));
    }

    /// [`string_end`] one byte at a time.
    fn string_end_bytewise(bytes: &[u8], from: usize) -> usize {
        let mut i = from;
        loop {
            match bytes.get(i) {
                Some(b'"') => return i + 1,
                Some(b'\\') => i += 2,
                Some(_) => i += 1,
                None => return bytes.len(),
            }
        }
    }

    #[test]
    fn strings_end_where_they_close() {
        let long = format!("{}\\\"{}\\\\\"tail", "x".repeat(37), "y".repeat(9));
        for text in [
            r#"ab"x"#,
            r#"abcdefghijklmnop"x"#,
            r#"abcdefg\"hijklm"x"#,
            r#"abcdefg\\"hijklm"x"#,
            r#"\\\\\\\\"x"#,
            "abcdefghij",
            "abcdefgh\\",
            "abcdefg\\",
            "\u{e9}\u{20ac}\u{1f600}\"",
            &long,
        ] {
            for from in 0..text.len().min(12) {
                assert_eq!(
                    string_end(text.as_bytes(), from),
                    string_end_bytewise(text.as_bytes(), from),
                    "{text} from {from}"
                );
            }
        }
    }

    #[test]
    fn string_stops_are_found_wherever_they_fall() {
        let bytewise = |bytes: &[u8], from: usize, controls: bool| {
            bytes
                .get(from..)?
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || (controls && b < 0x20))
                .map(|n| from + n)
        };
        // A stop of each kind at every place in and past two words, after plain bytes, bytes
        // above 0x7f, and bytes just above the control range.
        for fill in ["a", "\u{e9}", " ", "~", "\u{7f}", "!#"] {
            for len in 0..40 {
                for stop in ["", "\"", "\\", "\n", "\t", "\r", "\u{0}", "\u{1f}"] {
                    let text = format!("{}{stop}{}", fill.repeat(len), fill.repeat(3));
                    let bytes = text.as_bytes();
                    for from in 0..=bytes.len() + 1 {
                        assert_eq!(
                            string_stop::<true>(bytes, from),
                            bytewise(bytes, from, true),
                            "{text:?} from {from}"
                        );
                        assert_eq!(
                            string_stop::<false>(bytes, from),
                            bytewise(bytes, from, false),
                            "{text:?} from {from}"
                        );
                    }
                }
            }
        }
    }

    /// [`gap_end`] one byte at a time.
    fn gap_end_bytewise(bytes: &[u8], from: usize) -> usize {
        let mut i = from;
        while matches!(bytes.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            i += 1;
        }
        i
    }

    #[test]
    fn gaps_of_every_kind_and_length_end_where_whitespace_ends() {
        // Runs of spaces of every length up to past two words, between breaks of each kind,
        // followed by a token, by a byte that is not JSON whitespace, or by the end.
        let mut gaps = vec![String::new()];
        for len in 0..40 {
            for lead in ["", "\n", "\r\n", "\t", "\n\t", " \n"] {
                for tail in ["", "\n", "\t", "\r", "\n  \n    "] {
                    gaps.push(format!("{lead}{}{tail}", " ".repeat(len)));
                }
            }
        }
        for gap in &gaps {
            for after in [
                "",
                "\"a\"",
                "}",
                "1",
                "\u{a0}",
                "\u{b}",
                "\u{c}",
                "x         ",
            ] {
                for before in ["", "{", ":"] {
                    let text = format!("{before}{gap}{after}");
                    let bytes = text.as_bytes();
                    for from in 0..=bytes.len() {
                        assert_eq!(
                            gap_end(bytes, from),
                            gap_end_bytewise(bytes, from),
                            "{text:?} from {from}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn documents_cut_short_are_not_closed() {
        for complete in [
            r#"{"flags":{}}"#,
            "  {\n  \"a\": [1, \"x\\\"]\" ]\n}\n",
            "[]",
            "1",
            // Not a syntax check: a finished file with an error is finished.
            r#"{"flags":}"#,
        ] {
            assert!(closed(complete.as_bytes()), "{complete}");
        }
        for cut in [
            "",
            "  \n\t",
            r#"{"flags":"#,
            r#"{"flags":{"a":"x"#,
            r#"{"flags":{"a":"x\"#,
            r#"{"flags":{"a":"x\""#,
            "[[[]]",
        ] {
            assert!(!closed(cut.as_bytes()), "{cut}");
        }
        let doc = r#"{"flags":{"a":{"state":"ENABLED","variants":{"x":"a \" b"}}}}"#;
        for end in 0..doc.len() {
            assert!(!closed(&doc.as_bytes()[..end]), "{}", &doc[..end]);
        }
    }

    #[test]
    fn entries_keep_order_and_repeats() {
        let e: Entries<'_, serde_json::Value> =
            serde_json::from_str(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        assert_eq!(e.0.len(), 3);
        assert_eq!(e.0[2].1, serde_json::json!(3));
        assert!(matches!(e.0[0].0.0, Cow::Borrowed("b")));
        assert!(serde_json::from_str::<Entries<'_, serde_json::Value>>("null").is_err());
        assert!(serde_json::from_str::<Entries<'_, serde_json::Value>>("[1]").is_err());
        let t: Text<'_> = serde_json::from_str(r#""a\nb""#).unwrap();
        assert!(matches!(t.0, Cow::Owned(_)));
    }
}
