//! The configuration version of a selection: a fingerprint of the definitions of the flags a
//! selector admits, which an event stream announces as `etag` and a re-fetch sends back as
//! `flagConfigEtag`.
//!
//! It is computed from the definitions alone (key, flag set, state, default variant, variants
//! with their values, targeting as written, metadata, and the shared evaluators the targeting
//! refers to), in store order. So it changes exactly when something an evaluation of the
//! selection can observe changes (a file edit, an override, a rollout step), not when another
//! selection changes; and every daemon serving the same flags computes the same version.

use flagd_evaluator::{Flag, State};
use ring::digest::{Context, SHA256};

use super::conditional::push_hex;
use crate::selector::Selector;
use crate::server::sync::gojson::{write_entries, write_str, write_value};
use crate::store::Snapshot;

/// Bytes of the SHA-256 kept in a version (128 bits, written as 32 hex digits).
const VERSION_BYTES: usize = 16;

/// The configuration version of the flags `selector` admits in `snapshot`.
pub fn config_version(snapshot: &Snapshot, selector: &Selector) -> String {
    let mut digest = Context::new(&SHA256);
    let mut scratch = String::new();
    for found in snapshot.iter(selector) {
        feed_flag(&mut digest, &mut scratch, found.flag);
    }
    let sum = digest.finish();
    let mut version = String::with_capacity(2 * VERSION_BYTES);
    push_hex(
        &mut version,
        sum.as_ref().get(..VERSION_BYTES).unwrap_or_default(),
    );
    version
}

/// Feeds one flag's definition, every part length-prefixed so that no two definitions give the
/// same bytes.
fn feed_flag(digest: &mut Context, scratch: &mut String, flag: &Flag) {
    let mut part = |bytes: &[u8]| {
        digest.update(&(bytes.len() as u64).to_le_bytes());
        digest.update(bytes);
    };
    part(flag.key().as_bytes());
    part(flag.flag_set_id().unwrap_or_default().as_bytes());
    part(match flag.state() {
        State::Enabled => b"ENABLED",
        State::Disabled => b"DISABLED",
    });
    part(
        flag.default_variant()
            .map_or("", |(name, _)| name)
            .as_bytes(),
    );
    part(&flag.evaluators_digest().to_le_bytes());
    part(flag.targeting_source().unwrap_or_default().as_bytes());
    scratch.clear();
    // Variants sorted by name, metadata with sorted keys: the text is canonical.
    scratch.push('{');
    for (i, (name, value)) in flag.variants().enumerate() {
        if i > 0 {
            scratch.push(',');
        }
        write_str(scratch, name);
        scratch.push(':');
        write_value(scratch, value);
    }
    scratch.push('}');
    part(scratch.as_bytes());
    scratch.clear();
    write_entries(scratch, flag.metadata().iter(), write_value);
    part(scratch.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SourceEvent, SourceUpdate, Store};
    use flagd_evaluator::{Format, LoadOptions};

    fn apply(store: &Store, source: usize, doc: &str) {
        let event = SourceEvent::Content {
            bytes: doc.as_bytes().to_vec(),
            format: Format::Json,
        };
        store.apply(SourceUpdate { source, event }).unwrap();
    }

    const A: &str = r#"{"metadata": {"flagSetId": "a"}, "flags": {
        "x": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}"#;
    const B: &str = r#"{"metadata": {"flagSetId": "b"}, "flags": {
        "y": {"state": "ENABLED", "variants": {"n": 1.0, "m": 2}, "defaultVariant": "n",
              "targeting": {"if": [{"==": [{"var": "k"}, 1]}, "m", null]}}}}"#;

    #[test]
    fn changes_only_with_the_selected_flags() {
        let store = Store::new(vec!["a".into(), "b".into()], LoadOptions::default());
        apply(&store, 0, A);
        apply(&store, 1, B);
        let (all, a, b) = (
            Selector::All,
            Selector::FlagSet("a".into()),
            Selector::FlagSet("b".into()),
        );
        let v = |s: &Selector| config_version(&store.snapshot(), s);
        let (all0, a0, b0) = (v(&all), v(&a), v(&b));
        assert_eq!(a0.len(), 32);
        assert!(a0.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(all0 != a0 && a0 != b0);

        // The same content again: a new revision, the same versions.
        apply(&store, 1, &B.replace("\n", " "));
        assert_eq!(
            (v(&all), v(&a), v(&b)),
            (all0.clone(), a0.clone(), b0.clone())
        );

        // A change in set b leaves set a's version alone.
        apply(&store, 1, &B.replace(r#""n": 1.0"#, r#""n": 1.5"#));
        assert_eq!(v(&a), a0);
        assert_ne!(v(&b), b0);
        assert_ne!(v(&all), all0);

        // The float's form counts: 1.0 and 1 are different values to a typed client.
        apply(&store, 1, &B.replace(r#""n": 1.0"#, r#""n": 1"#));
        assert_ne!(v(&b), b0);

        // So do the state and the targeting.
        apply(&store, 1, B);
        assert_eq!(v(&b), b0);
        apply(&store, 1, &B.replace("ENABLED", "DISABLED"));
        assert_ne!(v(&b), b0);
        apply(&store, 1, &B.replace(r#", 1]"#, r#", 2]"#));
        assert_ne!(v(&b), b0);
    }
}
