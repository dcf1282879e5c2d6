//! Keepalive, idle and close deadlines, driven by instants passed in: no
//! test here sleeps, so each deadline is checked to the microsecond.

mod common;

use std::time::{Duration, Instant};

use common::{close_payload, parse_frames, FrameSpec, Harness};
use tether_proto::connection::Event;
use tether_proto::frame::OpCode;
use tether_proto::{CloseCode, Config, Message, State, Timeout};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A client with the given keepalive, its clock started at `t0`.
fn client(interval: Option<f64>, timeout: Option<f64>) -> (Harness, Instant) {
    let config = Config::default().with_keepalive(interval.map(secs), timeout.map(secs));
    let mut harness = Harness::client(config);
    let t0 = Instant::now();
    assert_eq!(harness.connection.poll_timeout(), None, "no clock before the first handle_timeout");
    assert_eq!(harness.connection.handle_timeout(t0), None);
    (harness, t0)
}

/// The payloads of the pings among the frames sent since the last call.
fn sent_pings(harness: &mut Harness) -> Vec<Vec<u8>> {
    harness.sent_frames().into_iter().filter(|(op, _, _)| *op == OpCode::Ping).map(|(_, _, p)| p).collect()
}

fn pong(payload: &[u8]) -> Vec<u8> {
    FrameSpec::server(OpCode::Pong, payload).bytes()
}

#[test]
fn a_ping_goes_out_each_interval_and_its_pong_measures_the_round_trip() {
    let (mut harness, t0) = client(Some(20.0), Some(20.0));
    assert_eq!(harness.connection.poll_timeout(), Some(t0 + secs(20.0)));
    harness.connection.handle_timeout(t0 + secs(19.999));
    assert!(sent_pings(&mut harness).is_empty(), "not before the interval");

    harness.connection.handle_timeout(t0 + secs(20.0));
    let pings = sent_pings(&mut harness);
    assert_eq!(pings.len(), 1);
    assert_eq!(harness.connection.poll_timeout(), Some(t0 + secs(40.0)), "the pong deadline");

    harness.feed(&pong(&pings[0])).unwrap();
    harness.connection.handle_timeout(t0 + secs(20.05));
    let rtt = harness.connection.round_trip().expect("measured");
    assert_eq!(rtt.last, secs(0.05));
    assert_eq!(rtt.smoothed, secs(0.05));
    assert_eq!(harness.connection.poll_timeout(), Some(t0 + secs(40.0)), "the next ping, one interval after the last");
    assert!(matches!(harness.events()[..], [Event::Pong(_)]), "the pong is still an event");

    harness.connection.handle_timeout(t0 + secs(40.0));
    let second = sent_pings(&mut harness);
    assert_eq!(second.len(), 1);
    assert_ne!(second[0], pings[0], "each ping carries its own sequence number");
    harness.feed(&pong(&second[0])).unwrap();
    harness.connection.handle_timeout(t0 + secs(40.13));
    let rtt = harness.connection.round_trip().unwrap();
    assert_eq!(rtt.last, secs(0.13));
    assert_eq!(rtt.smoothed, secs(0.06), "7/8 of the old plus 1/8 of the new");
}

#[test]
fn an_unanswered_ping_closes_with_1011_at_the_deadline_and_not_before() {
    let (mut harness, t0) = client(Some(20.0), Some(20.0));
    harness.connection.handle_timeout(t0 + secs(20.0));
    assert_eq!(sent_pings(&mut harness).len(), 1);
    assert_eq!(harness.connection.handle_timeout(t0 + secs(39.999_999)), None);
    assert_eq!(harness.connection.state(), State::Open);

    assert_eq!(harness.connection.handle_timeout(t0 + secs(40.0)), Some(Timeout::Ping));
    assert_eq!(harness.connection.timeout(), Some(Timeout::Ping));
    assert_eq!(harness.connection.state(), State::Closed, "no waiting for a dead peer's answer");
    let frames = harness.sent_frames();
    assert_eq!(frames, vec![(OpCode::Close, false, close_payload(1011, b"keepalive ping timeout"))]);
    assert!(harness.connection.is_finished());
    assert!(harness.connection.error().is_none(), "a timeout is not a protocol error");
}

#[test]
fn an_unsolicited_pong_or_the_pong_to_an_earlier_ping_does_not_answer() {
    let (mut harness, t0) = client(Some(20.0), Some(20.0));
    harness.connection.handle_timeout(t0 + secs(20.0));
    let first = sent_pings(&mut harness).remove(0);
    harness.feed(&pong(&first)).unwrap();
    harness.connection.handle_timeout(t0 + secs(20.01));

    harness.connection.handle_timeout(t0 + secs(40.01));
    let second = sent_pings(&mut harness).remove(0);
    // The first pong again, and pongs nobody asked for.
    harness.feed(&pong(&first)).unwrap();
    harness.feed(&pong(b"")).unwrap();
    harness.feed(&pong(b"hello")).unwrap();
    assert_eq!(harness.connection.handle_timeout(t0 + secs(50.0)), None);
    assert_eq!(harness.connection.handle_timeout(t0 + secs(60.01)), Some(Timeout::Ping));
    assert_ne!(first, second);
}

#[test]
fn a_pong_to_a_later_application_ping_answers_ours_too() {
    // RFC 6455 §5.5.3: a peer may answer only the most recent ping.
    let (mut harness, t0) = client(Some(20.0), Some(20.0));
    harness.connection.handle_timeout(t0 + secs(20.0));
    harness.connection.send_ping(b"mine").unwrap();
    harness.feed(&pong(b"mine")).unwrap();
    assert_eq!(harness.connection.handle_timeout(t0 + secs(20.2)), None);
    assert_eq!(harness.connection.handle_timeout(t0 + secs(40.0)), None);
    assert_eq!(harness.connection.state(), State::Open);
    assert!(harness.connection.round_trip().is_some());
}

#[test]
fn both_seed_configurations_work() {
    // websocket-client's run_forever(ping_interval=60, ping_timeout=5).
    let (mut harness, t0) = client(Some(60.0), Some(5.0));
    harness.connection.handle_timeout(t0 + secs(60.0));
    assert_eq!(sent_pings(&mut harness).len(), 1);
    assert_eq!(harness.connection.poll_timeout(), Some(t0 + secs(65.0)));
    assert_eq!(harness.connection.handle_timeout(t0 + secs(65.0)), Some(Timeout::Ping));

    // websockets' connect(ping_interval=20, ping_timeout=30): the timeout
    // outlasts the interval, so no second ping goes out while the first
    // is awaited.
    let (mut harness, t0) = client(Some(20.0), Some(30.0));
    harness.connection.handle_timeout(t0 + secs(20.0));
    assert_eq!(sent_pings(&mut harness).len(), 1);
    harness.connection.handle_timeout(t0 + secs(40.0));
    assert!(sent_pings(&mut harness).is_empty(), "no second ping while one is awaited");
    assert_eq!(harness.connection.handle_timeout(t0 + secs(49.9)), None);
    assert_eq!(harness.connection.handle_timeout(t0 + secs(50.0)), Some(Timeout::Ping));

    for config in [
        Config::default().with_keepalive(Some(secs(60.0)), Some(secs(5.0))),
        Config::default().with_keepalive(Some(secs(20.0)), Some(secs(30.0))),
        Config::default().with_keepalive(None, None),
        Config::default(),
    ] {
        assert_eq!(config.validate(), Ok(()));
    }
}

#[test]
fn a_late_pong_after_a_slow_answer_still_keeps_the_schedule() {
    let (mut harness, t0) = client(Some(20.0), Some(30.0));
    harness.connection.handle_timeout(t0 + secs(20.0));
    let ping = sent_pings(&mut harness).remove(0);
    harness.feed(&pong(&ping)).unwrap();
    harness.connection.handle_timeout(t0 + secs(45.0));
    assert_eq!(harness.connection.round_trip().unwrap().last, secs(25.0));
    // The next ping was due one interval after the first (40 s), which
    // has passed: it goes out at once, and its deadline is what is next.
    assert_eq!(sent_pings(&mut harness).len(), 1);
    assert_eq!(harness.connection.poll_timeout(), Some(t0 + secs(75.0)));
}

#[test]
fn without_a_ping_timeout_pings_keep_their_schedule_unanswered() {
    let (mut harness, t0) = client(Some(10.0), None);
    for i in 1..=5 {
        harness.connection.handle_timeout(t0 + secs(10.0 * f64::from(i)));
        assert_eq!(sent_pings(&mut harness).len(), 1, "ping {i}");
    }
    assert_eq!(harness.connection.state(), State::Open);
}

#[test]
fn no_keepalive_schedules_nothing() {
    let (harness, _) = client(None, None);
    assert_eq!(harness.connection.poll_timeout(), None);
}

#[test]
fn impossible_combinations_are_refused_with_the_reason() {
    let cases = [
        (Config::default().with_keepalive(Some(Duration::ZERO), None), "ping_interval is zero"),
        (Config::default().with_keepalive(Some(secs(20.0)), Some(Duration::ZERO)), "ping_timeout is zero"),
        (Config::default().with_keepalive(None, Some(secs(20.0))), "no ping is ever sent"),
        (Config::default().with_ping_payload(vec![0u8; 126]), "at most 125"),
        (Config::default().with_close_timeout(Duration::ZERO), "close_timeout is zero"),
        (Config::default().with_idle_timeout(Some(Duration::ZERO)), "idle_timeout is zero"),
        (Config::default().with_fragment_size(0), "fragment_size is zero"),
    ];
    for (config, why) in cases {
        let error = config.validate().expect_err(why);
        assert!(error.to_string().contains(why), "{error} should say {why:?}");
    }
}

#[test]
fn a_custom_ping_payload_is_sent_as_is_and_matched() {
    let config =
        Config::default().with_keepalive(Some(secs(5.0)), Some(secs(5.0))).with_ping_payload(&b"{\"op\":\"ping\"}"[..]);
    let mut harness = Harness::client(config);
    let t0 = Instant::now();
    harness.connection.handle_timeout(t0);
    harness.connection.handle_timeout(t0 + secs(5.0));
    let pings = sent_pings(&mut harness);
    assert_eq!(pings, vec![b"{\"op\":\"ping\"}".to_vec()]);
    harness.feed(&pong(&pings[0])).unwrap();
    assert_eq!(harness.connection.handle_timeout(t0 + secs(10.0)), None);
    assert!(harness.connection.round_trip().is_some());
}

#[test]
fn a_peer_busy_sending_a_long_message_is_not_declared_dead() {
    // Its pong cannot overtake the message it is sending; the data itself
    // proves it is alive. Once it goes quiet, the deadline applies again.
    let (mut harness, t0) = client(Some(20.0), Some(20.0));
    harness.connection.handle_timeout(t0 + secs(20.0));
    sent_pings(&mut harness);
    harness.feed(&FrameSpec::server(OpCode::Binary, &[1; 100]).fin(false).bytes()).unwrap();
    for second in (25..=55).step_by(5) {
        harness.feed(&FrameSpec::server(OpCode::Continuation, &[1; 100]).fin(false).bytes()).unwrap();
        assert_eq!(harness.connection.handle_timeout(t0 + secs(f64::from(second))), None, "at {second} s");
    }
    // Quiet from 55 s: the deadline extended at 40 s ran to 60 s, saw
    // data, and was extended to 80 s; nothing arrives after that.
    assert_eq!(harness.connection.handle_timeout(t0 + secs(60.0)), None);
    assert_eq!(harness.connection.handle_timeout(t0 + secs(79.9)), None);
    assert_eq!(harness.connection.handle_timeout(t0 + secs(80.0)), Some(Timeout::Ping));
}

#[test]
fn a_peer_slowly_reading_our_large_message_is_not_declared_dead() {
    let config = Config::default().with_keepalive(Some(secs(20.0)), Some(secs(20.0)));
    let mut harness = Harness::client(config);
    let t0 = Instant::now();
    harness.connection.handle_timeout(t0);
    harness.connection.send(&Message::from(vec![7u8; 4 << 20])).unwrap();
    harness.connection.handle_timeout(t0 + secs(20.0));
    // The reader takes 16 KiB every second: alive, but slow.
    for second in 21..=70 {
        let n = harness.connection.pending_transmit().len().min(16 << 10);
        harness.connection.advance_transmit(n);
        assert_eq!(harness.connection.handle_timeout(t0 + secs(f64::from(second))), None, "at {second} s");
    }
    // It stops reading: dead one timeout after the last extension (at 60 s).
    assert_eq!(harness.connection.handle_timeout(t0 + secs(80.0)), None, "progress at 61..70 s extends once more");
    assert_eq!(harness.connection.handle_timeout(t0 + secs(100.0)), Some(Timeout::Ping));
}

#[test]
fn a_stalled_peer_with_nothing_to_read_is_not_excused_by_old_progress() {
    // Our output drained long ago: output progress counts only while data
    // still waits for the peer.
    let (mut harness, t0) = client(Some(20.0), Some(20.0));
    harness.connection.send_text("hello").unwrap();
    harness.connection.handle_timeout(t0 + secs(20.0));
    harness.sent_frames(); // text and ping written: progress, but nothing left
    assert_eq!(harness.connection.handle_timeout(t0 + secs(40.0)), Some(Timeout::Ping));
}

#[test]
fn after_a_ping_timeout_output_the_peer_does_not_take_is_abandoned_at_once() {
    // A peer that stopped reading: our output (a message and the ping)
    // never leaves. At the pong deadline the close frame is queued behind
    // it for whatever the transport takes at once; at the next check the
    // connection is over, not a close timeout later.
    let (mut harness, t0) = client(Some(20.0), Some(20.0));
    harness.connection.send_binary(&[7; 10_000]).unwrap();
    harness.connection.handle_timeout(t0 + secs(20.0));
    assert_eq!(harness.connection.handle_timeout(t0 + secs(40.0)), Some(Timeout::Ping));
    assert!(!harness.connection.is_finished(), "the close frame waits for one write attempt");
    assert_eq!(harness.connection.poll_timeout(), Some(t0 + secs(40.0)), "due now");
    assert_eq!(harness.connection.handle_timeout(t0 + secs(40.0)), Some(Timeout::Close));
    assert!(harness.connection.is_finished());
    assert_eq!(harness.connection.timeout(), Some(Timeout::Ping), "the cause is still the ping timeout");
}

#[test]
fn the_closing_handshake_is_abandoned_at_the_close_timeout() {
    let (mut harness, t0) = client(None, None);
    harness.connection.handle_timeout(t0 + secs(1.0));
    harness.connection.close(CloseCode::NORMAL, "bye").unwrap();
    assert_eq!(harness.connection.poll_timeout(), Some(t0 + secs(1.0)), "a close not yet timed is due now");
    harness.connection.handle_timeout(t0 + secs(1.0));
    assert_eq!(harness.connection.poll_timeout(), Some(t0 + secs(11.0)));
    assert_eq!(harness.connection.handle_timeout(t0 + secs(10.9)), None);
    assert_eq!(harness.connection.state(), State::Closing);
    // Our close frame never left (a peer that does not read): dropped too.
    assert_eq!(harness.connection.handle_timeout(t0 + secs(11.0)), Some(Timeout::Close));
    assert_eq!(harness.connection.state(), State::Closed);
    assert!(harness.connection.is_finished(), "nothing more to write, nothing to wait for");
}

#[test]
fn a_peer_answering_the_close_in_time_ends_cleanly() {
    let (mut harness, t0) = client(Some(20.0), Some(20.0));
    harness.connection.close(CloseCode::NORMAL, "").unwrap();
    harness.connection.handle_timeout(t0 + secs(1.0));
    harness.sent_frames();
    harness.feed(&FrameSpec::server(OpCode::Close, &close_payload(1000, b"")).bytes()).unwrap();
    assert_eq!(harness.connection.state(), State::Closed);
    assert_eq!(harness.connection.handle_timeout(t0 + secs(30.0)), None, "no ping, no timeout once closed");
    assert_eq!(harness.connection.timeout(), None);
}

#[test]
fn no_ping_is_sent_while_closing() {
    let (mut harness, t0) = client(Some(20.0), Some(20.0));
    harness.connection.close(CloseCode::NORMAL, "").unwrap();
    harness.sent_frames();
    harness.connection.handle_timeout(t0 + secs(20.0));
    assert!(harness.sent_frames().is_empty());
}

#[test]
fn idle_timeout_counts_data_messages_not_keepalive() {
    let config =
        Config::default().with_keepalive(Some(secs(10.0)), Some(secs(10.0))).with_idle_timeout(Some(secs(30.0)));
    let mut harness = Harness::server(config);
    let t0 = Instant::now();
    // Ticks at `second`, answering every ping at once, as a live peer does.
    let tick = |harness: &mut Harness, second: f64| {
        let expired = harness.connection.handle_timeout(t0 + secs(second));
        for (_, _, payload) in harness.sent_frames().into_iter().filter(|(op, _, _)| *op == OpCode::Ping) {
            harness.feed(&FrameSpec::client(OpCode::Pong, &payload).bytes()).unwrap();
        }
        expired.or(harness.connection.handle_timeout(t0 + secs(second + 0.001)))
    };
    tick(&mut harness, 0.0);
    // A message received before 10 s and one sent at 25 s each restart the count.
    harness.feed(&FrameSpec::client(OpCode::Text, b"hi").bytes()).unwrap();
    tick(&mut harness, 10.0);
    tick(&mut harness, 20.0);
    harness.connection.send_text("hello").unwrap();
    tick(&mut harness, 25.0);
    // Pings and pongs keep flowing at 30, 40 and 50 s, and do not count.
    for second in [30.0, 40.0, 50.0, 54.9] {
        assert_eq!(tick(&mut harness, second), None, "at {second} s");
    }
    assert_eq!(harness.connection.round_trip().unwrap().last, secs(0.001));
    assert_eq!(harness.connection.handle_timeout(t0 + secs(55.0)), Some(Timeout::Idle));
    assert_eq!(harness.connection.state(), State::Closing, "a normal closing handshake");
    let frames = parse_frames(&common::drain(&mut harness.connection));
    assert_eq!(frames.last().unwrap(), &(OpCode::Close, false, close_payload(1001, b"idle timeout")));
    assert_eq!(harness.connection.timeout(), Some(Timeout::Idle));
}

#[test]
fn a_transport_queue_that_drains_shows_a_slow_reader_and_one_that_does_not_a_dead_one() {
    // All our bytes are in the kernel: only its send queue shows progress.
    let (mut harness, t0) = client(Some(20.0), Some(20.0));
    harness.connection.handle_transport_queue(3_000_000);
    harness.connection.handle_timeout(t0 + secs(20.0));
    harness.sent_frames();
    harness.connection.handle_transport_queue(2_000_000);
    assert_eq!(harness.connection.handle_timeout(t0 + secs(40.0)), None, "draining: alive");
    harness.connection.handle_transport_queue(1_000_000);
    assert_eq!(harness.connection.handle_timeout(t0 + secs(60.0)), None, "still draining");
    harness.connection.handle_transport_queue(1_000_000);
    assert_eq!(harness.connection.handle_timeout(t0 + secs(80.0)), Some(Timeout::Ping), "stuck: dead");

    // Writing the ping itself is no sign of the peer: with the kernel queue
    // stuck from the start, the first deadline is final.
    let (mut harness, t0) = client(Some(20.0), Some(20.0));
    harness.connection.handle_transport_queue(500_000);
    harness.connection.handle_timeout(t0 + secs(20.0));
    harness.sent_frames();
    harness.connection.handle_transport_queue(500_000);
    assert_eq!(harness.connection.handle_timeout(t0 + secs(40.0)), Some(Timeout::Ping));
}
