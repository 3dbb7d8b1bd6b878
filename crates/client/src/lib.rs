//! Async client for the sensegate native protocol, used by the CLI, the
//! integration tests and the load tool. It treats the server's replies as
//! hostile input: every frame is decoded with the same caps the daemon uses.
#![forbid(unsafe_code)]

pub use sensegate_proto::PROTOCOL_VERSION;
