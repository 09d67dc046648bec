//! Typed handles: a client that reads and writes values of one type
//! through a [`Codec`].

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;

use crate::client::Client;
use crate::codec::Codec;
use crate::error::Result;
use crate::memoise;
use crate::types::{ItemMeta, SetOptions, SetResult};

/// A handle that stores values of type `T`, encoded by codec `C`, in one
/// namespace.
///
/// Made by [`Client::typed`] (codecs that are unit structs, such as
/// [`Json`](crate::Json)) or [`Client::typed_with`] (a codec value). Like
/// the client it comes from, it is cheap to clone and shares the client's
/// connections, deadline, retries and [compression](crate::Compression):
/// the codec turns `T` into bytes, then compression applies to those.
///
/// ```no_run
/// use std::time::Duration;
///
/// use serde::{Deserialize, Serialize};
/// use shoal_client::{Client, Json};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Session {
///     user: String,
///     roles: Vec<String>,
/// }
///
/// # async fn demo() -> shoal_client::Result<()> {
/// let client = Client::connect("127.0.0.1:50051").await?;
/// let sessions = client.with_namespace("sessions").typed::<Session, Json>();
///
/// let session = Session { user: "ada".into(), roles: vec!["admin".into()] };
/// sessions.set_ttl("s:42", &session, Duration::from_secs(3600)).await?;
/// let back = sessions.get("s:42").await?.expect("just stored");
/// assert_eq!(back.user, "ada");
/// sessions.delete("s:42").await?;
/// # Ok(()) }
/// ```
pub struct Typed<T, C> {
    client: Client,
    codec: C,
    value: PhantomData<fn() -> T>,
}

impl Client {
    /// A handle storing `T` with codec `C` in this handle's namespace.
    ///
    /// Use [`with_namespace`](Self::with_namespace) first for another
    /// namespace: `client.with_namespace("users").typed::<User, Json>()`.
    #[must_use]
    pub fn typed<T, C>(&self) -> Typed<T, C>
    where
        C: Codec<T> + Default,
    {
        self.typed_with(C::default())
    }

    /// A handle storing `T` with the codec `codec`, for codecs that carry
    /// settings.
    #[must_use]
    pub fn typed_with<T, C>(&self, codec: C) -> Typed<T, C>
    where
        C: Codec<T>,
    {
        Typed {
            client: self.clone(),
            codec,
            value: PhantomData,
        }
    }
}

impl<T, C: Clone> Clone for Typed<T, C> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            codec: self.codec.clone(),
            value: PhantomData,
        }
    }
}

impl<T, C: fmt::Debug> fmt::Debug for Typed<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Typed")
            .field("type", &std::any::type_name::<T>())
            .field("codec", &self.codec)
            .field("client", &self.client)
            .finish()
    }
}

impl<T, C: Codec<T>> Typed<T, C> {
    /// The untyped client underneath, for everything else (TTLs, scans,
    /// collections).
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The codec.
    #[must_use]
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// The namespace this handle works in; empty means `default`.
    #[must_use]
    pub fn namespace(&self) -> &str {
        self.client.namespace()
    }

    /// The same handle, working in another namespace.
    #[must_use]
    pub fn with_namespace(&self, namespace: impl Into<String>) -> Self
    where
        C: Clone,
    {
        self.client
            .with_namespace(namespace)
            .typed_with(self.codec.clone())
    }

    /// The value of `key`, decoded, or `None` when it does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`](crate::Error::Codec) when the stored bytes are not a
    /// valid `T` for this codec; otherwise as [`Client::get`].
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<T>> {
        match self.client.get(key).await? {
            Some(bytes) => Ok(Some(self.codec.decode(bytes)?)),
            None => Ok(None),
        }
    }

    /// The value of `key`, decoded, with its metadata, or `None` when it
    /// does not exist.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn get_with_meta(&self, key: impl AsRef<[u8]>) -> Result<Option<(T, ItemMeta)>> {
        match self.client.get_with_meta(key).await? {
            Some((bytes, meta)) => Ok(Some((self.codec.decode(bytes)?, meta))),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key`; it never expires.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`](crate::Error::Codec) when the value cannot be
    /// encoded; otherwise as [`Client::set`].
    pub async fn set(&self, key: impl AsRef<[u8]>, value: &T) -> Result<SetResult> {
        self.set_with(key, value, SetOptions::default()).await
    }

    /// Stores `value` under `key` for `ttl`.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub async fn set_ttl(
        &self,
        key: impl AsRef<[u8]>,
        value: &T,
        ttl: Duration,
    ) -> Result<SetResult> {
        self.set_with(key, value, SetOptions::ttl(ttl)).await
    }

    /// Stores `value` under `key` with an expiry, a condition, or both.
    ///
    /// The result's `previous` (when asked for) holds the stored bytes;
    /// [`decode`](Self::decode) them for a `T`.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub async fn set_with(
        &self,
        key: impl AsRef<[u8]>,
        value: &T,
        options: SetOptions,
    ) -> Result<SetResult> {
        let bytes = self.codec.encode(value)?;
        self.client.set_with(key, bytes, options).await
    }

    /// Removes `key`; returns whether it existed.
    ///
    /// # Errors
    ///
    /// As [`Client::delete`].
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.client.delete([key]).await? > 0)
    }

    /// `value` as this handle stores it.
    ///
    /// # Errors
    ///
    /// As [`Codec::encode`].
    pub fn encode(&self, value: &T) -> Result<Bytes> {
        Ok(self.codec.encode(value)?)
    }

    /// The value stored as `bytes`, such as [`SetResult::previous`].
    ///
    /// # Errors
    ///
    /// As [`Codec::decode`].
    pub fn decode(&self, bytes: Bytes) -> Result<T> {
        Ok(self.codec.decode(bytes)?)
    }

    /// The value of `key`, or, when it is missing, the value `loader`
    /// produces, stored for `ttl`: memoisation of a slow call.
    ///
    /// - **One load per key at a time.** Concurrent calls for the same key
    ///   and namespace, on this client or any of its clones and handles,
    ///   share one load: the first call runs its loader, the others wait
    ///   and get its result; their own loaders never run.
    /// - **Failures are not cached.** When the loader fails, every caller
    ///   waiting for it gets [`Error::Loader`](crate::Error::Loader) (see
    ///   [`Error::loader_error`](crate::Error::loader_error) for the
    ///   loader's own error), and the next call runs a loader again. A
    ///   failed read or write of the cache reaches every waiter the same
    ///   way.
    /// - **A cancelled call hands over.** When the call running the loader
    ///   is dropped (a timeout, a client that went away), one of the
    ///   waiting calls runs its own loader instead; no one waits forever.
    /// - **Other processes.** The loaded value is stored only if the key
    ///   is still absent (as `SET NX`). When another process stored the
    ///   key while the loader ran, its value wins: this call returns the
    ///   stored value and drops the loaded one, so that every reader, in
    ///   every process, sees the same value. Processes do not coordinate
    ///   their loads: two processes that miss at the same moment may both
    ///   run a loader.
    ///
    /// Each request to the server has the handle's deadline; the loader
    /// has none. Wrap the call in [`tokio::time::timeout`] to bound it
    /// all; dropping it is safe, as above.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use serde::{Deserialize, Serialize};
    /// use shoal_client::{Client, Json};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Profile {
    ///     name: String,
    /// }
    ///
    /// async fn fetch_profile(id: u64) -> Result<Profile, std::io::Error> {
    ///     // A slow database or HTTP call.
    ///     Ok(Profile { name: format!("user {id}") })
    /// }
    ///
    /// # async fn demo(client: Client) -> shoal_client::Result<()> {
    /// let profiles = client.with_namespace("profiles").typed::<Profile, Json>();
    /// let profile = profiles
    ///     .get_or_insert_with("profile:7", Duration::from_secs(300), || fetch_profile(7))
    ///     .await?;
    /// println!("{}", profile.name);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Loader`](crate::Error::Loader) when the loader fails;
    /// [`Error::Codec`](crate::Error::Codec) when the stored value cannot be
    /// decoded or the loaded one encoded; otherwise as [`get`](Self::get)
    /// and [`set`](Self::set), including [`Error::InvalidArgument`](crate::Error::InvalidArgument)
    /// for a zero `ttl`.
    pub async fn get_or_insert_with<F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
        loader: F,
    ) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        memoise::get_or_insert_with(&self.client, &self.codec, key, ttl, loader).await
    }
}
