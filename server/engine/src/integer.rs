//! Counters stored as decimal strings, parsed and printed exactly as Redis
//! does so that `GET` of a counter and `INCR` of a digit string agree.

use bytes::Bytes;

use super::EngineError;

/// Parses a canonical decimal `i64`: an optional `-`, no `+`, no spaces, no
/// leading zeros (except `0` itself), no `-0`.
pub(crate) fn parse_i64(bytes: &[u8]) -> Result<i64, EngineError> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = !digits.is_empty()
        && digits.len() <= 20
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1)
        && !(digits == b"0" && digits.len() != bytes.len());
    if !canonical {
        return Err(EngineError::NotAnInteger);
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or(EngineError::NotAnInteger)
}

/// Formats `value` as the bytes a `GET` returns.
pub(crate) fn format_i64(value: i64) -> Bytes {
    let mut buffer = itoa::Buffer::new();
    Bytes::copy_from_slice(buffer.format(value).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_canonical_integers() {
        for (text, value) in [
            ("0", 0),
            ("7", 7),
            ("-7", -7),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(parse_i64(text.as_bytes()), Ok(value), "{text}");
            assert_eq!(format_i64(value), text.as_bytes());
        }
    }

    #[test]
    fn rejects_what_redis_rejects() {
        for text in [
            "",
            "-",
            "+1",
            " 1",
            "1 ",
            "01",
            "-0",
            "1.0",
            "abc",
            "9223372036854775808",
            "-9223372036854775809",
            "1e3",
        ] {
            assert_eq!(
                parse_i64(text.as_bytes()),
                Err(EngineError::NotAnInteger),
                "{text:?}"
            );
        }
    }
}
