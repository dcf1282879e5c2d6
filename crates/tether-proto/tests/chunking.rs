//! Property tests: however a client's bytes are cut into reads, a server
//! delivers exactly the events it would for one read of everything, and
//! those are the messages (and pings) that were sent, with and without
//! permessage-deflate.
//!
//! The wire bytes are made as a client makes them: whole messages by a
//! client-role `Connection` (masked, compressed when negotiated), and
//! fragmented ones by cutting such a message's payload into frames by hand
//! (`FrameHeader::encode` + `apply_mask`), with pings between fragments.
//! The server's application may also send between two reads: that must not
//! change what it receives either.

use proptest::prelude::*;
use proptest::sample::Index;
use tether_proto::frame::{apply_mask, FrameHeader, OpCode, MAX_HEADER_LEN};
use tether_proto::{
    Bytes, CloseCode, CloseFrame, Config, Connection, DeflateConfig, DeflateParams, Event, Message, Role, State,
};

/// One thing the client sends.
#[derive(Clone, Debug)]
enum Item {
    /// A data message. With no `cuts` it goes out as one frame; otherwise its
    /// (possibly compressed) payload is cut into several frames, at
    /// `cut / 65536` of its length for each cut,
    /// `pings[k]` (if any) being sent right after fragment `k`.
    Message { message: Message, compress: bool, cuts: Vec<u16>, pings: Vec<Option<Vec<u8>>> },
    /// A ping on its own.
    Ping(Vec<u8>),
}

/// Text mixing 1-, 2-, 3- and 4-byte UTF-8, so that read and frame
/// boundaries fall inside characters; at most 2000 bytes.
fn text() -> impl Strategy<Value = String> {
    let char = prop_oneof![
        3 => prop::char::range('a', 'z'),
        1 => prop::char::range('α', 'ω'),
        1 => prop::char::range('一', '龥'),
        1 => prop::char::range('🌀', '🙏'),
    ];
    prop::collection::vec(char, 0..700).prop_map(|chars| {
        let mut text: String = chars.into_iter().collect();
        let mut end = text.len().min(2000);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text
    })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        text().prop_map(Message::from),
        prop::collection::vec(any::<u8>(), 0..2000).prop_map(Message::from),
        // Repetitive, so that deflate really compresses it.
        (0..2000usize, any::<u8>())
            .prop_map(|(len, b)| Message::from((0..len).map(|i| b.wrapping_add((i % 7) as u8)).collect::<Vec<u8>>())),
    ]
}

fn ping_payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=125)
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => (
            message(),
            any::<bool>(),
            prop::collection::vec(any::<u16>(), 0..6),
            prop::collection::vec(prop::option::weighted(0.3, ping_payload()), 0..6),
        )
            .prop_map(|(message, compress, cuts, pings)| Item::Message {
                message,
                compress,
                cuts,
                pings,
            }),
        1 => ping_payload().prop_map(Item::Ping),
    ]
}

/// The client's configuration: deflate compresses every message it may.
fn client_config() -> Config {
    let mut deflate = DeflateConfig::default();
    deflate.min_size = 0;
    Config::default().with_deflate(Some(deflate))
}

/// A deterministic source of mask keys, so that failures reproduce.
fn keys(seed: u32) -> impl FnMut() -> [u8; 4] + Send {
    let mut state = seed;
    move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        state.to_le_bytes()
    }
}

/// One masked frame, built by hand.
fn frame(opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let header = FrameHeader { fin, rsv1, mask: Some(key), ..FrameHeader::new(opcode, payload.len() as u64) };
    let mut encoded = [0u8; MAX_HEADER_LEN];
    let header_len = header.encode(&mut encoded);
    let mut out = encoded[..header_len].to_vec();
    out.extend_from_slice(payload);
    apply_mask(&mut out[header_len..], key, 0);
    out
}

fn take_output(connection: &mut Connection) -> Vec<u8> {
    let bytes = connection.pending_transmit().to_vec();
    connection.advance_transmit(bytes.len());
    bytes
}

/// The client's wire bytes for `items`, and the events a server must
/// deliver for them, in order.
fn encode(items: &[Item], deflate: Option<DeflateParams>, seed: u32) -> (Vec<u8>, Vec<Event>) {
    let mut client = Connection::new(Role::Client, client_config(), deflate);
    client.set_mask_source(Box::new(keys(seed)));
    let mut next_key = keys(!seed);
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for item in items {
        match item {
            Item::Ping(payload) => {
                client.send_ping(payload).unwrap();
                wire.extend(take_output(&mut client));
                expected.push(Event::Ping(Bytes::copy_from_slice(payload)));
            }
            Item::Message { message, compress, cuts, pings } => {
                client.send_with(message, *compress).unwrap();
                let whole = take_output(&mut client);
                if cuts.is_empty() {
                    wire.extend(whole);
                } else {
                    // Re-cut the client's one frame into several.
                    let (header, header_len) = FrameHeader::decode(&whole).unwrap().unwrap();
                    assert_eq!(header_len as u64 + header.payload_len, whole.len() as u64);
                    let mut payload = whole[header_len..].to_vec();
                    apply_mask(&mut payload, header.mask.unwrap(), 0);
                    let mut bounds: Vec<usize> =
                        cuts.iter().map(|&cut| ((payload.len() + 1) * usize::from(cut)) >> 16).collect();
                    bounds.push(0);
                    bounds.push(payload.len());
                    bounds.sort_unstable();
                    let last = bounds.len() - 2;
                    for k in 0..=last {
                        let (opcode, rsv1) =
                            if k == 0 { (header.opcode, header.rsv1) } else { (OpCode::Continuation, false) };
                        let fragment = &payload[bounds[k]..bounds[k + 1]];
                        wire.extend(frame(opcode, k == last, rsv1, fragment, next_key()));
                        if k < last {
                            if let Some(Some(ping)) = pings.get(k) {
                                wire.extend(frame(OpCode::Ping, true, false, ping, next_key()));
                                expected.push(Event::Ping(Bytes::copy_from_slice(ping)));
                            }
                        }
                    }
                }
                expected.push(Event::Message(message.clone()));
            }
        }
    }
    (wire, expected)
}

/// Feeds `wire` to a fresh server in reads that end at `splits`, taking
/// events after each read as an application would, and sending a message
/// after each read if `send_between`. Returns the events and the payloads of
/// the pongs the server wrote.
fn receive(
    wire: &[u8],
    splits: &[usize],
    deflate: Option<DeflateParams>,
    send_between: bool,
) -> (Vec<Event>, Vec<Vec<u8>>) {
    let mut server = Connection::new(Role::Server, Config::default(), deflate);
    let mut events = Vec::new();
    let mut output = Vec::new();
    let mut start = 0;
    for &end in splits.iter().chain(std::iter::once(&wire.len())) {
        server.handle_read(&wire[start..end]).unwrap_or_else(|error| panic!("read {start}..{end}: {error}"));
        events.extend(std::iter::from_fn(|| server.poll_event()));
        if send_between {
            server.send_text(&"between reads ".repeat(8)).unwrap();
        }
        output.extend(take_output(&mut server));
        start = end;
    }
    assert_eq!(server.state(), State::Open);
    assert!(!server.is_receiving_message());
    (events, pongs(&output))
}

/// The payloads of the pong frames in a server's output.
fn pongs(mut output: &[u8]) -> Vec<Vec<u8>> {
    let mut pongs = Vec::new();
    while let Some((header, header_len)) = FrameHeader::decode(output).unwrap() {
        let end = header_len + usize::try_from(header.payload_len).unwrap();
        if header.opcode == OpCode::Pong {
            pongs.push(output[header_len..end].to_vec());
        }
        output = &output[end..];
    }
    assert!(output.is_empty(), "a partial frame in the output");
    pongs
}

/// The property: one read, reads split at `split_points` (with the server
/// sending between them), and one byte per read all deliver the sent events
/// and answer the same pings.
fn check(items: &[Item], split_points: &[Index], deflate: Option<DeflateParams>, seed: u32) {
    let (wire, expected) = encode(items, deflate, seed);
    let (at_once, pongs) = receive(&wire, &[], deflate, false);
    assert_eq!(at_once, expected, "one read");

    let mut splits: Vec<usize> = split_points.iter().map(|point| point.index(wire.len() + 1)).collect();
    splits.sort_unstable();
    let (split, split_pongs) = receive(&wire, &splits, deflate, true);
    assert_eq!(split, at_once, "reads ending at {splits:?}");
    assert_eq!(split_pongs, pongs);

    let every_byte: Vec<usize> = (1..wire.len()).collect();
    let (bytewise, bytewise_pongs) = receive(&wire, &every_byte, deflate, false);
    assert_eq!(bytewise, at_once, "one byte per read");
    assert_eq!(bytewise_pongs, pongs);
}

fn deflate_params() -> impl Strategy<Value = DeflateParams> {
    (any::<bool>(), any::<bool>(), 8u8..=15, 8u8..=15).prop_map(|(snct, cnct, sbits, cbits)| DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: sbits,
        client_max_window_bits: cbits,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn messages_are_identical_whatever_the_read_split_points(
        items in prop::collection::vec(item(), 1..10),
        split_points in prop::collection::vec(any::<Index>(), 0..40),
        seed in any::<u32>(),
    ) {
        check(&items, &split_points, None, seed);
    }

    #[test]
    fn compressed_messages_are_identical_whatever_the_read_split_points(
        items in prop::collection::vec(item(), 1..10),
        split_points in prop::collection::vec(any::<Index>(), 0..40),
        params in deflate_params(),
        seed in any::<u32>(),
    ) {
        check(&items, &split_points, Some(params), seed);
    }
}

/// Every way of cutting one fixed stream into two reads: a fragmented,
/// compressed text message with a ping inside and a character split across
/// frames, then a small uncompressed binary message.
#[test]
fn every_two_read_split_of_a_fragmented_compressed_stream_delivers_the_same_events() {
    let params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let items = [
        Item::Message {
            message: Message::from("κόσμε 🎉 κόσμε 🎉 κόσμε 🎉 hello hello hello"),
            compress: true,
            cuts: vec![13_000, 32_768, 32_768],
            pings: vec![None, Some(b"inside".to_vec())],
        },
        Item::Message { message: Message::from(vec![0u8, 1, 2, 255]), compress: false, cuts: vec![], pings: vec![] },
        Item::Ping(Vec::new()),
    ];
    let (wire, expected) = encode(&items, Some(params), 7);
    for split in 0..=wire.len() {
        let (events, _) = receive(&wire, &[split], Some(params), false);
        assert_eq!(events, expected, "split at {split}");
    }
}

/// An application that sends (compressed) between two reads of one control
/// frame must not disturb that frame: the ping is answered whole and the
/// close keeps its code and reason, wherever the read boundary falls.
#[test]
fn sending_between_two_reads_of_a_control_frame_keeps_its_payload() {
    let params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let mut client = Connection::new(Role::Client, client_config(), Some(params));
    client.set_mask_source(Box::new(keys(1)));
    client.send_ping(b"abcdefghij").unwrap();
    client.close(CloseCode::NORMAL, "12345678").unwrap();
    let wire = take_output(&mut client);
    let expected = [
        Event::Ping(Bytes::from_static(b"abcdefghij")),
        Event::Close(Some(CloseFrame::new(CloseCode::NORMAL, "12345678"))),
    ];
    let pong = [&[0x8a, 10][..], b"abcdefghij"].concat();
    for split in 1..wire.len() {
        let mut server = Connection::new(Role::Server, Config::default(), Some(params));
        server.handle_read(&wire[..split]).unwrap();
        let mut events: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
        // Refused once the close has been echoed; otherwise compressed and queued.
        let _ = server.send_text(&"echo ".repeat(40));
        server.handle_read(&wire[split..]).unwrap_or_else(|error| panic!("split at {split}: {error}"));
        events.extend(std::iter::from_fn(|| server.poll_event()));
        assert_eq!(events, expected, "split at {split}");
        let output = take_output(&mut server);
        assert!(output.windows(pong.len()).any(|w| w == pong), "split at {split}: the pong is not the ping's payload");
    }
}
