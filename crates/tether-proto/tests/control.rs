//! RFC 6455 §5.5 and §7: control frames and the closing handshake.

mod common;

use common::{assert_failed_with, close_payload, drain, parse_frames_with_fin, FrameSpec, Harness};
use tether_proto::connection::Event;
use tether_proto::frame::OpCode;
use tether_proto::{CloseCode, CloseFrame, Config, State, UsageError};

fn server() -> Harness {
    Harness::server(Config::default())
}

#[test]
fn a_ping_is_answered_with_a_pong_carrying_its_payload() {
    let mut harness = server();
    harness.feed(&FrameSpec::client(OpCode::Ping, b"are you there").bytes()).unwrap();
    assert_eq!(harness.events(), vec![Event::Ping(b"are you there"[..].into())]);
    assert_eq!(harness.sent_frames(), vec![(OpCode::Pong, false, b"are you there".to_vec())]);
}

#[test]
fn ten_pings_get_ten_pongs_in_order_when_the_peer_reads() {
    let mut harness = server();
    let wire: Vec<u8> =
        (0..10).flat_map(|i| FrameSpec::client(OpCode::Ping, format!("{i}").as_bytes()).bytes()).collect();
    harness.feed(&wire).unwrap();
    let pongs: Vec<Vec<u8>> = harness.sent_frames().into_iter().map(|(_, _, payload)| payload).collect();
    assert_eq!(pongs, (0..10).map(|i| format!("{i}").into_bytes()).collect::<Vec<_>>());
}

#[test]
fn a_ping_flood_from_a_peer_that_never_reads_keeps_at_most_one_extra_pong() {
    let mut harness = server();
    let ping = FrameSpec::client(OpCode::Ping, &[b'p'; 125]).bytes();
    for _ in 0..100_000 {
        harness.feed(&ping).unwrap();
        let _ = harness.events();
    }
    // Nothing was transmitted: the backlog stops growing at the bound plus one pong.
    let backlog = harness.connection.unsent_len();
    assert!(backlog < (16 << 10) + 2 * 127, "backlog {backlog}");
    assert!(harness.connection.wants_transmit());
}

#[test]
fn a_control_frame_over_125_bytes_fails_with_1002() {
    for opcode in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        let mut harness = server();
        let result = harness.feed(&FrameSpec::client(opcode, &[b'x'; 126]).bytes());
        assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn a_fragmented_control_frame_fails_with_1002() {
    let mut harness = server();
    let result = harness.feed(&FrameSpec::client(OpCode::Ping, b"frag").fin(false).bytes());
    assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn a_close_frame_is_echoed_with_its_code_and_the_connection_closes() {
    let mut harness = server();
    harness.feed(&FrameSpec::client(OpCode::Close, &close_payload(4000, b"bye")).bytes()).unwrap();
    assert_eq!(harness.events(), vec![Event::Close(Some(CloseFrame::new(CloseCode(4000), "bye")))]);
    assert_eq!(harness.sent_close_code(), Some(4000));
    assert_eq!(harness.connection.state(), State::Closed);
    assert!(harness.connection.is_finished());
    assert!(harness.connection.handle_eof(), "EOF after the handshake is clean");
}

#[test]
fn an_empty_close_frame_is_answered_with_1000() {
    let mut harness = server();
    harness.feed(&FrameSpec::client(OpCode::Close, b"").bytes()).unwrap();
    assert_eq!(harness.events(), vec![Event::Close(None)]);
    assert_eq!(harness.sent_close_code(), Some(1000));
}

#[test]
fn a_one_byte_close_payload_fails_with_1002() {
    let mut harness = server();
    let result = harness.feed(&FrameSpec::client(OpCode::Close, &[3]).bytes());
    assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn a_close_reason_that_makes_the_payload_exceed_125_bytes_fails_with_1002() {
    let mut harness = server();
    let result = harness.feed(&FrameSpec::client(OpCode::Close, &close_payload(1000, &[b'r'; 124])).bytes());
    assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn reserved_and_unassigned_close_codes_fail_with_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        let mut harness = server();
        let result = harness.feed(&FrameSpec::client(OpCode::Close, &close_payload(code, b"")).bytes());
        assert_failed_with(&mut harness, result, CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn application_close_codes_3000_to_4999_are_echoed() {
    for code in [3000u16, 3999, 4000, 4999] {
        let mut harness = server();
        harness.feed(&FrameSpec::client(OpCode::Close, &close_payload(code, b"")).bytes()).unwrap();
        assert_eq!(harness.sent_close_code(), Some(code));
    }
}

#[test]
fn a_close_reason_with_invalid_utf8_fails_with_1007() {
    let mut harness = server();
    let result = harness.feed(&FrameSpec::client(OpCode::Close, &close_payload(1000, &[0xff, 0xfe])).bytes());
    assert_failed_with(&mut harness, result, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn our_close_then_the_peers_close_completes_the_handshake() {
    let mut harness = server();
    harness.connection.close(CloseCode::GOING_AWAY, "restart").unwrap();
    assert_eq!(harness.connection.state(), State::Closing);
    assert_eq!(harness.sent_close_code(), Some(1001));
    harness.feed(&FrameSpec::client(OpCode::Close, &close_payload(1001, b"")).bytes()).unwrap();
    assert_eq!(harness.connection.state(), State::Closed);
    assert_eq!(harness.sent_frames(), vec![], "the peer's close is not echoed back");
}

#[test]
fn sending_after_close_is_a_usage_error_not_a_frame() {
    let mut harness = server();
    harness.connection.close(CloseCode::NORMAL, "").unwrap();
    assert_eq!(harness.connection.send_text("late"), Err(UsageError::Closed));
    assert_eq!(harness.connection.send_ping(b""), Err(UsageError::Closed));
    let frames = harness.sent_frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, OpCode::Close);
}

#[test]
fn closing_with_a_reserved_code_or_a_long_reason_is_refused() {
    let mut harness = server();
    for code in [1005u16, 1006, 1015, 999, 5000] {
        assert_eq!(harness.connection.close(CloseCode(code), ""), Err(UsageError::UnsendableCloseCode(code)));
    }
    assert!(matches!(
        harness.connection.close(CloseCode::NORMAL, &"r".repeat(124)),
        Err(UsageError::ControlPayloadTooLong(_))
    ));
    assert_eq!(harness.connection.state(), State::Open);
}

#[test]
fn data_that_arrives_before_the_peers_close_can_still_be_answered() {
    let mut harness = server();
    let mut wire = FrameSpec::client(OpCode::Text, b"last words").bytes();
    wire.extend(FrameSpec::client(OpCode::Close, &close_payload(1000, b"")).bytes());
    harness.feed(&wire).unwrap();
    assert!(matches!(harness.connection.poll_event(), Some(Event::Message(_))));
    harness.connection.send_text("last words").unwrap();
    assert!(matches!(harness.connection.poll_event(), Some(Event::Close(_))));
    assert_eq!(harness.connection.poll_event(), None);
    let opcodes: Vec<OpCode> = harness.sent_frames().into_iter().map(|(opcode, _, _)| opcode).collect();
    assert_eq!(opcodes, vec![OpCode::Text, OpCode::Close]);
}

#[test]
fn eof_in_the_middle_of_a_message_is_abnormal_and_delivers_nothing() {
    let mut harness = server();
    harness.feed(&FrameSpec::client(OpCode::Text, b"partial").fin(false).bytes()).unwrap();
    assert!(!harness.connection.handle_eof());
    assert_eq!(harness.events(), vec![]);
}

#[test]
fn answers_to_messages_before_a_violation_follow_a_fragmented_answer_whole_and_the_close_comes_last() {
    // The server is still sending a large message in fragments when the
    // peer's next read holds two small messages and then a violation: the
    // close waits for the application to take those messages, and what it
    // answers meanwhile goes out after the large message, never inside it.
    let mut harness = Harness::server(Config::default().with_fragment_size(16));
    harness.connection.send_binary(&[7u8; 40]).unwrap();
    let mut wire = FrameSpec::client(OpCode::Text, b"one").bytes();
    wire.extend(FrameSpec::client(OpCode::Text, b"two").bytes());
    wire.extend(FrameSpec::client(OpCode::Text, b"bad").rsv1().bytes());
    assert!(harness.feed(&wire).is_err());
    for _ in 0..2 {
        let Some(Event::Message(message)) = harness.connection.poll_event() else { panic!("a message first") };
        harness.connection.send(&message).unwrap();
    }
    assert_eq!(harness.connection.poll_event(), None);
    let frames = parse_frames_with_fin(&drain(&mut harness.connection));
    let shape: Vec<(OpCode, bool, usize)> =
        frames.iter().map(|(opcode, fin, payload)| (*opcode, *fin, payload.len().min(16))).collect();
    assert_eq!(
        shape,
        [
            (OpCode::Binary, false, 16),
            (OpCode::Continuation, false, 16),
            (OpCode::Continuation, true, 8),
            (OpCode::Text, true, 3),
            (OpCode::Text, true, 3),
            (OpCode::Close, true, 16),
        ]
    );
    assert_eq!(&frames[5].2[..2], &1002u16.to_be_bytes(), "a protocol error");
    assert_eq!(harness.connection.state(), State::Closed);
}
