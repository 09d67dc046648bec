//! The HTTP/2 limits shoal sets itself rather than leaving to a library's
//! defaults, each checked over raw frames written by hand, as a hostile
//! client would send them: the SETTINGS the server announces, streams over
//! the concurrency limit, header lists over their limit, frames over the
//! frame size, and a rapid-reset flood. After each, another client is
//! still served.

use std::time::Duration;

use shoal_server::Config;
use shoal_tests::{TestServer, get_request, http_get, raw, set_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any step may take before the test gives up: a guard against
/// hangs, far above what any step needs.
const PATIENCE: Duration = Duration::from_secs(30);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const FRAME_SIZE_ERROR: u32 = 0x6;

/// The limits the server under test runs with, all away from the defaults
/// of hyper and h2 so that a setting left to them would show.
fn limited() -> Config {
    let mut config = Config::default();
    config.grpc.max_concurrent_streams = 3;
    config.grpc.max_header_list_size = 4096;
    config.grpc.max_frame_size = 32_768;
    config.grpc.max_pending_accept_reset_streams = 20;
    config.grpc.max_local_error_reset_streams = 20;
    config
}

/// One frame as read off the wire.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY frame.
    fn error_code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().expect("4 bytes"))
    }
}

/// A connection that speaks HTTP/2 frames by hand.
struct RawHttp2 {
    tcp: TcpStream,
}

impl RawHttp2 {
    /// Connects, sends the preface and empty SETTINGS, and returns the
    /// server's SETTINGS frame (acknowledged).
    async fn connect(server: &TestServer) -> (Self, Frame) {
        let tcp = TcpStream::connect(server.addr()).await.expect("connect");
        let mut this = Self { tcp };
        this.send_raw(PREFACE).await;
        this.send(SETTINGS, 0, 0, &[]).await;
        let settings = loop {
            let frame = this.next().await.expect("the server's SETTINGS");
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                break frame;
            }
        };
        this.send(SETTINGS, ACK, 0, &[]).await;
        (this, settings)
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("write");
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut frame = Vec::with_capacity(9 + payload.len());
        push_frame(&mut frame, kind, flags, stream, payload);
        self.send_raw(&frame).await;
    }

    /// Opens `stream` as a gRPC call of `path` (request body still to come
    /// unless `end`), with `extra` headers.
    async fn open(&mut self, stream: u32, path: &str, extra: &[(&str, &str)], end: bool) {
        let block = request_headers(path, extra);
        let flags = END_HEADERS | if end { END_STREAM } else { 0 };
        self.send(HEADERS, flags, stream, &block).await;
    }

    /// The next frame, or `None` once the server closed the connection.
    async fn next(&mut self) -> Option<Frame> {
        let read = async {
            let mut header = [0u8; 9];
            self.tcp.read_exact(&mut header).await.ok()?;
            let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0; length];
            self.tcp.read_exact(&mut payload).await.ok()?;
            Some(Frame {
                kind: header[3],
                flags: header[4],
                stream: u32::from_be_bytes(header[5..9].try_into().expect("4 bytes")) & 0x7fff_ffff,
                payload,
            })
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("the server answers or closes in time")
    }

    /// Frames until one matches `wanted`; `None` if the connection closed
    /// first. PINGs are answered on the way.
    async fn until(&mut self, wanted: impl Fn(&Frame) -> bool) -> Option<Frame> {
        loop {
            let frame = self.next().await?;
            if wanted(&frame) {
                return Some(frame);
            }
            if frame.kind == PING && frame.flags & ACK == 0 {
                let payload = frame.payload.clone();
                self.send(PING, ACK, 0, &payload).await;
            }
        }
    }
}

/// An HPACK block of literal fields, never indexed nor Huffman-coded: the
/// simplest encoding every decoder must accept (RFC 7541, section 6.2.2).
fn request_headers(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    fields.extend_from_slice(extra);
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x10);
        hpack_string(&mut block, name.as_bytes());
        hpack_string(&mut block, value.as_bytes());
    }
    block
}

/// An HPACK string literal: a 7-bit prefixed length, then the bytes.
fn hpack_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut length = bytes.len();
    if length < 127 {
        out.push(length as u8);
    } else {
        out.push(127);
        length -= 127;
        while length >= 128 {
            out.push((length % 128) as u8 | 0x80);
            length /= 128;
        }
        out.push(length as u8);
    }
    out.extend_from_slice(bytes);
}

/// The value of `id` in a SETTINGS payload.
fn setting(frame: &Frame, id: u16) -> Option<u32> {
    frame.payload.chunks_exact(6).find_map(|entry| {
        (u16::from_be_bytes([entry[0], entry[1]]) == id)
            .then(|| u32::from_be_bytes(entry[2..6].try_into().expect("4 bytes")))
    })
}

/// A well-behaved client still gets its answers.
async fn still_served(server: &TestServer) {
    let mut client = raw(server).await;
    client
        .cache
        .set(set_request("still", "served"))
        .await
        .expect("Set served");
    let got = client
        .cache
        .get(get_request("still"))
        .await
        .expect("Get served")
        .into_inner();
    assert!(got.found);
}

#[tokio::test]
async fn the_server_announces_the_limits_it_was_given() {
    let server = TestServer::start_with(limited()).await;
    let (_connection, settings) = RawHttp2::connect(&server).await;
    assert_eq!(setting(&settings, SETTINGS_MAX_CONCURRENT_STREAMS), Some(3));
    assert_eq!(
        setting(&settings, SETTINGS_MAX_HEADER_LIST_SIZE),
        Some(4096)
    );
    assert_eq!(setting(&settings, SETTINGS_MAX_FRAME_SIZE), Some(32_768));
}

#[tokio::test]
async fn streams_over_the_concurrency_limit_are_refused() {
    let server = TestServer::start_with(limited()).await;
    let (mut connection, _) = RawHttp2::connect(&server).await;
    // Three calls wait for their request bodies; a fourth is one too many.
    for stream in [1, 3, 5, 7] {
        connection
            .open(stream, "/shoal.v1.CacheService/Get", &[], false)
            .await;
    }
    let refused = connection
        .until(|frame| frame.kind == RST_STREAM || frame.kind == GOAWAY)
        .await
        .expect("a refusal before the connection closes");
    assert_eq!(refused.kind, RST_STREAM, "{refused:?}");
    assert_eq!(refused.stream, 7);
    assert_eq!(refused.error_code(), REFUSED_STREAM);
    still_served(&server).await;
}

#[tokio::test]
async fn a_header_list_over_the_limit_ends_its_stream_only() {
    let server = TestServer::start_with(limited()).await;
    let (mut connection, _) = RawHttp2::connect(&server).await;
    let big = "x".repeat(8 * 1024);
    connection
        .open(1, "/shoal.v1.CacheService/Get", &[("x-big", &big)], true)
        .await;
    // h2 answers 431 and resets the stream; either ends the stream.
    let answer = connection
        .until(|frame| frame.stream == 1 && (frame.kind == HEADERS || frame.kind == RST_STREAM))
        .await
        .expect("the stream is answered before the connection closes");
    // `:status: 200` is entry 8 of HPACK's static table, sent as the one
    // byte 0x88; a 431 is sent as a literal, never as that byte.
    let refused = answer.kind == RST_STREAM
        || (answer.flags & END_STREAM != 0 && answer.payload.first() != Some(&0x88));
    assert!(refused, "a 431 or a reset: {answer:?}");
    // The same connection still takes calls.
    connection
        .open(3, "/grpc.health.v1.Health/Check", &[], false)
        .await;
    connection.send(DATA, END_STREAM, 3, &[0, 0, 0, 0, 0]).await;
    let served = connection
        .until(|frame| frame.stream == 3 && frame.kind == HEADERS)
        .await
        .expect("the next stream is served");
    assert_eq!(served.stream, 3);
    still_served(&server).await;
}

#[tokio::test]
async fn a_frame_over_the_frame_size_closes_the_connection() {
    let server = TestServer::start_with(limited()).await;
    let (mut connection, _) = RawHttp2::connect(&server).await;
    connection
        .open(1, "/shoal.v1.CacheService/Set", &[], false)
        .await;
    // 20 000 bytes: over h2's default of 16 KiB, within the 32 KiB set.
    let mut message = vec![0u8];
    message.extend_from_slice(&19_995u32.to_be_bytes());
    message.resize(20_000, 0);
    connection.send(DATA, 0, 1, &message).await;
    connection.send(PING, 0, 0, &[1; 8]).await;
    let answer = connection
        .until(|frame| frame.kind == GOAWAY || (frame.kind == PING && frame.flags & ACK != 0))
        .await
        .expect("an answer to the PING");
    assert_eq!(
        answer.kind, PING,
        "a frame within the limit is taken: {answer:?}"
    );
    // 40 000 bytes: over it.
    connection.send(DATA, 0, 3, &vec![0; 40_000]).await;
    let goaway = connection
        .until(|frame| frame.kind == GOAWAY)
        .await
        .expect("GOAWAY before the connection closes");
    assert_eq!(goaway.error_code(), FRAME_SIZE_ERROR);
    still_served(&server).await;
}

#[tokio::test]
async fn a_rapid_reset_flood_is_cut_off_and_others_are_served() {
    let server = TestServer::start_with(limited()).await;
    let (mut connection, _) = RawHttp2::connect(&server).await;
    // 10 000 calls opened and cancelled at once (CVE-2023-44487), written
    // in batches without waiting for the server.
    let mut flood = Vec::new();
    let mut cut_off = false;
    for batch in 0..100u32 {
        flood.clear();
        for at in 0..100u32 {
            let stream = 2 * (batch * 100 + at) + 1;
            let block = request_headers("/shoal.v1.CacheService/Get", &[]);
            push_frame(&mut flood, HEADERS, END_HEADERS, stream, &block);
            push_frame(&mut flood, RST_STREAM, 0, stream, &CANCEL.to_be_bytes());
        }
        if connection.tcp.write_all(&flood).await.is_err() {
            cut_off = true;
            break;
        }
    }
    if !cut_off {
        // The connection ends with GOAWAY, or is closed, before it
        // answers a PING sent after the flood.
        connection.send(PING, 0, 0, &[7; 8]).await;
        let reply = connection
            .until(|frame| frame.kind == GOAWAY || (frame.kind == PING && frame.flags & ACK != 0))
            .await;
        if let Some(frame) = reply
            && frame.kind == GOAWAY
        {
            cut_off = true;
        }
    }
    // With 20 resets allowed before a call is served, 10 000 are far over.
    assert!(cut_off, "the flooding connection is closed");
    still_served(&server).await;
    // Nothing of the flood is left open (the metrics scrape itself is not
    // a gRPC stream).
    let admin = server.admin_addr().expect("admin listener");
    let (_, metrics) = http_get(admin, "/metrics").await;
    let open: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("shoal_streams_open "))
        .and_then(|value| value.trim().parse().ok())
        .expect("shoal_streams_open");
    assert_eq!(open, 0.0, "streams left open after the flood");
}

/// Appends one HTTP/2 frame to `out`.
fn push_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}
