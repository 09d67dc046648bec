//! Get a value, or load it once and store it: `get_or_insert_with`.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::call::to_bytes;
use crate::client::Client;
use crate::codec::{Codec, Raw};
use crate::error::{Error, Result};
use crate::single_flight::Turn;
use crate::types::{Condition, SetOptions};

impl Client {
    /// The value of `key`, or, when it is missing, the bytes `loader`
    /// produces, stored for `ttl`; concurrent calls for one key run one
    /// loader.
    ///
    /// The untyped form of [`Typed::get_or_insert_with`](crate::Typed::get_or_insert_with),
    /// which says how concurrent calls, failures, cancellation and other
    /// processes are handled.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// # async fn demo(client: shoal_client::Client) -> shoal_client::Result<()> {
    /// let page = client
    ///     .get_or_insert_with("page:/about", Duration::from_secs(60), || async {
    ///         // Render the page: slow.
    ///         Ok::<_, std::io::Error>("<h1>About</h1>")
    ///     })
    ///     .await?;
    /// assert_eq!(&page[..], b"<h1>About</h1>");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Typed::get_or_insert_with`](crate::Typed::get_or_insert_with).
    pub async fn get_or_insert_with<V, F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
        loader: F,
    ) -> Result<Bytes>
    where
        V: Into<Bytes>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let loader = || async move { loader().await.map(Into::into) };
        get_or_insert_with(self, &Raw, key, ttl, loader).await
    }
}

/// What the leader of a flight ends with.
enum Loaded<T> {
    /// The key had a value (from the start, or stored by someone else
    /// while the loader ran): its bytes, which each caller decodes.
    Found(Bytes),
    /// This caller's loader produced the value and stored it.
    Stored(T, Bytes),
}

/// [`Typed::get_or_insert_with`](crate::Typed::get_or_insert_with) for any
/// codec.
pub(crate) async fn get_or_insert_with<T, C, F, Fut, E>(
    client: &Client,
    codec: &C,
    key: impl AsRef<[u8]>,
    ttl: Duration,
    loader: F,
) -> Result<T>
where
    C: Codec<T>,
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    let key = to_bytes(key);
    let namespace: Arc<str> = if client.namespace.is_empty() {
        Arc::from("default")
    } else {
        Arc::clone(&client.namespace)
    };
    // Wait for other callers' loads until one ends with an outcome, or
    // lead a load: at first, or when a leader gave up.
    let leader = loop {
        match client.flights.join(&namespace, &key) {
            Turn::Lead(leader) => break leader,
            Turn::Wait(waiter) => match waiter.outcome().await {
                Some(Ok(bytes)) => return Ok(codec.decode(bytes)?),
                Some(Err(error)) => return Err(error.duplicate()),
                None => {}
            },
        }
    };
    match load(client, codec, &key, ttl, loader).await {
        Ok(Loaded::Found(bytes)) => {
            leader.finish(Ok(bytes.clone()));
            Ok(codec.decode(bytes)?)
        }
        Ok(Loaded::Stored(value, bytes)) => {
            leader.finish(Ok(bytes));
            Ok(value)
        }
        Err(error) => {
            leader.finish(Err(Arc::new(error.duplicate())));
            Err(error)
        }
    }
}

/// The leader's part: read, and on a miss load and store if still absent.
async fn load<T, C, F, Fut, E>(
    client: &Client,
    codec: &C,
    key: &Bytes,
    ttl: Duration,
    loader: F,
) -> Result<Loaded<T>>
where
    C: Codec<T>,
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    // Read inside the flight, so a load that finished just before this
    // caller joined is found rather than repeated.
    if let Some(bytes) = client.get(key).await? {
        return Ok(Loaded::Found(bytes));
    }
    let value = loader()
        .await
        .map_err(|error| Error::Loader(Arc::from(error.into())))?;
    let bytes = codec.encode(&value)?;
    let options = SetOptions::ttl(ttl)
        .with_condition(Condition::IfAbsent)
        .with_previous();
    let result = client.set_with(key, bytes.clone(), options).await?;
    match result.previous {
        // Another writer got there first (or an earlier attempt of this
        // very write did, and its reply was lost): the stored value wins.
        Some(stored) if !result.stored => Ok(Loaded::Found(stored)),
        _ => Ok(Loaded::Stored(value, bytes)),
    }
}
