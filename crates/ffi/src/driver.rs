//! The safe wrapper around one driver: loading, the ABI check, and
//! open / read / close with every return checked.
//!
//! [`Library`] holds the four entry points of a loaded driver. [`Driver`] owns
//! one open handle and closes it when dropped. Everything a driver returns is
//! checked before it is used: the ABI version before any other symbol is
//! looked up, null handles, negative codes, counts above the capacity, bytes
//! written past the capacity (a guard zone after the buffer), and the records
//! themselves ([`crate::record::parse`]).
//!
//! A driver can still corrupt memory in ways no check can see, which is why
//! drivers run only in the sandboxed driver host, never in the daemon.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

use thiserror::Error;

use crate::abi::{ABI_VERSION, CONFIG_MAX, READ_CAPACITY, errno};
use crate::record::{self, Record, RecordError};

/// `uint32_t sg_driver_abi_version(void)`
pub type AbiVersionFn = unsafe extern "C" fn() -> u32;
/// `int32_t sg_driver_open(const uint8_t *, size_t, struct sg_driver **)`
pub type OpenFn = unsafe extern "C" fn(*const u8, usize, *mut *mut c_void) -> i32;
/// `int32_t sg_driver_read(struct sg_driver *, uint8_t *, size_t)`
pub type ReadFn = unsafe extern "C" fn(*mut c_void, *mut u8, usize) -> i32;
/// `void sg_driver_close(struct sg_driver *)`
pub type CloseFn = unsafe extern "C" fn(*mut c_void);

/// Bytes after the read buffer that a driver must leave alone. A driver that
/// writes into them wrote past the capacity it was given.
const GUARD: usize = 64;
/// The guard zone's fill byte.
const GUARD_BYTE: u8 = 0xA5;

/// What can go wrong at the driver boundary. Every variant is the driver's
/// fault or the operator's, never a reason to trust the driver further.
#[derive(Debug, Error)]
pub enum DriverError {
    /// The shared object could not be loaded.
    #[error("cannot load the driver: {0}")]
    Load(String),
    /// A required symbol is missing.
    #[error("the driver does not export {0}")]
    MissingSymbol(&'static str),
    /// The driver speaks another ABI version.
    #[error("the driver reports ABI version {found}, this host speaks {ABI_VERSION}")]
    AbiMismatch {
        /// What the driver reported.
        found: u32,
    },
    /// The configuration is longer than the ABI allows.
    #[error("the driver configuration is {len} bytes, over the {CONFIG_MAX}-byte cap")]
    ConfigTooLong {
        /// Its length.
        len: usize,
    },
    /// `sg_driver_open` failed.
    #[error("the driver refused to open: {}", code_name(*.0))]
    Open(i32),
    /// `sg_driver_open` claimed success without a handle.
    #[error("the driver returned success from open without a handle")]
    NullHandle,
    /// `sg_driver_open` returned a positive value.
    #[error("the driver returned {0} from open, which the ABI does not define")]
    OpenReturn(i32),
    /// `sg_driver_read` failed.
    #[error("the driver failed to read: {}", code_name(*.0))]
    Read(i32),
    /// `sg_driver_read` claimed more bytes than it was given room for.
    #[error("the driver claimed {claimed} bytes from a {capacity}-byte buffer")]
    OverClaim {
        /// What it returned.
        claimed: usize,
        /// The capacity it was given.
        capacity: usize,
    },
    /// The driver wrote into the guard zone after the buffer.
    #[error("the driver wrote past the end of its {capacity}-byte buffer")]
    Overrun {
        /// The capacity it was given.
        capacity: usize,
    },
    /// The records are malformed.
    #[error("the driver wrote bad records: {0}")]
    Records(#[from] RecordError),
}

/// The name of an `SG_E_*` code, for messages.
#[must_use]
pub fn code_name(code: i32) -> String {
    match code {
        errno::INVALID_CONFIG => "SG_E_INVALID_CONFIG".to_owned(),
        errno::IO => "SG_E_IO".to_owned(),
        errno::NO_DEVICE => "SG_E_NO_DEVICE".to_owned(),
        errno::INTERNAL => "SG_E_INTERNAL".to_owned(),
        other => format!("unknown code {other}"),
    }
}

/// The entry points of one driver.
#[derive(Clone, Copy)]
pub struct Api {
    /// `sg_driver_abi_version`
    pub abi_version: AbiVersionFn,
    /// `sg_driver_open`
    pub open: OpenFn,
    /// `sg_driver_read`
    pub read: ReadFn,
    /// `sg_driver_close`
    pub close: CloseFn,
}

/// A loaded driver: its entry points, and the shared object that holds them
/// (kept loaded for as long as any [`Driver`] uses it).
pub struct Library {
    api: Api,
    #[cfg(not(miri))]
    _lib: Option<libloading::Library>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").finish_non_exhaustive()
    }
}

impl Library {
    /// Loads a driver from a shared object and checks its ABI version before
    /// looking up anything else.
    ///
    /// Loading runs the object's initialisers, which is arbitrary code, so
    /// this is reachable from outside the crate only through
    /// [`crate::sandbox::enter_and_load`].
    ///
    /// # Errors
    /// [`DriverError::Load`], [`DriverError::MissingSymbol`] or
    /// [`DriverError::AbiMismatch`].
    #[cfg(not(miri))]
    pub(crate) fn load(path: &std::path::Path) -> Result<Arc<Self>, DriverError> {
        // SAFETY: loading a shared object runs its initialisers, which may do
        // anything. That is the risk this crate exists to contain: outside
        // this crate's tests, `load` is reached only through
        // `sandbox::enter_and_load`, after the sandbox is in place, in the
        // disposable driver host process. The symbols' types are the ABI's.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| DriverError::Load(e.to_string()))?;
        // SAFETY: the ABI (sensegate_driver.h) declares this symbol with
        // exactly this signature; a driver that exports it with another
        // breaks the contract, which the host contains.
        let abi_version: AbiVersionFn =
            *unsafe { lib.get::<AbiVersionFn>(b"sg_driver_abi_version\0") }
                .map_err(|_| DriverError::MissingSymbol("sg_driver_abi_version"))?;
        // SAFETY: takes no arguments and returns an integer; see above for the
        // signature.
        let found = unsafe { abi_version() };
        if found != ABI_VERSION {
            return Err(DriverError::AbiMismatch { found });
        }
        // SAFETY: the ABI declares these symbols with exactly these
        // signatures, checked by version above.
        let open: OpenFn = *unsafe { lib.get::<OpenFn>(b"sg_driver_open\0") }
            .map_err(|_| DriverError::MissingSymbol("sg_driver_open"))?;
        // SAFETY: as above.
        let read: ReadFn = *unsafe { lib.get::<ReadFn>(b"sg_driver_read\0") }
            .map_err(|_| DriverError::MissingSymbol("sg_driver_read"))?;
        // SAFETY: as above.
        let close: CloseFn = *unsafe { lib.get::<CloseFn>(b"sg_driver_close\0") }
            .map_err(|_| DriverError::MissingSymbol("sg_driver_close"))?;
        Ok(Arc::new(Self {
            api: Api {
                abi_version,
                open,
                read,
                close,
            },
            _lib: Some(lib),
        }))
    }

    /// A driver whose entry points are linked in rather than loaded (the
    /// stand-in used under Miri, or a driver compiled into a test).
    ///
    /// # Safety
    /// The four functions must implement the driver ABI with the signatures
    /// it declares; they are called exactly as a loaded driver's would be.
    ///
    /// # Errors
    /// [`DriverError::AbiMismatch`] when `abi_version` reports another
    /// version.
    pub unsafe fn from_api(api: Api) -> Result<Arc<Self>, DriverError> {
        // SAFETY: the caller promises the ABI signatures.
        let found = unsafe { (api.abi_version)() };
        if found != ABI_VERSION {
            return Err(DriverError::AbiMismatch { found });
        }
        Ok(Arc::new(Self {
            api,
            #[cfg(not(miri))]
            _lib: None,
        }))
    }
}

/// One open driver instance. Closed when dropped.
pub struct Driver {
    library: Arc<Library>,
    handle: NonNull<c_void>,
    /// `READ_CAPACITY` bytes for the driver, then `GUARD` guard bytes.
    buf: Box<[u8]>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl Driver {
    /// Opens an instance with `config` (at most [`CONFIG_MAX`] bytes).
    ///
    /// # Errors
    /// [`DriverError::ConfigTooLong`], [`DriverError::Open`],
    /// [`DriverError::OpenReturn`] or [`DriverError::NullHandle`].
    pub fn open(library: &Arc<Library>, config: &[u8]) -> Result<Self, DriverError> {
        if config.len() > CONFIG_MAX {
            return Err(DriverError::ConfigTooLong { len: config.len() });
        }
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: `config` is valid for `config.len()` bytes for the whole
        // call, and `handle` is a valid place for the driver to store a
        // pointer. The ABI forbids the driver to keep `config` after return.
        let code = unsafe { (library.api.open)(config.as_ptr(), config.len(), &raw mut handle) };
        if code < 0 {
            return Err(DriverError::Open(code));
        }
        if code > 0 {
            // A handle may have been stored; it cannot be trusted, and
            // closing it could be worse than leaking it in a disposable host.
            return Err(DriverError::OpenReturn(code));
        }
        let handle = NonNull::new(handle).ok_or(DriverError::NullHandle)?;
        let mut buf = vec![0u8; READ_CAPACITY + GUARD].into_boxed_slice();
        buf[READ_CAPACITY..].fill(GUARD_BYTE);
        Ok(Self {
            library: Arc::clone(library),
            handle,
            buf,
        })
    }

    /// Reads what the driver has: zero or more records.
    ///
    /// # Errors
    /// [`DriverError::Read`], [`DriverError::OverClaim`],
    /// [`DriverError::Overrun`] or [`DriverError::Records`]. After an error
    /// the driver should be considered broken and dropped.
    pub fn read(&mut self) -> Result<Vec<Record>, DriverError> {
        let n = self.read_raw()?;
        Ok(record::parse(&self.buf[..n])?)
    }

    /// Reads and checks the byte count and guard zone, but leaves the bytes
    /// in the buffer; returns how many there are.
    fn read_raw(&mut self) -> Result<usize, DriverError> {
        let capacity = READ_CAPACITY;
        // SAFETY: `handle` came from a successful `open` of this library and
        // has not been closed (only `drop` closes it). `buf` is valid for
        // writes of `capacity` bytes (it is longer: the guard follows), and
        // is initialised, so whatever the driver leaves is still valid `u8`s.
        let code = unsafe {
            (self.library.api.read)(self.handle.as_ptr(), self.buf.as_mut_ptr(), capacity)
        };
        if self.buf[capacity..].iter().any(|&b| b != GUARD_BYTE) {
            return Err(DriverError::Overrun { capacity });
        }
        let n = usize::try_from(code).map_err(|_| DriverError::Read(code))?;
        if n > capacity {
            return Err(DriverError::OverClaim {
                claimed: n,
                capacity,
            });
        }
        Ok(n)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: `handle` came from a successful `open` and is closed
        // exactly once, here; `self` is never used again.
        unsafe { (self.library.api.close)(self.handle.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stand_in;

    type Expect = fn(&DriverError) -> bool;

    fn stand_in_library() -> Arc<Library> {
        // SAFETY: the stand-in implements the ABI with its signatures.
        unsafe { Library::from_api(stand_in::api()) }.unwrap()
    }

    #[test]
    fn a_good_driver_reads_records_and_is_closed_on_drop() {
        let lib = stand_in_library();
        let mut d = Driver::open(&lib, b"ok").unwrap();
        let first = d.read().unwrap();
        let second = d.read().unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].channel, 1);
        assert!((second[0].value - 2.0).abs() < f64::EPSILON);
        // Two instances at once keep separate state.
        let mut other = Driver::open(&lib, b"ok").unwrap();
        assert!((other.read().unwrap()[0].value - 1.0).abs() < f64::EPSILON);
        // Dropping closes; under Miri a missed close is a reported leak.
        drop(d);
        drop(other);
    }

    #[test]
    fn a_wrong_abi_version_is_refused_before_anything_else() {
        // SAFETY: as above.
        let err = unsafe { Library::from_api(stand_in::api_wrong_version()) }.unwrap_err();
        assert!(matches!(err, DriverError::AbiMismatch { found } if found == ABI_VERSION + 1));
    }

    #[test]
    fn every_bad_open_is_a_typed_error() {
        let lib = stand_in_library();
        assert!(matches!(
            Driver::open(&lib, b"nonsense"),
            Err(DriverError::Open(errno::INVALID_CONFIG))
        ));
        assert!(matches!(
            Driver::open(&lib, b"null_handle"),
            Err(DriverError::NullHandle)
        ));
        assert!(matches!(
            Driver::open(&lib, b"open_positive"),
            Err(DriverError::OpenReturn(7))
        ));
        let long = vec![b'a'; CONFIG_MAX + 1];
        assert!(matches!(
            Driver::open(&lib, &long),
            Err(DriverError::ConfigTooLong { len }) if len == CONFIG_MAX + 1
        ));
    }

    #[test]
    fn every_bad_read_is_a_typed_error() {
        let lib = stand_in_library();
        let cases: [(&[u8], Expect); 5] = [
            (b"overclaim", |e| {
                matches!(e, DriverError::OverClaim { claimed, capacity }
                    if *claimed == READ_CAPACITY + 24 && *capacity == READ_CAPACITY)
            }),
            (b"garbage", |e| {
                matches!(e, DriverError::Records(RecordError::Channel { .. }))
            }),
            (b"ragged", |e| {
                matches!(e, DriverError::Records(RecordError::Ragged { len: 23 }))
            }),
            (b"read_error", |e| matches!(e, DriverError::Read(errno::IO))),
            (b"overrun", |e| matches!(e, DriverError::Overrun { .. })),
        ];
        for (config, expected) in cases {
            let mut d = Driver::open(&lib, config).unwrap();
            let err = d.read().unwrap_err();
            assert!(expected(&err), "{}: {err}", String::from_utf8_lossy(config));
            // The message names the fault and carries no driver bytes.
            assert!(!err.to_string().is_empty());
        }
    }

    #[cfg(not(miri))]
    mod c_drivers {
        use super::*;
        use std::path::Path;

        const SIM: &str = concat!(env!("OUT_DIR"), "/libsg_sim.so");
        const FAULTY: &str = concat!(env!("OUT_DIR"), "/libsg_faulty.so");

        #[test]
        fn the_sim_driver_loads_and_fills_the_buffer_at_full_speed() {
            let lib = Library::load(Path::new(SIM)).unwrap();
            let mut d = Driver::open(&lib, b"channels=3;rate_hz=0;seed=1").unwrap();
            let records = d.read().unwrap();
            assert_eq!(records.len(), READ_CAPACITY / 24 / 3 * 3);
            assert!(records.iter().all(|r| r.channel < 3 && r.timestamp_us > 0));
            // Channel c oscillates around 20 + c within 10 + c (plus noise).
            for r in &records {
                let c = f64::from(r.channel);
                assert!((r.value - (20.0 + c)).abs() <= 10.0 + c + 0.2, "{r:?}");
            }
        }

        #[test]
        fn the_sim_driver_paces_itself() {
            let lib = Library::load(Path::new(SIM)).unwrap();
            let mut d = Driver::open(&lib, b"channels=2;rate_hz=50").unwrap();
            let start = std::time::Instant::now();
            let mut n = 0;
            while start.elapsed() < std::time::Duration::from_millis(300) {
                n += d.read().unwrap().len();
            }
            // 50 Hz x 2 channels x 0.3 s = 30, give or take a tick.
            assert!((26..=36).contains(&n), "{n} records");
        }

        #[test]
        fn bad_configurations_are_refused() {
            let lib = Library::load(Path::new(SIM)).unwrap();
            for config in [&b"channels=0"[..], b"channels=999", b"rate_hz=x"] {
                assert!(matches!(
                    Driver::open(&lib, config),
                    Err(DriverError::Open(errno::INVALID_CONFIG))
                ));
            }
        }

        #[test]
        fn the_faulty_driver_is_caught_in_its_memory_safe_modes() {
            let lib = Library::load(Path::new(FAULTY)).unwrap();
            assert!(matches!(
                Driver::open(&lib, b"mode=null_open"),
                Err(DriverError::NullHandle)
            ));
            for (mode, want) in [
                ("overclaim", "claimed"),
                ("garbage", "bad records"),
                ("ragged", "whole number"),
                ("error", "SG_E_IO"),
                ("overrun", "past the end"),
            ] {
                let mut d = Driver::open(&lib, format!("mode={mode};after=1").as_bytes()).unwrap();
                assert_eq!(d.read().unwrap().len(), 1, "{mode}: the good read");
                let err = d.read().unwrap_err().to_string();
                assert!(err.contains(want), "{mode}: {err}");
            }
        }

        #[test]
        fn a_missing_or_foreign_object_is_a_load_error() {
            assert!(matches!(
                Library::load(Path::new("/nonexistent/libsg_none.so")),
                Err(DriverError::Load(_))
            ));
            // libm is a real shared object without the driver symbols.
            let err = Library::load(Path::new("libm.so.6")).unwrap_err();
            assert!(
                matches!(err, DriverError::MissingSymbol("sg_driver_abi_version")),
                "{err}"
            );
        }
    }
}
