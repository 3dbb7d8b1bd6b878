//! Local files: reading one that is input (config, token store) with a cap,
//! and writing private ones (secrets, keys, the token store) safely.
//!
//! Checking the size first and then reading is not enough: the file can grow
//! between the two, and a FIFO or a device such as `/dev/zero` reports size 0
//! and never ends. So the read itself stops one byte past the cap.
//!
//! A private file is written whole to a new file beside it (created with
//! `O_EXCL`, so never through a symlink someone planted there), synced,
//! renamed over the old one, and the directory is synced so the rename
//! survives a crash. Opening an existing private file never follows a
//! symlink at its place (`O_NOFOLLOW`).

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
    utf8(read_capped_bytes(path, max)?)
}

/// Reads `path`, refusing more than `max` bytes.
///
/// # Errors
/// [`CappedReadError`].
pub fn read_capped_bytes(path: &Path, max: u64) -> Result<Vec<u8>, CappedReadError> {
    let file = std::fs::File::open(path).map_err(CappedReadError::Io)?;
    read_open_capped(file, max)
}

/// Reads a private file the daemon wrote itself (the token store, the
/// bootstrap secret) as UTF-8, refusing more than `max` bytes and a symlink
/// at `path` (`O_NOFOLLOW`): a link planted there is never followed.
///
/// # Errors
/// [`CappedReadError`].
pub fn read_private(path: &Path, max: u64) -> Result<String, CappedReadError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(CappedReadError::Io)?;
    utf8(read_open_capped(file, max)?)
}

fn utf8(bytes: Vec<u8>) -> Result<String, CappedReadError> {
    String::from_utf8(bytes).map_err(|e| {
        CappedReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.utf8_error(),
        ))
    })
}

fn read_open_capped(file: std::fs::File, max: u64) -> Result<Vec<u8>, CappedReadError> {
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

/// Writes `data` to `path` with mode 0600, replacing it at once: a new file
/// beside it (its name is `path` with a suffix added, so never `path`
/// itself), synced, renamed over `path`, and the directory synced.
///
/// # Errors
/// The I/O error.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let fresh = aside(path);
    // Left by a crash between create and rename: ours, and stale.
    match std::fs::remove_file(&fresh) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = new_private_file(&fresh)?;
    let written = f.write_all(data).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| std::fs::rename(&fresh, path)) {
        let _ = std::fs::remove_file(&fresh);
        return Err(e);
    }
    sync_parent(path)
}

/// The name a replacement of `path` is written under before the rename:
/// `path` with `.sg-new` appended (longer than `path`, so never equal to it).
#[must_use]
pub fn aside(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sg-new");
    name.into()
}

/// Creates a new file only its owner can read or write; fails if anything
/// (a file, a symlink) is already at `path`.
///
/// # Errors
/// The I/O error.
pub fn new_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Syncs the directory holding `path`, so a rename into it is durable.
///
/// # Errors
/// The I/O error.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

/// Refuses a directory that others could write into or that belongs to
/// someone else: whoever can write the data directory can replace the token
/// store or the key.
///
/// # Errors
/// An error saying what is wrong.
pub fn check_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other("is not a directory"));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(std::io::Error::other(
            "is writable by group or others; chmod go-w it",
        ));
    }
    let me = effective_uid()?;
    if meta.uid() != me {
        return Err(std::io::Error::other(format!(
            "is owned by uid {}, not by the daemon's user (uid {me})",
            meta.uid()
        )));
    }
    Ok(())
}

/// This process's effective user id, from `/proc/self/status`.
fn effective_uid() -> std::io::Result<u32> {
    let status = read_capped(Path::new("/proc/self/status"), 64 << 10).map_err(|e| match e {
        CappedReadError::Io(e) => e,
        CappedReadError::TooLarge { .. } => std::io::Error::other("/proc/self/status is too large"),
    })?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| std::io::Error::other("no effective uid in /proc/self/status"))
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
    fn private_files_are_replaced_whole_and_never_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!aside(&path).exists());
        // A symlink planted where the new file goes is never written through.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("link")).unwrap();
        assert!(new_private_file(&dir.path().join("link")).is_err());
        // A replacement over a symlink replaces the link, not its target.
        std::os::unix::fs::symlink(&victim, aside(&path)).unwrap();
        write_private(&path, b"three").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        // Reading a private file never follows a symlink at its place.
        assert_eq!(read_private(&path, 64).unwrap(), "three");
        assert!(read_private(&dir.path().join("link"), 64).is_err());
        assert!(read_capped(&dir.path().join("link"), 64).is_ok());
        // The aside name is never the file itself, whatever its suffix.
        let tmp = dir.path().join("tokens.tmp");
        assert_ne!(aside(&tmp), tmp);
    }

    #[test]
    fn a_data_dir_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        check_private_dir(dir.path()).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
        let e = check_private_dir(dir.path()).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        check_private_dir(dir.path()).unwrap();
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
