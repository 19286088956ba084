//! Conditional requests (RFC 9110 §13): the entity-tag lists of `If-Match` and
//! `If-None-Match`, and how a document's version compares with them. A document's ETag is its
//! version as a strong tag (`"3"`).
//!
//! `If-Match` uses the strong comparison (§13.1.1: a weak tag never matches), `If-None-Match`
//! the weak one (§13.1.2: `W/"3"` matches `"3"`). Every tag of a list is compared, not only the
//! first. An element that is not an entity-tag (`3` without quotes, `W/3`) matches nothing.

use axum::http::{HeaderMap, HeaderName};

/// What a conditional header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Condition {
    /// `*`: any current representation.
    Any,
    /// A list of entity tags (elements that did not parse are left out).
    Tags(Vec<EntityTag>),
}

/// One entity tag: `"opaque"` or `W/"opaque"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntityTag {
    pub(crate) weak: bool,
    pub(crate) opaque: String,
}

/// The condition in the header `name`, `None` if the request has no such field.
pub(crate) fn condition(headers: &HeaderMap, name: &HeaderName) -> Option<Condition> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let mut tags = Vec::new();
    for value in values {
        let bytes = value.as_bytes();
        if bytes.trim_ascii() == b"*" {
            return Some(Condition::Any);
        }
        tags.extend(parse_list(bytes));
    }
    Some(Condition::Tags(tags))
}

/// The entity tags of a field value: a comma-separated list, optional whitespace around each
/// element; an element that is not an entity-tag is skipped up to the next comma outside quotes.
pub(crate) fn parse_list(value: &[u8]) -> Vec<EntityTag> {
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_ascii_start();
        while let Some(after) = rest.strip_prefix(b",") {
            rest = after.trim_ascii_start();
        }
        if rest.is_empty() {
            return out;
        }
        let (tag, after) = one_tag(rest);
        out.extend(tag);
        rest = after;
    }
}

/// Parses the entity tag at the start of `input` (which is not empty); returns it (or `None`
/// for a malformed element) and what follows the element.
fn one_tag(input: &[u8]) -> (Option<EntityTag>, &[u8]) {
    let (weak, quoted) = match input.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, input),
    };
    if let Some(body) = quoted.strip_prefix(b"\"")
        && let Some(end) = body.iter().position(|&b| b == b'"')
    {
        let opaque = &body[..end];
        let after = body[end + 1..].trim_ascii_start();
        let well_formed = opaque.iter().all(|&b| b == 0x21 || b >= 0x23 && b != 0x7f)
            && (after.is_empty() || after[0] == b',');
        if well_formed {
            let tag = EntityTag {
                weak,
                opaque: String::from_utf8_lossy(opaque).into_owned(),
            };
            return (Some(tag), after);
        }
    }
    (None, skip_element(input))
}

/// What follows the current (malformed) element: the input after the next comma that is not
/// inside quotes, or nothing.
fn skip_element(input: &[u8]) -> &[u8] {
    let mut quoted = false;
    for (i, &b) in input.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => return &input[i..],
            _ => {}
        }
    }
    &[]
}

impl Condition {
    /// `If-Match`: whether the document at `version` passes (strong comparison).
    pub(crate) fn matches_strong(&self, version: i64) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags
                .iter()
                .any(|t| !t.weak && is_version(&t.opaque, version)),
        }
    }

    /// `If-None-Match`: whether the document at `version` is named (weak comparison).
    pub(crate) fn matches_weak(&self, version: i64) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|t| is_version(&t.opaque, version)),
        }
    }
}

/// Whether `opaque` is exactly the decimal form of `version` (no sign, no leading zeros).
fn is_version(opaque: &str, version: i64) -> bool {
    let mut buffer = itoa::Buffer::new();
    opaque == buffer.format(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};

    fn tags(value: &str) -> Vec<(bool, String)> {
        parse_list(value.as_bytes())
            .into_iter()
            .map(|t| (t.weak, t.opaque))
            .collect()
    }

    #[test]
    fn lists_parse_per_rfc_9110() {
        assert_eq!(tags(r#""1""#), [(false, "1".into())]);
        assert_eq!(
            tags(r#" "1" ,W/"2",, "a,b" "#),
            [
                (false, "1".into()),
                (true, "2".into()),
                (false, "a,b".into())
            ]
        );
        // Malformed elements are skipped, the well-formed ones around them kept.
        assert_eq!(tags(r#"1, W/2, "x"y, "3", "open"#), [(false, "3".into())]);
        assert_eq!(tags(""), []);
        assert_eq!(tags(r#""""#), [(false, String::new())]);
        assert_eq!(tags("\"a\u{7f}\""), []);
    }

    fn with(name: HeaderName, values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn if_match_compares_strongly_and_every_tag() {
        let cond = |v: &[&str]| condition(&with(header::IF_MATCH, v), &header::IF_MATCH).unwrap();
        assert!(cond(&[r#""7", "3""#]).matches_strong(3));
        assert!(cond(&[r#""7""#, r#""3""#]).matches_strong(3));
        assert!(!cond(&[r#"W/"3""#]).matches_strong(3));
        assert!(!cond(&["3"]).matches_strong(3));
        assert!(!cond(&[r#""03""#]).matches_strong(3));
        assert!(cond(&["*"]).matches_strong(3));
        assert_eq!(condition(&HeaderMap::new(), &header::IF_MATCH), None);
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let cond = |v: &str| {
            condition(&with(header::IF_NONE_MATCH, &[v]), &header::IF_NONE_MATCH).unwrap()
        };
        assert!(cond(r#"W/"3""#).matches_weak(3));
        assert!(cond(r#""1", "3""#).matches_weak(3));
        assert!(!cond(r#""4""#).matches_weak(3));
    }
}
