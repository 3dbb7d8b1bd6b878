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
    let file = std::fs::File::open(path).map_err(CappedReadError::Io)?;
    let reported = file.metadata().map_err(CappedReadError::Io)?.len();
    if reported > max {
        return Err(CappedReadError::TooLarge { size: reported });
    }
    let mut text = String::new();
    file.take(max + 1)
        .read_to_string(&mut text)
        .map_err(CappedReadError::Io)?;
    if text.len() as u64 > max {
        return Err(CappedReadError::TooLarge { size: max + 1 });
    }
    Ok(text)
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
