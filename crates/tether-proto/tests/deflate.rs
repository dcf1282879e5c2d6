//! RFC 7692: permessage-deflate on an open connection.

mod common;

use common::{assert_failed_with, parse_frames, FrameSpec, Harness};
use tether_proto::connection::Event;
use tether_proto::frame::OpCode;
use tether_proto::{CloseCode, Config, Connection, DeflateConfig, DeflateParams, Message, Role};

fn params(no_context_takeover: bool, bits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: no_context_takeover,
        client_no_context_takeover: no_context_takeover,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    }
}

fn pair(params: DeflateParams) -> (Connection, Connection) {
    (
        Connection::new(Role::Client, Config::default(), Some(params)),
        Connection::new(Role::Server, Config::default(), Some(params)),
    )
}

fn transfer(from: &mut Connection, to: &mut Connection) -> Vec<u8> {
    let bytes = from.pending_transmit().to_vec();
    from.advance_transmit(bytes.len());
    to.handle_read(&bytes).unwrap();
    bytes
}

#[test]
fn messages_round_trip_compressed_with_every_negotiated_parameter_set() {
    for no_context_takeover in [false, true] {
        for bits in [8, 9, 12, 15] {
            let (mut client, mut server) = pair(params(no_context_takeover, bits));
            for i in 0..20 {
                let text = format!("{{\"type\":\"ping\",\"seq\":{i},\"pad\":\"{}\"}}", "x".repeat(i * 50));
                client.send_text(&text).unwrap();
                transfer(&mut client, &mut server);
                assert_eq!(server.poll_event(), Some(Event::Message(Message::from(text.clone()))));
                server.send_text(&text).unwrap();
                transfer(&mut server, &mut client);
                assert_eq!(client.poll_event(), Some(Event::Message(Message::from(text))));
            }
        }
    }
}

#[test]
fn compressed_frames_set_rsv1_and_are_smaller() {
    let (mut client, mut server) = pair(params(false, 15));
    let text = "a fairly repetitive message ".repeat(20);
    client.send_text(&text).unwrap();
    let wire = transfer(&mut client, &mut server);
    let frames = parse_frames(&wire);
    assert!(frames[0].1, "RSV1 set");
    assert!(wire.len() < text.len() / 4);
}

#[test]
fn a_message_may_opt_out_of_compression() {
    let (mut client, mut server) = pair(params(false, 15));
    let data = Message::from(vec![9u8; 1000]);
    client.send_with(&data, false).unwrap();
    let wire = transfer(&mut client, &mut server);
    assert!(!parse_frames(&wire)[0].1, "RSV1 clear");
    assert_eq!(server.poll_event(), Some(Event::Message(data)));
}

#[test]
fn short_messages_are_sent_uncompressed() {
    let (mut client, mut server) = pair(params(false, 15));
    client.send_text("hi").unwrap();
    let wire = transfer(&mut client, &mut server);
    assert!(!parse_frames(&wire)[0].1);
}

#[test]
fn a_compressed_message_may_be_fragmented() {
    let mut compressed = Vec::new();
    tether_proto::deflate::Compressor::new(15, 6, 8, false).compress_message(&[b'z'; 5000], &mut compressed);
    let (first, rest) = compressed.split_at(compressed.len() / 2);
    let mut wire = FrameSpec::client(OpCode::Binary, first).rsv1().fin(false).bytes();
    wire.extend(FrameSpec::client(OpCode::Continuation, rest).bytes());
    let mut server = Connection::new(Role::Server, Config::default(), Some(params(false, 15)));
    server.handle_read(&wire).unwrap();
    assert_eq!(server.poll_event(), Some(Event::Message(Message::from(vec![b'z'; 5000]))));
}

/// RFC 7692 §7.2.3.6: an empty message is an empty stored block with its
/// trailer removed, the single byte `00`, even right after another message
/// (where zlib, asked to flush twice in a row, writes nothing).
#[test]
fn empty_messages_in_a_row_go_out_as_one_zero_byte_and_arrive_empty() {
    let mut deflate = DeflateConfig::default();
    deflate.min_size = 0;
    for no_context_takeover in [false, true] {
        let negotiated = Some(params(no_context_takeover, 15));
        let mut client =
            Connection::new(Role::Client, Config::default().with_deflate(Some(deflate.clone())), negotiated);
        let mut server = Connection::new(Role::Server, Config::default(), negotiated);
        for message in [Message::from(""), Message::from(Vec::new()), Message::from(""), Message::from("after")] {
            client.send_with(&message, true).unwrap();
            let wire = transfer(&mut client, &mut server);
            let frames = parse_frames(&wire);
            assert!(frames[0].1, "RSV1 set");
            if message.as_bytes().is_empty() {
                assert_eq!(frames[0].2, [0x00]);
            }
            assert_eq!(server.poll_event(), Some(Event::Message(message)));
        }
    }
}

/// A peer whose zlib wrote nothing for an empty message: its frame has RSV1
/// and no payload. That is an empty message, and the context goes on as
/// the sender's did (the trailer fed alone would start a stored block).
#[test]
fn an_empty_compressed_payload_is_an_empty_message_and_the_next_ones_arrive_intact() {
    let mut compressor = tether_proto::deflate::Compressor::new(15, 6, 8, false);
    let mut server = Connection::new(Role::Server, Config::default(), Some(params(false, 15)));
    const TEXTS: [&str; 4] = ["Hello, Hello", "", "", "Hello again, Hello"];
    let mut wire = Vec::new();
    for text in TEXTS {
        let mut compressed = Vec::new();
        if !text.is_empty() {
            compressor.compress_message(text.as_bytes(), &mut compressed);
        }
        wire.extend(FrameSpec::client(OpCode::Text, &compressed).rsv1().bytes());
    }
    server.handle_read(&wire).unwrap();
    for text in TEXTS {
        assert_eq!(server.poll_event(), Some(Event::Message(Message::from(text))));
    }
}

#[test]
fn rsv1_on_a_continuation_or_control_frame_fails_with_1002() {
    for frame in [FrameSpec::client(OpCode::Ping, b"").rsv1(), FrameSpec::client(OpCode::Continuation, b"x").rsv1()] {
        let mut harness = Harness {
            connection: Connection::new(Role::Server, Config::default(), Some(params(false, 15))),
            role: Role::Server,
        };
        let mut wire = FrameSpec::client(OpCode::Text, b"a").fin(false).bytes();
        wire.extend(frame.bytes());
        let result = harness.feed(&wire);
        assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn corrupt_compressed_data_fails_with_1007() {
    let mut harness = Harness {
        connection: Connection::new(Role::Server, Config::default(), Some(params(false, 15))),
        role: Role::Server,
    };
    let result = harness.feed(&FrameSpec::client(OpCode::Binary, &[0xff; 32]).rsv1().bytes());
    assert_failed_with(&mut harness, result, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn a_large_compressed_message_is_fragmented_with_rsv1_on_its_first_frame_only() {
    let config = Config::default().with_fragment_size(1024);
    let mut client = Connection::new(Role::Client, config, Some(params(false, 15)));
    let mut server = Connection::new(Role::Server, Config::default(), Some(params(false, 15)));
    // Random bytes do not compress: the compressed message stays large.
    let mut state = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..50_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    client.send_binary(&noise).unwrap();
    client.send_text("small, after").unwrap();
    let wire = common::drain(&mut client);
    server.handle_read(&wire).unwrap();
    let frames = parse_frames(&wire);
    assert!(frames.len() > 40);
    assert!(frames[0].1, "RSV1 on the first frame");
    assert!(frames[1..frames.len() - 1].iter().all(|(op, rsv1, _)| *op == OpCode::Continuation && !rsv1));
    assert_eq!(server.poll_event(), Some(Event::Message(Message::from(noise))));
    assert_eq!(server.poll_event(), Some(Event::Message(Message::from("small, after"))));
}
