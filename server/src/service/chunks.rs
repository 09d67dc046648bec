//! Splitting a large result into stream messages.
//!
//! A whole-collection read walks a snapshot by position and sends it in
//! chunks bounded by an item count and by bytes, so that no message
//! outgrows the gRPC limit whatever the collection holds, and nothing is
//! copied beyond one chunk at a time. The snapshot is held in a lease that
//! ends at the call's deadline (see `lease`).

use std::pin::Pin;

use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::Status;

use super::lease::Lease;
use super::status::invalid;
use crate::observe::rpc_layer::STREAM_DEADLINE_MESSAGE;

/// Items per chunk when the request does not say.
pub const DEFAULT_CHUNK_ITEMS: usize = 1000;
/// Most items per chunk a request may ask for.
pub const MAX_CHUNK_ITEMS: usize = 10_000;
/// A chunk closes once its items reach this many bytes (a single item may
/// exceed it).
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

/// A server stream of response messages.
pub(crate) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The chunk size a request asks for: 0 means the default.
pub(crate) fn chunk_size(requested: u32) -> Result<usize, Status> {
    match requested as usize {
        0 => Ok(DEFAULT_CHUNK_ITEMS),
        size if size <= MAX_CHUNK_ITEMS => Ok(size),
        size => Err(invalid(
            "chunk_size",
            format!("chunk_size is {size}, over the limit of {MAX_CHUNK_ITEMS}"),
        )),
    }
}

/// Streams the items at `positions`, fetched one by one by `fetch` (which
/// also says each item's size in bytes), as messages built by `message`.
/// A result with no items still yields one empty message, so a caller can
/// tell "empty" from "stream broke". Items are fetched as the stream is
/// polled: for replies whose work is done as they are read (batches).
pub(crate) fn stream_positions<T, M, F, B>(
    positions: std::ops::Range<usize>,
    chunk_items: usize,
    mut fetch: F,
    mut message: B,
) -> ResponseStream<M>
where
    T: Send + 'static,
    M: Send + 'static,
    F: FnMut(usize) -> Option<(T, usize)> + Send + 'static,
    B: FnMut(Vec<T>) -> M + Send + 'static,
{
    let mut next = positions.start;
    let end = positions.end;
    let mut sent_any = false;
    let chunks = std::iter::from_fn(move || {
        if next >= end && sent_any {
            return None;
        }
        sent_any = true;
        Some(Ok(message(next_chunk(
            &mut next,
            end,
            chunk_items,
            &mut fetch,
        ))))
    });
    Box::pin(tokio_stream::iter(chunks))
}

/// Streams the items at `positions` of `source` (a snapshot, or a result
/// computed for this call) as [`stream_positions`] does, holding `source`
/// no longer than the reply needs it: it is freed once the last chunk is
/// built, and at `deadline` (in a [`Lease`]) if the reply is still
/// unfinished then, even when the client has stopped reading; the reply
/// then ends with `DEADLINE_EXCEEDED`. The first chunk is built at once,
/// so a reply of one chunk holds nothing while it waits to be sent.
pub(crate) fn stream_snapshot<S, T, M, F, B>(
    source: S,
    positions: std::ops::Range<usize>,
    chunk_items: usize,
    deadline: Option<Instant>,
    mut fetch: F,
    mut message: B,
) -> ResponseStream<M>
where
    S: Send + 'static,
    T: Send + 'static,
    M: Send + 'static,
    F: FnMut(&S, usize) -> Option<(T, usize)> + Send + 'static,
    B: FnMut(Vec<T>) -> M + Send + 'static,
{
    let mut next = positions.start;
    let end = positions.end;
    let first = next_chunk(&mut next, end, chunk_items, &mut |at| fetch(&source, at));
    if next >= end {
        drop(source);
        return Box::pin(tokio_stream::once(Ok(message(first))));
    }
    let lease = Lease::new(source, deadline);
    let mut first = Some(first);
    let mut finished = false;
    let chunks = std::iter::from_fn(move || {
        if finished {
            return None;
        }
        if let Some(items) = first.take() {
            return Some(Ok(message(items)));
        }
        let held = lease.get();
        let Some(source) = held.as_ref() else {
            finished = true;
            return Some(Err(Status::deadline_exceeded(STREAM_DEADLINE_MESSAGE)));
        };
        let items = next_chunk(&mut next, end, chunk_items, &mut |at| fetch(source, at));
        drop(held);
        if next >= end {
            finished = true;
            lease.release();
        }
        Some(Ok(message(items)))
    });
    Box::pin(tokio_stream::iter(chunks))
}

/// The items from `*next` on, up to `chunk_items` of them or
/// [`MAX_CHUNK_BYTES`], advancing `*next` past them.
fn next_chunk<T>(
    next: &mut usize,
    end: usize,
    chunk_items: usize,
    fetch: &mut impl FnMut(usize) -> Option<(T, usize)>,
) -> Vec<T> {
    let mut items = Vec::with_capacity(chunk_items.min(end.saturating_sub(*next)));
    let mut bytes = 0;
    while *next < end && items.len() < chunk_items && bytes < MAX_CHUNK_BYTES {
        if let Some((item, size)) = fetch(*next) {
            bytes += size;
            items.push(item);
        }
        *next += 1;
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn chunks_respect_item_and_byte_limits() {
        let sizes = [10usize, 20, MAX_CHUNK_BYTES, 5, 5];
        let stream = stream_positions(
            0..sizes.len(),
            2,
            move |at| Some((at, sizes[at])),
            |items| items,
        );
        let chunks: Vec<Vec<usize>> = stream.map(|chunk| chunk.expect("ok")).collect().await;
        assert_eq!(chunks, vec![vec![0, 1], vec![2], vec![3, 4]]);
    }

    #[tokio::test]
    async fn an_empty_result_is_one_empty_message() {
        let stream = stream_positions(0..0, 10, |_| Some(((), 0)), |items: Vec<()>| items.len());
        let chunks: Vec<usize> = stream.map(|chunk| chunk.expect("ok")).collect().await;
        assert_eq!(chunks, vec![0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_is_held_until_its_last_chunk_or_its_deadline() {
        let source = std::sync::Arc::new(vec![1usize; 5]);
        let fetch = |items: &std::sync::Arc<Vec<usize>>, at: usize| Some((items[at], 1));
        let deadline = Instant::now() + std::time::Duration::from_secs(10);

        // Read to the end: the snapshot goes with the last chunk.
        let mut stream = stream_snapshot(source.clone(), 0..5, 2, Some(deadline), fetch, |c| c);
        assert_eq!(std::sync::Arc::strong_count(&source), 2);
        let mut chunks = Vec::new();
        for _ in 0..3 {
            chunks.push(stream.next().await.expect("chunk").expect("ok"));
        }
        assert_eq!(chunks, vec![vec![1, 1], vec![1, 1], vec![1]]);
        assert_eq!(std::sync::Arc::strong_count(&source), 1);
        assert!(stream.next().await.is_none());

        // Read one chunk and stall: the snapshot goes at the deadline,
        // unpolled, and the reply then ends with DEADLINE_EXCEEDED.
        let mut stalled = stream_snapshot(source.clone(), 0..5, 2, Some(deadline), fetch, |c| c);
        stalled.next().await.expect("chunk").expect("ok");
        tokio::time::sleep_until(deadline + std::time::Duration::from_millis(1)).await;
        assert_eq!(std::sync::Arc::strong_count(&source), 1);
        let status = stalled.next().await.expect("an end").expect_err("cut off");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(stalled.next().await.is_none());

        // A reply of one chunk is built at once and holds nothing.
        let single = stream_snapshot(source.clone(), 0..2, 2, Some(deadline), fetch, |c| c);
        assert_eq!(std::sync::Arc::strong_count(&source), 1);
        drop(single);
    }

    #[test]
    fn chunk_sizes_are_bounded() {
        assert_eq!(chunk_size(0).expect("default"), DEFAULT_CHUNK_ITEMS);
        assert!(chunk_size(10_001).is_err());
    }
}
