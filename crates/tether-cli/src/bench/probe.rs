//! What a bench message carries: who sent it, its sequence number and when
//! it was sent, so that the echo can be timed and a message from another
//! client (a broadcast server) told apart.
//!
//! Layout: magic `tbn1`, client id (u32), sequence (u64), send time in ns
//! since the run started (u64), all big-endian, then `.` padding.

/// Bytes before the padding.
pub const HEADER: usize = 24;

const MAGIC: [u8; 4] = *b"tbn1";

/// A message buffer of `size` bytes, reused for every message a worker
/// sends: only the header changes.
pub fn template(size: usize) -> Vec<u8> {
    let mut bytes = vec![b'.'; size.max(HEADER)];
    bytes[..4].copy_from_slice(&MAGIC);
    bytes
}

/// Writes the header of one message into `buf` (made by [`template`]).
pub fn stamp(buf: &mut [u8], client: u32, sequence: u64, sent_at: u64) {
    buf[4..8].copy_from_slice(&client.to_be_bytes());
    buf[8..16].copy_from_slice(&sequence.to_be_bytes());
    buf[16..24].copy_from_slice(&sent_at.to_be_bytes());
}

/// The sender and send time of a bench message; `None` for anything else.
pub fn read(bytes: &[u8]) -> Option<(u32, u64)> {
    if bytes.len() < HEADER || bytes[..4] != MAGIC {
        return None;
    }
    let client = u32::from_be_bytes(bytes[4..8].try_into().ok()?);
    let sent_at = u64::from_be_bytes(bytes[16..24].try_into().ok()?);
    Some((client, sent_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_message_reads_back_and_anything_else_is_foreign() {
        let mut buf = template(40);
        stamp(&mut buf, 7, 3, 123_456);
        assert_eq!(buf.len(), 40);
        assert_eq!(read(&buf), Some((7, 123_456)));
        assert_eq!(read(&buf[..HEADER - 1]), None);
        assert_eq!(read(b"hello, this is not a bench message"), None);
    }
}
