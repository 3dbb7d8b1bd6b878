//! Reading a local file that is input (config, token store) with a cap.
//!
//! Checking the size first and then reading is not enough: the file can grow
//! between the two, and a FIFO or a device such as `/dev/zero` reports size 0
//! and never ends. So the read itself stops one byte past the cap.

use std::io::Read;
use std::path::Path;

/// Why a capped read gave no text.
#[derive(Debug)]
pub enum CappedReadError {
    /// Opening or reading failed, or the text is not UTF-8.
    Io(std::io::Error),
    /// The file holds more than the cap; `size` is what was seen (the
    /// reported length, or the cap plus one when the read ran past it).
    TooLarge {
        /// Bytes seen.
        size: u64,
    },
}

/// Reads `path` as UTF-8, refusing more than `max` bytes.
///
/// # Errors
/// [`CappedReadError`].
pub fn read_capped(path: &Path, max: u64) -> Result<String, CappedReadError> {
    let bytes = read_capped_bytes(path, max)?;
    String::from_utf8(bytes).map_err(|e| {
        CappedReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.utf8_error(),
        ))
    })
}

/// Reads `path`, refusing more than `max` bytes.
///
/// # Errors
/// [`CappedReadError`].
pub fn read_capped_bytes(path: &Path, max: u64) -> Result<Vec<u8>, CappedReadError> {
    let file = std::fs::File::open(path).map_err(CappedReadError::Io)?;
    let reported = file.metadata().map_err(CappedReadError::Io)?.len();
    if reported > max {
        return Err(CappedReadError::TooLarge { size: reported });
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(CappedReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(CappedReadError::TooLarge { size: max + 1 });
    }
    Ok(bytes)
}

/// Writes `data` to `path` (replacing it) with mode 0600 and syncs it.
///
/// # Errors
/// The I/O error.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = crate::auth::store::private_file(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Makes `path` a private file (mode 0600) without touching its contents:
/// created empty if missing, its mode tightened if present. For files
/// another library writes (the history database and its WAL).
///
/// # Errors
/// The I/O error.
pub fn ensure_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// What is wrong with a file's permissions, if anything: a secret (token
/// store, key) must not be readable by group or others; a config file must
/// not be readable or writable by others.
#[must_use]
pub fn permission_problem(path: &Path, secret: bool) -> Option<&'static str> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if secret && mode & 0o077 != 0 {
            return Some("is readable by other users; chmod 600 it");
        }
        if !secret && mode & 0o006 != 0 {
            return Some("is readable or writable by other users; chmod o-rw it");
        }
    }
    let _ = (path, secret);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_stops_at_the_cap() {
        // /dev/zero reports size 0 and never ends.
        let zero = Path::new("/dev/zero");
        if zero.exists() {
            assert!(matches!(
                read_capped(zero, 4096),
                Err(CappedReadError::TooLarge { size: 4097 })
            ));
        }
    }

    #[cfg(unix)]
    #[test]
    fn open_permissions_are_reported() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "x").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(permission_problem(&p, true).is_some());
        assert!(permission_problem(&p, false).is_some());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(permission_problem(&p, true).is_some());
        assert!(permission_problem(&p, false).is_none());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(permission_problem(&p, true).is_none());
    }

    #[test]
    fn a_file_within_the_cap_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "abc").unwrap();
        assert_eq!(read_capped(&path, 3).unwrap(), "abc");
        assert!(matches!(
            read_capped(&path, 2),
            Err(CappedReadError::TooLarge { size: 3 })
        ));
    }
}
