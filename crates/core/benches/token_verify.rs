//! Token verification time: an unknown token id against a known id with a
//! wrong secret. The two must not differ beyond noise, or timing would tell an
//! attacker which token ids exist. A valid token is measured too, for scale.

use criterion::{Criterion, criterion_group, criterion_main};
use sensegate_core::auth::Role;
use sensegate_core::auth::store::TokenStore;
use sensegate_core::auth::token::{ID_HEX_LEN, PREFIX};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut store = TokenStore::in_memory(2_000, sensegate_core::MessageLimits::DEFAULT);
    let mut known = None;
    for i in 0..1_000 {
        let (_, secret) = store
            .create(&format!("t{i}"), Role::Reader, "*", i)
            .expect("in-memory store accepts 1,000 tokens");
        known = Some(secret);
    }
    let known = known.expect("created tokens");
    let text = known.expose();
    let secret_at = PREFIX.len() + ID_HEX_LEN + 1;
    // Same id, every secret digit changed.
    let wrong_secret: String = text[..secret_at]
        .chars()
        .chain(
            text[secret_at..]
                .chars()
                .map(|c| if c == '0' { '1' } else { '0' }),
        )
        .collect();
    // Same secret, an id no token has.
    let unknown_id = format!(
        "{PREFIX}{}{}",
        "f".repeat(ID_HEX_LEN),
        &text[PREFIX.len() + ID_HEX_LEN..]
    );
    assert!(store.verify(&wrong_secret).is_err());
    assert!(store.verify(&unknown_id).is_err());
    assert!(store.verify(text).is_ok());

    let mut group = c.benchmark_group("token_verify");
    group.bench_function("unknown_id", |b| {
        b.iter(|| store.verify(black_box(&unknown_id)));
    });
    group.bench_function("known_id_wrong_secret", |b| {
        b.iter(|| store.verify(black_box(&wrong_secret)));
    });
    group.bench_function("valid", |b| b.iter(|| store.verify(black_box(text))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
