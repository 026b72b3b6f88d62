//! A reader of JSON text that decodes a flag document's parts as it goes: one pass over each
//! definition yields its decoded members and the span of text it was written in, with no tree
//! of the document and no second read of a definition or a rule.
//!
//! It accepts only JSON that serde_json parses into a value, and decodes it to what serde_json
//! decodes it to; anything it is not sure of makes it give up (`None`): a control character in
//! a string, an unknown escape, any surrogate escape, a member name serde_json treats
//! specially, nesting deeper than 100 levels (the full parse refuses 128), a number with an
//! exponent or of more than 300 characters (either may be out of a double's range, which the
//! full parse refuses even in members that the reader only passes over).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Number, Value};

use crate::intern::Interner;
use crate::logic::input::{Json, RAW_VALUE_TOKEN};
use crate::model::State;
use crate::schema::ValueKind;

use super::raw::sort_last_wins;

/// Deepest nesting the reader takes.
const MAX_DEPTH: usize = 100;

/// Longest number the reader takes, in characters.
const MAX_NUMBER: usize = 300;

/// A position in JSON text.
pub(super) struct Reader<'a> {
    text: &'a str,
    pos: usize,
    /// Arrays and objects open at `pos`.
    depth: usize,
    /// Where a rule's text is written as it is read.
    scratch: String,
    /// The elements of the arrays being read into a [`Json`] tree, innermost last; each array
    /// takes its own off the top at its final size when it closes.
    items: Vec<Json<'a>>,
    /// The same for objects' members.
    members: Vec<(Cow<'a, str>, Json<'a>)>,
    /// Whether a member named `$ref` was read into a [`Json`] tree since this was last reset.
    saw_ref: bool,
    /// While [`Reader::json_into`] reads: where the text not yet copied to `copy` starts.
    copy_from: Option<usize>,
    /// Where [`Reader::json_into`] copies the text it reads, without whitespace between tokens.
    copy: String,
}

/// One flag definition's members, decoded but not yet checked against each other or compiled.
#[derive(Debug)]
pub(super) struct Parts<'a> {
    /// `None` when absent or null.
    pub(super) state: Option<Cow<'a, str>>,
    /// `None` when absent or null.
    pub(super) default_variant: Option<Cow<'a, str>>,
    /// The rule's text as written, the same without whitespace between tokens, and the rule
    /// read from it; `None` when absent.
    pub(super) targeting: Option<(&'a str, Box<str>, Json<'a>)>,
    /// Whether the rule has a member named `$ref` anywhere (its name decoded), the only way it
    /// can refer to an evaluator.
    pub(super) refers: bool,
    /// `None` when absent or null.
    pub(super) key: Option<Cow<'a, str>>,
}

/// The variants and the metadata of the definition last read, in lists kept from one
/// definition to the next (each definition's are taken out of them as it is built).
#[derive(Debug, Default)]
pub(super) struct Lists<'a> {
    /// In document order, repeated names included; empty when absent.
    pub(super) variants: Vec<(Cow<'a, str>, Item<'a>)>,
    /// In document order, repeated names included; empty when absent. A string value stays
    /// borrowed from the text, as a variant's does.
    pub(super) metadata: Vec<(Cow<'a, str>, Item<'a>)>,
}

/// A variant's value: a string as read from the text (borrowed unless it holds escapes), so
/// that a string shared with an earlier flag needs none of its own, or any other value decoded.
#[derive(Debug)]
pub(super) enum Item<'a> {
    Str(Cow<'a, str>),
    Value(Value),
}

impl Item<'_> {
    /// What the value is, as the schema's checks of variants look at it.
    pub(super) fn kind(&self) -> ValueKind {
        match self {
            Item::Str(_) => ValueKind::String,
            Item::Value(value) => ValueKind::of(value),
        }
    }

    /// The value shared through `interner`: a string shared with an earlier flag needs no copy
    /// of its own.
    pub(super) fn shared(self, interner: &mut Interner) -> Arc<Value> {
        match self {
            Item::Str(text) => interner.string_value(&text),
            Item::Value(value) => interner.value(value),
        }
    }
}

/// `state` parsed: flagd's two states, nothing else.
pub(super) fn state(text: &str) -> Option<State> {
    match text {
        "ENABLED" => Some(State::Enabled),
        "DISABLED" => Some(State::Disabled),
        _ => None,
    }
}

impl<'a> Reader<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Reader {
            text,
            pos: 0,
            depth: 0,
            scratch: String::new(),
            items: Vec::new(),
            members: Vec::new(),
            saw_ref: false,
            copy_from: None,
            copy: String::new(),
        }
    }

    /// The text read so far, from `start`.
    pub(super) fn since(&self, start: usize) -> Option<&'a str> {
        self.text.get(start..self.pos)
    }

    /// Where the next value starts (after whitespace).
    #[inline]
    pub(super) fn at(&mut self) -> usize {
        self.ws();
        self.pos
    }

    /// The next byte after whitespace.
    #[inline]
    pub(super) fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Whether only whitespace is left.
    pub(super) fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    #[inline(always)]
    fn ws(&mut self) {
        let bytes = self.text.as_bytes();
        if matches!(bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            if self.copy_from.is_some() {
                self.copied_gap();
            } else if matches!(bytes.get(self.pos + 1), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.gap();
            } else {
                // One byte between two tokens, as in a document written on one line.
                self.pos += 1;
            }
        }
    }

    /// [`Reader::ws`] at a gap of whitespace longer than one byte.
    #[inline(never)]
    fn gap(&mut self) {
        self.pos = super::raw::gap_end(self.text.as_bytes(), self.pos);
    }

    /// [`Reader::ws`] at a gap in a value whose text is copied: the run before the gap is
    /// copied, and the next one starts after it.
    #[inline(never)]
    fn copied_gap(&mut self) {
        let end = super::raw::gap_end(self.text.as_bytes(), self.pos);
        if let Some(from) = self.copy_from {
            self.copy_from = match self.text.get(from..self.pos) {
                Some(run) => {
                    self.copy.push_str(run);
                    Some(end)
                }
                // Not reached (runs start and end at token boundaries); if it were, the value
                // would be given up when its last run is not found either.
                None => Some(usize::MAX),
            };
        }
        self.pos = end;
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// Opens an object or array (`open`); whether an element follows (`false`: it was empty).
    pub(super) fn open(&mut self, open: u8, close: u8) -> Option<bool> {
        self.eat(open)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        if self.peek()? == close {
            self.pos += 1;
            self.depth -= 1;
            return Some(false);
        }
        Some(true)
    }

    /// After an element: whether another follows (`,`), or the container closes (`close`).
    pub(super) fn next(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.pos += 1;
                Some(true)
            }
            b if b == close => {
                self.pos += 1;
                self.depth -= 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// A member's name and its colon.
    pub(super) fn name(&mut self) -> Option<Cow<'a, str>> {
        let name = self.string()?;
        self.eat(b':')?;
        Some(name)
    }

    /// A string, borrowed unless it holds escapes.
    pub(super) fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let end = special(bytes, start)?;
        match bytes.get(end)? {
            b'"' => {
                self.pos = end + 1;
                Some(Cow::Borrowed(self.text.get(start..end)?))
            }
            b'\\' => self.escaped(start, end).map(Cow::Owned),
            _ => None,
        }
    }

    /// The rest of a string whose contents start at `start` and whose first escape is at `at`.
    fn escaped(&mut self, start: usize, mut at: usize) -> Option<String> {
        let bytes = self.text.as_bytes();
        let mut out = String::with_capacity(at - start + 16);
        out.push_str(self.text.get(start..at)?);
        loop {
            // `at` is a backslash.
            let (ch, len) = match bytes.get(at + 1)? {
                b'"' => ('"', 2),
                b'\\' => ('\\', 2),
                b'/' => ('/', 2),
                b'b' => ('\u{8}', 2),
                b'f' => ('\u{c}', 2),
                b'n' => ('\n', 2),
                b'r' => ('\r', 2),
                b't' => ('\t', 2),
                b'u' => {
                    let hex = self.text.get(at + 2..at + 6)?;
                    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return None;
                    }
                    // A surrogate is no `char`: pairs and lone ones go the long way.
                    (char::from_u32(u32::from_str_radix(hex, 16).ok()?)?, 6)
                }
                _ => return None,
            };
            out.push(ch);
            let from = at + len;
            let end = special(bytes, from)?;
            out.push_str(self.text.get(from..end)?);
            match bytes.get(end)? {
                b'"' => {
                    self.pos = end + 1;
                    return Some(out);
                }
                b'\\' => at = end,
                _ => return None,
            }
        }
    }

    /// A number's text.
    fn number(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let start = self.at();
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        match bytes.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                digits(&mut i);
            }
            _ => return None,
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return None;
            }
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) || i - start > MAX_NUMBER {
            return None;
        }
        self.pos = i;
        self.text.get(start..i)
    }

    #[inline]
    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.pos + word.len();
        // Byte by byte: the words are four or five bytes long.
        let found = self.text.as_bytes().get(self.pos..end)?;
        found
            .iter()
            .zip(word.as_bytes())
            .all(|(a, b)| a == b)
            .then(|| self.pos = end)
    }

    /// Any value, checked and passed over.
    pub(super) fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => {
                let mut more = self.open(b'{', b'}')?;
                while more {
                    self.name()?;
                    self.skip()?;
                    more = self.next(b'}')?;
                }
                Some(())
            }
            b'[' => {
                let mut more = self.open(b'[', b']')?;
                while more {
                    self.skip()?;
                    more = self.next(b']')?;
                }
                Some(())
            }
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => self.number().map(drop),
        }
    }

    /// Any value as a [`Json`] tree (objects' members sorted, the last of repeated names kept).
    #[cfg(test)]
    pub(super) fn json(&mut self) -> Option<Json<'a>> {
        self.json_into(&mut String::new())
    }

    /// [`Reader::json`], and the value's text without whitespace between tokens appended to
    /// `out` (strings, numbers and literals as written), as a rule's text is kept: the runs of
    /// text between the gaps of whitespace the reader passes over are copied as they end.
    pub(super) fn json_into(&mut self, out: &mut String) -> Option<Json<'a>> {
        let start = self.at();
        std::mem::swap(&mut self.copy, out);
        self.copy_from = Some(start);
        let mut tree = self.tree();
        if let Some(from) = self.copy_from.take()
            && tree.is_some()
        {
            match self.text.get(from..self.pos) {
                Some(run) => self.copy.push_str(run),
                None => tree = None,
            }
        }
        std::mem::swap(&mut self.copy, out);
        tree
    }

    /// [`Reader::json`] itself.
    fn tree(&mut self) -> Option<Json<'a>> {
        let start = self.at();
        match self.text.as_bytes().get(start)? {
            b'"' => self.string().map(Json::Str),
            b'{' => {
                // The members go on the shared stack above `base` (inner objects take theirs
                // off before they return) and leave it in one list of their final size.
                let base = self.members.len();
                let mut more = self.open(b'{', b'}')?;
                while more {
                    let name = self.name()?;
                    if self.members.len() == base && name == RAW_VALUE_TOKEN {
                        return None;
                    }
                    self.saw_ref |= name == "$ref";
                    let value = self.tree()?;
                    self.members.push((name, value));
                    more = self.next(b'}')?;
                }
                let mut members = self.members.split_off(base);
                if members.len() > 1 {
                    sort_last_wins(&mut members, |a, b| a.0.cmp(&b.0));
                }
                Some(Json::Obj(members))
            }
            b'[' => {
                let base = self.items.len();
                let mut more = self.open(b'[', b']')?;
                while more {
                    let item = self.tree()?;
                    self.items.push(item);
                    more = self.next(b']')?;
                }
                Some(Json::Arr(self.items.split_off(base)))
            }
            b't' => self.literal("true").map(|()| Json::Bool(true)),
            b'f' => self.literal("false").map(|()| Json::Bool(false)),
            b'n' => self.literal("null").map(|()| Json::Null),
            _ => number_value(self.number()?).map(Json::Num),
        }
    }

    /// Any value as a [`Value`].
    pub(super) fn value(&mut self) -> Option<Value> {
        match self.peek()? {
            b'"' => self.string().map(|s| Value::String(s.into_owned())),
            b'{' => {
                let mut map = Map::new();
                let mut more = self.open(b'{', b'}')?;
                let mut first = true;
                while more {
                    let name = self.name()?;
                    if first && name == RAW_VALUE_TOKEN {
                        return None;
                    }
                    first = false;
                    let value = self.value()?;
                    map.insert(name.into_owned(), value);
                    more = self.next(b'}')?;
                }
                Some(Value::Object(map))
            }
            b'[' => {
                let mut items = Vec::new();
                let mut more = self.open(b'[', b']')?;
                while more {
                    items.push(self.value()?);
                    more = self.next(b']')?;
                }
                Some(Value::Array(items))
            }
            b't' => self.literal("true").map(|()| Value::Bool(true)),
            b'f' => self.literal("false").map(|()| Value::Bool(false)),
            b'n' => self.literal("null").map(|()| Value::Null),
            _ => number_value(self.number()?).map(Value::Number),
        }
    }

    /// An object's members, name -> [`Item`], in document order, repeated names included,
    /// added to `out`.
    fn items(&mut self, out: &mut Vec<(Cow<'a, str>, Item<'a>)>) -> Option<()> {
        let mut more = self.open(b'{', b'}')?;
        while more {
            let name = self.name()?;
            let item = match self.peek()? {
                b'"' => Item::Str(self.string()?),
                _ => Item::Value(self.value()?),
            };
            out.push((name, item));
            more = self.next(b'}')?;
        }
        Some(())
    }

    /// A string or null.
    fn optional_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.peek()? == b'n' {
            self.literal("null")?;
            return Some(None);
        }
        self.string().map(Some)
    }

    /// One flag definition (an object), its variants and metadata into `lists` (emptied
    /// first). Members it does not name are checked and passed over; one it names twice, or of
    /// a type it does not take, makes it give up.
    pub(super) fn flag(&mut self, lists: &mut Lists<'a>) -> Option<Parts<'a>> {
        lists.variants.clear();
        lists.metadata.clear();
        let mut parts = Parts {
            state: None,
            default_variant: None,
            targeting: None,
            refers: false,
            key: None,
        };
        let mut seen = 0u8;
        let mut once = |bit: u8| {
            let first = seen & bit == 0;
            seen |= bit;
            first.then_some(())
        };
        let mut more = self.open(b'{', b'}')?;
        while more {
            let name = self.name()?;
            match &*name {
                "state" => {
                    once(1)?;
                    parts.state = self.optional_string()?;
                }
                "variants" => {
                    once(2)?;
                    self.items(&mut lists.variants)?;
                }
                "defaultVariant" => {
                    once(4)?;
                    parts.default_variant = self.optional_string()?;
                }
                "targeting" => {
                    once(8)?;
                    let start = self.at();
                    // One buffer for every rule's text; each keeps an exact copy.
                    let mut text = std::mem::take(&mut self.scratch);
                    text.clear();
                    // What a rule given up on left on the stacks is not this rule's.
                    self.items.clear();
                    self.members.clear();
                    self.saw_ref = false;
                    let rule = self.json_into(&mut text);
                    parts.refers = self.saw_ref;
                    let compact = Box::from(text.as_str());
                    self.scratch = text;
                    parts.targeting = Some((self.since(start)?, compact, rule?));
                }
                "metadata" => {
                    once(16)?;
                    self.items(&mut lists.metadata)?;
                }
                "key" => {
                    once(32)?;
                    parts.key = self.optional_string()?;
                }
                _ => self.skip()?,
            }
            more = self.next(b'}')?;
        }
        Some(parts)
    }
}

/// A number's value as serde_json gives it: small non-negative integers directly, anything
/// else (negative, fractional, long) by serde_json itself.
fn number_value(text: &str) -> Option<Number> {
    if text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().ok().map(Number::from);
    }
    match serde_json::from_str::<Value>(text).ok()? {
        Value::Number(n) => Some(n),
        _ => None,
    }
}

/// The position of the first `"`, `\\` or control character at or after `from`, eight bytes
/// at a time; `None` when there is none (a string cut short).
#[inline]
fn special(bytes: &[u8], from: usize) -> Option<usize> {
    super::raw::string_stop::<true>(bytes, from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::input::RuleInput;

    fn json(text: &str) -> Option<Json<'_>> {
        let mut r = Reader::new(text);
        let v = r.json()?;
        r.at_end().then_some(v)
    }

    fn value(text: &str) -> Option<Value> {
        let mut r = Reader::new(text);
        let v = r.value()?;
        r.at_end().then_some(v)
    }

    fn skips(text: &str) -> bool {
        let mut r = Reader::new(text);
        r.skip().is_some() && r.at_end()
    }

    /// What the reader accepts, serde_json accepts and decodes the same way; what serde_json
    /// refuses, the reader refuses.
    #[track_caller]
    fn agrees(text: &str) {
        let parsed: Option<Value> = serde_json::from_str(text).ok();
        let read = value(text);
        if let Some(read) = &read {
            assert_eq!(Some(read), parsed.as_ref(), "{text}");
            // -0 and 0 compare equal as values: compare their text too.
            assert_eq!(
                serde_json::to_string(read).unwrap(),
                serde_json::to_string(parsed.as_ref().unwrap()).unwrap(),
                "{text}"
            );
        }
        let tree = json(text);
        if let Some(tree) = &tree {
            assert_eq!(Some(tree.to_value()), parsed, "{text}");
            let mut written = String::new();
            Reader::new(text).json_into(&mut written).unwrap();
            assert_eq!(written, super::super::raw::compact(text), "{text}");
        }
        assert_eq!(read.is_some(), tree.is_some(), "{text}");
        // Passing over a value takes the member name serde_json treats specially as any other.
        if !text.contains(RAW_VALUE_TOKEN) {
            assert_eq!(read.is_some(), skips(text), "{text}");
        }
        if parsed.is_none() {
            assert!(read.is_none(), "the reader accepted {text}");
        }
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            "null",
            "true",
            "false",
            "0",
            "-0",
            "-0.0",
            "0.0",
            "1.5",
            "-12",
            "123456789012345678",
            "1234567890123456789",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890.25",
            "\"\"",
            "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u20AC\"",
            "\"\u{e9}\u{20ac}\u{1f600} long enough to take the word-wise path\"",
            "[]",
            "{}",
            " [ 1 , { \"a\" : [ ] } ,\n\"x\" ] ",
            r#"{"b":1,"a":[2,{"c":null}],"b":3}"#,
            r#"{"a\u0062":"x\ny","ab":"z"}"#,
            r#"{"a":1,"$serde_json::private::RawValue":"[1]"}"#,
        ] {
            agrees(text);
            assert!(value(text).is_some(), "refused {text}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses_or_it_cannot_be_sure_of() {
        for text in [
            "",
            " ",
            "nul",
            "truex",
            "01",
            "-",
            "1.",
            ".5",
            "+1",
            "1e",
            "1e+",
            "--1",
            "\"a",
            "\"a\\",
            "\"a\\x\"",
            "\"\\u00g0\"",
            "\"\\u00\"",
            "\"a\u{1}b\"",
            "\"tab\tinside\"",
            "[1,]",
            "[1 2]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "{\"a\":1",
            "[",
            "]",
            "{\"a\":1} x",
            r#"{"$serde_json::private::RawValue":"[1]"}"#,
            // What serde_json reads but the reader leaves to it.
            "1e3",
            "[1.5E-2]",
            r#"{"a":[1e400]}"#,
            r#""\ud83d\ude00""#,
            r#""\udc00""#,
        ] {
            agrees(text);
            assert!(value(text).is_none(), "accepted {text:?}");
            assert!(
                !skips(text) || text.contains(RAW_VALUE_TOKEN),
                "passed over {text:?}"
            );
        }
        let long = "9".repeat(MAX_NUMBER);
        assert!(value(&long).is_some());
        assert!(value(&format!("[{long}1]")).is_none());
        assert!(!skips(&format!("{{\"a\":{long}.5}}")));
        let nested = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(value(&nested(MAX_DEPTH)).is_some());
        assert!(skips(&format!(
            "[{},{}]",
            nested(MAX_DEPTH - 1),
            nested(MAX_DEPTH - 1)
        )));
        assert!(value(&nested(MAX_DEPTH + 1)).is_none());
        assert!(json(&nested(MAX_DEPTH + 1)).is_none());
        assert!(!skips(&nested(MAX_DEPTH + 1)));
        assert!(!skips(&nested(100_000)));
    }

    #[test]
    fn every_cut_of_a_document_is_refused() {
        let doc = r#"{"flags":{"a\u00e9":{"state":"ENABLED","variants":{"x":"a \" b","y":[1.5,-2,{"z":null}]},"defaultVariant":"x","targeting":{"if":[{"==":[{"var":"k"},true]},"y",false]}}}}"#;
        assert!(value(doc).is_some());
        for end in 0..doc.len() {
            let Some(cut) = doc.get(..end) else { continue };
            assert!(value(cut).is_none(), "{cut}");
            assert!(json(cut).is_none(), "{cut}");
            assert!(!skips(cut), "{cut}");
        }
    }

    #[test]
    fn flag_parts_are_decoded_and_repeats_refused() {
        let text = r#"{"state":"DISABLED","extra":[{"a":1}],"variants":{"b":1,"a":2,"b":3},"defaultVariant":null,"targeting":{"if":[true,"a","b"]},"metadata":{"m":"x"},"key":"k\n"}"#;
        let mut r = Reader::new(text);
        let mut lists = Lists::default();
        let parts = r.flag(&mut lists).unwrap();
        assert!(r.at_end());
        assert_eq!(parts.state.as_deref(), Some("DISABLED"));
        assert_eq!(lists.variants.len(), 3);
        assert_eq!(parts.default_variant, None);
        assert_eq!(
            parts.targeting.as_ref().map(|t| t.0),
            Some(r#"{"if":[true,"a","b"]}"#)
        );
        assert_eq!(
            parts.targeting.as_ref().map(|t| &*t.1),
            Some(r#"{"if":[true,"a","b"]}"#)
        );
        assert_eq!(lists.metadata.len(), 1);
        // The next definition's lists start empty.
        assert!(
            Reader::new(r#"{"state":"ENABLED"}"#)
                .flag(&mut lists)
                .is_some()
        );
        assert!(lists.variants.is_empty() && lists.metadata.is_empty());
        assert_eq!(parts.key.as_deref(), Some("k\n"));
        for bad in [
            r#"{"state":"ENABLED","state":"ENABLED"}"#,
            r#"{"st\u0061te":"ENABLED","state":"ENABLED"}"#,
            r#"{"state":1}"#,
            r#"{"variants":null}"#,
            r#"{"variants":[1]}"#,
            r#"{"metadata":null}"#,
            r#"{"key":1}"#,
            r#"{"defaultVariant":false}"#,
            r#"{"targeting":{"a":1},"targeting":{}}"#,
            r#"[]"#,
        ] {
            assert!(Reader::new(bad).flag(&mut lists).is_none(), "{bad}");
        }
        assert_eq!(state("ENABLED"), Some(State::Enabled));
        assert_eq!(state("enabled"), None);
    }

    #[test]
    fn a_rule_refers_when_a_member_is_named_ref() {
        let refers = |rule: &str| {
            let text =
                format!(r#"{{"state":"ENABLED","targeting":{rule},"metadata":{{"$ref":"m"}}}}"#);
            let parts = Reader::new(&text).flag(&mut Lists::default()).unwrap();
            let (_, _, tree) = parts.targeting.as_ref().unwrap();
            // Agrees with what the rule names, whatever the text hides behind escapes.
            let names = crate::load::reuse::referenced(tree, &serde_json::Map::new());
            assert!(parts.refers || names.is_empty(), "{rule}");
            parts.refers
        };
        for rule in [
            r#"{"$ref":"a"}"#,
            r#"{"if":[{"$ref":"a"},"on","off"]}"#,
            r#"{"\u0024ref":"a"}"#,
            r#"{"$r\u0065f":"a"}"#,
            r#"{"in":[1,[{"x":{"$ref":1}}]]}"#,
            r#"{"$ref":"a","$ref":"b"}"#,
        ] {
            assert!(refers(rule), "{rule}");
        }
        for rule in [
            r#"{}"#,
            r#"{"var":"$ref"}"#,
            r#"{"cat":["$ref","$ref"]}"#,
            r#"{"$re":"a","ref":"b","$ref ":"c"}"#,
            r#"{"\u0024re":"a","$ref\u0000":"b"}"#,
        ] {
            assert!(!refers(rule), "{rule}");
        }
        // Each flag's rule answers for itself.
        let text = r#"[{"targeting":{"$ref":"a"}},{"targeting":{"var":"x"}}]"#;
        let mut r = Reader::new(text);
        assert!(r.open(b'[', b']').unwrap());
        let mut lists = Lists::default();
        assert!(r.flag(&mut lists).unwrap().refers);
        assert!(r.next(b']').unwrap());
        assert!(!r.flag(&mut lists).unwrap().refers);
    }

    #[test]
    fn nested_containers_keep_their_own_elements() {
        let text = r#"{"b":[1,[2,{"d":[],"c":{"x":[3,4]}}],{}],"a":{"z":[{"y":1},[5]],"w":"v"},"c":[[],[[]]]}"#;
        let tree = json(text).unwrap();
        assert_eq!(
            tree.to_value(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        fn exact(tree: &Json<'_>) {
            match tree {
                Json::Arr(items) => {
                    assert_eq!(items.capacity(), items.len());
                    items.iter().for_each(exact);
                }
                Json::Obj(members) => {
                    assert_eq!(members.capacity(), members.len());
                    members.iter().for_each(|(_, v)| exact(v));
                }
                _ => {}
            }
        }
        exact(&tree);
    }

    #[test]
    fn a_rule_is_kept_without_whitespace_between_tokens() {
        for compact in [
            r#"{"if":[{"in":["@d1.example.com",{"var":"email"}]},"on","off"]}"#,
            r#"{"cat":["a b","  ",{"var":"x y"},"\" \\ ",-1.50,true,null,[],{}]}"#,
            r#"{"b":1,"a":[2,{"c":null}],"b":3}"#,
            r#""just a string""#,
            "12",
        ] {
            let value: Value = serde_json::from_str(compact).unwrap();
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            let spaced = compact.replace(':', " :\t").replace(',', " ,\r\n        ");
            for text in [
                compact.to_owned(),
                pretty,
                spaced,
                format!("  \n{compact}  "),
            ] {
                let mut r = Reader::new(&text);
                let mut out = String::from("kept ");
                let tree = r.json_into(&mut out).unwrap();
                assert!(r.at_end(), "{text}");
                assert_eq!(tree.to_value(), value, "{text}");
                assert_eq!(
                    out,
                    format!("kept {}", super::super::raw::compact(&text)),
                    "{text}"
                );
                // Nothing is copied once the value has been read.
                assert!(r.copy_from.is_none() && r.copy.is_empty());
            }
        }
        // A value cut short leaves the reader copying nothing.
        let mut r = Reader::new("[1, [2, ");
        assert!(r.json_into(&mut String::new()).is_none());
        assert!(r.copy_from.is_none());
    }

    #[test]
    fn whitespace_is_passed_over_word_wise() {
        for gap in [
            "",
            " ",
            "\n",
            "  \t\r\n",
            "        ",
            "\n                \n   ",
        ] {
            for pad in 0..10 {
                let text = format!(
                    "{}{gap}{}[{}1 ]",
                    " ".repeat(pad),
                    "\n".repeat(pad % 3),
                    " ".repeat(pad)
                );
                let mut r = Reader::new(&text);
                let end = text.len() - text.trim_start().len();
                assert_eq!(r.at(), end, "{text:?}");
                assert!(r.value().is_some() && r.at_end(), "{text:?}");
            }
        }
        // What is not whitespace stops the run wherever it falls in a word.
        for at in 0..20 {
            let mut text = " ".repeat(20);
            text.insert(at, 'z');
            assert_eq!(super::super::raw::gap_end(text.as_bytes(), 0), at);
        }
        assert_eq!(super::super::raw::gap_end(b"   ", 0), 3);
    }

    #[test]
    fn special_bytes_are_found_word_wise() {
        let text = b"abcdefghijklmnop\x1fqrs\"";
        assert_eq!(special(text, 0), Some(16));
        assert_eq!(special(text, 17), Some(20));
        assert_eq!(special(b"abcdefghij", 0), None);
        for (i, b) in [b'"', b'\\', 0u8, 0x1f].into_iter().enumerate() {
            let mut bytes = vec![b'x'; 24];
            bytes[5 + i * 3] = b;
            assert_eq!(special(&bytes, 0), Some(5 + i * 3));
        }
        // Bytes above 0x7f are neither quotes nor control characters.
        assert_eq!(
            special("\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\"".as_bytes(), 0),
            Some(10)
        );
    }
}
