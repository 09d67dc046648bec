//! File headers and record frames: how bytes on disk are split into
//! checked records.
//!
//! Every file starts with a 16-byte header: an 8-byte magic naming the kind
//! of file, the format version (u32, little-endian) and four reserved zero
//! bytes. Then come frames, each a 12-byte frame header and a payload:
//!
//! ```text
//! | len: u32 | payload_crc: u32 | header_crc: u32 | payload: len bytes |
//! ```
//!
//! `payload_crc` is the CRC-32 of the payload; `header_crc` the CRC-32 of
//! the first eight bytes, so a damaged length is caught before it is used
//! to find the next frame, and a scan for the next valid frame after a bad
//! one (which tells a torn tail from damage in the middle) does not trust
//! garbage. All integers are little-endian.

use std::io::Read;
use std::ops::Range;

/// The format version of log segments and manifests this build writes
/// and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The format version of snapshots this build writes. Version 2 adds a
/// record giving each namespace's key count before its shards, so that a
/// restore sizes the tables once; this build reads versions 1 and 2.
pub const SNAPSHOT_VERSION: u32 = 2;
/// Bytes of a file header.
pub const FILE_HEADER_BYTES: usize = 16;
/// Bytes of a frame header.
pub const FRAME_HEADER_BYTES: usize = 12;
/// Largest payload accepted: a longer length is damage, not data (the
/// engine's values are at most a few MiB; whole collections in a snapshot
/// stay far below this).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 30;

/// What a file holds, named by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A log segment: change records.
    Log,
    /// A snapshot: self-contained entries.
    Snapshot,
    /// The manifest: which files are live.
    Manifest,
}

impl FileKind {
    /// The format version this build writes for this kind of file, and
    /// the newest it reads (it reads every version from 1 on).
    pub fn version(self) -> u32 {
        match self {
            FileKind::Snapshot => SNAPSHOT_VERSION,
            FileKind::Log | FileKind::Manifest => FORMAT_VERSION,
        }
    }

    fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Log => b"SHOALLOG",
            FileKind::Snapshot => b"SHOALSNP",
            FileKind::Manifest => b"SHOALMAN",
        }
    }
}

/// Appends a file header for `kind`.
pub fn write_file_header(kind: FileKind, out: &mut Vec<u8>) {
    out.extend_from_slice(kind.magic());
    out.extend_from_slice(&kind.version().to_le_bytes());
    out.extend_from_slice(&[0; 4]);
}

/// What a file's first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCheck {
    /// A header of the expected kind and version.
    Valid,
    /// Fewer bytes than a header, or only zeros where it should be: what a
    /// crash leaves of a file that was being created.
    Missing,
    /// Another kind of file, or not a shoal file at all.
    WrongMagic,
    /// A shoal file of another format version.
    WrongVersion(u32),
}

/// Checks the header at the start of `bytes` against `kind`.
pub fn check_file_header(kind: FileKind, bytes: &[u8]) -> HeaderCheck {
    let Some(header) = bytes.get(..FILE_HEADER_BYTES) else {
        return HeaderCheck::Missing;
    };
    if header.iter().all(|byte| *byte == 0) {
        return HeaderCheck::Missing;
    }
    if &header[..8] != kind.magic() {
        return HeaderCheck::WrongMagic;
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if !(1..=kind.version()).contains(&version) {
        return HeaderCheck::WrongVersion(version);
    }
    HeaderCheck::Valid
}

/// Appends one frame whose payload `encode` writes; returns the frame's
/// length in bytes. Records are bounded by the engine's limits, far below
/// [`MAX_PAYLOAD_BYTES`]; a longer payload would get a frame the reader
/// refuses, never a wrapped length.
pub fn append_frame(out: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    encode(out);
    let payload = &out[start + FRAME_HEADER_BYTES..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let payload_crc = crc32fast::hash(payload);
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..8].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&header[..8]);
    header[8..].copy_from_slice(&header_crc.to_le_bytes());
    out[start..start + FRAME_HEADER_BYTES].copy_from_slice(&header);
    out.len() - start
}

/// What the bytes at one offset hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameRead {
    /// A valid frame: its payload's range and where the next frame starts.
    Frame {
        /// The payload's bytes within the buffer.
        payload: Range<usize>,
        /// Offset of the next frame.
        next: usize,
    },
    /// The end of the buffer, exactly at a frame boundary.
    End,
    /// Not a valid frame; `reason` says why.
    Bad {
        /// What is wrong.
        reason: String,
        /// Whether the frame runs past the end of the buffer, as a frame
        /// cut by a crash does.
        incomplete: bool,
    },
}

/// Reads the frame at `at` in `buf`.
pub fn read_frame(buf: &[u8], at: usize) -> FrameRead {
    if at == buf.len() {
        return FrameRead::End;
    }
    let Some(header) = buf.get(at..at + FRAME_HEADER_BYTES) else {
        return FrameRead::Bad {
            reason: format!("{} bytes left, less than a frame header", buf.len() - at),
            incomplete: true,
        };
    };
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (len, payload_crc, header_crc) = (word(0), word(4), word(8));
    if crc32fast::hash(&header[..8]) != header_crc {
        return FrameRead::Bad {
            reason: "frame header checksum mismatch".into(),
            incomplete: false,
        };
    }
    let len = len as usize;
    if len > MAX_PAYLOAD_BYTES {
        return FrameRead::Bad {
            reason: format!("frame length {len} over the limit of {MAX_PAYLOAD_BYTES}"),
            incomplete: false,
        };
    }
    let start = at + FRAME_HEADER_BYTES;
    let Some(payload) = buf.get(start..start + len) else {
        return FrameRead::Bad {
            reason: format!(
                "frame of {len} bytes runs past the end ({} bytes left)",
                buf.len() - start
            ),
            incomplete: true,
        };
    };
    if crc32fast::hash(payload) != payload_crc {
        return FrameRead::Bad {
            reason: "payload checksum mismatch".into(),
            incomplete: false,
        };
    }
    FrameRead::Frame {
        payload: start..start + len,
        next: start + len,
    }
}

/// The offset of the first valid frame that starts after `at`, if any:
/// a bad frame followed by a valid one is damage in the middle, not a
/// torn tail.
pub fn find_valid_frame_after(buf: &[u8], at: usize) -> Option<usize> {
    (at + 1..buf.len().saturating_sub(FRAME_HEADER_BYTES - 1))
        .find(|&offset| matches!(read_frame(buf, offset), FrameRead::Frame { .. }))
}

/// Bytes a [`FrameReader`] reads at a time: large enough that a read
/// call's cost is spread over thousands of records, small enough that
/// reading a file of any size holds about this much (or one frame, when a
/// frame is larger).
pub const READ_CHUNK_BYTES: usize = 1 << 20;

/// The frames of a file, read piece by piece with a bounded buffer rather
/// than whole.
pub struct FrameReader {
    source: Box<dyn Read + Send>,
    /// Bytes read and not yet handed out, from file offset `offset` on
    /// (after the first `consumed`, which the last chunk handed out).
    pending: Vec<u8>,
    consumed: usize,
    offset: u64,
    /// Least bytes to hold before frames are looked for again: a frame
    /// header, or a whole frame whose header said how long it is.
    need: usize,
    eof: bool,
}

/// What [`FrameReader::open`] found at the start of a file.
pub struct OpenedFrames {
    /// The reader, positioned after the header when the header is valid.
    pub frames: FrameReader,
    /// What the header says.
    pub header: HeaderCheck,
    /// The file's length when it is no longer than a header: what a crash
    /// during its creation leaves.
    pub short_len: Option<u64>,
}

/// A run of whole frames handed out by [`FrameReader::next_chunk`].
pub struct FrameChunk<'a> {
    /// The bytes the payload ranges index.
    pub bytes: &'a [u8],
    /// The file offset of `bytes[0]`.
    pub base: u64,
    /// The payloads of the valid frames, in order.
    pub payloads: Vec<Range<usize>>,
    /// What follows them.
    pub end: ChunkEnd,
}

impl FrameChunk<'_> {
    /// The file offset of the frame whose payload is `payload`.
    pub fn frame_offset(&self, payload: &Range<usize>) -> u64 {
        self.base + (payload.start - FRAME_HEADER_BYTES) as u64
    }
}

/// What follows the frames of a [`FrameChunk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkEnd {
    /// More of the file: ask for the next chunk.
    More,
    /// The end of the file, at a frame boundary.
    End,
    /// Not a valid frame, at file offset `offset`; nothing after it is
    /// handed out.
    Bad {
        /// Where the bad frame starts.
        offset: u64,
        /// What is wrong.
        reason: String,
        /// Whether it runs past the end of the file.
        incomplete: bool,
    },
}

impl FrameReader {
    /// Reads the start of `source` and checks its header against `kind`.
    ///
    /// # Errors
    /// As `read`.
    pub fn open(mut source: Box<dyn Read + Send>, kind: FileKind) -> std::io::Result<OpenedFrames> {
        let mut pending = Vec::with_capacity(READ_CHUNK_BYTES);
        let eof = fill(&mut source, &mut pending, READ_CHUNK_BYTES)?;
        let header = check_file_header(kind, &pending);
        let short_len = (eof && pending.len() <= FILE_HEADER_BYTES).then_some(pending.len() as u64);
        let consumed = if header == HeaderCheck::Valid {
            FILE_HEADER_BYTES
        } else {
            0
        };
        Ok(OpenedFrames {
            frames: FrameReader {
                source,
                pending,
                consumed,
                offset: 0,
                need: FRAME_HEADER_BYTES,
                eof,
            },
            header,
            short_len,
        })
    }

    /// The next run of whole frames. After a chunk that ends
    /// [`ChunkEnd::End`] or [`ChunkEnd::Bad`], every later one is empty
    /// and ends the same way.
    ///
    /// # Errors
    /// As `read`.
    pub fn next_chunk(&mut self) -> std::io::Result<FrameChunk<'_>> {
        if self.consumed > 0 {
            self.pending.drain(..self.consumed);
            self.offset += self.consumed as u64;
            self.consumed = 0;
        }
        if !self.eof {
            let want = READ_CHUNK_BYTES.max(self.need);
            self.eof = fill(&mut self.source, &mut self.pending, want)?;
        }
        let buf = &self.pending;
        let mut payloads = Vec::new();
        let mut at = 0;
        let end = loop {
            match read_frame(buf, at) {
                FrameRead::Frame { payload, next } => {
                    payloads.push(payload);
                    at = next;
                }
                FrameRead::End if self.eof => break ChunkEnd::End,
                FrameRead::End => {
                    self.need = FRAME_HEADER_BYTES;
                    break ChunkEnd::More;
                }
                FrameRead::Bad { incomplete, .. } if incomplete && !self.eof => {
                    self.need = frame_bytes_hint(&buf[at..]);
                    break ChunkEnd::More;
                }
                FrameRead::Bad { reason, incomplete } => {
                    break ChunkEnd::Bad {
                        offset: self.offset + at as u64,
                        reason,
                        incomplete,
                    };
                }
            }
        };
        // A bad frame stays pending, so that every later call reports it.
        self.consumed = at;
        Ok(FrameChunk {
            bytes: &self.pending,
            base: self.offset,
            payloads,
            end,
        })
    }
}

/// Reads from `source` into `buf` until it holds `want` bytes or the
/// source ends; returns whether it ended.
fn fill(
    source: &mut Box<dyn Read + Send>,
    buf: &mut Vec<u8>,
    want: usize,
) -> std::io::Result<bool> {
    let missing = want.saturating_sub(buf.len());
    if missing == 0 {
        return Ok(false);
    }
    let read = source.by_ref().take(missing as u64).read_to_end(buf)?;
    Ok(read < missing)
}

/// Bytes of the frame starting `bytes`, from its header when that is
/// whole and checked; a frame header's worth otherwise.
fn frame_bytes_hint(bytes: &[u8]) -> usize {
    let Some(header) = bytes.get(..FRAME_HEADER_BYTES) else {
        return FRAME_HEADER_BYTES;
    };
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if crc32fast::hash(&header[..8]) != word(8) {
        return FRAME_HEADER_BYTES;
    }
    FRAME_HEADER_BYTES + (word(0) as usize).min(MAX_PAYLOAD_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for payload in payloads {
            append_frame(&mut out, |buf| buf.extend_from_slice(payload));
        }
        out
    }

    #[test]
    fn frames_round_trip() {
        let buf = framed(&[b"one", b"", b"three"]);
        let mut at = 0;
        let mut seen = Vec::new();
        while let FrameRead::Frame { payload, next } = read_frame(&buf, at) {
            seen.push(buf[payload].to_vec());
            at = next;
        }
        assert_eq!(read_frame(&buf, at), FrameRead::End);
        assert_eq!(seen, vec![b"one".to_vec(), Vec::new(), b"three".to_vec()]);
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_caught() {
        let buf = framed(&[b"payload"]);
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(read_frame(&damaged, 0), FrameRead::Bad { .. }),
                "bit {bit}"
            );
        }
        for len in 1..buf.len() {
            assert!(matches!(
                read_frame(&buf[..len], 0),
                FrameRead::Bad {
                    incomplete: true,
                    ..
                }
            ));
        }
    }

    #[test]
    fn a_valid_frame_after_a_bad_one_is_found() {
        let mut buf = framed(&[b"first", b"second"]);
        buf[FRAME_HEADER_BYTES] ^= 1;
        let second = FRAME_HEADER_BYTES + 5;
        assert_eq!(find_valid_frame_after(&buf, 0), Some(second));
        assert_eq!(find_valid_frame_after(&buf, second), None);
    }

    /// Every frame of `file`, read through a [`FrameReader`], with how
    /// the file ended.
    fn stream(file: Vec<u8>) -> (Vec<Vec<u8>>, ChunkEnd) {
        let opened =
            FrameReader::open(Box::new(std::io::Cursor::new(file)), FileKind::Log).expect("open");
        assert_eq!(opened.header, HeaderCheck::Valid);
        let mut frames = opened.frames;
        let mut seen = Vec::new();
        loop {
            let chunk = frames.next_chunk().expect("read");
            seen.extend(
                chunk
                    .payloads
                    .iter()
                    .map(|range| chunk.bytes[range.clone()].to_vec()),
            );
            if chunk.end != ChunkEnd::More {
                return (seen, chunk.end);
            }
        }
    }

    #[test]
    fn the_frame_reader_reads_frames_larger_than_its_buffer_and_finds_damage() {
        let big = vec![7u8; READ_CHUNK_BYTES * 2 + 5];
        let small: Vec<Vec<u8>> = (0..50_000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut file = Vec::new();
        write_file_header(FileKind::Log, &mut file);
        let mut expected: Vec<Vec<u8>> = Vec::new();
        for payload in small
            .iter()
            .take(25_000)
            .chain([&big])
            .chain(small.iter().skip(25_000))
        {
            append_frame(&mut file, |out| out.extend_from_slice(payload));
            expected.push(payload.clone());
        }
        let (seen, end) = stream(file.clone());
        assert_eq!(end, ChunkEnd::End);
        assert_eq!(seen, expected);

        // A flipped byte in the last frame's payload: everything before it
        // is handed out, then the damage at that frame's offset.
        let last_frame = file.len() - FRAME_HEADER_BYTES - 4;
        let mut damaged = file.clone();
        damaged[last_frame + FRAME_HEADER_BYTES] ^= 1;
        let (seen, end) = stream(damaged);
        assert_eq!(seen.len(), expected.len() - 1);
        assert!(
            matches!(end, ChunkEnd::Bad { offset, incomplete: false, .. } if offset == last_frame as u64)
        );

        // Cut inside the big frame: a frame running past the end.
        let (seen, end) = stream(file[..FILE_HEADER_BYTES + 25_000 * 16 + 100].to_vec());
        assert_eq!(seen.len(), 25_000);
        assert!(matches!(
            end,
            ChunkEnd::Bad {
                incomplete: true,
                ..
            }
        ));
    }

    #[test]
    fn headers_say_what_is_wrong() {
        let mut header = Vec::new();
        write_file_header(FileKind::Log, &mut header);
        assert_eq!(
            check_file_header(FileKind::Log, &header),
            HeaderCheck::Valid
        );
        assert_eq!(
            check_file_header(FileKind::Snapshot, &header),
            HeaderCheck::WrongMagic
        );
        assert_eq!(
            check_file_header(FileKind::Log, &header[..7]),
            HeaderCheck::Missing
        );
        assert_eq!(
            check_file_header(FileKind::Log, &[0; 16]),
            HeaderCheck::Missing
        );
        header[8] = 9;
        assert_eq!(
            check_file_header(FileKind::Log, &header),
            HeaderCheck::WrongVersion(9)
        );
    }
}
