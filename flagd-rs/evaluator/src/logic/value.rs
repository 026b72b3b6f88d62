//! Values flowing through evaluation, and the type coercions of the JSONLogic engine flagd uses.
//!
//! Evaluation mostly passes borrowed JSON around: a variable lookup points into the caller's
//! context, a constant points into the compiled rule. Results computed on the way (booleans,
//! numbers, the flag key) are carried without building a `serde_json::Value`, so the common
//! operators allocate nothing.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

/// A value produced while evaluating a rule.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    /// JSON `null`.
    Null,
    /// A boolean computed by an operator.
    Bool(bool),
    /// A number computed by an operator; may be infinite or NaN, as Go's float64 arithmetic is.
    Num(f64),
    /// A string borrowed from somewhere other than a JSON value (the flag key, a built
    /// context).
    Str(&'a str),
    /// A value borrowed from the rule or the context.
    Ref(&'a Value),
    /// A value built during evaluation.
    Owned(Value),
}

/// A uniform read-only view of a [`Val`], so operators match on one shape.
#[derive(Debug, Clone, Copy)]
pub(crate) enum View<'x> {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number as Go's `float64`.
    Num(f64),
    /// A string.
    Str(&'x str),
    /// An array.
    Arr(&'x [Value]),
    /// An object.
    Obj(&'x Map<String, Value>),
}

/// Go `reflect.Kind` classes of decoded JSON, compared by `===`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Num,
    Str,
    Arr,
    Obj,
}

/// The view of a JSON value.
#[inline(always)]
pub(crate) fn view_of(v: &Value) -> View<'_> {
    match v {
        Value::Null => View::Null,
        Value::Bool(b) => View::Bool(*b),
        Value::Number(n) => View::Num(number_f64(n)),
        Value::String(s) => View::Str(s),
        Value::Array(a) => View::Arr(a),
        Value::Object(m) => View::Obj(m),
    }
}

/// A JSON number as the `float64` Go decodes it to.
#[inline]
pub(crate) fn number_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

/// What a targeting result names, as far as it can be told without rendering it as Go does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PlainName<'x> {
    /// `null`: no variant is named.
    Null,
    /// A name Go's encoder leaves as it is (a plain string, or a boolean).
    Name(&'x str),
    /// Anything else: the name comes from the full rendering.
    Other,
}

impl<'a> Val<'a> {
    /// A uniform view of this value.
    #[inline(always)]
    pub(crate) fn view(&self) -> View<'_> {
        match self {
            Val::Null => View::Null,
            Val::Bool(b) => View::Bool(*b),
            Val::Num(n) => View::Num(*n),
            Val::Str(s) => View::Str(s),
            Val::Ref(v) => view_of(v),
            Val::Owned(v) => view_of(v),
        }
    }

    /// The variant name this result selects when that needs no rendering.
    #[inline]
    pub(crate) fn plain_name(&self) -> PlainName<'_> {
        let s = match self {
            Val::Null | Val::Ref(Value::Null) | Val::Owned(Value::Null) => return PlainName::Null,
            Val::Bool(b) | Val::Ref(Value::Bool(b)) | Val::Owned(Value::Bool(b)) => {
                return PlainName::Name(if *b { "true" } else { "false" });
            }
            Val::Str(s) => *s,
            Val::Ref(Value::String(s)) | Val::Owned(Value::String(s)) => s.as_str(),
            _ => return PlainName::Other,
        };
        if crate::resolve::needs_go_escape(s) {
            PlainName::Other
        } else {
            PlainName::Name(s)
        }
    }

    /// The value when it is a string.
    #[inline(always)]
    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            Val::Ref(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// JSONLogic truthiness.
    #[inline]
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Val::Bool(b) => *b,
            Val::Null => false,
            _ => self.view().truthy(),
        }
    }

    /// Whether this is `null`.
    #[inline]
    pub(crate) fn is_null(&self) -> bool {
        matches!(self.view(), View::Null)
    }

    /// The value as JSON, borrowing when it already is JSON.
    pub(crate) fn into_cow(self) -> Cow<'a, Value> {
        match self {
            Val::Ref(v) => Cow::Borrowed(v),
            other => Cow::Owned(other.into_value()),
        }
    }

    /// The value as owned JSON.
    pub(crate) fn into_value(self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(b),
            Val::Num(n) => num_value(n),
            Val::Str(s) => Value::String(s.to_owned()),
            Val::Ref(v) => v.clone(),
            Val::Owned(v) => v,
        }
    }

    /// A copy that borrows nothing, for results that must outlive a temporary scope.
    pub(crate) fn detach(self) -> Val<'static> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Num(n) => Val::Num(n),
            Val::Str(s) => Val::Owned(Value::String(s.to_owned())),
            Val::Ref(v) => Val::Owned(v.clone()),
            Val::Owned(v) => Val::Owned(v),
        }
    }

    /// The value as a JSON reference, building one only for computed scalars.
    pub(crate) fn as_json(&self) -> Cow<'_, Value> {
        match self {
            Val::Ref(v) => Cow::Borrowed(*v),
            Val::Owned(v) => Cow::Borrowed(v),
            Val::Null => Cow::Owned(Value::Null),
            Val::Bool(b) => Cow::Owned(Value::Bool(*b)),
            Val::Num(n) => Cow::Owned(num_value(*n)),
            Val::Str(s) => Cow::Owned(Value::String((*s).to_owned())),
        }
    }
}

impl<'x> View<'x> {
    /// JSONLogic truthiness: `false`, `null`, `0`, `""`, `[]` and `{}` are falsy.
    #[inline]
    pub(crate) fn truthy(self) -> bool {
        match self {
            View::Null => false,
            View::Bool(b) => b,
            View::Num(n) => n != 0.0,
            View::Str(s) => !s.is_empty(),
            View::Arr(a) => !a.is_empty(),
            View::Obj(m) => !m.is_empty(),
        }
    }

    /// The Go kind, for strict equality.
    #[inline]
    pub(crate) fn kind(self) -> Kind {
        match self {
            View::Null => Kind::Null,
            View::Bool(_) => Kind::Bool,
            View::Num(_) => Kind::Num,
            View::Str(_) => Kind::Str,
            View::Arr(_) => Kind::Arr,
            View::Obj(_) => Kind::Obj,
        }
    }

    /// Whether this is a Go "primitive" (bool, number or string).
    #[inline]
    pub(crate) fn is_primitive(self) -> bool {
        matches!(self, View::Bool(_) | View::Num(_) | View::Str(_))
    }

    /// JavaScript-style `ToNumber` used by comparisons: `null` is 0, booleans are 0/1, blank
    /// strings are 0, unparsable strings, arrays and objects are NaN.
    #[inline]
    pub(crate) fn js_number(self) -> f64 {
        match self {
            View::Null => 0.0,
            View::Bool(b) => f64::from(u8::from(b)),
            View::Num(n) => n,
            View::Str(s) => {
                if s.trim().is_empty() {
                    0.0
                } else {
                    parse_go_float(s).unwrap_or(f64::NAN)
                }
            }
            View::Arr(_) | View::Obj(_) => f64::NAN,
        }
    }

    /// The strict numeric conversion used by arithmetic: numbers as they are, strings parsed
    /// (0 when unparsable). Anything else made the reference engine panic, so it is `None`.
    #[inline]
    pub(crate) fn arith_number(self) -> Option<f64> {
        match self {
            View::Num(n) => Some(n),
            View::Str(s) => Some(parse_go_float(s).unwrap_or(0.0)),
            _ => None,
        }
    }

    /// The string conversion used by `cat`, `substr` and friends: numbers formatted shortest
    /// without exponent, `null` as empty. Booleans, arrays and objects have none (`None`).
    pub(crate) fn go_string(self) -> Option<Cow<'x, str>> {
        match self {
            View::Str(s) => Some(Cow::Borrowed(s)),
            View::Num(n) => Some(Cow::Owned(format_number(n))),
            View::Null => Some(Cow::Borrowed("")),
            View::Bool(_) | View::Arr(_) | View::Obj(_) => None,
        }
    }
}

/// Whether `needle` occurs in `haystack`.
///
/// Rule haystacks are mostly short (an e-mail address, a region), where setting up the standard
/// library's two-way searcher costs more than the search; short inputs are scanned directly
/// (first and last byte, then the rest), long ones use the linear-time searcher.
#[inline]
pub(crate) fn str_contains(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    let (Some(&first), Some(&last)) = (n.first(), n.last()) else {
        return true;
    };
    if n.len() > h.len() {
        return false;
    }
    if h.len() > 64 {
        return haystack.contains(needle);
    }
    let span = n.len() - 1;
    let mut from = 0;
    // Candidate starts are where the first byte occurs; each is confirmed by the last byte,
    // then by the whole needle.
    while let Some(rest) = h.get(from..h.len() - span) {
        let Some(p) = rest.iter().position(|&b| b == first) else {
            return false;
        };
        let start = from + p;
        if h.get(start + span) == Some(&last) && h.get(start..=start + span) == Some(n) {
            return true;
        }
        from = start + 1;
    }
    false
}

/// A literal string of a rule (the needle of `in`, the affix of `starts_with`/`ends_with`),
/// prepared once for comparisons against other strings.
///
/// The strings of rules and contexts are short (an e-mail address, a region): a candidate
/// position is tested by comparing one or two 8-byte words against the literal's first and last
/// bytes, with no call into `memcmp` for literals of up to 16 bytes.
#[derive(Debug, Clone)]
pub(crate) struct Needle {
    text: Box<str>,
    /// The first (up to) eight bytes, little-endian, zero-padded.
    head: u64,
    /// The last eight bytes (literals of eight bytes or more).
    last: u64,
    /// Selects the bytes of `head` that belong to the literal.
    mask: u64,
    /// The first byte in every byte of a word, and the last byte likewise (both zero for the
    /// empty literal): candidate positions of a search are where both occur at the right
    /// distance.
    first_bytes: u64,
    last_bytes: u64,
}

/// `0x01` in every byte.
const LOW_BITS: u64 = u64::from_ne_bytes([0x01; 8]);
/// `0x80` in every byte.
const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The high bit of every zero byte of `x` is set (and possibly that of a byte above a zero
/// byte, never below the lowest one); no other bit is.
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS
}

/// Haystacks up to this length are searched word by word; longer ones by the standard library.
const WORD_SCAN: usize = 64;

/// Eight bytes of `b` from `i` as a little-endian word, when they are all there.
#[inline(always)]
fn word(b: &[u8], i: usize) -> Option<u64> {
    b.get(i..i.checked_add(8)?)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
        .map(u64::from_le_bytes)
}

/// The bytes of `b` from `i` (fewer than eight may be left) as a little-endian word, zero-padded.
#[inline(always)]
fn word_padded(b: &[u8], i: usize) -> u64 {
    if let Some(w) = word(b, i) {
        return w;
    }
    if i >= b.len() {
        return 0;
    }
    match b.len().checked_sub(8) {
        // The last eight bytes, shifted so that byte `i` comes first (`i - base` < 8).
        Some(base) if i >= base => word(b, base).map_or(0, |w| w >> (8 * (i - base))),
        _ => {
            let rest = b.get(i..).unwrap_or_default();
            let mut w = [0u8; 8];
            let n = rest.len().min(8);
            w[..n].copy_from_slice(&rest[..n]);
            u64::from_le_bytes(w)
        }
    }
}

impl Needle {
    /// Prepares `text`.
    pub(crate) fn new(text: &str) -> Needle {
        let b = text.as_bytes();
        let n = b.len().min(8);
        Needle {
            text: text.into(),
            head: word_padded(b, 0) & low_bytes(n),
            last: b.len().checked_sub(8).and_then(|i| word(b, i)).unwrap_or(0),
            mask: low_bytes(n),
            first_bytes: LOW_BITS.wrapping_mul(u64::from(b.first().copied().unwrap_or(0))),
            last_bytes: LOW_BITS.wrapping_mul(u64::from(b.last().copied().unwrap_or(0))),
        }
    }

    /// Whether the literal occurs in `h` at `i`; the caller makes sure it fits there.
    #[inline(always)]
    fn at(&self, h: &[u8], i: usize) -> bool {
        let n = self.text.len();
        if n <= 8 {
            return word_padded(h, i) & self.mask == self.head;
        }
        word(h, i) == Some(self.head)
            && word(h, i + n - 8) == Some(self.last)
            && (n <= 16 || h.get(i + 8..i + n - 8) == self.text.as_bytes().get(8..n - 8))
    }

    /// Whether `h` starts with the literal.
    #[inline]
    pub(crate) fn prefix_of(&self, h: &str) -> bool {
        self.text.len() <= h.len() && self.at(h.as_bytes(), 0)
    }

    /// Whether `h` ends with the literal.
    #[inline]
    pub(crate) fn suffix_of(&self, h: &str) -> bool {
        match h.len().checked_sub(self.text.len()) {
            Some(i) => self.at(h.as_bytes(), i),
            None => false,
        }
    }

    /// Whether the literal occurs in `haystack`.
    #[inline]
    pub(crate) fn found_in(&self, haystack: &str) -> bool {
        let (h, n) = (haystack.as_bytes(), self.text.len());
        let Some(last_start) = h.len().checked_sub(n) else {
            return false;
        };
        if h.len() > WORD_SCAN {
            return haystack.contains(&*self.text);
        }
        if n == 0 {
            return true;
        }
        // Eight candidate positions at a time: those where the literal's first byte occurs and
        // its last byte occurs `n - 1` bytes later (found with word arithmetic, no byte loop);
        // each such position is then confirmed by `at`. Usually there is one, or none.
        let mut i = 0;
        while i <= last_start {
            let starts = word_padded(h, i) ^ self.first_bytes;
            let ends = word_padded(h, i + n - 1) ^ self.last_bytes;
            let mut hits = zero_bytes(starts | ends);
            // Positions past `last_start` cannot hold the literal.
            let room = last_start - i + 1;
            if room < 8 {
                hits &= low_bytes(room);
            }
            while hits != 0 {
                let at = i + (hits.trailing_zeros() / 8) as usize;
                if self.at(h, at) {
                    return true;
                }
                hits &= hits - 1;
            }
            i += 8;
        }
        false
    }
}

/// A mask of the low `n` bytes of a word (`n` ≤ 8).
fn low_bytes(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

/// Go's `strconv.ParseFloat(s, 64)`: `None` for a syntax error; out-of-range values become
/// infinities (Go returns them alongside a range error that callers ignore).
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    // Rust accepts the same decimal, exponent, infinity and NaN spellings; it refuses the
    // hexadecimal and underscore forms Go also reads, which nothing in a flag context uses.
    s.parse::<f64>().ok()
}

/// Go's `int(f)` conversion on amd64: NaN, infinities and out-of-range values give `i64::MIN`.
pub(crate) fn go_int(f: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if !(-LIMIT..LIMIT).contains(&f) {
        i64::MIN
    } else {
        f.trunc() as i64
    }
}

/// Formats a number as Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest digits that
/// read back to the same value, never in exponent form.
pub(crate) fn format_number(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f == f64::INFINITY {
        "+Inf".to_owned()
    } else if f == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Rust's `Display` for floats is shortest round-trip and never uses an exponent.
        format!("{f}")
    }
}

/// A computed number as JSON. Whole numbers within ±2^53 become JSON integers so they print as
/// Go prints the float64 (`1`, not `1.0`); NaN and infinities, which JSON cannot hold, become
/// `null`.
pub(crate) fn num_value(f: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if f.fract() == 0.0 && f.abs() <= EXACT {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// `a < b` as the engine compares: strings by bytes when both are strings, otherwise numerically
/// (NaN compares false).
#[inline]
pub(crate) fn less(a: View<'_>, b: View<'_>) -> bool {
    match (a, b) {
        (View::Str(x), View::Str(y)) => x < y,
        _ => a.js_number() < b.js_number(),
    }
}

/// Loose equality: `null` equals only `null`; two strings compare as strings; anything else
/// compares numerically (so arrays and objects never equal anything).
#[inline]
pub(crate) fn equals(a: View<'_>, b: View<'_>) -> bool {
    match (a, b) {
        (View::Null, View::Null) => true,
        (View::Null, _) | (_, View::Null) => false,
        (View::Str(x), View::Str(y)) => x == y,
        _ => a.js_number() == b.js_number(),
    }
}

/// Strict equality: same Go kind, then loose equality.
#[inline]
pub(crate) fn strict_equals(a: View<'_>, b: View<'_>) -> bool {
    a.kind() == b.kind() && equals(a, b)
}

/// Go's `==` between two decoded JSON values held in interfaces, as `in` uses for membership:
/// same dynamic type and same value. Comparing two maps or two slices panics in Go (`None`).
pub(crate) fn go_interface_eq(a: View<'_>, b: View<'_>) -> Option<bool> {
    Some(match (a, b) {
        (View::Null, View::Null) => true,
        (View::Bool(x), View::Bool(y)) => x == y,
        (View::Num(x), View::Num(y)) => x == y,
        (View::Str(x), View::Str(y)) => x == y,
        (View::Arr(_), View::Arr(_)) | (View::Obj(_), View::Obj(_)) => return None,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needle_agrees_with_the_standard_search() {
        let alphabet = ["a", "b", "@", "é", "x"];
        // Every needle and haystack of up to 4 symbols over a small alphabet, plus long ones.
        let mut words = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = words
                .iter()
                .flat_map(|w| alphabet.iter().map(move |a| format!("{w}{a}")))
                .collect();
            words.extend(longer);
            words.sort();
            words.dedup();
        }
        for n in words.iter().filter(|w| w.chars().count() <= 3) {
            let needle = Needle::new(n);
            for h in &words {
                assert_eq!(needle.found_in(h), h.contains(n.as_str()), "{n:?} in {h:?}");
                assert_eq!(str_contains(h, n), h.contains(n.as_str()), "{n:?} in {h:?}");
            }
        }
        let cases = [
            ("@acme.com", "u0@acme.com", true),
            ("@acme.com", "u1@uni.edu.org", false),
            ("@acme.com", "@acme.co", false),
            ("0123456789abcdef", "xx0123456789abcdefyy", true),
            ("0123456789abcdef", "xx0123456789abcdeXyy", false),
            ("12345678", "0123456789", true),
            ("123456789", "012345678", false),
        ];
        for (n, h, want) in cases {
            assert_eq!(Needle::new(n).found_in(h), want, "{n:?} in {h:?}");
        }
        // Haystacks around and past the word-scan limit.
        for len in [62, 63, 64, 65, 100] {
            let mut h = "z".repeat(len - 4);
            h.push_str("@a.b");
            assert!(Needle::new("@a.b").found_in(&h), "{len}");
            assert!(Needle::new("z@a.b").found_in(&h), "{len}");
            assert!(!Needle::new("@a.c").found_in(&h), "{len}");
        }
        assert!(Needle::new("").found_in(""));
        assert!(!Needle::new("a").found_in(""));
    }

    #[test]
    fn needle_finds_literals_at_every_position_of_short_haystacks() {
        // Literals whose first and last bytes repeat, that contain NUL or are multi-byte, put
        // at every offset of ASCII haystacks made of near misses, across the eight-position
        // blocks of the search.
        let literals = [
            "a",
            "aa",
            "aba",
            "@acme.com",
            "\0x\0",
            "x\0",
            "éü",
            "0123456789abcdefg",
        ];
        let filler = "ab@acme.co\0x".repeat(8);
        for literal in literals {
            let needle = Needle::new(literal);
            for len in 0..=64usize {
                let h = &filler[..len];
                assert_eq!(
                    needle.found_in(h),
                    h.contains(literal),
                    "{literal:?} in {h:?}"
                );
                for at in 0..=len {
                    let with = format!("{}{literal}{}", &h[..at], &h[at..]);
                    assert!(needle.found_in(&with), "{literal:?} in {with:?}");
                    // The literal short of its last character, or of its first.
                    let last = literal.char_indices().last().map_or(0, |(i, _)| i);
                    let first = literal.chars().next().map_or(0, char::len_utf8);
                    let (head, tail) = (&literal[..last], &literal[first..]);
                    for part in [head, tail] {
                        let near = format!("{}{part}{}", &h[..at], &h[at..]);
                        assert_eq!(
                            needle.found_in(&near),
                            near.contains(literal),
                            "{literal:?} in {near:?}"
                        );
                    }
                }
            }
        }
    }
}
