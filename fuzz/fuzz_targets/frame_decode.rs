//! Fuzz the frame decoder: any bytes, split at a fuzzer-chosen point, must
//! decode to the same frames or the same error as the whole stream, and never
//! panic.
#![no_main]
#![forbid(unsafe_code)]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sensegate_proto::{FrameDecoder, FrameError, FrameLimit};

fn run(chunks: &[&[u8]], decoder: FrameDecoder) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(f) = decoder.decode(&mut buf)? {
            assert!(!f.payload().is_empty());
            assert!(f.payload().len() <= decoder.limit().get() as usize);
            out.push(f.payload().to_vec());
        }
    }
    if let Some(f) = decoder.decode_eof(&mut buf)? {
        out.push(f.payload().to_vec());
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let decoder = FrameDecoder::new(FrameLimit::new(256).expect("valid cap"));
    let at = usize::from(split) % (rest.len() + 1);
    let whole = run(&[rest], decoder);
    let pieces = run(&[&rest[..at], &rest[at..]], decoder);
    assert_eq!(whole, pieces);
});
