#!/usr/bin/env bash
# Builds the reference C drivers with AddressSanitizer and
# UndefinedBehaviorSanitizer and drives them through their ABI
# (crates/ffi/drivers/check.c). Any sanitizer report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
src=crates/ffi/drivers
out=target/driver-check
mkdir -p "$out"
CC=${CC:-cc}
flags=(-std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
       -fno-sanitize-recover=all -Wall -Wextra -Werror -Icrates/ffi/include)
for driver in sim faulty; do
  "$CC" "${flags[@]}" -fPIC -shared "$src/$driver.c" -o "$out/libsg_$driver.so" -lm
done
"$CC" "${flags[@]}" "$src/check.c" -o "$out/check" -ldl
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
  "$out/check" "$out/libsg_sim.so" "$out/libsg_faulty.so"
