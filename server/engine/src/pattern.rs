//! Redis-style glob patterns for key listing (`SCAN ... MATCH`).
//!
//! Matching is done by the `regex` crate on raw bytes; this module only
//! translates Redis's glob syntax (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\`
//! escapes) into an anchored byte regex, one pattern byte at a time as Redis
//! does. Unlike Redis, which guesses at malformed patterns, an unclosed `[`,
//! an empty class or a trailing `\` is refused.

use std::fmt::Write;

use regex::bytes::{Regex, RegexBuilder};

use super::EngineError;

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// Largest compiled matcher accepted; keeps hostile patterns cheap.
const MAX_COMPILED_BYTES: usize = 1 << 20;

/// A compiled key pattern.
#[derive(Debug, Clone)]
pub struct KeyPattern {
    regex: Regex,
}

impl KeyPattern {
    /// Compiles a Redis glob pattern.
    ///
    /// # Errors
    /// [`EngineError::InvalidPattern`] when the pattern is longer than
    /// [`MAX_PATTERN_BYTES`], has an unclosed `[` or an empty class, or ends
    /// in a lone `\`.
    ///
    /// ```
    /// use shoal_engine::KeyPattern;
    ///
    /// let pattern = KeyPattern::new("user:[0-9]*").unwrap();
    /// assert!(pattern.matches(b"user:42"));
    /// assert!(!pattern.matches(b"user:x"));
    /// ```
    pub fn new(pattern: &str) -> Result<Self, EngineError> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(EngineError::InvalidPattern(format!(
                "pattern is {} bytes, over the limit of {MAX_PATTERN_BYTES} bytes",
                pattern.len()
            )));
        }
        let translated = translate(pattern.as_bytes())?;
        let regex = RegexBuilder::new(&translated)
            .unicode(false)
            .dot_matches_new_line(true)
            .size_limit(MAX_COMPILED_BYTES)
            .build()
            .map_err(|error| EngineError::InvalidPattern(error.to_string()))?;
        Ok(Self { regex })
    }

    /// Whether `key` matches the pattern.
    pub fn matches(&self, key: &[u8]) -> bool {
        self.regex.is_match(key)
    }
}

fn malformed(reason: &str) -> EngineError {
    EngineError::InvalidPattern(reason.to_string())
}

/// Rewrites a Redis glob as an anchored byte regex.
fn translate(pattern: &[u8]) -> Result<String, EngineError> {
    let mut out = String::with_capacity(pattern.len() * 4 + 2);
    out.push('^');
    let mut rest = pattern;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'*' => out.push_str(".*"),
            b'?' => out.push('.'),
            b'[' => rest = translate_class(rest, &mut out)?,
            b'\\' => {
                let (&escaped, tail) = rest
                    .split_first()
                    .ok_or_else(|| malformed("pattern ends with an unescaped '\\'"))?;
                rest = tail;
                push_byte(&mut out, escaped);
            }
            literal => push_byte(&mut out, literal),
        }
    }
    out.push('$');
    Ok(out)
}

/// Translates a class whose `[` has been consumed; returns what follows it.
fn translate_class<'a>(mut rest: &'a [u8], out: &mut String) -> Result<&'a [u8], EngineError> {
    const UNCLOSED: &str = "character class '[' is not closed with ']'";
    out.push('[');
    if let Some((b'^', tail)) = rest.split_first() {
        out.push('^');
        rest = tail;
    }
    let mut members = 0;
    loop {
        let (&byte, tail) = rest.split_first().ok_or_else(|| malformed(UNCLOSED))?;
        rest = tail;
        let low = match byte {
            b']' if members == 0 => return Err(malformed("character class '[]' is empty")),
            b']' => break,
            b'\\' => {
                let (&escaped, tail) = rest.split_first().ok_or_else(|| malformed(UNCLOSED))?;
                rest = tail;
                escaped
            }
            other => other,
        };
        match rest {
            [b'-', high, tail @ ..] if *high != b']' => {
                let (high, tail) = match (high, tail) {
                    (b'\\', [escaped, tail @ ..]) => (*escaped, tail),
                    (b'\\', []) => return Err(malformed(UNCLOSED)),
                    _ => (*high, tail),
                };
                rest = tail;
                // Redis accepts reversed ranges such as `[z-a]`.
                let (low, high) = (low.min(high), low.max(high));
                push_byte(out, low);
                out.push('-');
                push_byte(out, high);
            }
            _ => push_byte(out, low),
        }
        members += 1;
    }
    out.push(']');
    Ok(rest)
}

/// Appends a byte that matches only itself, inside or outside a class.
fn push_byte(out: &mut String, byte: u8) {
    let _ = write!(out, "\\x{byte:02x}");
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A reference matcher written from the rules in the module docs, by
    /// backtracking over the pattern: `None` for a pattern those rules
    /// refuse.
    fn reference(pattern: &[u8], key: &[u8]) -> Option<bool> {
        match pattern.split_first() {
            None => Some(key.is_empty()),
            Some((b'*', rest)) => {
                for skip in 0..=key.len() {
                    if reference(rest, &key[skip..])? {
                        return Some(true);
                    }
                }
                Some(false)
            }
            Some((b'?', rest)) => match key.split_first() {
                Some((_, key_rest)) => reference(rest, key_rest),
                None => reference(rest, key).map(|_| false),
            },
            Some((b'[', rest)) => {
                let (class, rest) = reference_class(rest)?;
                match key.split_first() {
                    Some((&byte, key_rest)) if class(byte) => reference(rest, key_rest),
                    _ => reference(rest, key).map(|_| false),
                }
            }
            Some((b'\\', rest)) => {
                let (&escaped, rest) = rest.split_first()?;
                match key.split_first() {
                    Some((&byte, key_rest)) if byte == escaped => reference(rest, key_rest),
                    _ => reference(rest, key).map(|_| false),
                }
            }
            Some((&literal, rest)) => match key.split_first() {
                Some((&byte, key_rest)) if byte == literal => reference(rest, key_rest),
                _ => reference(rest, key).map(|_| false),
            },
        }
    }

    /// The members of a class whose `[` is consumed, and what follows it.
    #[allow(clippy::type_complexity)]
    fn reference_class(mut rest: &[u8]) -> Option<(Box<dyn Fn(u8) -> bool>, &[u8])> {
        let negated = rest.first() == Some(&b'^');
        if negated {
            rest = &rest[1..];
        }
        let mut ranges: Vec<(u8, u8)> = Vec::new();
        loop {
            let (&byte, tail) = rest.split_first()?;
            rest = tail;
            let low = match byte {
                b']' if ranges.is_empty() => return None,
                b']' => break,
                b'\\' => {
                    let (&escaped, tail) = rest.split_first()?;
                    rest = tail;
                    escaped
                }
                other => other,
            };
            if rest.len() >= 2 && rest[0] == b'-' && rest[1] != b']' {
                let (high, tail) = if rest[1] == b'\\' {
                    (*rest.get(2)?, &rest[3..])
                } else {
                    (rest[1], &rest[2..])
                };
                rest = tail;
                ranges.push((low.min(high), low.max(high)));
            } else {
                ranges.push((low, low));
            }
        }
        let class = move |byte: u8| {
            ranges
                .iter()
                .any(|&(low, high)| (low..=high).contains(&byte))
                != negated
        };
        Some((Box::new(class), rest))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("SHOAL_FUZZ_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(512)
        ))]

        /// Random patterns over the glob's own syntax: refused exactly
        /// when the rules refuse them, and otherwise matching exactly the
        /// keys the reference matches. Never a panic.
        #[test]
        fn patterns_match_as_the_rules_say(
            pattern in proptest::collection::vec(
                prop::sample::select(b"ab-*?[]^\\".to_vec()), 0..12),
            keys in proptest::collection::vec(
                proptest::collection::vec(prop::sample::select(b"ab-*?[]^\\\n".to_vec()), 0..8),
                1..8),
        ) {
            let text = String::from_utf8(pattern.clone()).expect("ASCII");
            let compiled = KeyPattern::new(&text);
            let expected_valid = reference(&pattern, b"").is_some();
            prop_assert_eq!(compiled.is_ok(), expected_valid, "pattern {:?}", text);
            if let Ok(compiled) = compiled {
                for key in &keys {
                    prop_assert_eq!(
                        compiled.matches(key),
                        reference(&pattern, key).expect("valid"),
                        "pattern {:?}, key {:?}", text, String::from_utf8_lossy(key)
                    );
                }
            }
        }

        /// Any bytes at all as a pattern: a pattern or a clear error.
        #[test]
        fn arbitrary_patterns_never_panic(pattern in ".{0,64}", key in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(compiled) = KeyPattern::new(&pattern) {
                let _ = compiled.matches(&key);
            }
        }
    }

    fn matches(pattern: &str, key: &str) -> bool {
        KeyPattern::new(pattern)
            .expect("valid pattern")
            .matches(key.as_bytes())
    }

    #[test]
    fn follows_redis_glob_rules() {
        assert!(matches("*", ""));
        assert!(matches("*", "a/b/c"));
        assert!(matches("h?llo", "hello"));
        assert!(matches("h?llo", "h/llo"));
        assert!(!matches("h?llo", "hllo"));
        assert!(matches("h*llo", "heeeello"));
        assert!(matches("h[ae]llo", "hallo"));
        assert!(!matches("h[ae]llo", "hillo"));
        assert!(matches("h[^e]llo", "hallo"));
        assert!(!matches("h[^e]llo", "hello"));
        assert!(matches("h[a-b]llo", "hbllo"));
        assert!(!matches("h[a-b]llo", "hcllo"));
        assert!(matches("user:*", "user:1"));
        assert!(!matches("user:*", "users"));
    }

    #[test]
    fn escapes_and_braces_are_literal() {
        assert!(matches(r"a\*b", "a*b"));
        assert!(!matches(r"a\*b", "axb"));
        assert!(matches(r"a\?", "a?"));
        assert!(matches("{a,b}", "{a,b}"));
        assert!(!matches("{a,b}", "a"));
        assert!(matches(r"[\]]", "]"));
        assert!(matches("[!]", "!"));
        assert!(matches("[a-]", "-"));
        assert!(matches("[z-a]", "m"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "axb"));
        assert!(matches("line*", "line\nbreak"));
    }

    #[test]
    fn rejects_malformed_patterns() {
        for pattern in ["[abc", "abc\\", "[]", "[\\", "[a-\\"] {
            assert!(
                matches!(
                    KeyPattern::new(pattern),
                    Err(EngineError::InvalidPattern(_))
                ),
                "{pattern:?}"
            );
        }
        assert!(KeyPattern::new(&"*".repeat(MAX_PATTERN_BYTES + 1)).is_err());
    }
}
