#!/usr/bin/env bash
# Fails if the `unsafe` keyword appears in Rust code outside crates/ffi, or if a
# crate root outside crates/ffi lacks #![forbid(unsafe_code)]. Comments and the
# names of lints (unsafe_code, unsafe_op_in_unsafe_fn, ...) are not code.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
hits=$(git ls-files -co --exclude-standard -- '*.rs' \
  | grep -v -E '^crates/ffi/' \
  | xargs -r grep -n -E '\bunsafe\b' \
  | grep -v -E '^[^:]+:[0-9]+:\s*(//|\*|/\*)' \
  | grep -v -E '(unsafe_code|unsafe_op_in_unsafe_fn|undocumented_unsafe_blocks)' || true)
if [ -n "$hits" ]; then
  echo "unsafe outside crates/ffi:" >&2
  echo "$hits" >&2
  status=1
fi

for root in crates/*/src/lib.rs crates/*/src/main.rs fuzz/fuzz_targets/*.rs crates/*/fuzz/fuzz_targets/*.rs; do
  [ -f "$root" ] || continue
  case "$root" in crates/ffi/*) continue ;; esac
  if ! grep -q '^#!\[forbid(unsafe_code)\]' "$root"; then
    echo "missing #![forbid(unsafe_code)] in $root" >&2
    status=1
  fi
done

if [ "$status" -eq 0 ]; then
  echo "check-unsafe: no unsafe outside crates/ffi; every other crate root forbids it"
fi
exit "$status"
