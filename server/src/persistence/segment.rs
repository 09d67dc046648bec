//! Names of the files in a data directory.
//!
//! Log segments are `log-NNNNNNNNNNNNNNNNNNNN.seg`, numbered from 1 with no
//! gap, zero-padded so that names sort as numbers do; the manifest is
//! `MANIFEST` and is replaced through `MANIFEST.tmp`.

/// The manifest's name.
pub const MANIFEST_NAME: &str = "MANIFEST";
/// Where a new manifest is written before it replaces the old one.
pub const MANIFEST_TEMP_NAME: &str = "MANIFEST.tmp";

/// The file name of log segment `number`.
pub fn segment_name(number: u64) -> String {
    format!("log-{number:020}.seg")
}

/// The number of the log segment called `name`, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("log-")?.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The numbers of the log segments among `names`, sorted.
pub fn segment_numbers(names: &[String]) -> Vec<u64> {
    let mut numbers: Vec<u64> = names
        .iter()
        .filter_map(|name| parse_segment_name(name))
        .collect();
    numbers.sort_unstable();
    numbers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_as_numbers() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("log-42.seg"), None);
        assert_eq!(parse_segment_name("MANIFEST"), None);
        let names = vec![segment_name(10), segment_name(9), "other".to_string()];
        assert_eq!(segment_numbers(&names), vec![9, 10]);
        assert!(segment_name(9) < segment_name(10));
    }
}
