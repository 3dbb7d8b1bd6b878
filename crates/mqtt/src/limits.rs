//! The caps the codec enforces: every length and count a peer controls.

/// The caps a decoder enforces. Each is a config key of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest packet after CONNECT, fixed header included.
    pub max_packet_bytes: usize,
    /// Largest CONNECT (and anything sent before it).
    pub max_connect_bytes: usize,
    /// Client identifier.
    pub max_client_id_bytes: usize,
    /// User name (the client's name; free text).
    pub max_username_bytes: usize,
    /// Password (the token).
    pub max_password_bytes: usize,
    /// Topic names and filters.
    pub max_topic_bytes: usize,
    /// Properties in one packet's property list (user properties included).
    pub max_properties: usize,
    /// User properties in one packet.
    pub max_user_properties: usize,
    /// A user property's key or value, and other string properties.
    pub max_property_bytes: usize,
    /// Topic filters in one SUBSCRIBE or UNSUBSCRIBE.
    pub max_filters: usize,
}

impl Limits {
    /// The defaults.
    pub const DEFAULT: Self = Self {
        max_packet_bytes: 64 << 10,
        max_connect_bytes: 4 << 10,
        max_client_id_bytes: 128,
        max_username_bytes: 128,
        max_password_bytes: 256,
        max_topic_bytes: 256,
        max_properties: 32,
        max_user_properties: 8,
        max_property_bytes: 256,
        max_filters: 16,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
