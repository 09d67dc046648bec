//! The codec of every shoal service: prost messages, encoded into a buffer
//! sized once for the whole message.
//!
//! tonic's prost codec lets the encode buffer grow as the message is
//! written, from 8 KiB by doubling, so a 200 KiB batch reply is copied again
//! at each step. Reserving the message's encoded length first writes it once.
//! Decoding is prost's own: tonic already reserves a message's length from
//! its frame header before reading it.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::ProstDecoder;

/// A [`Codec`] for `application/grpc+proto` that presizes its encode buffer.
#[derive(Debug, Clone)]
pub struct PresizedCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for PresizedCodec<T, U> {
    fn default() -> Self {
        Self {
            _messages: PhantomData,
        }
    }
}

impl<T, U> Codec for PresizedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = PresizedEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        PresizedEncoder {
            _message: PhantomData,
        }
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::default())
    }
}

/// The encoder of [`PresizedCodec`].
#[derive(Debug, Clone)]
pub struct PresizedEncoder<T> {
    _message: PhantomData<T>,
}

impl<T: Message> Encoder for PresizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|error| Status::internal(format!("cannot encode a message: {error}")))
    }
}
