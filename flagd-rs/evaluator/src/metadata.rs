//! A flag's metadata as a loaded set holds it: the flag's own entries in one sorted slice, and the
//! flag set's entries shared by every flag of the document, read through one merged view in which
//! the flag's own entry beats the set's.
//!
//! The view iterates in byte order of the keys, as the `serde_json::Map` it replaces did, so what
//! is written from it (responses, sync payloads, fingerprints) does not change.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::intern::Interner;
use crate::load::raw::sort_last_wins;

/// One entry; names and values are shared with the other flags of the load.
type Entry = (Arc<str>, Arc<Value>);

/// Entries sorted by key, each key once.
type Sorted = Box<[Entry]>;

/// The flag set's metadata, shared by the flags of one document.
#[derive(Debug, PartialEq)]
pub(crate) struct SetMetadata(Sorted);

impl SetMetadata {
    /// The set's entries from its `metadata` object; `None` when there are none, so flags of a
    /// document without metadata share nothing.
    pub(crate) fn from_map(map: &Map<String, Value>, shared: &mut Interner) -> Option<Arc<Self>> {
        if map.is_empty() {
            return None;
        }
        let entries = map
            .iter()
            .map(|(k, v)| (shared.name(k), shared.value(v.clone())))
            .collect();
        Some(Arc::new(SetMetadata(sorted(entries))))
    }
}

/// Flag-set metadata overlaid by the flag's own metadata.
#[derive(Clone)]
pub struct Metadata {
    /// The flag's own entries.
    own: Sorted,
    /// The document's, shared by its flags.
    set: Option<Arc<SetMetadata>>,
    /// The merged order, worked out once so that reading the entries (on every response)
    /// compares no keys: bit `k` of the low half is set when the `k`-th entry is the flag's own,
    /// bit `j` of the high half when the set's `j`-th entry is hidden by one. [`NO_PLAN`] for
    /// more than [`PLANNED`] entries on either side.
    plan: u32,
    /// Where `flagSetId` is, which every lookup by selector reads: [`ABSENT`], an own entry's
    /// position, or [`IN_SET`] with a set entry's position.
    flag_set_id: u32,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            own: Box::default(),
            set: None,
            plan: NO_PLAN,
            flag_set_id: ABSENT,
        }
    }
}

/// No plan: the entries are merged by comparing keys.
const NO_PLAN: u32 = u32::MAX;
/// The most entries a plan covers on either side.
const PLANNED: usize = 15;
/// `flagSetId` is not among the entries.
const ABSENT: u32 = u32::MAX;
/// Marks a set entry's position.
const IN_SET: u32 = 1 << 31;

impl Metadata {
    /// The flag's own entries (`own`, in document order: a repeated key keeps its last value)
    /// over the set's.
    pub(crate) fn new(set: Option<&Arc<SetMetadata>>, own: Vec<Entry>) -> Self {
        let mut md = Metadata {
            own: sorted(own),
            set: set.cloned(),
            plan: NO_PLAN,
            flag_set_id: ABSENT,
        };
        md.plan = md.merge_plan();
        md.flag_set_id = md.locate("flagSetId");
        md
    }

    fn merge_plan(&self) -> u32 {
        let (own, set) = (&*self.own, self.set_entries());
        if own.len() > PLANNED || set.len() > PLANNED {
            return NO_PLAN;
        }
        let (mut from_own, mut hidden) = (0u32, 0u32);
        let (mut i, mut j, mut k) = (0, 0, 0);
        while i < own.len() || j < set.len() {
            let order = match (own.get(i), set.get(j)) {
                (Some(o), Some(s)) => o.0.cmp(&s.0),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            if order == Ordering::Equal {
                hidden |= 1 << j;
                j += 1;
            }
            if order == Ordering::Greater {
                j += 1;
            } else {
                from_own |= 1 << k;
                i += 1;
            }
            k += 1;
        }
        from_own | hidden << 16
    }

    fn locate(&self, key: &str) -> u32 {
        let at = |entries: &[Entry]| entries.iter().position(|(k, _)| **k == *key);
        match (at(&self.own), at(self.set_entries())) {
            (Some(i), _) => i as u32,
            (None, Some(j)) if j < IN_SET as usize => IN_SET | j as u32,
            _ => ABSENT,
        }
    }

    /// The value of `flagSetId`, if it is a string.
    #[inline]
    pub(crate) fn flag_set_id(&self) -> Option<&str> {
        let entry = match self.flag_set_id {
            ABSENT => None,
            at if at & IN_SET != 0 => self.set_entries().get((at & !IN_SET) as usize),
            at => self.own.get(at as usize),
        };
        entry.and_then(|(_, v)| v.as_str())
    }

    /// The empty metadata, for the outcome of a flag that does not exist.
    pub fn empty() -> &'static Metadata {
        static EMPTY: std::sync::OnceLock<Metadata> = std::sync::OnceLock::new();
        EMPTY.get_or_init(Metadata::default)
    }

    /// The value of `key`: the flag's own, else the set's.
    pub fn get(&self, key: &str) -> Option<&Value> {
        find(&self.own, key).or_else(|| find(self.set_entries(), key))
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The entries, the flag's own beating the set's, in byte order of their keys.
    pub fn iter(&self) -> Iter<'_> {
        let planned = self.plan != NO_PLAN;
        Iter {
            own: self.own.iter(),
            set: self.set_entries().iter(),
            from_own: if planned { self.plan & 0xffff } else { 0 },
            hidden: if planned { self.plan >> 16 } else { 0 },
            planned,
        }
    }

    /// The keys, in byte order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        if self.set.is_none() {
            self.own.len()
        } else {
            self.iter().count()
        }
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.own.is_empty() && self.set_entries().is_empty()
    }

    /// The entries as a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect()
    }

    fn set_entries(&self) -> &[Entry] {
        self.set.as_deref().map_or(&[], |s| &s.0)
    }
}

/// The value of `key` in sorted entries. Flags have few entries, so up to eight a scan that
/// compares lengths first beats the binary search.
fn find<'a>(entries: &'a [Entry], key: &str) -> Option<&'a Value> {
    let at = if entries.len() <= 8 {
        entries
            .iter()
            .position(|(k, _)| k.len() == key.len() && k.as_bytes() == key.as_bytes())
    } else {
        entries.binary_search_by(|(k, _)| (**k).cmp(key)).ok()
    };
    at.and_then(|i| entries.get(i)).map(|(_, v)| &**v)
}

fn sorted(mut entries: Vec<Entry>) -> Sorted {
    sort_last_wins(&mut entries, |a, b| a.0.cmp(&b.0));
    entries.into_boxed_slice()
}

/// The merged entries of a [`Metadata`], in byte order of their keys.
pub struct Iter<'a> {
    own: std::slice::Iter<'a, Entry>,
    set: std::slice::Iter<'a, Entry>,
    /// The plan's bits still to follow (see [`Metadata`]), when `planned`.
    from_own: u32,
    hidden: u32,
    planned: bool,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        let (k, v) = if self.planned {
            let own = self.from_own & 1 == 1;
            self.from_own >>= 1;
            if own {
                self.own.next()?
            } else {
                loop {
                    let entry = self.set.next()?;
                    let hidden = self.hidden & 1 == 1;
                    self.hidden >>= 1;
                    if !hidden {
                        break entry;
                    }
                }
            }
        } else {
            let order = match (self.own.as_slice().first(), self.set.as_slice().first()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(own), Some(set)) => own.0.cmp(&set.0),
            };
            match order {
                Ordering::Less => self.own.next()?,
                Ordering::Greater => self.set.next()?,
                Ordering::Equal => {
                    // The flag's own entry hides the set's.
                    self.set.next();
                    self.own.next()?
                }
            }
        };
        Some((&**k, &**v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (own, set) = (self.own.len(), self.set.len());
        (own.max(set), Some(own + set))
    }
}

impl<'a> IntoIterator for &'a Metadata {
    type Item = (&'a str, &'a Value);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        let same_set = match (&self.set, &other.set) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        (same_set && self.own == other.own) || self.iter().eq(other.iter())
    }
}

/// `metadata["key"]`: the value, or `null` when there is none (as indexing a `Value` does).
impl std::ops::Index<&str> for Metadata {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// The metadata of a flag whose own entries are `own` (in document order) in a set whose
    /// metadata is `set`, and the map the former representation merged them into.
    fn both(set: Value, own: &[(&str, Value)]) -> (Metadata, Map<String, Value>) {
        let mut shared = Interner::default();
        let set = map(set);
        let set_metadata = SetMetadata::from_map(&set, &mut shared);
        let entries = own
            .iter()
            .map(|(k, v)| (shared.name(k), shared.value(v.clone())))
            .collect();
        let mut merged = set.clone();
        for (k, v) in own {
            merged.insert((*k).to_owned(), v.clone());
        }
        (Metadata::new(set_metadata.as_ref(), entries), merged)
    }

    #[track_caller]
    fn same_as_the_map(set: Value, own: &[(&str, Value)]) {
        let (md, merged) = both(set, own);
        let view: Vec<(&str, &Value)> = md.iter().collect();
        let old: Vec<(&str, &Value)> = merged.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert_eq!(view, old);
        assert_eq!(md.len(), merged.len());
        assert_eq!(md.is_empty(), merged.is_empty());
        assert_eq!(md.to_map(), merged);
        for key in merged
            .keys()
            .map(String::as_str)
            .chain(["", "absent", "zz"])
        {
            assert_eq!(md.get(key), merged.get(key), "{key}");
        }
    }

    #[test]
    fn the_view_iterates_as_the_merged_map_did() {
        let set = json!({"flagSetId": "s", "team": "a", "version": "1"});
        same_as_the_map(set.clone(), &[("team", json!("b")), ("n", json!(2))]);
        same_as_the_map(set.clone(), &[]);
        same_as_the_map(json!({}), &[("b", json!(true)), ("a", json!(1.5))]);
        same_as_the_map(json!({}), &[]);
        // Keys that sort between, before and after the set's, and non-ASCII keys (byte order).
        same_as_the_map(
            set,
            &[
                ("zz", json!(-1)),
                ("A", json!("x")),
                ("flagSetId", json!("own")),
                ("é", json!(0)),
                ("t", json!(null)),
            ],
        );
    }

    #[test]
    fn many_entries_merge_by_their_keys() {
        let set: Map<String, Value> = (0..20).map(|i| (format!("k{i:02}"), json!(i))).collect();
        let own: Vec<(String, Value)> = (10..40)
            .step_by(3)
            .map(|i| (format!("k{i:02}"), json!(-i)))
            .collect();
        let own: Vec<(&str, Value)> = own.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        same_as_the_map(Value::Object(set.clone()), &own);
        let many: Vec<(String, Value)> = (0..40).map(|i| (format!("o{i}"), json!(i))).collect();
        let many: Vec<(&str, Value)> = many.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        same_as_the_map(json!({"a": 1, "p": 2, "z": 3}), &many);
        same_as_the_map(Value::Object(set), &[]);
    }

    #[test]
    fn the_flag_set_is_found_where_it_is() {
        let set_of = |set: Value, own: &[(&str, Value)]| {
            let (md, merged) = both(set, own);
            assert_eq!(
                md.flag_set_id(),
                merged.get("flagSetId").and_then(Value::as_str)
            );
            md.flag_set_id().map(str::to_owned)
        };
        let set = json!({"flagSetId": "s", "team": "a"});
        assert_eq!(set_of(set.clone(), &[]).as_deref(), Some("s"));
        assert_eq!(
            set_of(set.clone(), &[("flagSetId", json!("own"))]).as_deref(),
            Some("own")
        );
        // The flag's own non-string value hides the set's string, as the merged map did.
        assert_eq!(set_of(set, &[("flagSetId", json!(1))]), None);
        assert_eq!(set_of(json!({"team": "a"}), &[("x", json!("y"))]), None);
        assert_eq!(Metadata::empty().flag_set_id(), None);
    }

    #[test]
    fn the_flags_own_entry_wins_and_a_repeated_one_keeps_its_last_value() {
        let (md, _) = both(
            json!({"team": "set", "k": 1}),
            &[("team", json!("first")), ("team", json!("last"))],
        );
        assert_eq!(md.get("team"), Some(&json!("last")));
        assert_eq!(md["team"], "last");
        assert!(md["absent"].is_null());
        assert_eq!(md.get("k"), Some(&json!(1)));
        assert_eq!(md.len(), 2);
        assert_eq!(
            md.iter().collect::<Vec<_>>(),
            [("k", &json!(1)), ("team", &json!("last"))]
        );
    }

    #[test]
    fn value_types_are_kept_as_written() {
        let own = [
            ("s", json!("1.0.2")),
            ("i", json!(2)),
            ("u", json!(u64::MAX)),
            ("f", json!(0.1)),
            ("b", json!(false)),
        ];
        let (md, _) = both(json!({}), &own);
        for (k, v) in &own {
            assert_eq!(md.get(k), Some(v));
        }
        assert!(md.get("u").unwrap().is_u64());
        assert!(md.get("f").unwrap().is_f64());
    }

    #[test]
    fn equality_is_of_the_merged_entries() {
        let (a, _) = both(json!({"team": "a"}), &[("team", json!("b"))]);
        let (b, _) = both(json!({}), &[("team", json!("b"))]);
        let (c, _) = both(json!({"team": "b"}), &[]);
        let (d, _) = both(json!({"team": "b"}), &[("x", json!(1))]);
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_ne!(c, d);
        assert_eq!(Metadata::empty(), &Metadata::default());
        assert!(Metadata::empty().is_empty());
        assert_eq!(format!("{a:?}"), r#"{"team": String("b")}"#);
    }
}
