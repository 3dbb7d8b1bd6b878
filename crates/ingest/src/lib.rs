//! HTTP ingest formats, without I/O: bytes in, typed points out, every
//! length capped.
//!
//! - [`line`]: the InfluxDB line protocol (what Telegraf, the InfluxDB
//!   client libraries, Node-RED and Home Assistant write), line by line:
//!   [`line::Splitter`] cuts a body arriving in chunks into lines without
//!   holding more than one line's cap, [`line::parse`] reads one line into
//!   a [`line::Point`], and [`line::Point::readings`] names its readings by
//!   the default rule (`<measurement>/<tag values in key order>/<field>`);
//!   [`naming`] names them by configured templates instead.
//! - [`senml`]: SenML (RFC 8428) JSON packs, with base name, time, unit
//!   and value resolved into readings.
//!
//! Nothing here knows about HTTP, tokens or the store: the daemon's HTTP
//! front end feeds the body through, then pushes the readings through the
//! service like any other push.
#![forbid(unsafe_code)]

pub mod line;
pub mod naming;
pub mod senml;
