//! The permessage-deflate codec: one compressor for what we send, one
//! decompressor for what we receive, each keeping or resetting its LZ77
//! context between messages as negotiated.
//!
//! Both sit on zlib-rs's safe streaming API rather than on flate2, because
//! flate2 fixes zlib's `memLevel` at 8, and at that level a compressor costs
//! about 300 KiB per connection; `memLevel` is ours to choose here. Each
//! stream is also created on first use, so a connection that only receives,
//! only sends, or sits idle pays nothing for the other direction.

use bytes::BytesMut;
use zlib_rs::{DeflateConfig as ZlibDeflateConfig, DeflateFlush, InflateFlush, Status};

use super::SYNC_TRAILER;
use crate::error::ProtocolError;

/// How much output one inflate step may produce. The decompressed-size cap
/// is checked between steps, and each step is clipped to the room left, so
/// a decompression bomb never inflates more than one byte past the limit.
const INFLATE_STEP: usize = 32 << 10;

/// zlib refuses an 8-bit window for raw deflate. A 9-bit compressor never
/// emits a match farther than 512 - 262 = 250 bytes back (zlib's
/// `MAX_DIST`), so its output fits the 256-byte window the peer asked for;
/// a 9-bit decompressor accepts everything an 8-bit one does.
fn zlib_window_bits(bits: u8) -> u8 {
    bits.clamp(9, 15)
}

/// zlib streams of connections that forget their context after each
/// message, kept per thread between messages. Such a stream holds nothing
/// of one connection once a message is done, so a thread needs one per
/// configuration in use, not one per connection: a server with 100,000
/// clients that negotiated `server_no_context_takeover` holds a few
/// compressors, not 100,000 of about 300 KiB. A stream taken by a
/// decompressor mid-message travels with its connection (to another
/// thread, if the runtime moves it) and is returned where the message ends.
mod idle_streams {
    use std::cell::RefCell;

    use zlib_rs::DeflateConfig;

    /// Streams kept per thread and kind; beyond it, a returned one is freed.
    const KEPT: usize = 4;

    thread_local! {
        static COMPRESSORS: RefCell<Vec<(DeflateConfig, Box<zlib_rs::Deflate>)>> = const { RefCell::new(Vec::new()) };
        static DECOMPRESSORS: RefCell<Vec<(u8, Box<zlib_rs::Inflate>)>> = const { RefCell::new(Vec::new()) };
    }

    fn take<K: PartialEq, S>(pool: &RefCell<Vec<(K, S)>>, key: &K) -> Option<S> {
        let mut pool = pool.borrow_mut();
        let at = pool.iter().position(|(kept, _)| kept == key)?;
        Some(pool.swap_remove(at).1)
    }

    fn give<K, S>(pool: &RefCell<Vec<(K, S)>>, key: K, stream: S) {
        let mut pool = pool.borrow_mut();
        if pool.len() < KEPT {
            pool.push((key, stream));
        }
    }

    /// A reset compressor for `config`, from this thread's pool or new.
    pub(super) fn compressor(config: DeflateConfig) -> Box<zlib_rs::Deflate> {
        COMPRESSORS
            .try_with(|pool| take(pool, &config))
            .ok()
            .flatten()
            .unwrap_or_else(|| Box::new(zlib_rs::Deflate::new_with_config(config)))
    }

    /// Returns a compressor, reset, for the next message of any connection.
    pub(super) fn return_compressor(config: DeflateConfig, mut stream: Box<zlib_rs::Deflate>) {
        stream.reset();
        let _ = COMPRESSORS.try_with(|pool| give(pool, config, stream));
    }

    /// A reset decompressor for windows of `window_bits`.
    pub(super) fn decompressor(window_bits: u8) -> Box<zlib_rs::Inflate> {
        DECOMPRESSORS
            .try_with(|pool| take(pool, &window_bits))
            .ok()
            .flatten()
            .unwrap_or_else(|| Box::new(zlib_rs::Inflate::new(false, window_bits)))
    }

    /// Returns a decompressor, reset, at the end of a message.
    pub(super) fn return_decompressor(window_bits: u8, mut stream: Box<zlib_rs::Inflate>) {
        stream.reset(false);
        let _ = DECOMPRESSORS.try_with(|pool| give(pool, window_bits, stream));
    }
}

/// Compresses whole messages (RFC 7692 §7.2.1).
///
/// With context takeover it owns its zlib stream from the first message
/// on; without, it borrows one from its thread for each message and owns
/// nothing between messages.
pub struct Compressor {
    /// Boxed: zlib's stream struct is 128 bytes, and most connections
    /// never hold one (no context takeover, or nothing sent yet).
    stream: Option<Box<zlib_rs::Deflate>>,
    config: ZlibDeflateConfig,
    reset_after_message: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("config", &self.config)
            .field("allocated", &self.stream.is_some())
            .field("reset_after_message", &self.reset_after_message)
            .finish()
    }
}

impl Compressor {
    /// A compressor with an LZ77 window of `window_bits`, zlib `level` (0–9)
    /// and `mem_level` (1–9: the hash table and output buffer size, and so
    /// most of the memory), which forgets its history after each message
    /// when `reset_after_message`. Nothing is allocated until the first message.
    #[must_use]
    pub fn new(window_bits: u8, level: u32, mem_level: u8, reset_after_message: bool) -> Compressor {
        let config = ZlibDeflateConfig {
            level: level.min(9) as i32,
            window_bits: -i32::from(zlib_window_bits(window_bits)),
            mem_level: i32::from(mem_level.clamp(1, 9)),
            ..ZlibDeflateConfig::default()
        };
        Compressor { stream: None, config, reset_after_message }
    }

    /// Appends the compressed form of one whole message to `out`: raw
    /// deflate ending in a sync flush, with the flush's `00 00 ff ff`
    /// trailer removed as §7.2.1 requires.
    pub fn compress_message(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let config = self.config;
        if self.reset_after_message {
            let mut stream = idle_streams::compressor(config);
            deflate_message(&mut stream, input, out);
            idle_streams::return_compressor(config, stream);
        } else {
            let stream = self.stream.get_or_insert_with(|| Box::new(zlib_rs::Deflate::new_with_config(config)));
            deflate_message(stream, input, out);
        }
    }

    /// The window this compressor's output needs the peer to accept, bits.
    #[must_use]
    pub fn window_bits(&self) -> u8 {
        self.config.window_bits.unsigned_abs() as u8
    }

    /// Whether each message is compressed on its own, without context from
    /// earlier ones: then one compressed form of a message suits every such
    /// connection whose peer accepts this window (a broadcast compresses once).
    #[must_use]
    pub fn is_stateless(&self) -> bool {
        self.reset_after_message
    }
}

/// Appends the raw deflate of one whole message to `out`, ending in a sync
/// flush whose `00 00 ff ff` trailer is removed, as §7.2.1 requires.
fn deflate_message(stream: &mut zlib_rs::Deflate, mut input: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    loop {
        // Incompressible input grows by about 5 bytes per 16 KiB block.
        let room = input.len() + input.len() / 1024 + 64;
        let write_at = out.len();
        out.resize(write_at + room, 0);
        let (in_before, out_before) = (stream.total_in(), stream.total_out());
        let status = stream.compress(input, &mut out[write_at..], DeflateFlush::SyncFlush);
        let consumed = (stream.total_in() - in_before) as usize;
        let produced = (stream.total_out() - out_before) as usize;
        out.truncate(write_at + produced);
        input = &input[consumed..];
        debug_assert!(status.is_ok(), "deflate fails only on misuse");
        // With room left after a sync flush, the flush is complete.
        if status.is_err() || (input.is_empty() && produced < room) {
            break;
        }
    }
    if out.len() == start {
        // zlib skips a sync flush that directly follows another with no
        // input between, so an empty message after any other one yields
        // nothing. An empty payload would not do: the receiver appends the
        // trailer, and `00 00 ff ff` alone opens a stored block of 0xff00
        // bytes that swallows the next messages. The stream is byte-aligned
        // after the last flush, so the empty stored block the flush would
        // have written is `00 00 00 ff ff`: its first byte is the message.
        out.push(0x00);
    } else if out[start..].ends_with(&SYNC_TRAILER) {
        out.truncate(out.len() - SYNC_TRAILER.len());
    }
}

/// Inflates incoming messages frame by frame, stopping at the message limit.
///
/// Without context takeover, it holds a zlib stream only while a message
/// is being received, borrowed from its thread's idle streams.
pub struct Decompressor {
    /// Boxed, as the compressor's.
    stream: Option<Box<zlib_rs::Inflate>>,
    window_bits: u8,
    reset_after_message: bool,
    /// A final deflate block (BFINAL) ended the stream mid-message.
    ended: bool,
    /// Some compressed bytes of the current message were inflated.
    fed: bool,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("window_bits", &self.window_bits)
            .field("allocated", &self.stream.is_some())
            .field("reset_after_message", &self.reset_after_message)
            .finish_non_exhaustive()
    }
}

impl Decompressor {
    /// A decompressor for a peer compressing with `window_bits`, which
    /// forgets its history after each message when `reset_after_message`.
    /// Nothing is allocated until the first message.
    #[must_use]
    pub fn new(window_bits: u8, reset_after_message: bool) -> Decompressor {
        Decompressor {
            stream: None,
            window_bits: zlib_window_bits(window_bits),
            reset_after_message,
            ended: false,
            fed: false,
        }
    }

    /// Inflates `input`, a piece of a compressed message, appending to `out`
    /// (the message so far), and fails as soon as `out` would exceed `limit`.
    ///
    /// # Errors
    /// [`ProtocolError::MessageTooLarge`] past the limit,
    /// [`ProtocolError::InvalidCompressedData`] for corrupt data.
    pub fn decompress(&mut self, mut input: &[u8], out: &mut BytesMut, limit: usize) -> Result<(), ProtocolError> {
        let (window_bits, pooled) = (self.window_bits, self.reset_after_message);
        self.fed |= !input.is_empty();
        let stream = self.stream.get_or_insert_with(|| {
            if pooled {
                idle_streams::decompressor(window_bits)
            } else {
                Box::new(zlib_rs::Inflate::new(false, window_bits))
            }
        });
        while !input.is_empty() || !self.ended {
            if self.ended {
                // RFC 7692 §7.2.3.4 lets a sender end with BFINAL; bytes after it are garbage.
                return Err(ProtocolError::InvalidCompressedData);
            }
            let room = (limit + 1).saturating_sub(out.len());
            if room == 0 {
                return Err(ProtocolError::MessageTooLarge { limit, actual: out.len() as u64 });
            }
            let step = room.min(INFLATE_STEP);
            let start = out.len();
            out.resize(start + step, 0);
            let (in_before, out_before) = (stream.total_in(), stream.total_out());
            let status = stream.decompress(input, &mut out[start..], InflateFlush::NoFlush);
            let produced = (stream.total_out() - out_before) as usize;
            let consumed = (stream.total_in() - in_before) as usize;
            out.truncate(start + produced);
            input = &input[consumed..];
            match status {
                Err(_) => return Err(ProtocolError::InvalidCompressedData),
                Ok(Status::StreamEnd) => self.ended = true,
                Ok(Status::Ok | Status::BufError) => {}
            }
            if out.len() > limit {
                return Err(ProtocolError::MessageTooLarge { limit, actual: out.len() as u64 });
            }
            // Output space left over means zlib has nothing more pending.
            if input.is_empty() && produced < step {
                break;
            }
            if consumed == 0 && produced == 0 {
                return Err(ProtocolError::InvalidCompressedData);
            }
        }
        Ok(())
    }

    /// Ends a message: feeds back the sync trailer the sender removed
    /// (RFC 7692 §7.2.2) and resets the context if negotiated.
    ///
    /// A message whose compressed payload is empty is an empty message, and
    /// the trailer is not fed: `00 00 ff ff` on its own would open a stored
    /// block of 0xff00 bytes and turn the next messages into its contents.
    /// A compliant sender writes at least `00` for an empty message, but a
    /// zlib that skips a repeated flush leaves nothing, and its stream is
    /// where it was, so nothing is exactly what it meant.
    ///
    /// # Errors
    /// As [`decompress`](Self::decompress).
    pub fn finish_message(&mut self, out: &mut BytesMut, limit: usize) -> Result<(), ProtocolError> {
        if !self.ended && self.fed {
            self.decompress(&SYNC_TRAILER, out, limit)?;
        }
        if self.reset_after_message {
            if let Some(stream) = self.stream.take() {
                idle_streams::return_decompressor(self.window_bits, stream);
            }
        } else if self.ended {
            if let Some(stream) = &mut self.stream {
                stream.reset(false);
            }
        }
        self.ended = false;
        self.fed = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(compressor: &mut Compressor, decompressor: &mut Decompressor, message: &[u8]) -> usize {
        let mut wire = Vec::new();
        compressor.compress_message(message, &mut wire);
        let mut out = BytesMut::new();
        decompressor.decompress(&wire, &mut out, usize::MAX - 1).unwrap();
        decompressor.finish_message(&mut out, usize::MAX - 1).unwrap();
        assert_eq!(&out[..], message);
        wire.len()
    }

    #[test]
    fn messages_round_trip_with_and_without_context_takeover() {
        for reset in [false, true] {
            for bits in 8..=15 {
                for mem_level in [1, 5, 8] {
                    let mut compressor = Compressor::new(bits, 6, mem_level, reset);
                    let mut decompressor = Decompressor::new(bits, reset);
                    for message in [&b""[..], b"a", b"Hello, Hello, Hello", &[7u8; 100_000]] {
                        round_trip(&mut compressor, &mut decompressor, message);
                    }
                }
            }
        }
    }

    #[test]
    fn an_empty_message_is_one_zero_byte_even_right_after_another() {
        for reset in [false, true] {
            for bits in 8..=15 {
                let mut compressor = Compressor::new(bits, 1, 5, reset);
                let mut decompressor = Decompressor::new(bits, reset);
                for message in [&b""[..], b"", b"Hello, Hello", b"", b"", b"Hello again", b""] {
                    let wire_len = round_trip(&mut compressor, &mut decompressor, message);
                    if message.is_empty() {
                        // RFC 7692 §7.2.3.6: an empty stored block, trailer removed.
                        assert_eq!(wire_len, 1, "{bits} bits, reset {reset}");
                    }
                }
            }
        }
    }

    #[test]
    fn an_empty_compressed_payload_is_an_empty_message_and_the_context_survives() {
        let mut compressor = Compressor::new(15, 1, 5, false);
        let mut decompressor = Decompressor::new(15, false);
        round_trip(&mut compressor, &mut decompressor, b"Hello, Hello");
        for _ in 0..3 {
            let mut out = BytesMut::new();
            decompressor.decompress(&[], &mut out, 100).unwrap();
            decompressor.finish_message(&mut out, 100).unwrap();
            assert!(out.is_empty());
        }
        round_trip(&mut compressor, &mut decompressor, b"Hello, Hello, again");
    }

    #[test]
    fn context_takeover_makes_repeated_messages_smaller() {
        let message = b"{\"type\":\"ping\",\"timestamp\":1700000000}";
        let mut keep = (Compressor::new(15, 6, 8, false), Decompressor::new(15, false));
        let mut reset = (Compressor::new(15, 6, 8, true), Decompressor::new(15, true));
        round_trip(&mut keep.0, &mut keep.1, message);
        round_trip(&mut reset.0, &mut reset.1, message);
        assert!(round_trip(&mut keep.0, &mut keep.1, message) < round_trip(&mut reset.0, &mut reset.1, message));
    }

    #[test]
    fn an_eight_bit_window_request_never_reaches_back_past_256_bytes() {
        // Compress with "8 bits" (9 underneath) and inflate with a true
        // 256-byte window: zlib-rs accepts 8 for inflate.
        let message: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).chain(b"abcdefgh".repeat(500)).collect();
        let mut wire = Vec::new();
        Compressor::new(8, 9, 8, false).compress_message(&message, &mut wire);
        let mut inflate = zlib_rs::Inflate::new(false, 8);
        let mut out = vec![0u8; message.len() + 64];
        wire.extend_from_slice(&SYNC_TRAILER);
        let status = inflate.decompress(&wire, &mut out, InflateFlush::SyncFlush);
        assert!(status.is_ok(), "{status:?}");
        assert_eq!(&out[..inflate.total_out() as usize], &message[..]);
    }

    #[test]
    fn rfc_7692_example_hello() {
        // RFC 7692 §7.2.3.1: "Hello" compressed, without the trailer.
        let mut out = BytesMut::new();
        let mut decompressor = Decompressor::new(15, false);
        decompressor.decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100).unwrap();
        decompressor.finish_message(&mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello");
    }

    #[test]
    fn decompression_bomb_stops_one_byte_past_the_limit() {
        let mut wire = Vec::new();
        Compressor::new(15, 9, 8, false).compress_message(&vec![0u8; 1 << 20], &mut wire);
        assert!(wire.len() < 2048, "{}", wire.len());
        let limit = 64 << 10;
        let mut out = BytesMut::new();
        let mut decompressor = Decompressor::new(15, false);
        let err = decompressor.decompress(&wire, &mut out, limit).unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooLarge { .. }));
        assert_eq!(out.len(), limit + 1);
    }

    #[test]
    fn a_message_of_exactly_the_limit_inflates() {
        let message = vec![b'x'; 5000];
        let mut wire = Vec::new();
        Compressor::new(15, 6, 8, false).compress_message(&message, &mut wire);
        let mut out = BytesMut::new();
        let mut decompressor = Decompressor::new(15, false);
        decompressor.decompress(&wire, &mut out, 5000).unwrap();
        decompressor.finish_message(&mut out, 5000).unwrap();
        assert_eq!(out.len(), 5000);
    }

    #[test]
    fn garbage_is_invalid_data_not_a_panic() {
        let mut out = BytesMut::new();
        let mut decompressor = Decompressor::new(15, false);
        let result = decompressor
            .decompress(&[0xff, 0xff, 0xff, 0xff, 0x00, 0x12], &mut out, 1000)
            .and_then(|()| decompressor.finish_message(&mut out, 1000));
        assert_eq!(result, Err(ProtocolError::InvalidCompressedData));
    }
}
