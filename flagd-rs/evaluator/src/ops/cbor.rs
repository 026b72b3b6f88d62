//! Deterministic CBOR (RFC 8949 §4.2.1) of JSON values, streamed straight into MurmurHash3: the
//! hash input of flagd's v3 `fractional` bucketing.
//!
//! Nothing is buffered: each head and payload goes to the hasher as it is produced, so hashing a
//! string or an array of strings never allocates. Only maps need their keys ordered, which uses a
//! stack buffer unless a map has more than [`INLINE_KEYS`] entries.

use super::murmur3::{Murmur3, murmur3_32};
use serde_json::{Map, Number, Value};
use smallvec::SmallVec;

/// Map sizes up to this sort their keys without touching the heap.
const INLINE_KEYS: usize = 16;

/// Nesting deeper than this is refused rather than risking the stack; JSON parsers stop far
/// earlier (serde_json at 128), so no value read from a document or request reaches it.
const MAX_DEPTH: usize = 512;

/// Size of the stack buffer [`hash_pair`] encodes short pairs into.
const PAIR_BUFFER: usize = 128;

/// CBOR major types used here, already shifted into the top three bits of the initial byte.
const UNSIGNED: u8 = 0 << 5;
const NEGATIVE: u8 = 1 << 5;
const TEXT: u8 = 3 << 5;
const ARRAY: u8 = 4 << 5;
const MAP: u8 = 5 << 5;

/// Simple values and float heads of major type 7.
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const NULL: u8 = 0xf6;
const FLOAT16: u8 = 0xf9;
const FLOAT32: u8 = 0xfa;
const FLOAT64: u8 = 0xfb;

/// `2^63` and `2^64` as floats: whole floats in `[-2^63, 2^64)` are written as integers.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// MurmurHash3 (seed 0) of the deterministic CBOR encoding of `value`.
///
/// Returns `None` for `null`: a null bucketing value is an error in flagd's v3 bucketing.
#[must_use]
pub fn hash_value(value: &Value) -> Option<u32> {
    let mut h = Murmur3::new(0);
    write_value(&mut h, value).then(|| h.finish())
}

/// MurmurHash3 (seed 0) of `s` encoded as a CBOR text string.
#[must_use]
pub fn hash_str(s: &str) -> u32 {
    let mut h = Murmur3::new(0);
    write_str(&mut h, s);
    h.finish()
}

/// MurmurHash3 (seed 0) of the CBOR array `[a, b]` of two text strings: the v3 shorthand bucketing
/// key `[flagKey, targetingKey]`.
#[must_use]
pub fn hash_pair(a: &str, b: &str) -> u32 {
    // Keys of the usual length are encoded into a stack buffer and hashed in one pass, which
    // costs less than streaming the five small pieces.
    if a.len() < 24 && b.len() < PAIR_BUFFER - 24 - 3 {
        let mut buf = [0u8; PAIR_BUFFER];
        let used = 3 + a.len() + b.len() + usize::from(b.len() >= 24);
        buf[0] = ARRAY | 2;
        buf[1] = TEXT | a.len() as u8;
        let mut at = 2 + a.len();
        if let Some(dst) = buf.get_mut(2..at) {
            dst.copy_from_slice(a.as_bytes());
        }
        if b.len() < 24 {
            buf[at] = TEXT | b.len() as u8;
            at += 1;
        } else {
            buf[at] = TEXT | 24;
            buf[at + 1] = b.len() as u8;
            at += 2;
        }
        if let Some(dst) = buf.get_mut(at..used) {
            dst.copy_from_slice(b.as_bytes());
        }
        return murmur3_32(buf.get(..used).unwrap_or_default(), 0);
    }
    let mut h = Murmur3::new(0);
    h.write(&[ARRAY | 2]);
    write_str(&mut h, a);
    write_str(&mut h, b);
    h.finish()
}

/// Writes the deterministic CBOR encoding of `value` into `h`.
///
/// Returns `false`, having written nothing, when `value` is `null` (not a valid bucketing value;
/// nulls nested inside arrays and maps are encoded as simple value 22). It also returns `false`
/// for values nested more than 512 levels deep, which no parsed JSON reaches; the hasher then
/// holds a partial encoding and should be discarded.
pub fn write_value(h: &mut Murmur3, value: &Value) -> bool {
    !value.is_null() && write_nested(h, value, 0)
}

/// Writes a text string: its byte length as the head, then the UTF-8 bytes.
#[inline]
pub fn write_str(h: &mut Murmur3, s: &str) {
    write_head(h, TEXT, s.len() as u64);
    h.write(s.as_bytes());
}

/// Writes any value, nulls included, refusing only excessive nesting.
fn write_nested(h: &mut Murmur3, value: &Value, depth: usize) -> bool {
    match value {
        Value::Null => h.write(&[NULL]),
        Value::Bool(b) => h.write(&[if *b { TRUE } else { FALSE }]),
        Value::Number(n) => write_number(h, n),
        Value::String(s) => write_str(h, s),
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return false;
            }
            write_head(h, ARRAY, items.len() as u64);
            for item in items {
                if !write_nested(h, item, depth + 1) {
                    return false;
                }
            }
        }
        Value::Object(map) => {
            if depth >= MAX_DEPTH {
                return false;
            }
            return write_map(h, map, depth);
        }
    }
    true
}

/// Writes a map with its entries ordered by the bytes of their encoded keys.
///
/// For text keys the encoded form is a length head followed by the UTF-8 bytes, and heads grow
/// with the length, so that order is: shorter keys first, equal lengths bytewise.
fn write_map(h: &mut Murmur3, map: &Map<String, Value>, depth: usize) -> bool {
    let mut entries: SmallVec<[(&str, &Value); INLINE_KEYS]> =
        map.iter().map(|(k, v)| (k.as_str(), v)).collect();
    entries.sort_unstable_by(|(a, _), (b, _)| {
        a.len()
            .cmp(&b.len())
            .then_with(|| a.as_bytes().cmp(b.as_bytes()))
    });
    write_head(h, MAP, entries.len() as u64);
    for (key, value) in entries {
        write_str(h, key);
        if !write_nested(h, value, depth + 1) {
            return false;
        }
    }
    true
}

/// Writes a JSON number: integers as major type 0/1, floats per [`write_float`].
fn write_number(h: &mut Murmur3, n: &Number) {
    if let Some(u) = n.as_u64() {
        write_head(h, UNSIGNED, u);
    } else if let Some(i) = n.as_i64() {
        // Major type 1 carries `-1 - i`, which for negative `i` is its bitwise complement.
        write_head(h, NEGATIVE, !i as u64);
    } else if let Some(f) = n.as_f64() {
        write_float(h, f);
    }
}

/// Writes a float. Whole values in `[-2^63, 2^64)` become integers (so `1.0`, `1` and `-0.0`/`0`
/// hash alike); anything else takes the shortest IEEE 754 width that holds it exactly.
fn write_float(h: &mut Murmur3, f: f64) {
    if f.trunc() == f && (-TWO_POW_63..TWO_POW_64).contains(&f) {
        if f >= 0.0 {
            // Exact: `f` is whole and below 2^64 (`-0.0` lands here and becomes 0).
            write_head(h, UNSIGNED, f as u64);
        } else {
            // Exact: `f` is whole and at least -2^63.
            write_head(h, NEGATIVE, !(f as i64) as u64);
        }
        return;
    }
    let single = f as f32;
    if f64::from(single) == f || f.is_nan() {
        if let Some(half) = f32_to_f16_exact(single) {
            let [a, b] = half.to_be_bytes();
            h.write(&[FLOAT16, a, b]);
        } else {
            let [a, b, c, d] = single.to_bits().to_be_bytes();
            h.write(&[FLOAT32, a, b, c, d]);
        }
    } else {
        let [a, b, c, d, e, f, g, i] = f.to_bits().to_be_bytes();
        h.write(&[FLOAT64, a, b, c, d, e, f, g, i]);
    }
}

/// The IEEE 754 binary16 bits equal to `x`, if `x` fits in half precision without rounding.
/// NaN maps to the canonical quiet NaN `0x7e00`.
fn f32_to_f16_exact(x: f32) -> Option<u16> {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp_field = (bits >> 23) & 0xff;
    let mantissa = bits & 0x007f_ffff;
    if exp_field == 0xff {
        return Some(if mantissa == 0 { sign | 0x7c00 } else { 0x7e00 });
    }
    if exp_field == 0 {
        // Zero is written as an integer before reaching here, and single-precision subnormals
        // (below 2^-126) are far too small for half precision.
        return (mantissa == 0).then_some(sign);
    }
    let exp = exp_field as i32 - 127;
    if (-14..=15).contains(&exp) {
        // Normal half: 10 mantissa bits, so the low 13 single-precision bits must be zero.
        if mantissa & 0x1fff != 0 {
            return None;
        }
        return Some(sign | (((exp + 15) as u16) << 10) | (mantissa >> 13) as u16);
    }
    if (-24..-14).contains(&exp) {
        // Subnormal half: value = m * 2^-24 with m < 1024. With the implicit bit restored the
        // value is significand * 2^(exp - 23), so m = significand >> -(exp + 1).
        let significand = mantissa | 0x0080_0000;
        let shift = (-(exp + 1)) as u32;
        if significand & ((1 << shift) - 1) != 0 {
            return None;
        }
        return Some(sign | (significand >> shift) as u16);
    }
    None
}

/// Writes a head with the shortest argument encoding for `arg`.
#[inline]
fn write_head(h: &mut Murmur3, major: u8, arg: u64) {
    if arg < 24 {
        h.write(&[major | arg as u8]);
    } else if let Ok(a) = u8::try_from(arg) {
        h.write(&[major | 24, a]);
    } else if let Ok(a) = u16::try_from(arg) {
        let [x, y] = a.to_be_bytes();
        h.write(&[major | 25, x, y]);
    } else if let Ok(a) = u32::try_from(arg) {
        let [x, y, z, w] = a.to_be_bytes();
        h.write(&[major | 26, x, y, z, w]);
    } else {
        let [a, b, c, d, e, f, g, i] = arg.to_be_bytes();
        h.write(&[major | 27, a, b, c, d, e, f, g, i]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::murmur3::{bucket, murmur3_32};
    use super::*;
    use serde_json::json;

    /// Asserts that `value` hashes like the raw bytes `want` (its expected CBOR encoding).
    fn assert_encodes(value: Value, want: &[u8]) {
        assert_eq!(
            hash_value(&value),
            Some(murmur3_32(want, 0)),
            "{value} should encode as {want:02x?}"
        );
    }

    #[test]
    fn encodings() {
        // One line per case: JSON value, expected deterministic CBOR bytes.
        let cases: Vec<(Value, Vec<u8>)> = vec![
            (json!(0), vec![0x00]),
            (json!(23), vec![0x17]),
            (json!(24), vec![0x18, 0x18]),
            (json!(255), vec![0x18, 0xff]),
            (json!(256), vec![0x19, 0x01, 0x00]),
            (json!(65535), vec![0x19, 0xff, 0xff]),
            (json!(65536), vec![0x1a, 0, 1, 0, 0]),
            (json!(4_294_967_295_u64), vec![0x1a, 0xff, 0xff, 0xff, 0xff]),
            (json!(4_294_967_296_u64), vec![0x1b, 0, 0, 0, 1, 0, 0, 0, 0]),
            (
                json!(u64::MAX),
                vec![0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (json!(-1), vec![0x20]),
            (json!(-24), vec![0x37]),
            (json!(-25), vec![0x38, 0x18]),
            (
                json!(i64::MIN),
                vec![0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (json!(1.0), vec![0x01]),
            (json!(-0.0), vec![0x00]),
            (json!(-2.0), vec![0x21]),
            (
                json!(9_007_199_254_740_992.0),
                vec![0x1b, 0, 0x20, 0, 0, 0, 0, 0, 0],
            ),
            (
                json!(-9_223_372_036_854_775_808.0),
                vec![0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (
                json!(18_446_744_073_709_549_568.0),
                vec![0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf8, 0x00],
            ),
            (
                json!(18_446_744_073_709_551_616.0),
                vec![0xfa, 0x5f, 0x80, 0, 0],
            ),
            (json!(1.5), vec![0xf9, 0x3e, 0x00]),
            (json!(-1.5), vec![0xf9, 0xbe, 0x00]),
            (json!(2f64.powi(-14)), vec![0xf9, 0x04, 0x00]),
            (json!(2f64.powi(-24)), vec![0xf9, 0x00, 0x01]),
            (json!(2f64.powi(-25)), vec![0xfa, 0x33, 0x00, 0x00, 0x00]),
            (json!(100_000.5), vec![0xfa, 0x47, 0xc3, 0x50, 0x40]),
            (
                json!(3.402_823_466_385_288_6e38),
                vec![0xfa, 0x7f, 0x7f, 0xff, 0xff],
            ),
            (
                json!(1.1),
                vec![0xfb, 0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a],
            ),
            (
                json!(1e300),
                vec![0xfb, 0x7e, 0x37, 0xe4, 0x3c, 0x88, 0x00, 0x75, 0x9c],
            ),
            (json!(true), vec![0xf5]),
            (json!(false), vec![0xf4]),
            (json!(""), vec![0x60]),
            (json!("a"), vec![0x61, 0x61]),
            (json!("IETF"), vec![0x64, 0x49, 0x45, 0x54, 0x46]),
            (json!("ü"), vec![0x62, 0xc3, 0xbc]),
            (json!([]), vec![0x80]),
            (
                json!([1, [2, 3], null]),
                vec![0x83, 0x01, 0x82, 0x02, 0x03, 0xf6],
            ),
            (json!({}), vec![0xa0]),
            (
                json!({"b": 1, "a": 2}),
                vec![0xa2, 0x61, 0x61, 0x02, 0x61, 0x62, 0x01],
            ),
            (
                json!({"aa": 1, "z": 2}),
                vec![0xa2, 0x61, 0x7a, 0x02, 0x62, 0x61, 0x61, 0x01],
            ),
            (json!({"k": null}), vec![0xa1, 0x61, 0x6b, 0xf6]),
        ];
        for (value, want) in cases {
            assert_encodes(value, &want);
        }
    }

    #[test]
    fn long_string_heads() {
        for (len, head) in [
            (23, vec![0x77]),
            (24, vec![0x78, 24]),
            (255, vec![0x78, 0xff]),
            (256, vec![0x79, 0x01, 0x00]),
            (65536, vec![0x7a, 0, 1, 0, 0]),
        ] {
            let s = "a".repeat(len);
            let mut want = head;
            want.extend_from_slice(s.as_bytes());
            assert_eq!(hash_str(&s), murmur3_32(&want, 0), "len {len}");
            assert_eq!(hash_value(&Value::String(s)), Some(murmur3_32(&want, 0)));
        }
    }

    #[test]
    fn pair_is_a_two_element_array() {
        let want = hash_value(&json!(["flag", "user"]));
        assert_eq!(Some(hash_pair("flag", "user")), want);
    }

    #[test]
    fn null_is_refused_only_at_top_level() {
        assert_eq!(hash_value(&Value::Null), None);
        let mut h = Murmur3::new(0);
        assert!(!write_value(&mut h, &Value::Null));
        assert_eq!(h.finish(), murmur3_32(b"", 0), "nothing written for null");
        assert!(hash_value(&json!([null])).is_some());
    }

    #[test]
    fn excessive_nesting_is_refused() {
        let mut deep = json!(1);
        for _ in 0..600 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(hash_value(&deep), None);
        let mut ok = json!(1);
        for _ in 0..MAX_DEPTH {
            ok = json!({ "k": ok });
        }
        assert!(hash_value(&ok).is_some());
    }

    #[test]
    fn half_precision_exactness() {
        // One line per case: single-precision value, expected half bits (None = not exact).
        let cases: &[(f32, Option<u16>)] = &[
            (1.0, Some(0x3c00)),
            (65504.0, Some(0x7bff)),
            (65505.0, None),
            (6.103_515_6e-5, Some(0x0400)),
            (5.960_464_5e-8, Some(0x0001)),
            (2.980_232_2e-8, None),
            (3.051_757_8e-5, Some(0x0200)),
            (1.000_976_6, Some(0x3c01)),
            (1.000_488_3, None),
            (-2.0, Some(0xc000)),
            (f32::INFINITY, Some(0x7c00)),
            (f32::NEG_INFINITY, Some(0xfc00)),
            (f32::NAN, Some(0x7e00)),
        ];
        for &(x, want) in cases {
            assert_eq!(f32_to_f16_exact(x), want, "{x:e}");
        }
    }

    /// Variant picked by `fractional-basic-flag`: 25 buckets `bucket1`..`bucket25` of weight 4.
    fn basic_bucket(value: &Value) -> String {
        let hash = hash_value(value).expect("bucketing value must not be null");
        format!("bucket{}", bucket(hash, 100) / 4 + 1)
    }

    /// Parses a testbed cell the way its step types it: JSON for numbers, booleans and objects.
    fn cell(text: &str) -> Value {
        serde_json::from_str(text).expect("valid JSON cell")
    }

    #[test]
    fn v3_testbed_scalars() {
        // One line per `fractional-basic-flag` example: typed input, expected variant.
        let cases: &[(Value, &str)] = &[
            (json!(true), "bucket5"),
            (json!(false), "bucket1"),
            (json!("user1"), "bucket22"),
            (json!("user2"), "bucket16"),
            (json!(123), "bucket20"),
            (json!(456), "bucket12"),
            (json!(1.23), "bucket14"),
            (json!(4.56), "bucket18"),
            (json!("123"), "bucket22"),
            (json!("true"), "bucket24"),
            (json!("false"), "bucket1"),
            (json!("null"), "bucket8"),
            (json!("1.23"), "bucket4"),
            (json!(0), "bucket8"),
            // Float mapping.
            (cell("1.0"), "bucket23"),
            (json!(1), "bucket23"),
            (cell("1.0000000000000001"), "bucket23"),
            (cell("-2.0"), "bucket12"),
            (json!(-2), "bucket12"),
            (cell("9007199254740992.0"), "bucket10"),
            (json!(9_007_199_254_740_992_u64), "bucket10"),
            // Zero values.
            (cell("0.0"), "bucket8"),
            (cell("-0.0"), "bucket8"),
            // Integer limits.
            (json!(2_147_483_647), "bucket10"),
            (json!(2_147_483_648_u64), "bucket25"),
            (json!(-2_147_483_648_i64), "bucket8"),
            (json!(-2_147_483_649_i64), "bucket18"),
            (json!(9_007_199_254_740_991_u64), "bucket2"),
            (json!(23), "bucket21"),
            (json!(24), "bucket11"),
            (json!(255), "bucket13"),
            (json!(256), "bucket13"),
            (json!(65535), "bucket4"),
            (json!(65536), "bucket11"),
            (json!(4_294_967_295_u64), "bucket14"),
            (json!(4_294_967_296_u64), "bucket19"),
            (json!(-24), "bucket4"),
            (json!(-25), "bucket16"),
            // Float limits.
            (cell("1e20"), "bucket19"),
            (cell("-1e20"), "bucket25"),
            (cell("65504.0"), "bucket16"),
            (cell("-65504.0"), "bucket9"),
            (cell("0.00006103515625"), "bucket22"),
            (cell("0.000000059604644775390625"), "bucket23"),
            (cell("65505.0"), "bucket17"),
            (cell("-65505.0"), "bucket17"),
            (cell("3.4028234663852886e+38"), "bucket10"),
            (cell("-3.4028234663852886e+38"), "bucket3"),
            (cell("1.1754943508222875e-38"), "bucket24"),
            (cell("3.5e+38"), "bucket1"),
            (cell("-3.5e+38"), "bucket6"),
            (cell("1.7976931348623157e+308"), "bucket17"),
            (cell("-1.7976931348623157e+308"), "bucket9"),
            (cell("2.2250738585072014e-308"), "bucket11"),
            (cell("4.9406564584124654e-324"), "bucket2"),
        ];
        for (value, want) in cases {
            assert_eq!(basic_bucket(value), *want, "{value}");
        }
    }

    #[test]
    fn v3_testbed_maps() {
        // One line per object example (map key ordering and advanced structures).
        let cases: &[(&str, &str)] = &[
            (r#"{"a": 1, "b": 2}"#, "bucket23"),
            (r#"{"b": 2, "a": 1}"#, "bucket23"),
            (r#"{"a": 1, "b": 2, "c": 3}"#, "bucket18"),
            (r#"{"c": 3, "a": 1, "b": 2}"#, "bucket18"),
            (r#"{"z": 1, "aa": 2}"#, "bucket21"),
            (r#"{"aa": 2, "z": 1}"#, "bucket21"),
            (r#"{"a": {"b": 1}, "b": 2}"#, "bucket9"),
            (r#"{"b": 2, "a": {"b": 1}}"#, "bucket9"),
            (
                r#"{"a": true, "bbb": 1, "c": "text", "dddd": 2.5}"#,
                "bucket25",
            ),
            (
                r#"{"c": "text", "bbb": 1, "a": true, "dddd": 2.5}"#,
                "bucket25",
            ),
            (r#"{"aaa": 1, "ÿ": 2}"#, "bucket12"),
            (r#"{"ÿ": 2, "aaa": 1}"#, "bucket12"),
            (r#"{"": 2, "abc": 1}"#, "bucket25"),
            (r#"{"key": -0.0}"#, "bucket10"),
            (r#"{"key": 0}"#, "bucket10"),
            (r#"{"key": 0.0}"#, "bucket10"),
            (r#"{"b": -0.0, "a": {"b": 1}, "c": 0.0}"#, "bucket8"),
            (r#"{"c": 0.0, "b": -0.0, "a": {"b": 1}}"#, "bucket8"),
            (
                r#"{"café": "façade", "b": {"résumé": {"ÿ": true}}}"#,
                "bucket22",
            ),
            (r#"{}"#, "bucket3"),
            (r#"{"a": {} }"#, "bucket20"),
            (r#"{"b": 2, "a": {} }"#, "bucket20"),
            (r#"{"a": {}, "b": {}}"#, "bucket21"),
            (r#"{"a": {}, "b": []}"#, "bucket7"),
            (r#"{"c": 0.0, "a": []}"#, "bucket18"),
            (r#"{"c": 0.0, "b": -0.0, "a": {"b": []}}"#, "bucket9"),
            (r#"{"a": [] }"#, "bucket12"),
            (r#"{"a": [1, [], 3], "b": null}"#, "bucket3"),
            (r#"{"a": ["a", "b", {}], "b": [1, null, 2]}"#, "bucket23"),
            (r#"{"a": [1, "two", true, [], null]}"#, "bucket23"),
            (
                r#"{"a": [false, 2.5, ""], "b": [], "c": [{}], "c": null}"#,
                "bucket15",
            ),
            (r#"{"x": [{"a": 1}, {"b": 2}, {"b": null}]}"#, "bucket3"),
            (r#"{"x": [{"a": {"b": []}}] }"#, "bucket16"),
            (r#"{"x": [{"a": {"b": null}}] }"#, "bucket6"),
            (r#"{"x": [{"a": {"b": {}}}] }"#, "bucket2"),
            (r#"{"": "", "": [], "": {}, "": null}"#, "bucket25"),
            (
                r#"{"": {"": ""}, "": ["", {"": ""}], "": {"": {"": ""}}}"#,
                "bucket11",
            ),
            (r#"{"a": [[[[[]]]]] }"#, "bucket15"),
            (r#"{"a": [[[[null]]]] }"#, "bucket7"),
            (r#"{"a": {"b": {"c": {"d": {}}} } }"#, "bucket21"),
            (r#"{"a": {"b": {"c": {"d": null}} } }"#, "bucket19"),
        ];
        for &(text, want) in cases {
            assert_eq!(basic_bucket(&cell(text)), want, "{text}");
        }
    }

    #[test]
    fn v3_testbed_strings() {
        // One line per string example (length boundaries and UTF-8 consistency).
        let cases: &[(&str, &str)] = &[
            ("", "bucket4"),
            ("a", "bucket6"),
            ("12345678901234567890123", "bucket4"),
            ("123456789012345678901234", "bucket14"),
            ("あいうえおかき", "bucket17"),
            ("あいうえおかきく", "bucket16"),
            ("ééééééééééé", "bucket16"),
            ("éééééééééééé", "bucket19"),
            ("café façade résumé café", "bucket9"),
            // The table cells hold backslash escapes that the testbed steps pass on verbatim.
            (r"A\u0000B", "bucket15"),
            (r"e\u0301", "bucket7"),
            (r"\uD83D\uDE00", "bucket23"),
        ];
        for &(text, want) in cases {
            let got = format!("bucket{}", bucket(hash_str(text), 100) / 4 + 1);
            assert_eq!(got, want, "{text:?}");
        }
        assert_eq!(basic_bucket(&json!("a".repeat(255))), "bucket18");
        assert_eq!(basic_bucket(&json!("a".repeat(256))), "bucket7");
    }

    /// Variant of a four-suit, 25-each flag for a hash.
    fn suit(hash: u32) -> &'static str {
        ["clubs", "diamonds", "hearts", "spades"][(bucket(hash, 100) / 25) as usize]
    }

    #[test]
    fn v3_testbed_custom_ops() {
        // `fractional-flag`: `cat` of the flag key and `user.name`, hashed as one text string.
        for (name, want) in [
            ("jack", "diamonds"),
            ("queen", "diamonds"),
            ("ten", "clubs"),
            ("nine", "clubs"),
            ("3", "spades"),
        ] {
            assert_eq!(
                suit(hash_str(&format!("fractional-flag{name}"))),
                want,
                "{name}"
            );
        }
        // `fractional-flag-A-shared-seed` / `-B-`: `cat` of "shared-seed" and `user.name`.
        for (name, want) in [
            ("seven", "hearts"),
            ("eight", "hearts"),
            ("nine", "diamonds"),
            ("two", "diamonds"),
        ] {
            assert_eq!(
                suit(hash_str(&format!("shared-seed{name}"))),
                want,
                "{name}"
            );
        }
        // `fractional-flag-shorthand` `[["heads"], ["tails", 1]]`: array [flagKey, targetingKey].
        for (key, want) in [
            ("jon@company.com", "tails"),
            ("jane@company.com", "tails"),
            ("user-1", "heads"),
            ("user-2", "tails"),
            ("user-3", "heads"),
        ] {
            let hash = hash_pair("fractional-flag-shorthand", key);
            let got = if bucket(hash, 2) < 1 {
                "heads"
            } else {
                "tails"
            };
            assert_eq!(got, want, "{key}");
        }
    }
}
