//! `Sec-WebSocket-Key` and `Sec-WebSocket-Accept` (RFC 6455 §4.2.2, §4.1).

use base64::{engine::general_purpose::STANDARD, Engine as _};
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 §1.3 appends to the key, so that only a WebSocket
/// server can produce the answer.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value answering `key`: base64(SHA-1(key ‖ GUID)).
#[must_use]
pub fn accept_key(key: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(key);
    hasher.update(WEBSOCKET_GUID);
    STANDARD.encode(hasher.finalize())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64-encoded (§4.1:
/// "randomly selected", "MUST be ... for each connection").
#[must_use]
pub fn generate_key() -> String {
    STANDARD.encode(rand::random::<[u8; 16]>())
}

/// Whether `key` is what §4.2.1 demands: base64 that decodes to 16 bytes.
#[must_use]
pub fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24 && STANDARD.decode(key).is_ok_and(|decoded| decoded.len() == 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_sample_key() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn generated_keys_are_valid_and_distinct() {
        let (a, b) = (generate_key(), generate_key());
        assert!(is_valid_key(a.as_bytes()) && is_valid_key(b.as_bytes()));
        assert_ne!(a, b);
    }

    #[test]
    fn keys_that_do_not_decode_to_16_bytes_are_invalid() {
        for bad in ["", "abc", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=!", "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            assert!(!is_valid_key(bad.as_bytes()), "{bad}");
        }
    }
}
