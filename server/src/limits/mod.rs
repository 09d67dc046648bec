//! What one client, hostile or unlucky, may make the server hold, and the
//! counts those limits read.
//!
//! - [`inflight`]: bytes of request messages in flight, per connection
//!   and per server, reserved before they are buffered.
//! - [`connections`]: the accept loop, the connection cap and the deadlines
//!   for the HTTP/2 preface and for idle connections.
//! - [`tcp_keepalive`]: finding dead peers with the kernel's keepalive
//!   probes.
//! - [`traffic`]: connections and streams open now, and the connections the
//!   limits closed.
//!
//! The other bounds are where the thing they bound lives: message sizes and
//! batch lengths in `service`, memory in the engine's budget, Watch
//! subscribers in `change_feed`.

pub mod byte_budget;
pub mod connections;
pub mod inflight;
pub mod tcp_keepalive;
pub mod traffic;
