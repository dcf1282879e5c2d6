//! Reassembling fragmented messages, with UTF-8 checked as bytes arrive.

use bytes::BytesMut;

use crate::error::ProtocolError;
use crate::message::{Message, Text};

/// Incremental UTF-8 validation over a growing buffer.
///
/// Each call checks only the bytes past the last fully valid character, so
/// a message is validated in one pass however it is split, and an invalid
/// sequence is reported as soon as its bytes arrive (RFC 6455 §8.1 "fail
/// fast"), not at the end of the message.
#[derive(Debug, Default)]
pub(crate) struct Utf8Validator {
    valid_up_to: usize,
}

impl Utf8Validator {
    /// Checks `buf[valid_up_to..]`. An incomplete character at the very end
    /// is accepted unless `complete` says no more bytes will come.
    pub(crate) fn check(&mut self, buf: &[u8], complete: bool) -> Result<(), ProtocolError> {
        match simdutf8::compat::from_utf8(&buf[self.valid_up_to..]) {
            Ok(_) => {
                self.valid_up_to = buf.len();
                Ok(())
            }
            Err(error) if error.error_len().is_none() && !complete => {
                self.valid_up_to += error.valid_up_to();
                Ok(())
            }
            Err(_) => Err(ProtocolError::InvalidUtf8),
        }
    }
}

/// The kind of data message being assembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MessageKind {
    Text,
    Binary,
}

/// A data message being received, possibly over many frames.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    /// The kind of the message in progress; `None` between messages.
    kind: Option<MessageKind>,
    compressed: bool,
    fragments: usize,
    /// The payload so far (decompressed). Handed out with `split().freeze()`,
    /// so once the application drops a message its memory is reused.
    pub(crate) buf: BytesMut,
    utf8: Utf8Validator,
}

impl Assembler {
    pub(crate) fn in_progress(&self) -> bool {
        self.kind.is_some()
    }

    pub(crate) fn is_compressed(&self) -> bool {
        self.compressed
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn start(&mut self, kind: MessageKind, compressed: bool) {
        debug_assert!(self.kind.is_none() && self.buf.is_empty());
        self.kind = Some(kind);
        self.compressed = compressed;
        self.fragments = 0;
        self.utf8 = Utf8Validator::default();
    }

    /// Counts one more frame of the current message.
    pub(crate) fn count_fragment(&mut self, limit: usize) -> Result<(), ProtocolError> {
        self.fragments += 1;
        if self.fragments > limit {
            return Err(ProtocolError::TooManyFragments { limit });
        }
        Ok(())
    }

    /// Validates text received so far; call after each append.
    pub(crate) fn check_utf8(&mut self, complete: bool) -> Result<(), ProtocolError> {
        if self.kind == Some(MessageKind::Text) {
            self.utf8.check(&self.buf, complete)?;
        }
        Ok(())
    }

    /// The finished message; the assembler is ready for the next one.
    pub(crate) fn finish(&mut self) -> Result<Message, ProtocolError> {
        self.check_utf8(true)?;
        let payload = self.buf.split().freeze();
        let kind = self.kind.take();
        Ok(match kind {
            Some(MessageKind::Text) => Message::Text(Text::from_validated(payload)),
            _ => Message::Binary(payload),
        })
    }

    /// Drops the buffer when no message is in progress, so an idle
    /// connection holds no payload memory.
    pub(crate) fn release_memory(&mut self) {
        if self.kind.is_none() && self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_anywhere_validates_like_whole() {
        let text = "κόσμε — 🎉 ok".as_bytes();
        for split in 0..=text.len() {
            let mut validator = Utf8Validator::default();
            validator.check(&text[..split], false).unwrap();
            validator.check(text, true).unwrap();
        }
    }

    #[test]
    fn invalid_utf8_fails_as_soon_as_it_arrives() {
        // U+110000 (F4 90 ..) is out of range: F4 90 cannot start any valid character.
        let mut validator = Utf8Validator::default();
        let mut buf = "κόσμε".as_bytes().to_vec();
        buf.extend_from_slice(&[0xf4, 0x90]);
        assert_eq!(validator.check(&buf, false), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn truncated_character_fails_only_at_the_end() {
        let mut validator = Utf8Validator::default();
        let buf = [b'a', 0xe2, 0x82];
        validator.check(&buf, false).unwrap();
        assert_eq!(validator.check(&buf, true), Err(ProtocolError::InvalidUtf8));
    }
}
