//! Fuzz envelope decoding and validation: never panic, and whatever decodes
//! re-encodes to something that decodes to the same envelope.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use sensegate_proto::{MessageLimits, decode_envelope};

fuzz_target!(|data: &[u8]| {
    let limits = MessageLimits::DEFAULT;
    if let Ok(envelope) = decode_envelope(data, &limits) {
        let again = prost::Message::encode_to_vec(&envelope);
        let back = decode_envelope(&again, &limits).expect("a valid envelope re-decodes");
        assert_eq!(back, envelope);
    }
});
