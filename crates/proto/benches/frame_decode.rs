//! Frame decode throughput for 64 B, 1 KiB and 64 KiB payloads, each beside a
//! plain copy of the same bytes as the baseline.
//!
//! Each iteration decodes every frame of a buffer holding `BATCH` frames (the
//! way a socket read hands the decoder many small frames at once); the
//! baseline copies the same number of bytes into a fresh buffer. Targets
//! (issue 2): 64 KiB frames within 1.5x the copy's time; 64 B frames at
//! 20 M frames/s or more on one core.

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sensegate_proto::frame::{self, FrameDecoder, FrameLimit};
use std::hint::black_box;

fn stream(payload: usize, frames: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(frames * (payload + 4));
    let body = vec![0x5A; payload];
    for _ in 0..frames {
        frame::encode(&body, FrameLimit::DEFAULT, &mut buf)
            .expect("payload within the default cap");
    }
    buf
}

fn bench(c: &mut Criterion) {
    for (name, payload, frames) in [
        ("64B", 64, 1024),
        ("1KiB", 1024, 256),
        ("64KiB", 65_536, 16),
    ] {
        let src = stream(payload, frames);
        let mut group = c.benchmark_group(format!("frame_decode/{name}"));
        group.throughput(Throughput::Elements(frames as u64));
        let decoder = FrameDecoder::default();
        group.bench_function("decode", |b| {
            b.iter_batched_ref(
                || src.clone(),
                |buf| {
                    let mut n = 0;
                    while let Some(f) = decoder.decode(buf).expect("the stream holds valid frames")
                    {
                        n += f.payload().len();
                        black_box(&f);
                    }
                    n
                },
                BatchSize::LargeInput,
            );
        });
        group.bench_function("copy_baseline", |b| {
            b.iter_batched_ref(
                || BytesMut::with_capacity(src.len()),
                |dst| {
                    dst.extend_from_slice(black_box(&src[..]));
                    dst.len()
                },
                BatchSize::LargeInput,
            );
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
