//! The native protocol front end: the TCP (and TLS) listener, the session
//! state machine and the thin connection task that drives it.
//!
//! - [`session`]: one session as a state machine without I/O: a frame's
//!   payload in, the service called, the replies out.
//! - [`wire`]: every error this front end sends (one enum, one code each),
//!   every envelope it builds, every domain-to-wire conversion.
//! - [`listener`]: accepts, admits through the registry (refusing past the
//!   connection caps with one `OVERLOADED` frame), runs the TLS handshake
//!   under the hello deadline, and spawns a connection task.
//! - [`transport`]: TCP or TLS behind one type, with a read that reserves
//!   buffer space only once bytes are ready, so an idle connection holds no
//!   read buffer; and the TLS handshake under the hello deadline. The MQTT
//!   front end uses both too.
//! - [`connection`]: the per-connection loop: read, decode frames, call the
//!   session, write replies and reading batches, enforce the timers.
//!
//! Idle plain-TCP connections wait on the daemon's parker
//! ([`crate::parking`]), shared with the MQTT front end.

pub mod connection;
pub mod listener;
pub mod session;
pub mod transport;
pub mod wire;
