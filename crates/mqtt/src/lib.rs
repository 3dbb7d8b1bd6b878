//! The MQTT packet codec, without I/O: bytes in, typed packets out, and
//! the replies a broker face sends, encoded. MQTT 3.1.1 and 5.0.
//!
//! Brokers written in C have shipped pre-authentication memory exhaustion
//! in exactly this layer (Mosquitto CVE-2017-7651, CVE-2023-0809), and the
//! Rust decoders available reserve memory for a declared length ahead of
//! the bytes. This one does not:
//! - [`frame`]: the fixed header. The remaining-length varint is at most
//!   four bytes, and the length is checked against the cap in force (a
//!   small one before CONNECT) as soon as the header is read, before a byte
//!   of the body is buffered. A packet is decoded only once all of it has
//!   arrived; the buffer grows only with bytes received.
//! - [`packet`]: the packets a client sends, each field and property
//!   bounded by the caps in [`limits`], and the ones a broker sends back.
//! - [`error`]: why bytes are not an acceptable packet, with the MQTT 5
//!   reason code a client is told (3.1.1 clients are disconnected).
//!
//! - [`pubsub`]: PUBLISH (QoS 0 and 1), PUBACK, SUBSCRIBE, UNSUBSCRIBE, and
//!   the broker's PUBLISH, PUBACK, SUBACK and UNSUBACK.
//!
//! - [`client`]: the publisher's side (MQTT 5): its CONNECT, and the few
//!   packets a broker may send a publisher, as bounded as a client's are.
//!
//! QoS 2 (PUBREC, PUBREL, PUBCOMP) and AUTH are refused, never misparsed.
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod frame;
pub mod limits;
pub mod packet;
mod props;
pub mod pubsub;
mod version;
mod wire;

pub use error::{DecodeError, ReasonCode};
pub use frame::Decoder;
pub use limits::Limits;
pub use packet::{ConnAck, Connect, Disconnect, Packet, ProtocolVersion};
pub use pubsub::{
    Filter, Granted, OutPublish, PubAck, Publish, Subscribe, Unsubscribe, filter_matches,
    is_topic_filter, is_topic_name,
};
