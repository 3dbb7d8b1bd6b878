//! The publisher's side of the MQTT codec (what a broker sends the MQTT
//! uplink) over any bytes, in uneven chunks, before and after a valid
//! CONNACK: it never panics, never accepts a packet over the cap, and
//! never holds more than the bytes it was given.
#![no_main]
#![forbid(unsafe_code)]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sensegate_mqtt::Limits;
use sensegate_mqtt::client::ClientDecoder;

/// A CONNACK: accepted, no properties.
const CONNACK: [u8; 5] = [0x20, 3, 0, 0, 0];

fn feed(prefix: &[u8], data: &[u8]) {
    let mut d = ClientDecoder::new(Limits::DEFAULT);
    let mut buf = BytesMut::new();
    let stream: Vec<u8> = prefix.iter().chain(data).copied().collect();
    for chunk in stream.chunks(11) {
        buf.extend_from_slice(chunk);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.len() <= stream.len());
        assert!(buf.len() <= Limits::DEFAULT.max_packet_bytes + 11);
    }
}

fuzz_target!(|data: &[u8]| {
    feed(&[], data);
    feed(&CONNACK, data);
});
