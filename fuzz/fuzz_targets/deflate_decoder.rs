//! permessage-deflate's codec on arbitrary bytes.
//!
//! Input: `[selector, limit, split_seed, bytes...]`.
//! - selector bits 0–2: window bits 8–15; bit 3: no context takeover;
//!   bits 4–7 (`n`): compression level `n % 10` and memLevel `1 + n % 9`
//!   for the round trip.
//! - `limit`: the message limit is `limit * 8` bytes (0–2040).
//! - `split_seed`: how `bytes` is cut into frames (see `Chunks`); after
//!   each frame the same generator decides whether the message ends there.
//!
//! 1. `bytes` as compressed messages: `Decompressor::decompress` frame by
//!    frame, then `finish_message`. Accepted: output of at most `limit`
//!    bytes, or `MessageTooLarge` (having inflated at most `limit + 1`), or
//!    `InvalidCompressedData`. The result must not depend on how a message
//!    is split into frames: a second decompressor fed each message whole
//!    must agree.
//! 2. `bytes` as plain messages, with empty ones put between them:
//!    `Compressor::compress_message` then `Decompressor` (frame-split)
//!    gives them back exactly, with the limit set to the message's own size.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tether_proto::deflate::{Compressor, Decompressor};
use tether_proto::ProtocolError;
use tether_proto_fuzz::{Chunks, Rng};

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let [selector, limit, seed, ref input @ ..] = *data else {
        return;
    };
    let window_bits = 8 + (selector & 7);
    let reset = selector & 8 != 0;
    let level = u32::from(selector >> 4) % 10;
    let mem_level = 1 + (selector >> 4) % 9;
    let limit = usize::from(limit) * 8;

    // Cut the input into messages, each a list of frames.
    let mut messages: Vec<Vec<&[u8]>> = vec![Vec::new()];
    let mut ends = Rng::new(seed.wrapping_add(1));
    for chunk in Chunks::new(input, seed) {
        messages.last_mut().unwrap().push(chunk);
        if seed != 0 && ends.next().is_multiple_of(4) {
            messages.push(Vec::new());
        }
    }

    inflate_arbitrary(&messages, window_bits, reset, limit);
    round_trip(&messages, window_bits, reset, (level, mem_level));
}

fn inflate_arbitrary(messages: &[Vec<&[u8]>], window_bits: u8, reset: bool, limit: usize) {
    let mut split = Decompressor::new(window_bits, reset);
    let mut whole = Decompressor::new(window_bits, reset);
    for frames in messages {
        let mut out = BytesMut::new();
        let mut result = Ok(());
        for frame in frames {
            result = split.decompress(frame, &mut out, limit);
            check(&result, &out, limit);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = split.finish_message(&mut out, limit);
            check(&result, &out, limit);
        }

        let concatenated = frames.concat();
        let mut whole_out = BytesMut::new();
        let whole_result = whole
            .decompress(&concatenated, &mut whole_out, limit)
            .and_then(|()| whole.finish_message(&mut whole_out, limit));
        check(&whole_result, &whole_out, limit);

        match (&result, &whole_result) {
            (Ok(()), Ok(())) => assert_eq!(out, whole_out, "same message, different output"),
            (Err(_), Err(_)) => return, // the connection fails here
            _ => panic!(
                "frame splitting changed the outcome: split {result:?} ({} bytes), whole {whole_result:?} ({} bytes), frames {:?}",
                out.len(),
                whole_out.len(),
                frames.iter().map(|f| f.len()).collect::<Vec<_>>()
            ),
        }
    }
}

/// The documented outcomes of `decompress` and `finish_message`.
fn check(result: &Result<(), ProtocolError>, out: &BytesMut, limit: usize) {
    match *result {
        Ok(()) => assert!(out.len() <= limit, "{} > {limit}", out.len()),
        Err(ProtocolError::MessageTooLarge { limit: reported, actual }) => {
            assert_eq!(reported, limit);
            assert_eq!(actual, out.len() as u64);
            assert!(out.len() <= limit + 1, "inflated {} past {limit}", out.len());
            assert!(out.len() > limit);
        }
        Err(ProtocolError::InvalidCompressedData) => assert!(out.len() <= limit + 1),
        Err(ref other) => panic!("undocumented error {other:?}"),
    }
}

fn round_trip(messages: &[Vec<&[u8]>], window_bits: u8, reset: bool, (level, mem_level): (u32, u8)) {
    let mut compressor = Compressor::new(window_bits, level, mem_level, reset);
    let mut decompressor = Decompressor::new(window_bits, reset);
    let mut rng = Rng::new(level as u8);
    // Empty messages between the others, now and then two in a row: zlib
    // writes nothing for a flush right after a flush.
    let mut payloads = Vec::new();
    for frames in messages {
        payloads.push(frames.concat());
        while rng.next().is_multiple_of(3) {
            payloads.push(Vec::new());
        }
    }
    for message in payloads {
        let mut wire = Vec::new();
        compressor.compress_message(&message, &mut wire);
        let mut out = BytesMut::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = (1 + rng.next() as usize % 300).min(rest.len());
            decompressor
                .decompress(&rest[..n], &mut out, message.len())
                .unwrap_or_else(|e| panic!("our own compressed data: {e}"));
            rest = &rest[n..];
        }
        decompressor.finish_message(&mut out, message.len()).unwrap_or_else(|e| panic!("our own compressed data: {e}"));
        assert_eq!(&out[..], &message[..], "round trip changed the message");
    }
}
