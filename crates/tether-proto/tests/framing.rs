//! RFC 6455 §5: framing rules, as the receiving side enforces them.

mod common;

use common::{assert_failed_with, close_payload, FrameSpec, Harness};
use tether_proto::connection::Event;
use tether_proto::frame::OpCode;
use tether_proto::{CloseCode, Config, Connection, DeflateParams, Message, ProtocolError, Role};

fn server() -> Harness {
    Harness::server(Config::default())
}

#[test]
fn a_masked_text_frame_is_delivered_as_a_message() {
    let mut harness = server();
    harness.feed(&FrameSpec::client(OpCode::Text, "héllo".as_bytes()).bytes()).unwrap();
    assert_eq!(harness.events(), vec![Event::Message(Message::from("héllo"))]);
}

#[test]
fn every_payload_length_form_is_accepted() {
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 200_000] {
        let mut harness = server();
        let payload = vec![7u8; len];
        harness.feed(&FrameSpec::client(OpCode::Binary, &payload).bytes()).unwrap();
        assert_eq!(harness.events(), vec![Event::Message(Message::from(payload))], "len {len}");
    }
}

#[test]
fn reserved_bits_without_an_extension_fail_with_1002() {
    for (rsv1, rsv2, rsv3) in [(true, false, false), (false, true, false), (false, false, true)] {
        let mut harness = server();
        let mut frame = FrameSpec::client(OpCode::Text, b"x");
        frame.rsv1 = rsv1;
        frame.rsv2 = rsv2;
        frame.rsv3 = rsv3;
        let result = harness.feed(&frame.bytes());
        assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn reserved_opcodes_fail_with_1002() {
    for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let mut harness = server();
        let result = harness.feed(&FrameSpec::client(OpCode::Binary, b"").raw_opcode(opcode).bytes());
        assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn a_continuation_with_no_message_in_progress_fails_with_1002() {
    let mut harness = server();
    let result = harness.feed(&FrameSpec::client(OpCode::Continuation, b"orphan").bytes());
    assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn a_new_message_inside_a_fragmented_one_fails_with_1002() {
    let mut harness = server();
    harness.feed(&FrameSpec::client(OpCode::Text, b"part").fin(false).bytes()).unwrap();
    let result = harness.feed(&FrameSpec::client(OpCode::Text, b"other").bytes());
    assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn a_server_refuses_unmasked_client_frames() {
    let mut harness = server();
    let result = harness.feed(&FrameSpec::server(OpCode::Text, b"plain").bytes());
    assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn a_client_refuses_masked_server_frames() {
    let mut harness = Harness::client(Config::default());
    let result = harness.feed(&FrameSpec::client(OpCode::Text, b"masked").bytes());
    assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn a_64_bit_length_with_the_top_bit_set_fails_with_1002() {
    let mut harness = server();
    let result = harness.feed(&FrameSpec::client(OpCode::Binary, b"").declared_len(1 << 63).bytes());
    assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn fragments_with_interleaved_control_frames_reassemble() {
    let mut harness = server();
    let mut wire = FrameSpec::client(OpCode::Text, b"Hel").fin(false).bytes();
    wire.extend(FrameSpec::client(OpCode::Ping, b"p1").bytes());
    wire.extend(FrameSpec::client(OpCode::Continuation, b"lo ").fin(false).bytes());
    wire.extend(FrameSpec::client(OpCode::Pong, b"").bytes());
    wire.extend(FrameSpec::client(OpCode::Continuation, b"world").bytes());
    harness.feed(&wire).unwrap();
    assert_eq!(
        harness.events(),
        vec![Event::Ping(b"p1"[..].into()), Event::Pong(b""[..].into()), Event::Message(Message::from("Hello world")),]
    );
    assert_eq!(harness.sent_frames(), vec![(OpCode::Pong, false, b"p1".to_vec())]);
}

#[test]
fn a_message_before_a_violation_is_delivered_and_may_be_answered_before_the_close() {
    let mut harness = server();
    let mut wire = FrameSpec::client(OpCode::Text, b"first").bytes();
    wire.extend(FrameSpec::client(OpCode::Continuation, b"orphan").bytes());
    assert!(harness.feed(&wire).is_err());
    assert_eq!(harness.connection.poll_event(), Some(Event::Message(Message::from("first"))));
    harness.connection.send_text("first").unwrap();
    assert_eq!(harness.connection.poll_event(), None);
    let frames = harness.sent_frames();
    assert_eq!(frames[0], (OpCode::Text, false, b"first".to_vec()));
    assert_eq!(frames[1].0, OpCode::Close);
    assert_eq!(u16::from_be_bytes([frames[1].2[0], frames[1].2[1]]), 1002);
}

#[test]
fn input_after_a_failure_is_ignored() {
    let mut harness = server();
    let _ = harness.feed(&FrameSpec::client(OpCode::Continuation, b"x").bytes());
    let _ = harness.events();
    harness.feed(&FrameSpec::client(OpCode::Text, b"late").bytes()).unwrap();
    assert_eq!(harness.events(), vec![]);
}

#[test]
fn every_split_point_of_a_frame_stream_gives_the_same_messages() {
    let mut wire = FrameSpec::client(OpCode::Text, "κόσμε".as_bytes()).fin(false).bytes();
    wire.extend(FrameSpec::client(OpCode::Continuation, &[b'x'; 300]).bytes());
    wire.extend(FrameSpec::client(OpCode::Binary, &[1, 2, 3]).bytes());
    let mut whole = server();
    whole.feed(&wire).unwrap();
    let expected = whole.events();
    for split in 0..=wire.len() {
        let mut harness = server();
        harness.feed(&wire[..split]).unwrap();
        harness.feed(&wire[split..]).unwrap();
        assert_eq!(harness.events(), expected, "split at {split}");
    }
    let mut harness = server();
    for byte in &wire {
        harness.feed(std::slice::from_ref(byte)).unwrap();
    }
    assert_eq!(harness.events(), expected);
}

#[test]
fn our_frames_are_masked_as_a_client_and_unmasked_as_a_server() {
    let mut client = Harness::client(Config::default());
    client.connection.send_text("abc").unwrap();
    let bytes = client.connection.pending_transmit().to_vec();
    assert_eq!(bytes[1] & 0x80, 0x80);
    let mut server = server();
    server.connection.send_text("abc").unwrap();
    let bytes = server.connection.pending_transmit().to_vec();
    assert_eq!(bytes[1] & 0x80, 0);
}

#[test]
fn an_injected_mask_source_is_used_for_every_frame() {
    let mut client = Harness::client(Config::default());
    client.connection.set_mask_source(Box::new(|| [0, 0, 0, 0]));
    client.connection.send_text("abc").unwrap();
    let bytes = client.connection.pending_transmit().to_vec();
    assert_eq!(&bytes[2..], &[0, 0, 0, 0, b'a', b'b', b'c']);
}

#[test]
fn many_sends_are_batched_into_one_transmit_buffer() {
    let mut harness = server();
    for i in 0..16 {
        harness.connection.send_text(&format!("m{i}")).unwrap();
    }
    let frames = harness.sent_frames();
    assert_eq!(frames.len(), 16);
    assert!(!harness.connection.wants_transmit());
}

#[test]
fn a_large_server_message_goes_out_by_reference_intact_and_in_order() {
    let mut harness = Harness::server(Config::default().with_fragment_size(1 << 20));
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    harness.connection.send_text("before").unwrap();
    harness.connection.send(&Message::from(big.clone())).unwrap();
    harness.connection.send_text("after").unwrap();
    let mut slices = [std::io::IoSlice::new(&[]); 8];
    let count = harness.connection.pending_transmit_vectored(&mut slices);
    assert!(count >= 3, "the payload is a slice of its own, not copied");
    let frames = harness.sent_frames();
    assert_eq!(
        frames,
        vec![
            (OpCode::Text, false, b"before".to_vec()),
            (OpCode::Binary, false, big),
            (OpCode::Text, false, b"after".to_vec())
        ]
    );
}

#[test]
fn close_payload_helper_encodes_code_first() {
    assert_eq!(close_payload(1000, b"x"), vec![0x03, 0xe8, b'x']);
}

// ---- outgoing fragmentation -------------------------------------------------

fn fragmenting_client(fragment_size: usize) -> Harness {
    Harness::client(Config::default().with_fragment_size(fragment_size))
}

#[test]
fn a_message_larger_than_the_fragment_size_goes_out_in_fragments_a_peer_reassembles() {
    for (role, size) in [(Role::Client, 1000usize), (Role::Server, 100_000)] {
        let mut sender = match role {
            Role::Client => fragmenting_client(256),
            Role::Server => Harness::server(Config::default().with_fragment_size(16 << 10)),
        };
        let big: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        sender.connection.send(&Message::from(big.clone())).unwrap();
        let wire = common::drain(&mut sender.connection);
        let frames = common::parse_frames_with_fin(&wire);
        let fragment = if role == Role::Client { 256 } else { 16 << 10 };
        assert_eq!(frames.len(), size.div_ceil(fragment), "{role:?}");
        assert_eq!(frames[0].0, OpCode::Binary);
        assert!(frames[1..].iter().all(|(op, _, _)| *op == OpCode::Continuation));
        assert!(frames.iter().rev().skip(1).all(|(_, fin, _)| !fin) && frames.last().unwrap().1);
        assert!(frames.iter().all(|(_, _, payload)| payload.len() <= fragment));

        let peer_role = if role == Role::Client { Role::Server } else { Role::Client };
        let mut peer = Connection::new(peer_role, Config::default(), None);
        peer.handle_read(&wire).unwrap();
        assert_eq!(peer.poll_event(), Some(Event::Message(Message::from(big))));
    }
}

#[test]
fn a_message_of_exactly_the_fragment_size_is_one_frame() {
    let mut harness = fragmenting_client(256);
    harness.connection.send_binary(&[5; 256]).unwrap();
    assert_eq!(harness.sent_frames().len(), 1);
}

#[test]
fn a_pong_goes_out_between_the_fragments_of_a_large_message() {
    let mut harness = fragmenting_client(1024);
    harness.connection.send_binary(&vec![9u8; 64 << 10]).unwrap();
    // The transport takes the first kilobyte, then the peer pings.
    let first = harness.connection.pending_transmit().len().min(1024);
    let mut wire = harness.connection.pending_transmit()[..first].to_vec();
    harness.connection.advance_transmit(first);
    harness.feed(&FrameSpec::server(OpCode::Ping, b"are you there").bytes()).unwrap();
    wire.extend(common::drain(&mut harness.connection));
    let frames = common::parse_frames_with_fin(&wire);
    let pong_at = frames.iter().position(|(op, _, _)| *op == OpCode::Pong).expect("a pong");
    // Four fragments are framed ahead, so one write can carry them all.
    assert!(pong_at <= 5, "the pong waits behind at most the fragments framed ahead, not 64 (at {pong_at})");
    assert_eq!(frames[pong_at].2, b"are you there");
    let data: usize = frames.iter().filter(|(op, _, _)| !op.is_control()).map(|(_, _, p)| p.len()).sum();
    assert_eq!(data, 64 << 10);
}

#[test]
fn messages_and_a_close_sent_behind_a_large_message_keep_their_order() {
    let mut harness = fragmenting_client(100);
    harness.connection.send_binary(&[1; 1000]).unwrap();
    harness.connection.send_text("after").unwrap();
    harness.connection.close(CloseCode::NORMAL, "done").unwrap();
    assert!(harness.connection.send_text("too late").is_err());
    let frames = common::parse_frames_with_fin(&common::drain(&mut harness.connection));
    assert_eq!(frames.len(), 12);
    assert_eq!(frames[10], (OpCode::Text, true, b"after".to_vec()));
    assert_eq!(frames[11].0, OpCode::Close, "nothing after the close, and the close after all data");
    assert!(harness.connection.unsent_len() == 0);
}

#[test]
fn unsent_len_counts_what_is_still_to_be_framed() {
    let mut harness = fragmenting_client(1000);
    harness.connection.send_binary(&[1; 100_000]).unwrap();
    assert!(harness.connection.unsent_len() >= 100_000);
    common::drain(&mut harness.connection);
    assert_eq!(harness.connection.unsent_len(), 0);
    assert!(!harness.connection.wants_transmit());
}

#[test]
fn a_failure_mid_message_abandons_the_rest_and_sends_the_close_at_once() {
    let mut harness = fragmenting_client(100);
    harness.connection.send_binary(&[1; 100_000]).unwrap();
    let result = harness.feed(&FrameSpec::server(OpCode::Text, &[0xff]).bytes());
    assert!(result.is_err());
    let frames = common::parse_frames_with_fin(&common::drain(&mut harness.connection));
    assert!(frames.len() < 10, "the rest of the message is dropped ({} frames)", frames.len());
    assert_eq!(frames.last().unwrap().0, OpCode::Close);
}

// ---- prepared (broadcast) messages ----------------------------------------------------

#[test]
fn a_prepared_message_is_framed_once_and_shared_by_every_server_connection() {
    let prepared = tether_proto::PreparedMessage::new(&Message::from(vec![3u8; 40_000]));
    for _ in 0..3 {
        let mut harness = server();
        harness.connection.send_prepared(&prepared).unwrap();
        let mut slices = [std::io::IoSlice::new(&[]); 4];
        let count = harness.connection.pending_transmit_vectored(&mut slices);
        assert!(
            slices[..count].iter().any(|slice| slice.as_ptr() == prepared.frame().as_ptr()),
            "the connection sends the shared frame itself, not a copy"
        );
        let frames = harness.sent_frames();
        assert_eq!(frames, vec![(OpCode::Binary, false, vec![3u8; 40_000])]);
    }
    // Small ones are copied (cheaper than a reference), still framed once.
    let small = tether_proto::PreparedMessage::new(&Message::from("hi"));
    let mut harness = server();
    harness.connection.send_prepared(&small).unwrap();
    assert_eq!(harness.connection.pending_transmit(), &small.frame()[..]);
}

#[test]
fn a_client_given_a_prepared_message_masks_it_itself() {
    let prepared = tether_proto::PreparedMessage::new(&Message::from("to the server"));
    let mut client = Harness::client(Config::default());
    client.connection.send_prepared(&prepared).unwrap();
    let wire = common::drain(&mut client.connection);
    let mut peer = Connection::new(Role::Server, Config::default(), None);
    peer.handle_read(&wire).unwrap();
    assert_eq!(peer.poll_event(), Some(Event::Message(Message::from("to the server"))));
}

/// A server connection and its client, both with permessage-deflate as
/// `params` say.
fn deflate_pair(params: DeflateParams) -> (Connection, Connection) {
    (
        Connection::new(Role::Server, Config::default(), Some(params)),
        Connection::new(Role::Client, Config::default(), Some(params)),
    )
}

fn params(server_no_context_takeover: bool, server_max_window_bits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover,
        client_no_context_takeover: false,
        server_max_window_bits,
        client_max_window_bits: 15,
    }
}

#[test]
fn a_prepared_message_is_compressed_once_for_every_connection_without_server_context_takeover() {
    let text =
        "{\"type\":\"quote\",\"symbol\":\"ACME\",\"price\":101.25,\"note\":\"steady steady steady steady\"}".repeat(20);
    let prepared = tether_proto::PreparedMessage::new(&Message::from(text.as_str()));
    assert_eq!(prepared.compressed_len(), None, "nothing is compressed before a connection asks");
    let mut first_wire = None;
    for _ in 0..3 {
        let (mut server, mut client) = deflate_pair(params(true, 15));
        server.send_prepared(&prepared).unwrap();
        let wire = common::drain(&mut server);
        assert_eq!(wire[0] & 0x40, 0x40, "RSV1: compressed");
        assert_eq!(Some(wire.len()), prepared.compressed_len(), "the shared compressed frame, as is");
        assert!(wire.len() < text.len() / 4);
        first_wire.get_or_insert_with(|| wire.clone());
        assert_eq!(first_wire.as_ref(), Some(&wire), "the same bytes for everyone");
        client.handle_read(&wire).unwrap();
        assert_eq!(client.poll_event(), Some(Event::Message(Message::from(text.as_str()))));
    }
}

#[test]
fn a_prepared_message_goes_uncompressed_where_the_shared_form_does_not_fit() {
    let text = "abcabcabc ".repeat(100);
    let prepared = tether_proto::PreparedMessage::new(&Message::from(text.as_str()));
    // Compressed first with a 15-bit window: a peer that allowed only 9
    // bits cannot take that frame, so its connection compresses its own.
    let (mut wide, _) = deflate_pair(params(true, 15));
    wide.send_prepared(&prepared).unwrap();
    let shared_len = prepared.compressed_len().unwrap();
    let (mut narrow, mut narrow_client) = deflate_pair(params(true, 9));
    narrow.send_prepared(&prepared).unwrap();
    let wire = common::drain(&mut narrow);
    assert_eq!(wire[0] & 0x40, 0x40);
    narrow_client.handle_read(&wire).unwrap();
    assert_eq!(narrow_client.poll_event(), Some(Event::Message(Message::from(text.as_str()))));
    assert_eq!(prepared.compressed_len(), Some(shared_len), "the shared form is unchanged");
    // With context takeover each connection's output depends on its own
    // history: the prepared frame goes as it is, uncompressed.
    let (mut stateful, mut stateful_client) = deflate_pair(params(false, 15));
    stateful.send_prepared(&prepared).unwrap();
    let wire = common::drain(&mut stateful);
    assert_eq!(&wire[..], &prepared.frame()[..]);
    stateful_client.handle_read(&wire).unwrap();
    assert_eq!(stateful_client.poll_event(), Some(Event::Message(Message::from(text.as_str()))));
}

// ---- large payloads read straight into the message ------------------------------------

/// Feeds `wire` as a driver that reads large payloads into `payload_room`
/// would, `step` bytes per read at most; whether it was offered any room.
fn feed_reading_into_room(harness: &mut Harness, wire: &[u8], step: usize) -> (Result<(), ProtocolError>, bool) {
    let mut at = 0;
    let mut offered = false;
    while at < wire.len() {
        let result = match harness.connection.payload_room() {
            Some(room) => {
                offered = true;
                let n = room.len().min(step).min(wire.len() - at);
                for (slot, byte) in room.iter_mut().zip(&wire[at..at + n]) {
                    slot.write(*byte);
                }
                at += n;
                // SAFETY: the first `n` bytes of the room were just written.
                unsafe { harness.connection.payload_received(n) }
            }
            None => {
                let n = step.min(wire.len() - at);
                at += n;
                harness.feed(&wire[at - n..at])
            }
        };
        if result.is_err() {
            return (result, offered);
        }
    }
    (Ok(()), offered)
}

#[test]
fn a_large_payload_read_into_its_room_arrives_as_if_fed() {
    let text: String = "ωmega ".repeat(40_000);
    let mut wire = FrameSpec::client(OpCode::Text, text.as_bytes()).fin(false).bytes();
    wire.extend(FrameSpec::client(OpCode::Continuation, &[b'x'; 70_000]).bytes());
    wire.extend(FrameSpec::client(OpCode::Binary, b"small, after").bytes());
    for step in [1000, 65_536, 300_001] {
        let mut harness = Harness::server(Config::default());
        let (result, offered) = feed_reading_into_room(&mut harness, &wire, step);
        result.unwrap();
        // The largest step reads every frame's header with most of its payload.
        assert_eq!(offered, step <= 65_536, "a 280 KB frame is offered room (step {step})");
        let expected = format!("{text}{}", "x".repeat(70_000));
        assert_eq!(
            harness.events(),
            vec![
                Event::Message(Message::from(expected.as_str())),
                Event::Message(Message::Binary(bytes::Bytes::from_static(b"small, after")))
            ],
            "step {step}"
        );
    }
}

#[test]
fn invalid_utf8_read_into_the_room_fails_the_connection_with_1007() {
    let mut payload = vec![b'a'; 200_000];
    payload[150_000] = 0xff;
    let wire = FrameSpec::client(OpCode::Text, &payload).bytes();
    let mut harness = Harness::server(Config::default());
    let (result, offered) = feed_reading_into_room(&mut harness, &wire, 65_536);
    assert!(offered);
    assert_failed_with(&mut harness, result, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn no_room_is_offered_for_control_frames_compressed_or_small_payloads() {
    let mut harness = Harness::server(Config::default());
    harness.feed(&FrameSpec::client(OpCode::Binary, &[7; 50_000]).bytes()[..100]).unwrap();
    assert!(harness.connection.payload_room().is_none(), "less than 64 KiB to come");
    let mut harness = Harness::server(Config::default());
    assert!(harness.connection.payload_room().is_none(), "no frame begun");
    let _ = harness.feed(&FrameSpec::client(OpCode::Ping, b"abc").bytes()[..4]);
    assert!(harness.connection.payload_room().is_none(), "a control frame");
}

#[test]
fn a_header_that_claims_more_than_arrives_reserves_at_most_a_mebibyte_ahead() {
    let mut harness = Harness::server(Config::default().with_max_message_size(1 << 30));
    let wire = FrameSpec::client(OpCode::Binary, &[1; 16]).declared_len(1 << 29).bytes();
    harness.feed(&wire[..14]).unwrap();
    let room = harness.connection.payload_room().expect("room for a large payload").len();
    assert!(room <= (1 << 20) + 4096, "{room}");
}
