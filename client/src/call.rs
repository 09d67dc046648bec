//! What every call shares: its deadline and the copies of the keys it
//! sends.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};

/// `future`, failing with [`Error::DeadlineExceeded`] if it takes longer
/// than `limit`.
pub(crate) async fn within<T>(
    limit: Option<Duration>,
    future: impl Future<Output = Result<T>>,
) -> Result<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future)
            .await
            .unwrap_or(Err(Error::DeadlineExceeded)),
        None => future.await,
    }
}

/// A request carrying `timeout` as its `grpc-timeout`.
pub(crate) fn with_deadline<T>(message: T, timeout: Option<Duration>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

/// A copy of a key, field or member, as the messages carry it.
pub(crate) fn to_bytes(key: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(key.as_ref())
}
