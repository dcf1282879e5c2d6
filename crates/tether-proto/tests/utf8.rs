//! RFC 6455 §8.1: text must be UTF-8, checked as it arrives.

mod common;

use common::{assert_failed_with, FrameSpec, Harness};
use tether_proto::connection::Event;
use tether_proto::frame::OpCode;
use tether_proto::{CloseCode, Config, Message};

fn server() -> Harness {
    Harness::server(Config::default())
}

#[test]
fn a_character_split_across_fragments_is_valid() {
    let text = "€uro 🎉".as_bytes();
    for split in 0..=text.len() {
        let mut harness = server();
        let mut wire = FrameSpec::client(OpCode::Text, &text[..split]).fin(false).bytes();
        wire.extend(FrameSpec::client(OpCode::Continuation, &text[split..]).bytes());
        harness.feed(&wire).unwrap();
        assert_eq!(harness.events(), vec![Event::Message(Message::from("€uro 🎉"))]);
    }
}

#[test]
fn invalid_utf8_split_across_fragments_fails_with_1007() {
    let mut harness = server();
    let mut wire = FrameSpec::client(OpCode::Text, &[b'a', 0xce]).fin(false).bytes();
    wire.extend(FrameSpec::client(OpCode::Continuation, &[0x20]).bytes());
    let result = harness.feed(&wire);
    assert_failed_with(&mut harness, result, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn invalid_utf8_fails_fast_before_the_message_ends() {
    let mut harness = server();
    // "κόσμε" then F4 90: a sequence beyond U+10FFFF, in a non-final fragment.
    let mut first = "κόσμε".as_bytes().to_vec();
    first.extend_from_slice(&[0xf4, 0x90, 0x80, 0x80]);
    let result = harness.feed(&FrameSpec::client(OpCode::Text, &first).fin(false).bytes());
    assert_failed_with(&mut harness, result, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn invalid_utf8_fails_fast_inside_a_partially_received_frame() {
    let mut harness = server();
    let mut payload = b"hello".to_vec();
    payload.push(0xff);
    payload.extend_from_slice(&[b'x'; 1000]);
    let wire = FrameSpec::client(OpCode::Text, &payload).bytes();
    // Deliver the header and the first 6 payload bytes only.
    let header_len = wire.len() - payload.len();
    let result = harness.feed(&wire[..header_len + 6]);
    assert_failed_with(&mut harness, result, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn a_truncated_character_at_the_end_of_a_message_fails_with_1007() {
    let mut harness = server();
    let result = harness.feed(&FrameSpec::client(OpCode::Text, &[b'a', 0xe2, 0x82]).bytes());
    assert_failed_with(&mut harness, result, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn binary_messages_are_not_checked() {
    let mut harness = server();
    harness.feed(&FrameSpec::client(OpCode::Binary, &[0xff, 0xfe]).bytes()).unwrap();
    assert_eq!(harness.events(), vec![Event::Message(Message::from(vec![0xff, 0xfe]))]);
}
