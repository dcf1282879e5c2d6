//! Arbitrary bytes from the peer, read in arbitrary pieces, into an open
//! `Connection` with small limits.
//!
//! Input: `[selector, split_seed, wire bytes...]`.
//! - selector bit 0: our role (0 server: input should be masked; 1 client).
//! - bits 1–2: negotiated permessage-deflate (none / defaults / no context
//!   takeover / 9- and 8-bit windows).
//! - bit 3: echo every received message back (exercises the compressor and
//!   sending between a failure and its deferred close).
//! - bit 4: take events only now and then, not after every read.
//! - bit 5: start the closing handshake before reading anything.
//! - bit 6: hand out each data frame as a fragment event too.
//! - `split_seed`: how the bytes are cut into reads (see `Chunks`).
//!
//! Accepted outcomes: events, or one documented `ProtocolError` after which
//! the connection is `Closed`, has queued the matching close frame, and
//! ignores further input. Everything written must re-parse as valid frames
//! and be accepted by a peer connection.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::frame::OpCode;
use tether_proto::{CloseCode, Config, Connection, Event, Message, ProtocolError, Role, State};
use tether_proto_fuzz::{
    close_code, deflate_params, drain_output, opposite, parse_output, small_config, Chunks, Rng, MAX_FRAGMENTS,
    MAX_FRAME, MAX_MESSAGE,
};

fuzz_target!(|data: &[u8]| run(data));

struct Run {
    connection: Connection,
    echo: bool,
    echoed: Vec<Message>,
    close_event_seen: bool,
    /// Every event, in order.
    events: Vec<Event>,
    /// Fragment payloads of the message in progress (bit 6).
    fragments: Vec<u8>,
    fragment_events: bool,
    /// A message's first fragment was seen and its last not yet.
    started: bool,
}

fn run(data: &[u8]) {
    let [selector, seed, ref input @ ..] = *data else {
        return;
    };
    let role = if selector & 1 == 0 { Role::Server } else { Role::Client };
    let params = deflate_params(selector >> 1);
    let lazy_events = selector & 0x10 != 0;
    let close_first = selector & 0x20 != 0;

    let fragment_events = selector & 0x40 != 0;
    let config = || {
        let mut config = small_config();
        config.fragment_events = fragment_events;
        config
    };
    let mut connection = Connection::new(role, config(), params);
    let mut mask_counter = u32::from(seed);
    connection.set_mask_source(Box::new(move || {
        mask_counter = mask_counter.wrapping_mul(0x0101_0101).wrapping_add(0x3779_b97f);
        mask_counter.to_le_bytes()
    }));
    if close_first {
        connection.close(CloseCode::GOING_AWAY, "bye").unwrap();
        assert_eq!(connection.state(), State::Closing);
    }
    let mut run = Run {
        connection,
        echo: selector & 0x08 != 0,
        echoed: Vec::new(),
        close_event_seen: false,
        events: Vec::new(),
        fragments: Vec::new(),
        fragment_events,
        started: false,
    };

    let mut failure: Option<ProtocolError> = None;
    let mut output_rng = Rng::new(seed ^ 0x5a);
    let mut wire = Vec::new();
    for (index, chunk) in Chunks::new(input, seed).enumerate() {
        let ignoring = failure.is_some() || run.connection.close_received().is_some();
        let had_events = run.connection.has_events();
        let unsent = run.connection.unsent_len();
        let state = run.connection.state();
        let result = run.connection.handle_read(chunk);
        if ignoring {
            // After a failure or the peer's close, input is a no-op.
            assert_eq!(result, Ok(()));
            assert_eq!(run.connection.has_events(), had_events);
            assert_eq!(run.connection.unsent_len(), unsent);
            assert_eq!(run.connection.state(), state);
        } else if let Err(error) = result {
            check_error(&run.connection, &error, role);
            failure = Some(error);
        }
        if !lazy_events || index % 3 == 2 {
            take_events(&mut run);
        }
        if output_rng.next().is_multiple_of(2) {
            drain_output(&mut run.connection, &mut output_rng, &mut wire);
        }
        if output_rng.next().is_multiple_of(8) {
            run.connection.release_memory();
        }
    }
    take_events(&mut run);
    drain_output(&mut run.connection, &mut output_rng, &mut wire);

    // Reads, sends and the moment events are taken change nothing of what is
    // received: one read of everything, by a connection that never sends,
    // gives the same events and fails (or not) on the same message. Only
    // which of a message's payload problems is noticed first may depend on
    // the reads: text is checked as it arrives and compressed data inflated
    // as it arrives, so a read boundary can put the UTF-8 error first.
    let mut reference = Connection::new(role, config(), params);
    let reference_result = reference.handle_read(input);
    let reference_events: Vec<Event> = std::iter::from_fn(|| reference.poll_event()).collect();
    assert_eq!(run.events, reference_events, "events differ from one read of everything");
    let payload_problem = |error: &ProtocolError| {
        matches!(
            error,
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData | ProtocolError::MessageTooLarge { .. }
        )
    };
    match (reference_result.err(), &failure) {
        (Some(whole), Some(split)) if whole != *split => {
            assert!(payload_problem(&whole) && payload_problem(split), "one read: {whole:?}, split: {split:?}")
        }
        (whole, split) => assert_eq!(whole.as_ref(), split.as_ref()),
    }

    let connection = &mut run.connection;

    if let Some(error) = &failure {
        assert_eq!(connection.state(), State::Closed);
        assert_eq!(connection.error(), Some(error));
    } else if connection.close_received().is_some() {
        assert_eq!(connection.state(), State::Closed);
    } else if close_first {
        assert_eq!(connection.state(), State::Closing);
    } else {
        assert_eq!(connection.state(), State::Open);
    }

    // What we wrote: valid frames, and the right close frame last.
    let frames = parse_output(&wire, role, params.is_some());
    let closes: Vec<_> = frames.iter().filter(|f| f.header.opcode == OpCode::Close).collect();
    match (close_first, &failure, connection.close_received()) {
        (true, _, _) => {
            assert_eq!(closes.len(), 1);
            assert_eq!(close_code(closes[0]), CloseCode::GOING_AWAY);
        }
        (false, Some(error), _) => {
            assert_eq!(closes.len(), 1);
            assert_eq!(close_code(closes[0]), error.close_code());
        }
        (false, None, Some(received)) => {
            assert_eq!(closes.len(), 1);
            let expected = received.map_or(CloseCode::NORMAL, |frame| frame.code);
            assert_eq!(close_code(closes[0]), expected);
        }
        (false, None, None) => assert!(closes.is_empty()),
    }
    let pings = run.events.iter().filter_map(|event| match event {
        Event::Ping(payload) => Some(&payload[..]),
        _ => None,
    });
    let mut pings = pings.peekable();
    for pong in frames.iter().filter(|f| f.header.opcode == OpCode::Pong) {
        // Each pong answers a ping, in order (some may be skipped when
        // the output is backed up: only the latest is answered then).
        while pings.next_if(|ping| *ping != &pong.payload[..]).is_some() {}
        assert!(pings.next().is_some(), "a pong that answers no ping: {:?}", pong.payload);
    }
    if connection.state() == State::Closed {
        assert_eq!(
            frames.last().map(|f| f.header.opcode),
            Some(OpCode::Close),
            "a closed connection's last frame is its close"
        );
    }

    // The peer accepts all of it and sees our echoes, in order.
    let mut peer = Connection::new(opposite(role), Config::default(), params);
    peer.handle_read(&wire).unwrap_or_else(|error| panic!("the peer refused our output: {error}"));
    let mut received = Vec::new();
    let mut peer_close = None;
    while let Some(event) = peer.poll_event() {
        match event {
            Event::Message(message) => received.push(message),
            Event::Close(frame) => peer_close = Some(frame),
            Event::Ping(_) => panic!("we never ping"),
            Event::Pong(_) => {}
            Event::Fragment { .. } => panic!("the peer does not ask for fragments"),
        }
    }
    if failure.is_some() {
        // A failure abandons what was still being fragmented: the peer got
        // the echoes up to that point, complete and in order.
        assert!(run.echoed.starts_with(&received), "the peer got something we did not echo");
    } else {
        assert_eq!(received, run.echoed);
    }
    assert_eq!(peer_close.is_some(), !closes.is_empty());

    let clean = connection.handle_eof();
    assert_eq!(connection.state(), State::Closed);
    if clean {
        assert!(failure.is_none() && connection.close_received().is_some());
    }
    assert_eq!(connection.handle_read(input), Ok(()));
}

/// The error is one the core documents, consistent with the configuration,
/// and recorded by the connection.
fn check_error(connection: &Connection, error: &ProtocolError, role: Role) {
    assert_eq!(connection.error(), Some(error));
    match *error {
        ProtocolError::FrameTooLarge { limit, actual } => {
            assert_eq!(limit, MAX_FRAME);
            assert!(actual > limit as u64);
        }
        ProtocolError::MessageTooLarge { limit, actual } => {
            assert_eq!(limit, MAX_MESSAGE);
            assert!(actual > limit as u64);
        }
        ProtocolError::TooManyFragments { limit } => assert_eq!(limit, MAX_FRAGMENTS),
        ProtocolError::ControlFrameTooLong(len) => assert!(len > 125),
        ProtocolError::InvalidCloseCode(code) => assert!(!CloseCode(code).is_sendable()),
        ProtocolError::ReservedOpCode(op) => assert!(OpCode::from_u8(op).is_none()),
        ProtocolError::UnmaskedClientFrame => assert_eq!(role, Role::Server),
        ProtocolError::MaskedServerFrame => assert_eq!(role, Role::Client),
        _ => {}
    }
    let code = error.close_code();
    assert!(code.is_sendable());
}

/// Takes every event, checking each against the limits; echoes messages if
/// asked to (which must work exactly while the connection is `Open`).
fn take_events(run: &mut Run) {
    while let Some(event) = run.connection.poll_event() {
        assert!(!run.close_event_seen, "an event after the close event");
        run.events.push(event.clone());
        match event {
            Event::Fragment { opcode, payload, fin } => {
                assert!(run.fragment_events, "fragments only when asked");
                assert!(!opcode.is_control());
                assert_eq!(opcode == OpCode::Continuation, run.started, "the first fragment names the type");
                run.started = !fin;
                run.fragments.extend_from_slice(&payload);
            }
            Event::Message(message) => {
                assert!(message.len() <= MAX_MESSAGE);
                if run.fragment_events {
                    assert_eq!(run.fragments, message.as_bytes(), "the fragments make the message");
                    run.fragments.clear();
                }
                if let Message::Text(text) = &message {
                    assert!(std::str::from_utf8(message.as_bytes()).is_ok());
                    assert_eq!(text.as_bytes(), message.as_bytes());
                }
                if run.echo {
                    let open = run.connection.state() == State::Open;
                    let sent = run.connection.send(&message);
                    assert_eq!(sent.is_ok(), open, "{sent:?}");
                    if sent.is_ok() {
                        run.echoed.push(message);
                    }
                }
            }
            Event::Ping(payload) | Event::Pong(payload) => assert!(payload.len() <= 125),
            Event::Close(frame) => {
                if let Some(frame) = frame {
                    assert!(frame.code.is_sendable());
                    assert!(frame.reason.len() <= 123);
                }
                run.close_event_seen = true;
            }
        }
    }
}
