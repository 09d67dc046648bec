//! Value compression, and the frame that lets every reader recognise it.
//!
//! A client built with [`ClientBuilder::compression`](crate::ClientBuilder::compression)
//! compresses string values of at least the threshold size, and keeps the
//! compressed form only when it is smaller. Whatever it stores, any client
//! reads back the original bytes, compression on or off, because a
//! compressed value carries a header saying so:
//!
//! ```text
//! offset  size  field
//! 0       4     magic F5 73 68 6C  ("\xF5shl")
//! 4       1     format: 0 = stored as is, 1 = zstd, 2 = lz4 (block)
//! 5       4     original length, u32 little-endian     (formats 1 and 2)
//! 9       ..    compressed payload                      (formats 1 and 2)
//! 5       ..    the value itself                        (format 0)
//! ```
//!
//! The first byte, `F5`, never occurs in UTF-8, so no text value (JSON,
//! numbers, strings) can start with the magic. A binary value that happens
//! to start with it is written as format 0, so it too reads back exactly;
//! every client does this, compression on or off. A value that starts with
//! the magic but is not a valid frame was not written by a shoal client,
//! and reading it is an [`Error::Codec`](crate::Error::Codec) rather than a
//! guess.
//!
//! Only string values go through the frame (`get`, `set`, typed handles);
//! hash values, list elements and set members are stored as given.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{CodecError, Message};

/// The first bytes of every framed value.
pub(crate) const MAGIC: [u8; 4] = [0xF5, b's', b'h', b'l'];

const FORMAT_STORED: u8 = 0;
const FORMAT_ZSTD: u8 = 1;
const FORMAT_LZ4: u8 = 2;

/// Magic, format byte and original length.
const COMPRESSED_HEADER_LEN: usize = MAGIC.len() + 1 + 4;

/// Largest original length a reader accepts, so a corrupt or hostile
/// header cannot make it allocate gigabytes.
pub const MAX_DECOMPRESSED_LEN: usize = 1 << 30;

/// Default minimum size of a value worth compressing.
pub const DEFAULT_THRESHOLD: usize = 1024;

/// A compression algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Zstandard: the better ratio, still fast (feature `zstd`, on by
    /// default).
    Zstd,
    /// LZ4 block format: a lower ratio, about twice as fast to decompress
    /// (feature `lz4`).
    Lz4,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
        }
    }

    fn format(self) -> u8 {
        match self {
            Self::Zstd => FORMAT_ZSTD,
            Self::Lz4 => FORMAT_LZ4,
        }
    }
}

/// How a client compresses the values it writes: an algorithm, a size
/// threshold and, for zstd, a level.
///
/// Values smaller than the threshold are stored as they are: below about a
/// kilobyte the saving is small and often negative, and every read would
/// pay for decompression. Compression is opt-in because it costs CPU on
/// every write and read and only pays on data with redundancy (text, JSON,
/// sparse or quantised numbers); random-looking data such as dense `f32`
/// embeddings barely shrinks, and is then stored uncompressed.
///
/// ```no_run
/// # async fn demo() -> shoal_client::Result<()> {
/// use shoal_client::{Client, Compression};
///
/// let client = Client::builder()
///     .endpoint("127.0.0.1:50051")
///     .compression(Compression::zstd().threshold(512).level(3))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    algorithm: Algorithm,
    threshold: usize,
    level: i32,
}

impl Compression {
    /// zstd at level 3 (zstd's own default) for values of at least
    /// [`DEFAULT_THRESHOLD`] bytes.
    #[cfg(feature = "zstd")]
    #[must_use]
    pub fn zstd() -> Self {
        Self {
            algorithm: Algorithm::Zstd,
            threshold: DEFAULT_THRESHOLD,
            level: zstd::DEFAULT_COMPRESSION_LEVEL,
        }
    }

    /// LZ4 for values of at least [`DEFAULT_THRESHOLD`] bytes.
    #[cfg(feature = "lz4")]
    #[must_use]
    pub fn lz4() -> Self {
        Self {
            algorithm: Algorithm::Lz4,
            threshold: DEFAULT_THRESHOLD,
            level: 0,
        }
    }

    /// Compress values of at least `bytes` bytes; smaller ones are stored as
    /// they are.
    #[must_use]
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// The zstd level: higher is smaller and slower; negative levels trade
    /// ratio for speed. Clamped to the range zstd accepts; ignored by lz4.
    #[must_use]
    pub fn level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The minimum size of a value that is compressed.
    #[must_use]
    pub fn min_size(&self) -> usize {
        self.threshold
    }

    /// `value` compressed into a frame, or `None` when it is under the
    /// threshold or does not shrink.
    fn compress(&self, value: &[u8]) -> Option<Bytes> {
        if value.len() < self.threshold {
            return None;
        }
        let original_len = u32::try_from(value.len()).ok()?;
        let payload = match self.algorithm {
            Algorithm::Zstd => zstd_compress(value, self.level)?,
            Algorithm::Lz4 => lz4_compress(value)?,
        };
        if COMPRESSED_HEADER_LEN + payload.len() >= value.len() {
            return None;
        }
        let mut frame = BytesMut::with_capacity(COMPRESSED_HEADER_LEN + payload.len());
        frame.put_slice(&MAGIC);
        frame.put_u8(self.algorithm.format());
        frame.put_u32_le(original_len);
        frame.put_slice(&payload);
        Some(frame.freeze())
    }
}

/// The bytes to store for `value`: compressed when `compression` says so
/// and it pays, escaped when it would otherwise look like a frame, else
/// `value` itself (no copy).
pub(crate) fn encode_value(compression: Option<&Compression>, value: Bytes) -> Bytes {
    if let Some(frame) = compression.and_then(|c| c.compress(&value)) {
        return frame;
    }
    if value.starts_with(&MAGIC) {
        let mut frame = BytesMut::with_capacity(MAGIC.len() + 1 + value.len());
        frame.put_slice(&MAGIC);
        frame.put_u8(FORMAT_STORED);
        frame.put_slice(&value);
        return frame.freeze();
    }
    value
}

/// The original bytes of a stored value: decompressed or unescaped when it
/// is a frame, else `stored` itself (no copy).
///
/// # Errors
///
/// [`CodecError`] for a value that starts with the magic but is not a
/// valid frame, or whose algorithm this build lacks.
pub(crate) fn decode_value(stored: Bytes) -> Result<Bytes, CodecError> {
    if !stored.starts_with(&MAGIC) {
        return Ok(stored);
    }
    let malformed = |why: &str| CodecError::decode("frame", Message(why.to_owned()));
    let Some(&format) = stored.get(MAGIC.len()) else {
        return Err(malformed(
            "value starts with the frame magic but has no format byte",
        ));
    };
    let algorithm = match format {
        FORMAT_STORED => return Ok(stored.slice(MAGIC.len() + 1..)),
        FORMAT_ZSTD => Algorithm::Zstd,
        FORMAT_LZ4 => Algorithm::Lz4,
        other => {
            return Err(malformed(&format!(
                "unknown frame format {other} (written by a newer client?)"
            )));
        }
    };
    let Some(length) = stored.get(MAGIC.len() + 1..COMPRESSED_HEADER_LEN) else {
        return Err(malformed("compressed frame shorter than its header"));
    };
    let original_len = u32::from_le_bytes(length.try_into().unwrap_or_default()) as usize;
    if original_len > MAX_DECOMPRESSED_LEN {
        return Err(malformed(&format!(
            "frame claims {original_len} bytes, over the {MAX_DECOMPRESSED_LEN}-byte limit"
        )));
    }
    let payload = &stored[COMPRESSED_HEADER_LEN..];
    let original = match algorithm {
        Algorithm::Zstd => zstd_decompress(payload, original_len)?,
        Algorithm::Lz4 => lz4_decompress(payload, original_len)?,
    };
    if original.len() != original_len {
        return Err(CodecError::decode(
            algorithm.name(),
            Message(format!(
                "decompressed to {} bytes, the header says {original_len}",
                original.len()
            )),
        ));
    }
    Ok(Bytes::from(original))
}

#[cfg(feature = "zstd")]
fn zstd_compress(value: &[u8], level: i32) -> Option<Vec<u8>> {
    let range = zstd::compression_level_range();
    let level = level.clamp(*range.start(), *range.end());
    zstd::bulk::compress(value, level).ok()
}

#[cfg(not(feature = "zstd"))]
fn zstd_compress(_: &[u8], _: i32) -> Option<Vec<u8>> {
    None
}

#[cfg(feature = "zstd")]
fn zstd_decompress(payload: &[u8], original_len: usize) -> Result<Vec<u8>, CodecError> {
    zstd::bulk::decompress(payload, original_len).map_err(|e| CodecError::decode("zstd", e))
}

#[cfg(not(feature = "zstd"))]
fn zstd_decompress(_: &[u8], _: usize) -> Result<Vec<u8>, CodecError> {
    Err(missing_feature(Algorithm::Zstd))
}

#[cfg(feature = "lz4")]
fn lz4_compress(value: &[u8]) -> Option<Vec<u8>> {
    Some(lz4_flex::block::compress(value))
}

#[cfg(not(feature = "lz4"))]
fn lz4_compress(_: &[u8]) -> Option<Vec<u8>> {
    None
}

#[cfg(feature = "lz4")]
fn lz4_decompress(payload: &[u8], original_len: usize) -> Result<Vec<u8>, CodecError> {
    lz4_flex::block::decompress(payload, original_len).map_err(|e| CodecError::decode("lz4", e))
}

#[cfg(not(feature = "lz4"))]
fn lz4_decompress(_: &[u8], _: usize) -> Result<Vec<u8>, CodecError> {
    Err(missing_feature(Algorithm::Lz4))
}

#[cfg(any(not(feature = "zstd"), not(feature = "lz4")))]
fn missing_feature(algorithm: Algorithm) -> CodecError {
    CodecError::decode(
        algorithm.name(),
        Message(format!(
            "the value is {0}-compressed and this client was built without the `{0}` feature",
            algorithm.name()
        )),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Compressible: a few distinct bytes in runs.
    fn redundant(len: usize) -> Bytes {
        (0..len)
            .map(|i| b"abcd"[(i / 16) % 4])
            .collect::<Vec<u8>>()
            .into()
    }

    fn algorithms() -> Vec<Compression> {
        [
            #[cfg(feature = "zstd")]
            Compression::zstd(),
            #[cfg(feature = "lz4")]
            Compression::lz4(),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn plain_values_are_stored_and_read_without_copying() {
        let value = Bytes::from(b"hello".to_vec());
        let stored = encode_value(None, value.clone());
        assert_eq!(stored.as_ptr(), value.as_ptr());
        let read = decode_value(stored).unwrap();
        assert_eq!(read.as_ptr(), value.as_ptr());
    }

    #[test]
    fn large_redundant_values_are_compressed_with_a_header() {
        for compression in algorithms() {
            let value = redundant(8192);
            let stored = encode_value(Some(&compression), value.clone());
            assert!(
                stored.len() < value.len() / 4,
                "{compression:?}: {}",
                stored.len()
            );
            assert_eq!(stored[..4], MAGIC);
            assert_eq!(stored[4], compression.algorithm().format());
            assert_eq!(stored[5..9], 8192u32.to_le_bytes());
            assert_eq!(decode_value(stored).unwrap(), value);
        }
    }

    #[test]
    fn values_under_the_threshold_stay_raw() {
        for compression in algorithms() {
            let value = redundant(1023);
            assert_eq!(encode_value(Some(&compression), value.clone()), value);
            let lower = compression.threshold(64);
            assert_ne!(encode_value(Some(&lower), value.clone()), value);
        }
    }

    #[test]
    fn values_that_do_not_shrink_stay_raw() {
        // A pseudo-random sequence: incompressible.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let value = Bytes::from(noise);
        for compression in algorithms() {
            assert_eq!(
                encode_value(Some(&compression.threshold(0)), value.clone()),
                value
            );
        }
    }

    #[test]
    fn values_that_look_like_a_frame_are_escaped() {
        let mut lookalike = MAGIC.to_vec();
        lookalike.extend_from_slice(&[FORMAT_ZSTD, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
        let value = Bytes::from(lookalike);
        let stored = encode_value(None, value.clone());
        assert_eq!(stored.len(), value.len() + 5);
        assert_eq!(stored[4], FORMAT_STORED);
        assert_eq!(decode_value(stored).unwrap(), value);

        let just_magic = Bytes::from_static(&MAGIC);
        let stored = encode_value(None, just_magic.clone());
        assert_eq!(decode_value(stored).unwrap(), just_magic);
    }

    #[test]
    fn text_never_needs_escaping() {
        // The magic's first byte occurs in no UTF-8 encoding of any char.
        let mut buffer = [0u8; 4];
        let in_utf8 = (0..=u32::from(char::MAX))
            .filter_map(char::from_u32)
            .any(|c| c.encode_utf8(&mut buffer).as_bytes().contains(&MAGIC[0]));
        assert!(!in_utf8);
    }

    #[test]
    fn broken_frames_are_errors() {
        let cases: [(&[u8], &str); 4] = [
            (&MAGIC, "no format byte"),
            (b"\xF5shl\x09rest", "unknown frame format 9"),
            (b"\xF5shl\x01\x01", "shorter than its header"),
            (b"\xF5shl\x01\xff\xff\xff\xff", "limit"),
        ];
        for (stored, expected) in cases {
            let err = decode_value(Bytes::from_static(stored)).unwrap_err();
            assert!(err.is_decode());
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn corrupt_payloads_and_wrong_lengths_are_errors() {
        for compression in algorithms() {
            let stored = encode_value(Some(&compression), redundant(4096));
            let mut corrupt = stored.to_vec();
            let end = corrupt.len();
            corrupt.truncate(end - 3);
            assert!(decode_value(corrupt.into()).is_err(), "{compression:?}");

            let mut wrong_len = stored.to_vec();
            wrong_len[5..9].copy_from_slice(&4000u32.to_le_bytes());
            assert!(decode_value(wrong_len.into()).is_err(), "{compression:?}");
        }
    }

    fn any_compression() -> impl Strategy<Value = Option<Compression>> {
        let mut choices = vec![Just(None).boxed()];
        for compression in algorithms() {
            choices.push(
                (0usize..64)
                    .prop_map(move |threshold| Some(compression.threshold(threshold)))
                    .boxed(),
            );
        }
        proptest::strategy::Union::new(choices)
    }

    /// Values biased towards the cases that matter: starting with all or
    /// part of the magic, then a format byte, then redundant or random
    /// bytes.
    fn any_value() -> impl Strategy<Value = Vec<u8>> {
        let prefix = prop_oneof![
            Just(Vec::new()),
            (0..=MAGIC.len()).prop_map(|n| MAGIC[..n].to_vec()),
            (0u8..4).prop_map(|format| [&MAGIC[..], &[format]].concat()),
        ];
        let body = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            (any::<u8>(), 0usize..3000).prop_map(|(byte, len)| vec![byte; len]),
            proptest::collection::vec(0u8..3, 0..3000),
        ];
        (prefix, body).prop_map(|(prefix, body)| [prefix, body].concat())
    }

    proptest! {
        #[test]
        fn every_value_reads_back_as_written(
            value in any_value(),
            compression in any_compression(),
        ) {
            let value = Bytes::from(value);
            let stored = encode_value(compression.as_ref(), value.clone());
            prop_assert_eq!(decode_value(stored.clone()).unwrap(), value.clone());
            // Stored values are never larger than needed: at most the
            // 5-byte escape, and only for values starting with the magic.
            if value.starts_with(&MAGIC) {
                prop_assert!(stored.len() <= value.len() + 5);
            } else {
                prop_assert!(stored.len() <= value.len());
            }
        }

        #[test]
        fn reading_arbitrary_bytes_never_panics(stored in any_value()) {
            let _ = decode_value(Bytes::from(stored));
        }
    }
}
