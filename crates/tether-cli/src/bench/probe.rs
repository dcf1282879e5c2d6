//! What a bench message carries: who sent it, its sequence number and when
//! it was sent, so that the echo can be timed and a message from another
//! client (a broadcast server) told apart.
//!
//! Binary layout: magic `tbn1`, client id (u32), sequence (u64), send
//! time in ns since the run started (u64), all big-endian. Text layout
//! (`--text`): magic `tbt1`, then the same three numbers in hexadecimal
//! (8, 16 and 16 digits). Then the payload: `.` padding up to `--size`, or
//! the bytes of `--payload-file`.

/// Bytes of a binary header.
pub const HEADER: usize = 24;

/// Bytes of a text header.
pub const TEXT_HEADER: usize = 44;

const MAGIC: [u8; 4] = *b"tbn1";
const TEXT_MAGIC: [u8; 4] = *b"tbt1";

/// A message buffer, reused for every message a worker sends: only the
/// header changes. `size` bytes of padding after it, or `payload`.
pub fn template(size: usize, text: bool, payload: Option<&[u8]>) -> Vec<u8> {
    let header = if text { TEXT_HEADER } else { HEADER };
    let mut bytes = match payload {
        Some(payload) => [&vec![b'.'; header][..], payload].concat(),
        None => vec![b'.'; size.max(header)],
    };
    bytes[..4].copy_from_slice(if text { &TEXT_MAGIC } else { &MAGIC });
    bytes
}

/// Writes the header of one message into `buf` (made by [`template`]).
pub fn stamp(buf: &mut [u8], client: u32, sequence: u64, sent_at: u64) {
    if buf[..4] == TEXT_MAGIC {
        let digits = format!("{client:08x}{sequence:016x}{sent_at:016x}");
        buf[4..TEXT_HEADER].copy_from_slice(digits.as_bytes());
        return;
    }
    buf[4..8].copy_from_slice(&client.to_be_bytes());
    buf[8..16].copy_from_slice(&sequence.to_be_bytes());
    buf[16..24].copy_from_slice(&sent_at.to_be_bytes());
}

/// The sender and send time of a bench message; `None` for anything else.
pub fn read(bytes: &[u8]) -> Option<(u32, u64)> {
    if bytes.len() >= TEXT_HEADER && bytes[..4] == TEXT_MAGIC {
        let hex = |range: std::ops::Range<usize>| {
            std::str::from_utf8(&bytes[range]).ok().and_then(|digits| u64::from_str_radix(digits, 16).ok())
        };
        return Some((u32::try_from(hex(4..12)?).ok()?, hex(28..44)?));
    }
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
    fn a_text_stamp_is_ascii_and_reads_back_with_the_payload_after_it() {
        let mut buf = template(0, true, Some("héllo".as_bytes()));
        stamp(&mut buf, 0xdead_beef, 42, 987_654_321);
        let text = std::str::from_utf8(&buf).expect("valid UTF-8");
        assert!(text.starts_with("tbt1deadbeef") && text.ends_with("héllo"), "{text}");
        assert_eq!(read(&buf), Some((0xdead_beef, 987_654_321)));
        let mut padded = template(100, true, None);
        stamp(&mut padded, 1, 2, 3);
        assert_eq!((padded.len(), read(&padded)), (100, Some((1, 3))));
    }

    #[test]
    fn a_stamped_message_reads_back_and_anything_else_is_foreign() {
        let mut buf = template(40, false, None);
        stamp(&mut buf, 7, 3, 123_456);
        assert_eq!(buf.len(), 40);
        assert_eq!(read(&buf), Some((7, 123_456)));
        assert_eq!(read(&buf[..HEADER - 1]), None);
        assert_eq!(read(b"hello, this is not a bench message"), None);
    }
}
