//! Splitting a large result into stream messages.
//!
//! A whole-collection read walks a snapshot by position and sends it in
//! chunks bounded by an item count and by bytes, so that no message
//! outgrows the gRPC limit whatever the collection holds, and nothing is
//! copied beyond one chunk at a time.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::Status;

use super::status::invalid;

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

/// Streams the items at `positions` of a snapshot, fetched one by one by
/// `fetch` (which also says each item's size in bytes), as messages built by
/// `message`. A snapshot with no items still yields one empty message, so a
/// caller can tell "empty" from "stream broke".
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
        let mut items = Vec::with_capacity(chunk_items.min(end - next));
        let mut bytes = 0;
        while next < end && items.len() < chunk_items && bytes < MAX_CHUNK_BYTES {
            if let Some((item, size)) = fetch(next) {
                bytes += size;
                items.push(item);
            }
            next += 1;
        }
        Some(Ok(message(items)))
    });
    Box::pin(tokio_stream::iter(chunks))
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

    #[test]
    fn chunk_sizes_are_bounded() {
        assert_eq!(chunk_size(0).expect("default"), DEFAULT_CHUNK_ITEMS);
        assert!(chunk_size(10_001).is_err());
    }
}
