//! Size limits: refused at the declared length, never truncated, memory
//! bounded by what arrived — checked with a counting allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{assert_failed_with, FrameSpec, Harness};
use tether_proto::connection::Event;
use tether_proto::deflate::Compressor;
use tether_proto::frame::OpCode;
use tether_proto::{CloseCode, Config, Connection, DeflateParams, Message, ProtocolError, Role, Settings};

/// Counts this thread's live heap bytes and their peak, for "nothing was
/// allocated" claims. Per thread, so tests running in parallel do not
/// disturb each other's figures.
struct CountingAllocator;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn live() -> usize {
    LIVE.try_with(Cell::get).unwrap_or(0)
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|live| {
            live.set(live.get() + layout.size());
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
        });
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(layout.size())));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Peak heap growth on this thread while `f` runs.
fn peak_growth(f: impl FnOnce()) -> usize {
    let before = live();
    PEAK.with(|peak| peak.set(before));
    f();
    PEAK.with(Cell::get).saturating_sub(before)
}

fn limited(limit: usize) -> Config {
    Config::default().with_max_message_size(limit)
}

#[test]
fn a_declared_length_over_the_limit_fails_with_1009_before_any_payload() {
    let mut harness = Harness::server(limited(1 << 20));
    let header = FrameSpec::client(OpCode::Binary, b"").declared_len((1 << 20) + 1).bytes();
    let result = harness.feed(&header);
    assert!(matches!(result, Err(ProtocolError::FrameTooLarge { .. })));
    assert_failed_with(&mut harness, result, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn a_declared_length_within_the_limit_reserves_nothing_before_its_bytes_arrive() {
    let mut connection = Connection::new(Role::Server, limited(64 << 20), None);
    let header = FrameSpec::client(OpCode::Binary, b"").declared_len((64 << 20) - 1).bytes();
    let growth = peak_growth(|| {
        connection.handle_read(&header).unwrap();
        connection.handle_read(&[0u8; 100]).unwrap();
    });
    assert!(growth < 64 << 10, "declaring 64 MiB allocated {growth} bytes");
}

#[test]
fn fragments_whose_sum_exceeds_the_limit_fail_with_1009() {
    let mut harness = Harness::server(limited(1000));
    harness.feed(&FrameSpec::client(OpCode::Binary, &[1; 600]).fin(false).bytes()).unwrap();
    let result = harness.feed(&FrameSpec::client(OpCode::Continuation, &[1; 401]).bytes());
    assert!(matches!(result, Err(ProtocolError::MessageTooLarge { limit: 1000, actual: 1001 })));
    assert_failed_with(&mut harness, result, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn a_message_of_exactly_the_limit_is_delivered_intact_and_one_more_byte_is_refused() {
    let limit = 4096;
    let payload: Vec<u8> = (0..limit).map(|i| (i % 251) as u8).collect();
    let mut harness = Harness::server(limited(limit));
    harness.feed(&FrameSpec::client(OpCode::Binary, &payload).bytes()).unwrap();
    assert_eq!(harness.events(), vec![Event::Message(Message::from(payload.clone()))]);

    let mut harness = Harness::server(limited(limit));
    harness.feed(&FrameSpec::client(OpCode::Binary, &payload[..limit / 2]).fin(false).bytes()).unwrap();
    harness.feed(&FrameSpec::client(OpCode::Continuation, &payload[limit / 2..]).bytes()).unwrap();
    assert_eq!(harness.events(), vec![Event::Message(Message::from(payload.clone()))]);

    let mut harness = Harness::server(limited(limit));
    let mut over = payload;
    over.push(0);
    let result = harness.feed(&FrameSpec::client(OpCode::Binary, &over).bytes());
    assert_eq!(harness.events(), vec![], "never a truncated message");
    assert_failed_with(&mut harness, result, CloseCode::MESSAGE_TOO_BIG);
}

fn deflate_params() -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    }
}

fn compressed_frame(message: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    Compressor::new(15, 6, 8, false).compress_message(message, &mut wire);
    FrameSpec::client(OpCode::Binary, &wire).rsv1().bytes()
}

#[test]
fn a_compressed_message_of_exactly_the_limit_inflates_and_one_more_byte_is_refused() {
    let limit = 10_000;
    let mut connection = Connection::new(Role::Server, limited(limit), Some(deflate_params()));
    connection.handle_read(&compressed_frame(&vec![b'a'; limit])).unwrap();
    assert_eq!(connection.poll_event(), Some(Event::Message(Message::from(vec![b'a'; limit]))));

    let mut connection = Connection::new(Role::Server, limited(limit), Some(deflate_params()));
    let result = connection.handle_read(&compressed_frame(&vec![b'a'; limit + 1]));
    assert!(matches!(result, Err(ProtocolError::MessageTooLarge { .. })), "{result:?}");
    assert_eq!(connection.poll_event(), None);
}

#[test]
fn a_decompression_bomb_is_stopped_at_the_limit_with_bounded_memory() {
    let limit = 64 << 10;
    let bomb = compressed_frame(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 32 << 10, "bomb is {} bytes", bomb.len());
    let mut connection = Connection::new(Role::Server, limited(limit), Some(deflate_params()));
    let mut result = Ok(());
    let growth = peak_growth(|| result = connection.handle_read(&bomb));
    assert!(matches!(result, Err(ProtocolError::MessageTooLarge { .. })));
    assert!(growth < 1 << 20, "inflating a bomb grew the heap by {growth} bytes");
}

#[test]
fn a_bomb_split_across_fragments_is_stopped_too() {
    let limit = 64 << 10;
    let mut wire = Vec::new();
    Compressor::new(15, 9, 8, false).compress_message(&vec![0u8; 4 << 20], &mut wire);
    let (first, rest) = wire.split_at(wire.len() / 2);
    let mut connection = Connection::new(Role::Server, limited(limit), Some(deflate_params()));
    connection.handle_read(&FrameSpec::client(OpCode::Binary, first).rsv1().fin(false).bytes()).ok();
    let result = connection.handle_read(&FrameSpec::client(OpCode::Continuation, rest).bytes());
    let first_error = connection.error().cloned();
    assert!(matches!(first_error, Some(ProtocolError::MessageTooLarge { .. })), "{first_error:?} / {result:?}");
}

#[test]
fn an_endless_fragmented_message_of_one_byte_continuations_is_closed_at_a_bound() {
    let mut config = Config::default();
    config.max_fragments = 1000;
    let mut harness = Harness::server(config);
    harness.feed(&FrameSpec::client(OpCode::Binary, b"x").fin(false).bytes()).unwrap();
    let continuation = FrameSpec::client(OpCode::Continuation, b"x").fin(false).bytes();
    let mut failure = None;
    for sent in 1..200_000 {
        if let Err(error) = harness.feed(&continuation) {
            failure = Some((sent, error));
            break;
        }
    }
    let (sent, error) = failure.expect("the flood must be stopped");
    assert_eq!(sent, 1000, "stopped at the 1001st frame");
    assert_eq!(error, ProtocolError::TooManyFragments { limit: 1000 });
    assert_eq!(harness.sent_close_code(), Some(1009));
}

#[test]
fn the_default_fragment_bound_admits_autobahns_65536_fragments() {
    let mut harness = Harness::server(Config::default());
    let mut wire = FrameSpec::client(OpCode::Binary, &[0; 64]).fin(false).bytes();
    for _ in 1..65535 {
        wire.extend(FrameSpec::client(OpCode::Continuation, &[0; 64]).fin(false).bytes());
    }
    wire.extend(FrameSpec::client(OpCode::Continuation, &[0; 64]).bytes());
    harness.feed(&wire).unwrap();
    assert!(matches!(&harness.events()[..], [Event::Message(message)] if message.len() == 4 << 20));
}

#[test]
fn an_idle_connection_releases_its_buffers() {
    let mut connection = Connection::new(Role::Server, Config::default(), None);
    connection.handle_read(&FrameSpec::client(OpCode::Binary, &[5; 100_000]).bytes()).unwrap();
    let message = connection.poll_event();
    connection.send_binary(&[5; 100_000]).unwrap();
    let n = connection.pending_transmit().len();
    connection.advance_transmit(n);
    drop(message);
    let before = live();
    connection.release_memory();
    let freed = before.saturating_sub(live());
    assert!(freed >= 100_000, "released only {freed} bytes");
}

/// Heap held by one server connection with permessage-deflate after it has
/// compressed and inflated one message each way, for the documented figures
/// (`docs/memory.md`). Run with `--nocapture` to see them. A first round,
/// not counted, fills the thread's idle streams, which serve every
/// connection without context takeover and are not any one's cost.
fn deflate_connection_cost(params: DeflateParams) -> usize {
    let exchange = || {
        let mut connection = Connection::new(Role::Server, Config::default(), Some(params));
        connection.handle_read(&compressed_frame(&[b'm'; 1000])).unwrap();
        assert!(matches!(connection.poll_event(), Some(Event::Message(m)) if m.len() == 1000));
        connection.send_binary(&[b'm'; 1000]).unwrap();
        assert!(connection.pending_transmit()[0] & 0x40 != 0, "sent compressed");
        let n = connection.pending_transmit().len();
        connection.advance_transmit(n);
        connection.release_memory();
        connection
    };
    drop(exchange());
    let before = live();
    let connections: Vec<Connection> = (0..8).map(|_| exchange()).collect();
    (live() - before) / connections.len()
}

#[test]
fn the_memory_cost_of_deflate_per_connection_is_bounded_and_reported() {
    let plain = {
        // As a server makes them: one `Settings` for all.
        let settings = Settings::new(&Config::default());
        let before = live();
        let connections: Vec<Connection> =
            (0..8).map(|_| Connection::with_settings(Role::Server, &settings, None)).collect();
        (live() - before) / connections.len()
    };
    let full = deflate_connection_cost(deflate_params());
    let small = deflate_connection_cost(DeflateParams {
        server_max_window_bits: 10,
        client_max_window_bits: 10,
        ..deflate_params()
    });
    // The server's default: its compressor is the thread's; only the
    // client's context (its window, in our decompressor) is per connection.
    let server_resets = deflate_connection_cost(DeflateParams { server_no_context_takeover: true, ..deflate_params() });
    let both_reset = deflate_connection_cost(DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..deflate_params()
    });
    println!(
        "heap per connection: no deflate {plain} B; deflate with context takeover: 15 bits {full} B, \
         10 bits {small} B; server_no_context_takeover {server_resets} B; both no_context_takeover {both_reset} B"
    );
    assert!(plain <= 176, "a plain idle connection is only its struct, without buffers: {plain} B");
    assert!(full < 512 << 10, "{full}");
    assert!(small < full, "a smaller window must cost less: {small} vs {full}");
    assert!(server_resets < 64 << 10, "no compressor per connection: {server_resets} B");
    // The deflate state's own box (~256 B) stays; a zlib stream would be
    // tens of kilobytes.
    assert!(both_reset < plain + 512, "no zlib state between messages: {both_reset} B");
}

#[test]
fn after_a_heartbeat_and_a_message_an_idle_connection_holds_no_more_than_a_new_one() {
    let exchange = || {
        let mut connection = Connection::new(Role::Server, Config::default(), None);
        connection.send_ping(b"are you there").unwrap();
        let n = connection.pending_transmit().len();
        connection.advance_transmit(n);
        // Its pong, a ping of its own, and a message, in one read.
        let mut input = FrameSpec::client(OpCode::Pong, b"are you there").bytes();
        input.extend(FrameSpec::client(OpCode::Ping, b"and you?").bytes());
        input.extend(FrameSpec::client(OpCode::Text, b"hello").bytes());
        connection.handle_read(&input).unwrap();
        while connection.poll_event().is_some() {}
        while connection.wants_transmit() {
            let n = connection.pending_transmit().len();
            connection.advance_transmit(n);
        }
        connection.release_memory();
        connection
    };
    let new = {
        let before = live();
        let connections: Vec<Connection> =
            (0..8).map(|_| Connection::new(Role::Server, Config::default(), None)).collect();
        (live() - before) / connections.len()
    };
    drop(exchange());
    let before = live();
    let connections: Vec<Connection> = (0..8).map(|_| exchange()).collect();
    let after = (live() - before) / connections.len();
    assert_eq!(after, new, "heap per connection: {after} B after an exchange, {new} B new");
}
