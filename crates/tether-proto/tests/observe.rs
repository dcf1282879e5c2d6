//! Seeing frames one by one: fragment events (`on_cont_message`,
//! `on_data`) and the frame observer behind trace.

mod common;

use std::sync::{Arc, Mutex};

use common::{FrameSpec, Harness};
use tether_proto::connection::Event;
use tether_proto::frame::OpCode;
use tether_proto::{Bytes, Config, Connection, DeflateParams, Direction, Message, Role};

fn with_fragment_events() -> Config {
    let mut config = Config::default();
    config.fragment_events = true;
    config
}

#[test]
fn each_data_frame_is_an_event_before_the_whole_message() {
    let mut harness = Harness::server(with_fragment_events());
    harness.feed(&FrameSpec::client(OpCode::Text, b"Hel").fin(false).bytes()).unwrap();
    harness.feed(&FrameSpec::client(OpCode::Ping, b"p").bytes()).unwrap();
    harness.feed(&FrameSpec::client(OpCode::Continuation, b"lo").bytes()).unwrap();
    assert_eq!(
        harness.events(),
        vec![
            Event::Fragment { opcode: OpCode::Text, payload: Bytes::from_static(b"Hel"), fin: false },
            Event::Ping(Bytes::from_static(b"p")),
            Event::Fragment { opcode: OpCode::Continuation, payload: Bytes::from_static(b"lo"), fin: true },
            Event::Message(Message::from("Hello")),
        ]
    );
}

#[test]
fn without_the_option_only_whole_messages_are_events() {
    let mut harness = Harness::server(Config::default());
    harness.feed(&FrameSpec::client(OpCode::Binary, b"ab").fin(false).bytes()).unwrap();
    harness.feed(&FrameSpec::client(OpCode::Continuation, b"c").bytes()).unwrap();
    assert_eq!(harness.events(), vec![Event::Message(Message::from(b"abc".to_vec()))]);
}

#[test]
fn compressed_fragments_are_handed_out_inflated() {
    let params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let mut sender = Connection::new(Role::Client, Config::default().with_fragment_size(40), Some(params));
    let mut receiver = Connection::new(Role::Server, with_fragment_events(), Some(params));
    let noise: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    sender.send_binary(&noise).unwrap();
    receiver.handle_read(&common::drain(&mut sender)).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| receiver.poll_event()).collect();
    let fragments: Vec<&Bytes> = events
        .iter()
        .filter_map(|e| if let Event::Fragment { payload, .. } = e { Some(payload) } else { None })
        .collect();
    assert!(fragments.len() > 1);
    assert_eq!(fragments.iter().flat_map(|p| p.iter().copied()).collect::<Vec<u8>>(), noise);
    assert_eq!(events.last(), Some(&Event::Message(Message::from(noise))));
}

type SeenFrame = (Direction, OpCode, bool, Vec<u8>);

#[test]
fn the_observer_sees_every_frame_both_ways_unmasked() {
    let seen: Arc<Mutex<Vec<SeenFrame>>> = Arc::default();
    let mut harness = Harness::client(Config::default().with_fragment_size(4));
    let log = seen.clone();
    harness.connection.set_frame_observer(Box::new(
        move |direction, header: &tether_proto::frame::FrameHeader, payload: &[u8]| {
            log.lock().unwrap().push((direction, header.opcode, header.fin, payload.to_vec()));
        },
    ));
    harness.connection.send_text("hello!").unwrap();
    common::drain(&mut harness.connection);
    harness.feed(&FrameSpec::server(OpCode::Text, b"hi").bytes()).unwrap();
    harness.feed(&FrameSpec::server(OpCode::Ping, b"x").bytes()).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (Direction::Outgoing, OpCode::Text, false, b"hell".to_vec()),
            (Direction::Outgoing, OpCode::Continuation, true, b"o!".to_vec()),
            (Direction::Incoming, OpCode::Text, true, b"hi".to_vec()),
            (Direction::Incoming, OpCode::Ping, true, b"x".to_vec()),
            (Direction::Outgoing, OpCode::Pong, true, b"x".to_vec()),
        ]
    );
}
