//! The codec of every shoal service: prost messages, encoded into a buffer
//! sized once for the whole message.
//!
//! tonic's prost codec lets the encode buffer grow as the message is
//! written, from 8 KiB by doubling, so a 200 KiB batch reply is copied again
//! at each step. Reserving the message's encoded length first writes it once.
//! Decoding is prost's own (tonic already reserves a message's length from
//! its frame header before reading it), except for what a malformed message
//! answers: tonic's prost codec calls it INTERNAL, which reads as the
//! server's fault and fires server-error alerts whenever any client sends
//! garbage; here it is INVALID_ARGUMENT, the sender's fault. (A client given
//! a malformed reply, which only a peer that is not shoal sends, sees the
//! same code.)

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

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
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        PresizedEncoder {
            _message: PhantomData,
        }
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder {
            _message: PhantomData,
        }
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

/// The decoder of [`PresizedCodec`]: prost's, with a malformed message
/// answered as INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct CheckedDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|error| Status::invalid_argument(format!("malformed message: {error}")))
    }
}
