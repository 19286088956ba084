//! Key patterns such as `doc/{collection}/{id}`: literal text and named parts. A key matches
//! when it starts with the pattern's literal prefix and every part is non-empty; each part but
//! the last ends at the first occurrence of the literal after it, and a part at the end of the
//! pattern takes the rest of the key, slashes included (`doc/books/a/b` gives `id = "a/b"`).

use std::fmt;

/// A parsed key pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPattern {
    text: String,
    /// The literal text before the first part (all of it when there is no part).
    prefix: Vec<u8>,
    /// Each part's name and the literal that follows it (empty for a part at the end).
    parts: Vec<(String, Vec<u8>)>,
}

/// The parts of one key, in pattern order.
pub(crate) type Parts<'k> = Vec<(&'k str, &'k [u8])>;

/// Why a key pattern was refused; each names the pattern as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A `{` with no `}` after it.
    #[error("pattern {pattern:?}: '{{' without '}}'")]
    Unclosed {
        /// The pattern.
        pattern: String,
    },
    /// A `}` with no `{` before it.
    #[error("pattern {pattern:?}: '}}' without '{{'")]
    Unopened {
        /// The pattern.
        pattern: String,
    },
    /// A part's name is empty or has characters other than letters, digits and `_`.
    #[error("pattern {pattern:?}: part name {name:?} must be letters, digits or '_'")]
    Name {
        /// The pattern.
        pattern: String,
        /// The name between the braces.
        name: String,
    },
    /// Two parts have the same name.
    #[error("pattern {pattern:?}: part {{{name}}} appears twice")]
    Repeated {
        /// The pattern.
        pattern: String,
        /// The name.
        name: String,
    },
    /// Two parts follow each other with nothing to tell where the first ends.
    #[error("pattern {pattern:?}: {{{first}}} and {{{second}}} need literal text between them")]
    Adjacent {
        /// The pattern.
        pattern: String,
        /// The first part's name.
        first: String,
        /// The second part's name.
        second: String,
    },
    /// The pattern starts with a part, so it would claim keys of any prefix.
    #[error(
        "pattern {pattern:?} must start with literal text (such as \"doc/\"), so that it claims \
         only its own keys"
    )]
    NoPrefix {
        /// The pattern.
        pattern: String,
    },
}

impl KeyPattern {
    /// Parses `text`; names are letters, digits and `_`, and two parts need a literal between.
    pub(crate) fn parse(text: &str) -> Result<Self, PatternError> {
        let pattern = || text.to_owned();
        let mut prefix = Vec::new();
        let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let literal = &rest.as_bytes()[..open];
            match parts.last_mut() {
                Some((_, after)) => after.extend_from_slice(literal),
                None => prefix.extend_from_slice(literal),
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| PatternError::Unclosed { pattern: pattern() })?;
            let name = &rest[open + 1..open + close];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(PatternError::Name {
                    pattern: pattern(),
                    name: name.to_owned(),
                });
            }
            if parts.iter().any(|(n, _)| n == name) {
                return Err(PatternError::Repeated {
                    pattern: pattern(),
                    name: name.to_owned(),
                });
            }
            if let Some((prev, after)) = parts.last()
                && after.is_empty()
            {
                return Err(PatternError::Adjacent {
                    pattern: pattern(),
                    first: prev.clone(),
                    second: name.to_owned(),
                });
            }
            parts.push((name.to_owned(), Vec::new()));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(PatternError::Unopened { pattern: pattern() });
        }
        match parts.last_mut() {
            Some((_, after)) => after.extend_from_slice(rest.as_bytes()),
            None => prefix.extend_from_slice(rest.as_bytes()),
        }
        if prefix.is_empty() {
            return Err(PatternError::NoPrefix { pattern: pattern() });
        }
        Ok(Self {
            text: text.to_owned(),
            prefix,
            parts,
        })
    }

    /// The names of the parts, in order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().map(|(name, _)| name.as_str())
    }

    /// Whether `key` matches, as [`Self::split`] decides, without allocating.
    pub(crate) fn matches(&self, key: &[u8]) -> bool {
        let Some(mut rest) = key.strip_prefix(self.prefix.as_slice()) else {
            return false;
        };
        for (i, (_, after)) in self.parts.iter().enumerate() {
            let end = if i + 1 == self.parts.len() {
                match rest.len().checked_sub(after.len()) {
                    Some(end) if rest[end..] == **after => end,
                    _ => return false,
                }
            } else {
                match memchr::memmem::find(rest, after) {
                    Some(end) => end,
                    None => return false,
                }
            };
            if end == 0 {
                return false;
            }
            rest = &rest[end + after.len()..];
        }
        rest.is_empty()
    }

    /// The parts of `key`, or `None` if it does not match.
    pub(crate) fn split<'k>(&'k self, key: &'k [u8]) -> Option<Parts<'k>> {
        let mut rest = key.strip_prefix(self.prefix.as_slice())?;
        let mut out = Vec::with_capacity(self.parts.len());
        for (i, (name, after)) in self.parts.iter().enumerate() {
            let last = i + 1 == self.parts.len();
            let end = if last {
                // The last part runs to the trailing literal at the very end of the key.
                rest.len()
                    .checked_sub(after.len())
                    .filter(|&end| rest[end..] == **after)?
            } else {
                memchr::memmem::find(rest, after)?
            };
            if end == 0 {
                return None;
            }
            out.push((name.as_str(), &rest[..end]));
            rest = &rest[end + after.len()..];
        }
        rest.is_empty().then_some(out)
    }
}

impl fmt::Display for KeyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(pattern: &str, key: &str) -> Option<Vec<(String, String)>> {
        let p = KeyPattern::parse(pattern).unwrap();
        p.split(key.as_bytes()).map(|parts| {
            parts
                .into_iter()
                .map(|(n, v)| (n.to_owned(), String::from_utf8(v.to_vec()).unwrap()))
                .collect()
        })
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            list.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn parts_split_at_literals_and_the_last_takes_the_rest() {
        let p = "doc/{collection}/{id}";
        assert_eq!(
            parts(p, "doc/books/42"),
            pairs(&[("collection", "books"), ("id", "42")])
        );
        assert_eq!(
            parts(p, "doc/books/a/b"),
            pairs(&[("collection", "books"), ("id", "a/b")])
        );
        assert_eq!(
            parts(p, "doc/b/'; DROP TABLE x; --"),
            pairs(&[("collection", "b"), ("id", "'; DROP TABLE x; --")])
        );
        assert_eq!(parts(p, "doc/books/"), None);
        assert_eq!(parts(p, "doc//42"), None);
        assert_eq!(parts(p, "doc/books"), None);
        assert_eq!(parts(p, "other/books/42"), None);
    }

    #[test]
    fn trailing_literals_and_no_parts() {
        assert_eq!(
            parts("u:{id}:profile", "u:7:profile"),
            pairs(&[("id", "7")])
        );
        assert_eq!(parts("u:{id}:profile", "u:7:prof"), None);
        assert_eq!(parts("config", "config"), pairs(&[]));
        assert_eq!(parts("config", "configs"), None);
    }

    proptest::proptest! {
        /// Any key at all: no panic, and a match rebuilds the key exactly from the pattern's
        /// literals and the parts, each part non-empty.
        #[test]
        fn splitting_any_key_is_total_and_exact(
            head in proptest::sample::select(vec!["", "doc/", "doc/b/", "u:", "u:1:", "a", "config", "k/"]),
            tail in proptest::collection::vec(
                proptest::sample::select(b"/:abxy\x00\xff".to_vec()), 0..12),
            end in proptest::sample::select(vec!["", "/", ":profile", "b"]),
            pattern in proptest::sample::select(vec![
                "doc/{collection}/{id}", "u:{id}:profile", "a{x}b{y}", "config", "k/{id}",
            ]),
        ) {
            let key = [head.as_bytes(), &tail, end.as_bytes()].concat();
            let p = KeyPattern::parse(pattern).unwrap();
            proptest::prop_assert_eq!(p.matches(&key), p.split(&key).is_some());
            if let Some(parts) = p.split(&key) {
                let mut rebuilt = p.prefix.clone();
                for ((_, value), (_, after)) in parts.iter().zip(&p.parts) {
                    proptest::prop_assert!(!value.is_empty());
                    rebuilt.extend_from_slice(value);
                    rebuilt.extend_from_slice(after);
                }
                proptest::prop_assert_eq!(rebuilt, key);
            } else if p.parts.is_empty() {
                proptest::prop_assert_ne!(key.as_slice(), p.prefix.as_slice());
            }
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for bad in [
            "{id}",
            "doc/{id",
            "doc/{}",
            "doc/{a}{b}",
            "doc/{a}/{a}",
            "doc/}",
            "d/{a-b}",
        ] {
            assert!(KeyPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pattern_errors_name_the_pattern_and_the_part() {
        let cases = [
            ("doc/{id", "pattern \"doc/{id\": '{' without '}'"),
            ("doc/}", "pattern \"doc/}\": '}' without '{'"),
            (
                "doc/{}",
                "pattern \"doc/{}\": part name \"\" must be letters, digits or '_'",
            ),
            (
                "d/{a-b}",
                "pattern \"d/{a-b}\": part name \"a-b\" must be letters, digits or '_'",
            ),
            (
                "doc/{a}/{a}",
                "pattern \"doc/{a}/{a}\": part {a} appears twice",
            ),
            (
                "doc/{a}{b}",
                "pattern \"doc/{a}{b}\": {a} and {b} need literal text between them",
            ),
            (
                "{id}",
                "pattern \"{id}\" must start with literal text (such as \"doc/\"), so that it \
                 claims only its own keys",
            ),
        ];
        for (bad, want) in cases {
            assert_eq!(KeyPattern::parse(bad).unwrap_err().to_string(), want);
        }
        assert_eq!(
            KeyPattern::parse("doc/{a}{b}").unwrap_err(),
            PatternError::Adjacent {
                pattern: "doc/{a}{b}".into(),
                first: "a".into(),
                second: "b".into(),
            }
        );
    }
}
