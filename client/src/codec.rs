//! How typed values become the bytes the server stores, and back.
//!
//! The server only knows bytes. A [`Codec`] turns a value into bytes on the
//! way in and bytes into a value on the way out; [`Typed`](crate::Typed)
//! handles apply one to every call. [`Raw`] hands bytes and strings over
//! unchanged; [`Json`] (feature `json`, on by default) and [`MsgPack`]
//! (feature `msgpack`) work for any serde type.
//!
//! Which serde codec to pick: JSON is readable in `shoal get` and by any
//! tool; MessagePack is smaller (numbers and lengths are binary) and just as
//! schema-tolerant, since it keeps field names. Both let a struct
//! gain `#[serde(default)]` fields while older values are still in the
//! cache, which matters in a rolling deploy. Positional formats such as
//! postcard or bincode are smaller still but cannot skip or default a
//! field, so one schema change makes every cached value unreadable.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// Turns values of type `T` into stored bytes and back.
///
/// A codec is shared by every call of a handle, so it is `Send + Sync`;
/// most are unit structs. `decode` takes the buffer by value so a codec
/// that keeps bytes as they are ([`Raw`]) hands it over without copying.
///
/// A custom codec, say one storing `u64`s as 8 little-endian bytes:
///
/// ```
/// use bytes::Bytes;
/// use shoal_client::{Codec, CodecError};
///
/// struct LittleEndian;
///
/// impl Codec<u64> for LittleEndian {
///     fn name(&self) -> &'static str {
///         "u64-le"
///     }
///
///     fn encode(&self, value: &u64) -> Result<Bytes, CodecError> {
///         Ok(Bytes::copy_from_slice(&value.to_le_bytes()))
///     }
///
///     fn decode(&self, bytes: Bytes) -> Result<u64, CodecError> {
///         let array: [u8; 8] = bytes[..]
///             .try_into()
///             .map_err(|e| CodecError::decode(self.name(), e))?;
///         Ok(u64::from_le_bytes(array))
///     }
/// }
///
/// let bytes = LittleEndian.encode(&7).unwrap();
/// assert_eq!(LittleEndian.decode(bytes).unwrap(), 7);
/// assert!(LittleEndian.decode(Bytes::from_static(b"short")).is_err());
/// ```
pub trait Codec<T>: Send + Sync {
    /// A short name for error messages, such as `"json"`.
    fn name(&self) -> &'static str;

    /// The bytes to store for `value`.
    ///
    /// # Errors
    ///
    /// [`CodecError`] when the value cannot be represented, for example a
    /// map with non-string keys in JSON.
    fn encode(&self, value: &T) -> Result<Bytes, CodecError>;

    /// The value stored as `bytes`.
    ///
    /// # Errors
    ///
    /// [`CodecError`] when the bytes are not a valid encoding of `T`, for
    /// example a value written by another codec or an older schema.
    fn decode(&self, bytes: Bytes) -> Result<T, CodecError>;
}

/// A value could not be encoded or decoded.
///
/// Part of [`Error`](crate::Error) as [`Error::Codec`](crate::Error::Codec).
/// Cheap to clone, so one failure can be handed to several callers.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot {} a value with {codec}: {source}", if *.decoding { "decode" } else { "encode" })]
pub struct CodecError {
    codec: &'static str,
    decoding: bool,
    #[source]
    source: Arc<dyn StdError + Send + Sync>,
}

impl CodecError {
    /// Encoding with the codec named `codec` failed because of `source`.
    pub fn encode(codec: &'static str, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            codec,
            decoding: false,
            source: Arc::from(source.into()),
        }
    }

    /// Decoding with the codec named `codec` failed because of `source`.
    pub fn decode(codec: &'static str, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            codec,
            decoding: true,
            source: Arc::from(source.into()),
        }
    }

    /// The name of the codec (or compression algorithm) that failed.
    #[must_use]
    pub fn codec(&self) -> &'static str {
        self.codec
    }

    /// Whether reading failed (as opposed to writing).
    #[must_use]
    pub fn is_decode(&self) -> bool {
        self.decoding
    }
}

/// Bytes stored as they are: the default, and what the untyped
/// [`Client`](crate::Client) methods do.
///
/// Works for [`Bytes`], `Vec<u8>` and `String` (which must be UTF-8 when
/// read back).
///
/// ```
/// use bytes::Bytes;
/// use shoal_client::{Codec, Raw};
///
/// let bytes = Raw.encode(&"hello".to_owned()).unwrap();
/// assert_eq!(bytes, Bytes::from_static(b"hello"));
/// let text: String = Raw.decode(bytes).unwrap();
/// assert_eq!(text, "hello");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Raw;

impl Codec<Bytes> for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn encode(&self, value: &Bytes) -> Result<Bytes, CodecError> {
        Ok(value.clone())
    }

    fn decode(&self, bytes: Bytes) -> Result<Bytes, CodecError> {
        Ok(bytes)
    }
}

impl Codec<Vec<u8>> for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn encode(&self, value: &Vec<u8>) -> Result<Bytes, CodecError> {
        Ok(Bytes::copy_from_slice(value))
    }

    fn decode(&self, bytes: Bytes) -> Result<Vec<u8>, CodecError> {
        Ok(Vec::from(bytes))
    }
}

impl Codec<String> for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn encode(&self, value: &String) -> Result<Bytes, CodecError> {
        Ok(Bytes::copy_from_slice(value.as_bytes()))
    }

    fn decode(&self, bytes: Bytes) -> Result<String, CodecError> {
        String::from_utf8(Vec::from(bytes)).map_err(|e| CodecError::decode("raw", e))
    }
}

/// JSON through `serde_json`, for any serde type (feature `json`, on by
/// default).
///
/// Readable by people (`shoal get`) and by every language, at the price of
/// size: numbers are text, field names repeat in every value.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shoal_client::{Codec, Json};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct User {
///     name: String,
///     age: u32,
/// }
///
/// let bytes = Json.encode(&User { name: "ada".into(), age: 36 }).unwrap();
/// assert_eq!(&bytes[..], br#"{"name":"ada","age":36}"#);
/// let user: User = Json.decode(bytes).unwrap();
/// assert_eq!(user.age, 36);
/// ```
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

#[cfg(feature = "json")]
impl<T> Codec<T> for Json
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    fn name(&self) -> &'static str {
        "json"
    }

    fn encode(&self, value: &T) -> Result<Bytes, CodecError> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| CodecError::encode("json", e))
    }

    fn decode(&self, bytes: Bytes) -> Result<T, CodecError> {
        serde_json::from_slice(&bytes).map_err(|e| CodecError::decode("json", e))
    }
}

/// MessagePack through `rmp-serde`, for any serde type (feature
/// `msgpack`).
///
/// Structs are written as maps with their field names, so values stay
/// readable when a struct gains a `#[serde(default)]` field, and any
/// language with a MessagePack library can read them. Each `f32` takes
/// 5 bytes; for large numeric arrays, [`Raw`] bytes plus
/// [compression](crate::Compression) are smaller.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shoal_client::{Codec, Json, MsgPack};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Quote {
///     bid: f64,
///     ask: f64,
///     size: u32,
/// }
///
/// let quote = Quote { bid: 189.12, ask: 189.14, size: 300 };
/// let packed = MsgPack.encode(&quote).unwrap();
/// assert!(packed.len() < Json.encode(&quote).unwrap().len());
/// assert_eq!(MsgPack.decode(packed).ok(), Some(quote));
/// ```
#[cfg(feature = "msgpack")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsgPack;

#[cfg(feature = "msgpack")]
impl<T> Codec<T> for MsgPack
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    fn name(&self) -> &'static str {
        "msgpack"
    }

    fn encode(&self, value: &T) -> Result<Bytes, CodecError> {
        rmp_serde::to_vec_named(value)
            .map(Bytes::from)
            .map_err(|e| CodecError::encode("msgpack", e))
    }

    fn decode(&self, bytes: Bytes) -> Result<T, CodecError> {
        rmp_serde::from_slice(&bytes).map_err(|e| CodecError::decode("msgpack", e))
    }
}

/// A message as an error source, for failures that have no error type of
/// their own (a malformed frame, a missing feature).
#[derive(Debug)]
pub(crate) struct Message(pub(crate) String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Message {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_hands_bytes_over_without_copying() {
        let stored = Bytes::from(vec![1u8, 2, 3]);
        let decoded: Bytes = Raw.decode(stored.clone()).unwrap();
        assert_eq!(decoded.as_ptr(), stored.as_ptr());
        let vec: Vec<u8> = Raw.decode(stored).unwrap();
        assert_eq!(vec, [1, 2, 3]);
    }

    #[test]
    fn raw_strings_must_be_utf8() {
        let err = <Raw as Codec<String>>::decode(&Raw, Bytes::from_static(b"\xff")).unwrap_err();
        assert!(err.is_decode());
        assert_eq!(err.codec(), "raw");
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_errors_name_the_codec_and_the_direction() {
        let err = <Json as Codec<u32>>::decode(&Json, Bytes::from_static(b"\"x\"")).unwrap_err();
        assert!(err.is_decode());
        assert!(
            err.to_string()
                .starts_with("cannot decode a value with json: "),
            "{err}"
        );
        assert!(StdError::source(&err).is_some());

        let bad_key = std::collections::HashMap::from([((1, 2), 3)]);
        let err = Json.encode(&bad_key).unwrap_err();
        assert!(!err.is_decode());
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn msgpack_keeps_field_names_so_new_fields_can_default() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct V1 {
            name: String,
        }
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct V2 {
            name: String,
            #[serde(default)]
            age: u32,
        }
        let old = MsgPack.encode(&V1 { name: "ada".into() }).unwrap();
        let new: V2 = MsgPack.decode(old).unwrap();
        assert_eq!(
            new,
            V2 {
                name: "ada".into(),
                age: 0
            }
        );
    }
}
