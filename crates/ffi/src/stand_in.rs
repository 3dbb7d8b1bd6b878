//! A pure-Rust driver behind the C ABI, for testing [`crate::driver`] where
//! C cannot run (Miri) and for playing a misbehaving driver deterministically.
//!
//! Its configuration is the mode, one of: `ok`, `null_handle`, `open_positive`,
//! `open_error`, `read_error`, `overclaim`, `garbage`, `ragged`, `overrun`.
//! Handles are heap boxes, so Miri reports a handle that is never closed.

use std::ffi::c_void;

use crate::abi::{ABI_VERSION, RECORD_SIZE, errno};
use crate::driver::Api;
use crate::record::{Record, encode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Overclaim,
    Garbage,
    Ragged,
    Overrun,
    ReadError,
}

struct Instance {
    mode: Mode,
    reads: u32,
}

/// The stand-in's entry points.
pub fn api() -> Api {
    Api {
        abi_version,
        open,
        read,
        close,
    }
}

/// Entry points that report another ABI version.
pub fn api_wrong_version() -> Api {
    Api {
        abi_version: abi_version_wrong,
        ..api()
    }
}

unsafe extern "C" fn abi_version() -> u32 {
    ABI_VERSION
}

unsafe extern "C" fn abi_version_wrong() -> u32 {
    ABI_VERSION + 1
}

unsafe extern "C" fn open(config: *const u8, len: usize, out: *mut *mut c_void) -> i32 {
    // SAFETY: the wrapper passes a pointer valid for `len` bytes.
    let config = unsafe { std::slice::from_raw_parts(config, len) };
    let mode = match config {
        b"ok" => Mode::Ok,
        b"overclaim" => Mode::Overclaim,
        b"garbage" => Mode::Garbage,
        b"ragged" => Mode::Ragged,
        b"overrun" => Mode::Overrun,
        b"read_error" => Mode::ReadError,
        b"null_handle" => return 0,
        b"open_positive" => return 7,
        _ => return errno::INVALID_CONFIG,
    };
    let handle = Box::into_raw(Box::new(Instance { mode, reads: 0 }));
    // SAFETY: the wrapper passes a valid place for one pointer.
    unsafe { out.write(handle.cast()) };
    0
}

unsafe extern "C" fn read(handle: *mut c_void, buf: *mut u8, capacity: usize) -> i32 {
    // SAFETY: the wrapper passes a handle from `open`, not yet closed, and
    // uses it from one thread at a time.
    let instance = unsafe { &mut *handle.cast::<Instance>() };
    instance.reads += 1;
    let good = encode(&[Record {
        channel: 1,
        quality: 0,
        timestamp_us: 1_700_000_000_000_000,
        value: f64::from(instance.reads),
    }]);
    let bytes: Vec<u8> = match instance.mode {
        Mode::Ok => good,
        Mode::Garbage => vec![0xFF; RECORD_SIZE],
        Mode::Ragged => good[..RECORD_SIZE - 1].to_vec(),
        Mode::Overclaim => {
            return i32::try_from(capacity + RECORD_SIZE).unwrap_or(i32::MAX);
        }
        Mode::ReadError => return errno::IO,
        Mode::Overrun => {
            // Writes 8 bytes past the capacity. The wrapper's buffer is
            // longer than the capacity it passes (the guard zone), so this is
            // a contract breach the wrapper must notice, not UB in the test.
            // SAFETY: the wrapper's buffer has at least 64 bytes after
            // `capacity`.
            unsafe { std::ptr::write_bytes(buf, 0x11, capacity + 8) };
            return 0;
        }
    };
    if bytes.len() > capacity {
        return errno::INTERNAL;
    }
    // SAFETY: `buf` is valid for `capacity` bytes and `bytes` fits.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len()) };
    i32::try_from(bytes.len()).unwrap_or(errno::INTERNAL)
}

unsafe extern "C" fn close(handle: *mut c_void) {
    // SAFETY: the wrapper passes a handle from `open`, once.
    drop(unsafe { Box::from_raw(handle.cast::<Instance>()) });
}
