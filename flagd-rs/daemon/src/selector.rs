//! Selectors (`Flagd-Selector` header, sync request field): which flags a request sees.

use serde_json::{Map, Value};

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub enum Selector {
    /// No selector: every flag, the highest-priority source winning per key.
    #[default]
    All,
    /// `flagSetId=<id>`; an empty id selects the flags that belong to no set.
    FlagSet(Box<str>),
    /// `source=<uri>` (or a bare string, for compatibility).
    Source(Box<str>),
}

/// A selector string flagd would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector key \"{0}\", valid keys: \"flagSetId\", \"source\"")]
pub struct SelectorError(pub String);

impl Selector {
    /// Parses `key=value` (split at the first `=`); no `=` means a source; empty means all.
    /// The text is taken as it is, as flagd takes it: ` flagSetId=a` names the key
    /// ` flagSetId`, which is refused.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        if s.is_empty() {
            return Ok(Selector::All);
        }
        match s.split_once('=') {
            None => Ok(Selector::Source(s.into())),
            Some(("flagSetId", v)) => Ok(Selector::FlagSet(v.into())),
            Some(("source", v)) => Ok(Selector::Source(v.into())),
            Some((k, _)) => Err(SelectorError(k.to_owned())),
        }
    }

    /// Whether a flag of set `flag_set_id` from `source` is selected.
    #[inline]
    pub fn matches(&self, flag_set_id: Option<&str>, source: &str) -> bool {
        match self {
            Selector::All => true,
            Selector::FlagSet(id) => flag_set_id.unwrap_or("") == &**id,
            Selector::Source(s) => source == &**s,
        }
    }

    /// The metadata flagd echoes back for this selector (`{"flagSetId": ..}` or `{"source": ..}`).
    pub fn echo(&self) -> Map<String, Value> {
        let mut m = Map::new();
        match self {
            Selector::All => {}
            Selector::FlagSet(id) => {
                m.insert("flagSetId".into(), Value::String(id.to_string()));
            }
            Selector::Source(s) => {
                m.insert("source".into(), Value::String(s.to_string()));
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_flagd() {
        assert_eq!(Selector::parse(""), Ok(Selector::All));
        assert_eq!(
            Selector::parse("flagSetId=a=b"),
            Ok(Selector::FlagSet("a=b".into()))
        );
        assert_eq!(
            Selector::parse("flagSetId="),
            Ok(Selector::FlagSet("".into()))
        );
        assert_eq!(
            Selector::parse("source=x.json"),
            Ok(Selector::Source("x.json".into()))
        );
        assert_eq!(
            Selector::parse("x.json"),
            Ok(Selector::Source("x.json".into()))
        );
        assert!(Selector::parse("team=a").is_err());
        assert_eq!(
            Selector::parse("source=a=b, c"),
            Ok(Selector::Source("a=b, c".into()))
        );
        assert!(Selector::FlagSet("".into()).matches(None, "s"));
        assert!(!Selector::FlagSet("a".into()).matches(None, "s"));
    }

    #[test]
    fn invalid_keys_are_refused_with_flagds_message() {
        for (text, key) in [
            ("team=a", "team"),
            ("flagsetid=a", "flagsetid"),
            ("Source=x.json", "Source"),
            ("=x", ""),
            (" flagSetId=a", " flagSetId"),
        ] {
            let err = Selector::parse(text).unwrap_err();
            assert_eq!(err, SelectorError(key.to_owned()), "{text}");
            assert_eq!(
                err.to_string(),
                format!("invalid selector key \"{key}\", valid keys: \"flagSetId\", \"source\""),
                "{text}"
            );
        }
        // Without `=` the whole text, spaces included, is a source.
        assert_eq!(Selector::parse(" "), Ok(Selector::Source(" ".into())));
    }
}
