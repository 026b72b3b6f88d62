//! Semantic versions as flagd's `sem_ver` operator reads and orders them: Go's
//! `golang.org/x/mod/semver` grammar and SemVer 2.0 precedence, after flagd's `v` normalisation.

use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;

/// A version number component. Go's grammar bounds neither length, so digits that overflow `u64`
/// are kept as text and still compare numerically.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Num {
    /// Fits in 64 bits (every realistic version).
    Small(u64),
    /// More than `u64::MAX`; ASCII digits without a leading zero.
    Big(Box<str>),
}

impl Num {
    /// Reads the decimal number at the start of `s`, returning it and what follows.
    /// Fails when `s` does not start with a digit or the number has a leading zero.
    fn parse_prefix(s: &str) -> Option<(Num, &str)> {
        // Digits are accumulated while scanning, so the usual short numbers cost one pass.
        let bytes = s.as_bytes();
        let mut end = 0;
        let mut value: Option<u64> = Some(0);
        while let Some(&b) = bytes.get(end) {
            if !b.is_ascii_digit() {
                break;
            }
            value = value
                .and_then(|v| v.checked_mul(10))
                .and_then(|v| v.checked_add(u64::from(b - b'0')));
            end += 1;
        }
        if end == 0 || (end > 1 && bytes.first() == Some(&b'0')) {
            return None;
        }
        let (digits, rest) = s.split_at_checked(end)?;
        // Only overflow leaves no value, since `digits` is a non-empty run of ASCII digits.
        let num = value.map_or_else(|| Num::Big(digits.into()), Num::Small);
        Some((num, rest))
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Num::Small(a), Num::Small(b)) => a.cmp(b),
            (Num::Small(_), Num::Big(_)) => Ordering::Less,
            (Num::Big(_), Num::Small(_)) => Ordering::Greater,
            (Num::Big(a), Num::Big(b)) => cmp_digits(a, b),
        }
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Numeric order of two digit strings without leading zeros: longer is larger, then bytewise.
fn cmp_digits(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A valid semantic version, reduced to what decides precedence: build metadata is dropped.
///
/// Equality is precedence equality (`1.0.0+a == v1.0.0 == 1.0 == 1`), and [`Ord`] is SemVer 2.0
/// precedence, so the derived equality and the order agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    major: Num,
    minor: Num,
    patch: Num,
    /// Pre-release identifiers as written, dot-separated, without the leading `-`; empty for a
    /// release. Kept as one string: it is the only part that may need the heap.
    pre: Box<str>,
}

impl Version {
    /// Parses `s` as flagd does.
    ///
    /// flagd first normalises the text: one that does not start with a lowercase `v` loses one
    /// leading `V` (if any) and gains a `v`. The result must then be valid for Go's
    /// `golang.org/x/mod/semver`: `vMAJOR[.MINOR[.PATCH[-PRERELEASE][+BUILD]]]`, where the short
    /// forms `v1` and `v1.2` mean `v1.0.0` and `v1.2.0` and take no suffix, numbers and numeric
    /// pre-release identifiers have no leading zeros, and identifiers are non-empty runs of
    /// `[0-9A-Za-z-]`. Returns `None` for anything else, such as `1.2.3.4`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Version> {
        let body = match s.strip_prefix('v') {
            Some(body) => body,
            None => s.strip_prefix('V').unwrap_or(s),
        };
        let zero = || Num::Small(0);
        let (major, rest) = Num::parse_prefix(body)?;
        if rest.is_empty() {
            return Some(Version::release(major, zero(), zero()));
        }
        let (minor, rest) = Num::parse_prefix(rest.strip_prefix('.')?)?;
        if rest.is_empty() {
            return Some(Version::release(major, minor, zero()));
        }
        let (patch, mut rest) = Num::parse_prefix(rest.strip_prefix('.')?)?;
        let mut pre = "";
        if let Some(after_dash) = rest.strip_prefix('-') {
            let end = after_dash.find('+').unwrap_or(after_dash.len());
            let (ids, after) = after_dash.split_at_checked(end)?;
            if !ids.split('.').all(valid_prerelease_id) {
                return None;
            }
            pre = ids;
            rest = after;
        }
        if let Some(build) = rest.strip_prefix('+') {
            if !build.split('.').all(valid_build_id) {
                return None;
            }
            rest = "";
        }
        if !rest.is_empty() {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
            pre: pre.into(),
        })
    }

    /// A version without pre-release identifiers.
    fn release(major: Num, minor: Num, patch: Num) -> Version {
        Version {
            major,
            minor,
            patch,
            pre: Box::default(),
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.major
            .cmp(&other.major)
            .then_with(|| self.minor.cmp(&other.minor))
            .then_with(|| self.patch.cmp(&other.patch))
            .then_with(|| cmp_prerelease(&self.pre, &other.pre))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Whether `c` may appear in a pre-release or build identifier.
fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

/// Whether `id` consists only of ASCII digits (identifiers are never empty once validated).
fn is_numeric(id: &str) -> bool {
    id.bytes().all(|b| b.is_ascii_digit())
}

/// A build identifier: non-empty, identifier characters only.
fn valid_build_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(is_ident_byte)
}

/// A pre-release identifier: a build identifier that, if numeric, has no leading zero.
fn valid_prerelease_id(id: &str) -> bool {
    valid_build_id(id) && !(id.len() > 1 && id.starts_with('0') && is_numeric(id))
}

/// SemVer 2.0 pre-release precedence; an empty string is a release, which ranks above any
/// pre-release of the same core version.
fn cmp_prerelease(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (false, false) => {}
    }
    let mut xs = a.split('.');
    let mut ys = b.split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            // With all earlier identifiers equal, the shorter list ranks lower.
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (is_numeric(x), is_numeric(y)) {
                    (true, true) => cmp_digits(x, y),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// Applies a `sem_ver` operator: `actual OP target`.
///
/// `=`, `!=`, `<`, `<=`, `>`, `>=` use SemVer precedence; `^` holds when the majors are equal and
/// `~` when major and minor are (no special case for `0.x`). Any other operator gives `None`.
#[must_use]
pub fn compare(actual: &Version, op: &str, target: &Version) -> Option<bool> {
    let order = || actual.cmp(target);
    Some(match op {
        "=" => order().is_eq(),
        "!=" => order().is_ne(),
        "<" => order().is_lt(),
        "<=" => order().is_le(),
        ">" => order().is_gt(),
        ">=" => order().is_ge(),
        "^" => actual.major == target.major,
        "~" => actual.major == target.major && actual.minor == target.minor,
        _ => return None,
    })
}

/// The text flagd parses as a version for a `sem_ver` argument.
///
/// flagd formats arguments with Go's `%v`, and JSON numbers reach it as `float64`, so numbers are
/// written as Go writes a `float64`: shortest round-trip digits, in exponent form when the decimal
/// exponent is below -4 or at least 6 (`1` → `"1"`, `1.2` → `"1.2"`, `1000000` → `"1e+06"`).
/// Booleans become `"true"`/`"false"`. `null`, arrays and objects give `None`: their `%v` text can
/// never parse as a version, so the outcome is the same.
#[must_use]
pub fn coerce(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(true) => Some(Cow::Borrowed("true")),
        Value::Bool(false) => Some(Cow::Borrowed("false")),
        Value::Number(n) => n.as_f64().map(|f| Cow::Owned(go_format_float(f))),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Go's `%v` (`strconv.FormatFloat(f, 'g', -1, 64)`) rendering of a `float64`.
fn go_format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // Rust's `{:e}` without a precision prints the shortest digits that round-trip, as Go's
    // shortest formatting does; only the layout differs.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if f < 0.0 {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        let (first, more) = digits.split_at_checked(1).unwrap_or((&digits, ""));
        out.push_str(first);
        if !more.is_empty() {
            out.push('.');
            out.push_str(more);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let magnitude = exp.unsigned_abs();
        if magnitude < 10 {
            out.push('0');
        }
        out.push_str(&magnitude.to_string());
    } else {
        // Fixed notation: `exp + 1` digits sit before the point (at least a single zero).
        let point = exp + 1;
        let digit_at = |i: i32| -> char {
            usize::try_from(i)
                .ok()
                .and_then(|i| digits.as_bytes().get(i))
                .map_or('0', |&b| char::from(b))
        };
        if point <= 0 {
            out.push('0');
        } else {
            (0..point).for_each(|i| out.push(digit_at(i)));
        }
        let decimals = digits.len() as i32 - point;
        if decimals > 0 {
            out.push('.');
            (point..point + decimals).for_each(|i| out.push(digit_at(i)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s:?} should parse"))
    }

    #[test]
    fn validity() {
        // One line per case: input, whether flagd accepts it.
        let cases: &[(&str, bool)] = &[
            ("1.0.0", true),
            ("v1.0.0", true),
            ("V1.0.0", true),
            ("1", true),
            ("1.2", true),
            ("v1", true),
            ("v0.0.0", true),
            ("0.0.0", true),
            ("2.0.0-alpha", true),
            ("1.0.0+other", true),
            ("1.0.0-rc.1+build.5", true),
            ("1.0.0-0", true),
            ("1.0.0-0a", true),
            ("1.0.0-00a", true),
            ("1.0.0-a-b--c", true),
            ("1.0.0--", true),
            ("1.0.0-x.7.z.92", true),
            ("1.0.0+001", true),
            ("1.0.0-alpha+001.-", true),
            ("99999999999999999999999999.0.0", true),
            ("1.18446744073709551616.0", true),
            // Invalid.
            ("", false),
            ("v", false),
            ("V", false),
            ("vv1", false),
            ("VV1", false),
            ("Vv1", false),
            ("x1.0.0", false),
            ("2.0.0.0", false),
            ("1.0.0.0", false),
            ("1.", false),
            ("1.2.", false),
            ("1..2", false),
            (".1.2", false),
            ("01.0.0", false),
            ("1.01.0", false),
            ("1.0.01", false),
            ("00", false),
            ("1.0.0-", false),
            ("1.0.0+", false),
            ("1.0.0-+b", false),
            ("1.0.0-a+", false),
            ("1.0.0-a.", false),
            ("1.0.0-.a", false),
            ("1.0.0-a..b", false),
            ("1.0.0+a..b", false),
            ("1.0.0-01", false),
            ("1.0.0-a.00", false),
            ("1.0.0-a_b", false),
            ("1.0.0+a_b", false),
            ("1.0.0+a+b", false),
            ("1-alpha", false),
            ("1.2-alpha", false),
            ("1+build", false),
            ("1.2+build", false),
            (" 1.0.0", false),
            ("1.0.0 ", false),
            ("1.0.0\n", false),
            ("-1.0.0", false),
            ("+1.0.0", false),
            ("1e+06", false),
            ("1.0.0-é", false),
            ("1.0.0+é", false),
            ("١.٠.٠", false),
            ("not-a-version", false),
            ("true", false),
            ("1.0.0-alpha\u{0}", false),
        ];
        for &(input, valid) in cases {
            assert_eq!(Version::parse(input).is_some(), valid, "{input:?}");
        }
    }

    #[test]
    fn shorthand_and_normalisation_are_equal() {
        // One line per group of spellings of the same version.
        let groups: &[&[&str]] = &[
            &[
                "1.0.0",
                "v1.0.0",
                "V1.0.0",
                "1",
                "v1",
                "1.0",
                "1.0.0+build",
                "1.0.0+other",
            ],
            &["1.2.0", "1.2", "V1.2", "v1.2.0+x.y"],
            &["2.0.0-rc.1", "v2.0.0-rc.1", "2.0.0-rc.1+b"],
        ];
        for group in groups {
            for a in *group {
                assert_eq!(v(a), v(group[0]), "{a:?} vs {:?}", group[0]);
            }
        }
    }

    #[test]
    fn precedence_chain() {
        // Strictly increasing, SemVer 2.0 §11 examples plus numeric edge cases.
        let chain = [
            "0.0.0",
            "0.0.1",
            "0.1.0",
            "1.0.0-0",
            "1.0.0-1",
            "1.0.0-2",
            "1.0.0-10",
            "1.0.0-99999999999999999999999",
            "1.0.0-100000000000000000000000",
            "1.0.0--",
            "1.0.0-A",
            "1.0.0-Z",
            "1.0.0-a",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2.0",
            "1.10.0",
            "2.0.0-alpha",
            "2.0.0",
            "10.0.0",
            "18446744073709551615.0.0",
            "18446744073709551616.0.0",
            "99999999999999999999.0.0",
            "100000000000000000000.0.0",
        ];
        for (i, a) in chain.iter().enumerate() {
            for (j, b) in chain.iter().enumerate() {
                assert_eq!(v(a).cmp(&v(b)), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn operators() {
        // One line per case: actual, operator, target, expected (None = operator rejected).
        let cases: &[(&str, &str, &str, Option<bool>)] = &[
            // Testbed `equal-greater-lesser-version-flag` (target 2.0.0).
            ("2.0.0", "=", "2.0.0", Some(true)),
            ("2.1.0", ">", "2.0.0", Some(true)),
            ("2.1.0", "=", "2.0.0", Some(false)),
            ("1.9.0", "<", "2.0.0", Some(true)),
            ("2.0.0-alpha", "<", "2.0.0", Some(true)),
            ("2.0.0-alpha", "=", "2.0.0", Some(false)),
            // Testbed `major-minor-version-flag` (target 3.0.0).
            ("3.0.1", "~", "3.0.0", Some(true)),
            ("3.1.0", "~", "3.0.0", Some(false)),
            ("3.1.0", "^", "3.0.0", Some(true)),
            ("4.0.0", "^", "3.0.0", Some(false)),
            ("4.0.0", "~", "3.0.0", Some(false)),
            // Testbed `semver-v-prefix-flag` (= v1.0.0).
            ("1.0.0", "=", "v1.0.0", Some(true)),
            ("v1.0.0", "=", "v1.0.0", Some(true)),
            ("V1.0.0", "=", "v1.0.0", Some(true)),
            ("2.0.0", "=", "v1.0.0", Some(false)),
            // Testbed `semver-partial-version-flag` (^ 1).
            ("1.5.0", "^", "1", Some(true)),
            ("1.0.0", "^", "1", Some(true)),
            ("1.0", "^", "1", Some(true)),
            ("1", "^", "1", Some(true)),
            ("1.2", "^", "1", Some(true)),
            ("2.0.0", "^", "1", Some(false)),
            // Testbed `semver-numeric-context-flag` (> 1.1).
            ("1.2", ">", "1.1", Some(true)),
            ("1.1", ">", "1.1", Some(false)),
            ("2", ">", "1.1", Some(true)),
            ("1", ">", "1.1", Some(false)),
            // Testbed `semver-build-metadata-flag` (= 1.0.0+build).
            ("1.0.0", "=", "1.0.0+build", Some(true)),
            ("1.0.0+other", "=", "1.0.0+build", Some(true)),
            ("2.0.0", "=", "1.0.0+build", Some(false)),
            // Testbed `semver-invalid-operator-flag`.
            ("1.0.0", "===", "1.0.0", None),
            // Every operator, both ways.
            ("1.0.0", "!=", "1.0.1", Some(true)),
            ("1.0.0", "!=", "1.0.0+b", Some(false)),
            ("1.0.0", "<=", "1.0.0", Some(true)),
            ("1.0.1", "<=", "1.0.0", Some(false)),
            ("1.0.0", ">=", "1.0.0", Some(true)),
            ("1.0.0-rc", ">=", "1.0.0", Some(false)),
            ("1.0.0", "<", "1.0.0", Some(false)),
            ("1.0.0", ">", "1.0.0", Some(false)),
            // `^` and `~` ignore everything below their level, pre-releases included.
            ("0.1.0", "^", "0.9.9", Some(true)),
            ("1.2.3-rc.1", "~", "1.2.0", Some(true)),
            ("1.2.3-rc.1", "^", "1.9.0+b", Some(true)),
            ("1", "~", "1.0.7", Some(true)),
            (
                "123456789012345678901234.5.0",
                "~",
                "123456789012345678901234.5.9",
                Some(true),
            ),
            (
                "123456789012345678901234.5.0",
                "^",
                "123456789012345678901235.5.0",
                Some(false),
            ),
            // Unknown operators.
            ("1.0.0", "", "1.0.0", None),
            ("1.0.0", "==", "1.0.0", None),
            ("1.0.0", " =", "1.0.0", None),
            ("1.0.0", "=>", "1.0.0", None),
            ("1.0.0", "~>", "1.0.0", None),
        ];
        for &(actual, op, target, want) in cases {
            assert_eq!(
                compare(&v(actual), op, &v(target)),
                want,
                "{actual} {op} {target}"
            );
        }
    }

    #[test]
    fn coercion() {
        // One line per case: JSON argument, text flagd would parse (None = never a version).
        let cases: &[(Value, Option<&str>)] = &[
            (json!("1.2.3"), Some("1.2.3")),
            (json!(""), Some("")),
            (json!(1), Some("1")),
            (json!(1.0), Some("1")),
            (json!(1.2), Some("1.2")),
            (json!(2), Some("2")),
            (json!(-1), Some("-1")),
            (json!(0), Some("0")),
            (json!(-0.0), Some("-0")),
            (json!(0.5), Some("0.5")),
            (json!(0.0001), Some("0.0001")),
            (json!(0.00001), Some("1e-05")),
            (json!(0.000_012_3), Some("1.23e-05")),
            (json!(123_456), Some("123456")),
            (json!(999_999.5), Some("999999.5")),
            (json!(1_000_000), Some("1e+06")),
            (json!(1_234_567), Some("1.234567e+06")),
            (json!(1e21), Some("1e+21")),
            (json!(1.5e300), Some("1.5e+300")),
            (json!(-2.5e-300), Some("-2.5e-300")),
            (json!(5e-324), Some("5e-324")),
            (
                json!(1.797_693_134_862_315_7e308),
                Some("1.7976931348623157e+308"),
            ),
            (json!(0.1), Some("0.1")),
            (json!(100.25), Some("100.25")),
            (json!(u64::MAX), Some("1.8446744073709552e+19")),
            (json!(true), Some("true")),
            (json!(false), Some("false")),
            (Value::Null, None),
            (json!([1]), None),
            (json!({"a": 1}), None),
        ];
        for (value, want) in cases {
            assert_eq!(coerce(value).as_deref(), *want, "{value}");
        }
        assert!(matches!(coerce(&json!("x")), Some(Cow::Borrowed(_))));
    }

    #[test]
    fn coerced_testbed_numbers() {
        // Integer/Float context values of the testbed parse as the versions they name.
        for (value, want) in [
            (json!(1), "1.0.0"),
            (json!(1.0), "1.0.0"),
            (json!(1.2), "1.2.0"),
        ] {
            let text = coerce(&value).unwrap();
            assert_eq!(Version::parse(&text), Some(v(want)), "{value}");
        }
        assert_eq!(Version::parse(&coerce(&json!(1_000_000)).unwrap()), None);
    }

    /// Valid version strings: small and huge numbers, optional pre-release and build parts.
    fn version_text() -> impl Strategy<Value = String> {
        let num = prop_oneof![
            4 => (0u64..4).prop_map(|n| n.to_string()),
            1 => any::<u64>().prop_map(|n| n.to_string()),
            1 => "[1-9][0-9]{19,24}",
        ];
        let pre_id = prop_oneof!["(0|[1-9][0-9]{0,2})", "[0-9a-c-]{0,2}[a-c-][0-9a-c-]{0,2}"];
        let pre = prop::collection::vec(pre_id, 0..4);
        let build = prop::collection::vec("[0-9A-Za-z-]{1,3}", 0..3);
        (num.clone(), num.clone(), num, pre, build, "(v|V)?").prop_map(
            |(major, minor, patch, pre, build, prefix)| {
                let mut s = format!("{prefix}{major}.{minor}.{patch}");
                if !pre.is_empty() {
                    s.push('-');
                    s.push_str(&pre.join("."));
                }
                if !build.is_empty() {
                    s.push('+');
                    s.push_str(&build.join("."));
                }
                s
            },
        )
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = Version::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_versionish_text(s in "[vV0-9.+a-z-]{0,20}") {
            let _ = Version::parse(&s);
        }

        #[test]
        fn generated_versions_are_valid(s in version_text()) {
            let parsed = Version::parse(&s);
            prop_assert!(parsed.is_some(), "{:?}", s);
            let without_build = s.split('+').next().unwrap_or(&s);
            prop_assert_eq!(parsed, Version::parse(without_build));
        }

        #[test]
        fn order_is_total_and_consistent(a in version_text(), b in version_text(), c in version_text()) {
            let (a, b, c) = (v(&a), v(&b), v(&c));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a.cmp(&b).is_eq(), a == b);
            prop_assert_eq!(a.cmp(&a), Ordering::Equal);
            if a <= b && b <= c {
                prop_assert!(a <= c);
            }
            let ord = a.cmp(&b);
            prop_assert_eq!(compare(&a, "=", &b), Some(ord.is_eq()));
            prop_assert_eq!(compare(&a, "!=", &b), Some(ord.is_ne()));
            prop_assert_eq!(compare(&a, "<", &b), Some(ord.is_lt()));
            prop_assert_eq!(compare(&a, "<=", &b), Some(ord.is_le()));
            prop_assert_eq!(compare(&a, ">", &b), Some(ord.is_gt()));
            prop_assert_eq!(compare(&a, ">=", &b), Some(ord.is_ge()));
            if a == b {
                prop_assert_eq!(compare(&a, "~", &b), Some(true));
            }
            if compare(&a, "~", &b) == Some(true) {
                prop_assert_eq!(compare(&a, "^", &b), Some(true));
            }
        }

        #[test]
        fn coerce_never_panics(f in any::<f64>()) {
            if let Some(n) = serde_json::Number::from_f64(f) {
                let value = Value::Number(n);
                let text = coerce(&value).unwrap();
                let back: f64 = text.parse().unwrap();
                prop_assert_eq!(back, f);
            }
        }
    }
}
