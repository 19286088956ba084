//! Redis's glob patterns, for `KEYS` and `SCAN … MATCH`: `*` any run of bytes, `?` one byte,
//! `[abc]` `[^abc]` `[a-z]` a class, `\x` the byte `x`. Unclosed classes and odd ranges
//! behave as in Redis's `stringmatchlen`, and so does the empty key, which only the empty
//! pattern matches (the commands treat a lone `*` as "everything" before asking).
//!
//! Every token other than `*` consumes exactly one byte, so remembering only the last `*`
//! and retrying from it is enough: matching takes O(pattern × key) time whatever the
//! pattern, where naive recursion is exponential in the number of stars.

/// One step of the pattern at some position.
enum Token {
    /// `*` (consecutive stars are one).
    Star,
    /// A token that consumes one byte: whether it matched, and where the pattern continues.
    One { matched: bool, next: usize },
}

/// Whether `text` matches `pattern`.
pub(crate) fn matches(pattern: &[u8], text: &[u8]) -> bool {
    if text.is_empty() {
        return pattern.is_empty();
    }
    let (mut p, mut t) = (0, 0);
    // After a star: where the pattern resumes, and the text position it last resumed at.
    let mut retry: Option<(usize, usize)> = None;
    while let Some(&byte) = text.get(t) {
        match token(pattern, p, byte) {
            Some(Token::Star) => {
                p += 1;
                retry = Some((p, t));
                continue;
            }
            Some(Token::One {
                matched: true,
                next,
            }) => {
                p = next;
                t += 1;
                continue;
            }
            Some(Token::One { matched: false, .. }) | None => {}
        }
        // Mismatch: let the last star swallow one more byte, or fail without one.
        let Some((resume, from)) = retry else {
            return false;
        };
        p = resume;
        t = from + 1;
        retry = Some((resume, t));
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|&b| b == b'*')
}

/// The token at `pattern[p]` tried against `byte`; `None` at the end of the pattern.
fn token(pattern: &[u8], p: usize, byte: u8) -> Option<Token> {
    let one = |matched, next| Some(Token::One { matched, next });
    match pattern.get(p..)? {
        [] => None,
        [b'*', ..] => Some(Token::Star),
        [b'?', ..] => one(true, p + 1),
        [b'[', ..] => {
            let (matched, next) = class(pattern, p + 1, byte);
            one(matched, next)
        }
        // A trailing backslash is a literal backslash, as in Redis.
        [b'\\', escaped, ..] => one(*escaped == byte, p + 2),
        [literal, ..] => one(*literal == byte, p + 1),
    }
}

/// Tries `byte` against the class whose body starts at `pattern[p]` (just after `[`); returns
/// whether it matched and where the pattern continues after the class.
fn class(pattern: &[u8], mut p: usize, byte: u8) -> (bool, usize) {
    let negated = pattern.get(p) == Some(&b'^');
    if negated {
        p += 1;
    }
    let mut matched = false;
    loop {
        match pattern.get(p..).unwrap_or_default() {
            // Unclosed: the class runs to the end of the pattern.
            [] => break,
            [b'\\', escaped, ..] => {
                matched |= *escaped == byte;
                p += 2;
            }
            [b']', ..] => {
                p += 1;
                break;
            }
            // Redis takes any `x-y` as a range, `]` as `y` included, and swaps reversed ends.
            [low, b'-', high, ..] => {
                let (low, high) = (*low.min(high), *low.max(high));
                matched |= (low..=high).contains(&byte);
                p += 3;
            }
            [literal, ..] => {
                matched |= *literal == byte;
                p += 1;
            }
        }
    }
    (matched != negated, p)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_like_redis() {
        for (pattern, text, want) in [
            ("*", "anything", true),
            ("*", "", false),
            ("", "", true),
            ("", "a", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "hllo", true),
            ("h*llo", "heeeello", true),
            ("h*llo", "hello!", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h[b-a]llo", "hallo", true),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("[\\]]", "]", true),
            ("[\\-a]", "-", true),
            ("[a\\-c]", "b", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            (
                "*a*a*a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
            ("a**", "a", true),
            ("a*?", "a", false),
            ("a*?", "ab", true),
            ("*.txt", "notes.txt", true),
            ("user:*:name", "user:42:name", true),
            ("user:*:name", "user:42:mail", false),
            ("ab\\", "ab\\", true),
            ("[", "a", false),
            ("[^", "a", true),
            ("[abc", "b", true),
            ("x[abc", "xb", true),
            ("[^abc", "d", true),
            ("[]", "]", false),
            ("[a-]", "^", true),
            ("[a-]", "z", false),
            ("?", "\u{e9}", false),
            ("??", "\u{e9}", true),
        ] {
            assert_eq!(
                matches(pattern.as_bytes(), text.as_bytes()),
                want,
                "{pattern:?} vs {text:?}"
            );
        }
    }

    #[test]
    fn long_hostile_patterns_finish() {
        let pattern = "*a".repeat(200) + "b";
        let text = "a".repeat(5000);
        assert!(!matches(pattern.as_bytes(), text.as_bytes()));
    }
}
