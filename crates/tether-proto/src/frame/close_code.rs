//! Close status codes (RFC 6455 §7.4, and the IANA registry it created).

use std::fmt;

/// A close status code. A newtype over `u16` rather than an enum because the
/// ranges 3000–3999 (registered by libraries and frameworks) and 4000–4999
/// (private use) are open: any value there is legitimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a message of a type the endpoint cannot accept (e.g. binary to a text-only app).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: reserved: "no status code was present". Never sent on the wire.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reserved: "closed without a close frame". Never sent on the wire.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: message data inconsistent with its type, e.g. invalid UTF-8 in a text message.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a frame or message exceeds the endpoint's size limit.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: (client) the server did not negotiate an extension the client requires.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: (server) an unexpected condition prevented the request; also a keepalive timeout.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later, e.g. the server is overloaded (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway received an invalid response from upstream (IANA registry).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: reserved: "TLS handshake failed". Never sent on the wire.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Whether this code may appear in a close frame on the wire.
    ///
    /// RFC 6455 §7.4.1 defines 1000–1011 (1004 reserved; 1005, 1006 and 1015
    /// MUST NOT be sent), the IANA registry adds 1012–1014, and §7.4.2 opens
    /// 3000–4999. Everything else (0–999, 1016–2999, 5000+) is a protocol error
    /// when received.
    #[must_use]
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(value: u16) -> Self {
        CloseCode(value)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_unassigned_codes_are_not_sendable() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode(code).is_sendable(), "{code}");
        }
    }

    #[test]
    fn defined_registered_and_private_codes_are_sendable() {
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
            assert!(CloseCode(code).is_sendable(), "{code}");
        }
    }
}
