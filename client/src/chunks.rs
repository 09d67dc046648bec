//! Whole-collection reads (HGetAll, LRange, SMembers, SInter, ...): the
//! server sends them as a stream of chunks so that no message outgrows the
//! gRPC limit; the client gathers the chunks into one `Vec`.

use std::future::Future;

use shoal_proto::v1::collection_service_client::CollectionServiceClient;
use tokio_stream::{Stream, StreamExt as _};
use tonic::codec::Streaming;

use crate::call::with_deadline;
use crate::client::Client;
use crate::error::Result;
use crate::node::NodeRef;

use crate::retry::Idempotency;
use crate::telemetry::TracedChannel;

impl Client {
    /// One streaming read of the collection service, gathered into a `Vec`
    /// with `items` taking each chunk apart.
    ///
    /// The whole read, every chunk, must finish within the handle's
    /// deadline, which is also sent as `grpc-timeout`. These reads have no
    /// side effects, so a stream broken by a transient failure is read
    /// again from the start (what was received is dropped, so nothing is
    /// counted twice).
    pub(crate) async fn read_chunks<Req, Chunk, T, I, F, Fut>(
        &self,
        node: NodeRef<'_>,
        message: Req,
        call: F,
        items: impl Fn(Chunk) -> I,
    ) -> Result<Vec<T>>
    where
        Req: Clone,
        I: IntoIterator<Item = T>,
        F: Fn(CollectionServiceClient<TracedChannel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Streaming<Chunk>>, tonic::Status>>,
    {
        self.run(Idempotency::Idempotent, |timeout| {
            let response = call(
                node.collection.clone(),
                with_deadline(message.clone(), timeout),
            );
            let items = &items;
            async move { drain(response.await?.into_inner(), items).await }
        })
        .await
    }
}

/// Every item of every chunk, in order, until the stream ends; the first
/// failed chunk fails the whole read.
pub(crate) async fn drain<Chunk, T, I>(
    mut chunks: impl Stream<Item = Result<Chunk, tonic::Status>> + Unpin,
    mut items: impl FnMut(Chunk) -> I,
) -> Result<Vec<T>>
where
    I: IntoIterator<Item = T>,
{
    let mut all = Vec::new();
    while let Some(chunk) = chunks.next().await {
        all.extend(items(chunk?));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use crate::error::Error;

    use super::*;

    #[tokio::test]
    async fn chunks_are_joined_in_order() {
        let chunks = tokio_stream::iter(vec![Ok(vec![1, 2]), Ok(vec![]), Ok(vec![3])]);
        assert_eq!(drain(chunks, |chunk| chunk).await.unwrap(), [1, 2, 3]);
        let nothing = tokio_stream::iter(Vec::<Result<Vec<u8>, tonic::Status>>::new());
        assert!(drain(nothing, |chunk| chunk).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_chunk_fails_the_read() {
        let chunks = tokio_stream::iter(vec![
            Ok(vec![1]),
            Err(tonic::Status::failed_precondition("WRONGTYPE not a set")),
            Ok(vec![2]),
        ]);
        let error = drain(chunks, |chunk| chunk).await.unwrap_err();
        assert!(matches!(error, Error::WrongType { .. }), "{error:?}");
    }
}
