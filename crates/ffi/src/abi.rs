//! Constants of the driver ABI, mirrored from `include/sensegate_driver.h`.
//! A test reads the header and checks that both agree.

/// The ABI version a driver must report from `sg_driver_abi_version`.
pub const ABI_VERSION: u32 = 1;
/// Bytes the host offers per read.
pub const READ_CAPACITY: usize = 65_536;
/// Longest configuration passed to `sg_driver_open`.
pub const CONFIG_MAX: usize = 4096;
/// Channels per driver instance.
pub const CHANNELS_MAX: u32 = 256;
/// Size of one record.
pub const RECORD_SIZE: usize = 24;

/// Negative return codes a driver may give.
pub mod errno {
    /// The configuration was rejected.
    pub const INVALID_CONFIG: i32 = -1;
    /// The device failed.
    pub const IO: i32 = -2;
    /// The device is absent.
    pub const NO_DEVICE: i32 = -3;
    /// The driver failed on its own.
    pub const INTERNAL: i32 = -4;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finds `#define NAME VALUE` in the header and returns VALUE without a
    /// `u` suffix or parentheses.
    fn define(header: &str, name: &str) -> String {
        header
            .lines()
            .filter_map(|l| l.strip_prefix("#define "))
            .find_map(|l| {
                let mut parts = l.split_whitespace();
                (parts.next() == Some(name)).then(|| parts.next().unwrap_or_default().to_owned())
            })
            .unwrap_or_else(|| panic!("{name} not in header"))
            .trim_matches(|c| c == '(' || c == ')')
            .trim_end_matches('u')
            .to_owned()
    }

    #[test]
    fn header_and_rust_agree() {
        let h = include_str!("../include/sensegate_driver.h");
        assert_eq!(define(h, "SG_DRIVER_ABI_VERSION"), ABI_VERSION.to_string());
        assert_eq!(define(h, "SG_READ_CAPACITY"), READ_CAPACITY.to_string());
        assert_eq!(define(h, "SG_CONFIG_MAX"), CONFIG_MAX.to_string());
        assert_eq!(define(h, "SG_CHANNELS_MAX"), CHANNELS_MAX.to_string());
        assert_eq!(define(h, "SG_RECORD_SIZE"), RECORD_SIZE.to_string());
        assert_eq!(
            define(h, "SG_E_INVALID_CONFIG"),
            errno::INVALID_CONFIG.to_string()
        );
        assert_eq!(define(h, "SG_E_IO"), errno::IO.to_string());
        assert_eq!(define(h, "SG_E_NO_DEVICE"), errno::NO_DEVICE.to_string());
        assert_eq!(define(h, "SG_E_INTERNAL"), errno::INTERNAL.to_string());
    }
}
