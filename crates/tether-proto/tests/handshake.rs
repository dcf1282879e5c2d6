//! RFC 6455 §4: the opening handshake, both roles, and RFC 7692 §7
//! negotiation, through the public parsing entry points.

mod common;

use std::time::{Duration, Instant};

use common::FrameSpec;
use tether_proto::connection::Event;
use tether_proto::deflate::DeflateConfig;
use tether_proto::frame::OpCode;
use tether_proto::handshake::{
    accept_key, accept_request, ClientHandshake, ClientHandshakeConfig, HandshakeError, HeadError, HeadReader, Request,
    Response, ServerHandshakeConfig, Target,
};
use tether_proto::{Config, Connection, HandshakeLimits, Message, Role};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request(extra: &str) -> String {
    format!(
        "GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn parse_request(text: &str) -> Request {
    let mut reader = HeadReader::new(HandshakeLimits::default());
    reader.feed(text.as_bytes()).unwrap().unwrap();
    Request::parse(&reader).unwrap()
}

fn server_config() -> ServerHandshakeConfig {
    let mut config = ServerHandshakeConfig::default();
    config.protocols = vec!["chat".into(), "superchat".into()];
    config.deflate = Some(DeflateConfig::default());
    config
}

fn status_for(text: &str) -> u16 {
    accept_request(&parse_request(text), &server_config()).map(|_| 101).unwrap_or_else(|rejection| rejection.status)
}

#[test]
fn a_valid_request_is_answered_101_with_the_rfc_accept_key() {
    let accepted = accept_request(&parse_request(&request("")), &server_config()).unwrap();
    let response = String::from_utf8(accepted.response(&[("Server".into(), "tether".into())])).unwrap();
    assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(response.contains("Server: tether\r\n"));
    assert!(response.ends_with("\r\n\r\n"));
}

#[test]
fn the_transcript_of_seed_002_is_accepted_with_its_accept_key() {
    // The browser-style request the seed shows: `Connection` is a token
    // list, a cookie rides along, and the accept key is the seed's.
    let text = "GET /chat HTTP/1.1\r\nHost: normal-website.com\r\nSec-WebSocket-Version: 13\r\n\
                Sec-WebSocket-Key: wDqumtseNBJdhkihL6PW7w==\r\nConnection: keep-alive, Upgrade\r\n\
                Cookie: session=KOsEJNuflw4Rd9BDNrVmvwBF9rEijeE2\r\nUpgrade: websocket\r\n\r\n";
    let request = parse_request(text);
    assert_eq!(request.headers.get_str("cookie"), Some("session=KOsEJNuflw4Rd9BDNrVmvwBF9rEijeE2"));
    let accepted = accept_request(&request, &server_config()).unwrap();
    let response = String::from_utf8(accepted.response(&[])).unwrap();
    assert!(response.contains("Sec-WebSocket-Accept: 0FFP+2nmNIf/h+4BP36k9uzrYGk=\r\n"), "{response}");
}

#[test]
fn header_names_and_upgrade_tokens_are_case_insensitive() {
    let text = request("")
        .replace("Upgrade: websocket", "upgrade: WebSocket")
        .replace("Connection: Upgrade", "connection: keep-alive, upgrade");
    assert_eq!(status_for(&text), 101);
}

#[test]
fn a_request_without_upgrade_is_answered_426() {
    let text = request("").replace("Upgrade: websocket\r\n", "");
    let rejection = accept_request(&parse_request(&text), &server_config()).unwrap_err();
    assert_eq!(rejection.status, 426);
    assert!(String::from_utf8(rejection.to_bytes()).unwrap().contains("Upgrade: websocket\r\n"));
}

#[test]
fn a_version_other_than_13_is_answered_426_naming_13() {
    let text = request("").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let rejection = accept_request(&parse_request(&text), &server_config()).unwrap_err();
    assert_eq!(rejection.status, 426);
    assert!(String::from_utf8(rejection.to_bytes()).unwrap().contains("Sec-WebSocket-Version: 13\r\n"));
}

#[test]
fn malformed_requests_are_answered_400_with_a_reason() {
    for text in [
        request("").replace(KEY, "not-a-key"),
        request("").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
        request(&format!("Sec-WebSocket-Key: {KEY}\r\n")),
        request("").replacen("GET", "POST", 1),
        request("").replace("Host: example.com\r\n", ""),
        request("Origin: https://a.example\r\nOrigin: https://b.example\r\n"),
        request("Sec-WebSocket-Extensions: permessage-deflate; x=\"unclosed\r\n"),
        request("").replace("HTTP/1.1", "HTTP/1.0"),
    ] {
        let rejection = accept_request(&parse_request(&text), &server_config()).unwrap_err();
        assert_eq!(rejection.status, 400, "{text}");
        assert!(!rejection.reason.is_empty());
    }
}

#[test]
fn the_clients_first_supported_subprotocol_is_chosen() {
    let accepted =
        accept_request(&parse_request(&request("Sec-WebSocket-Protocol: v9, superchat, chat\r\n")), &server_config())
            .unwrap();
    assert_eq!(accepted.protocol.as_deref(), Some("superchat"));
    let accepted =
        accept_request(&parse_request(&request("Sec-WebSocket-Protocol: v9\r\n")), &server_config()).unwrap();
    assert_eq!(accepted.protocol, None);
}

#[test]
fn deflate_is_negotiated_from_the_first_acceptable_offer() {
    let accepted = accept_request(
        &parse_request(&request(
            "Sec-WebSocket-Extensions: permessage-deflate; constructor, permessage-deflate; server_max_window_bits=10\r\n",
        )),
        &server_config(),
    )
    .unwrap();
    assert_eq!(accepted.deflate.map(|params| params.server_max_window_bits), Some(10));
    let response = String::from_utf8(accepted.response(&[])).unwrap();
    assert!(response.contains(
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; server_max_window_bits=10\r\n"
    ));
}

#[test]
fn too_many_headers_is_431_at_129_and_fine_at_128() {
    let with_headers = |count: usize| {
        let extra: String = (0..count - 5).map(|i| format!("X-Filler-{i}: y\r\n")).collect();
        request(&extra)
    };
    let mut reader = HeadReader::new(HandshakeLimits::default());
    assert!(reader.feed(with_headers(128).as_bytes()).unwrap().is_some());
    let mut reader = HeadReader::new(HandshakeLimits::default());
    let error = reader.feed(with_headers(129).as_bytes()).unwrap_err();
    assert_eq!((error.status(), error), (431, HeadError::TooManyHeaders { limit: 128 }));
}

#[test]
fn a_head_dripped_one_byte_at_a_time_is_parsed_in_linear_time() {
    let limits = HandshakeLimits::default().with_max_head_bytes(64 << 10).with_max_headers(1000);
    let filler: String = (0..700).map(|i| format!("X-Filler-{i:04}: {}\r\n", "v".repeat(70))).collect();
    let text = request(&filler);
    assert!(text.len() > 60_000);
    let start = Instant::now();
    let mut reader = HeadReader::new(limits);
    let mut done = None;
    for byte in text.as_bytes() {
        done = reader.feed(std::slice::from_ref(byte)).unwrap();
    }
    assert!(done.is_some());
    assert_eq!(Request::parse(&reader).unwrap().headers.len(), 705);
    // Rescanning the buffer on every byte would be ~1.8e9 byte visits here.
    assert!(start.elapsed() < Duration::from_millis(500), "{:?}", start.elapsed());
}

#[test]
fn a_pathological_protocol_header_is_handled_in_linear_time() {
    for n in [8 << 10, 16 << 10] {
        let header = format!(
            "Sec-WebSocket-Protocol: b{}x\r\nSec-WebSocket-Extensions: a; b=\"{}\r\n",
            " ".repeat(n),
            "\\".repeat(n)
        );
        let limits = HandshakeLimits::default().with_max_head_bytes(64 << 10).with_max_line_len(64 << 10);
        let start = Instant::now();
        let mut reader = HeadReader::new(limits);
        reader.feed(request(&header).as_bytes()).unwrap().unwrap();
        let _ = accept_request(&Request::parse(&reader).unwrap(), &server_config());
        assert!(start.elapsed() < Duration::from_millis(50), "n={n}: {:?}", start.elapsed());
    }
}

// ---- client side ------------------------------------------------------------

fn client(config: ClientHandshakeConfig) -> (ClientHandshake, String) {
    let target = Target::parse("ws://example.com:8080/chat").unwrap();
    let (handshake, request) = ClientHandshake::with_key(&target, config, KEY.into()).unwrap();
    (handshake, String::from_utf8(request).unwrap())
}

fn parse_response(text: &[u8]) -> (Response, usize) {
    let mut reader = HeadReader::new(HandshakeLimits::default());
    let used = reader.feed(text).unwrap().unwrap();
    (Response::parse(&reader).unwrap(), used)
}

const GOOD_RESPONSE: &str =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

#[test]
fn the_client_request_carries_every_required_field_and_custom_headers() {
    let mut config = ClientHandshakeConfig::default();
    config.protocols = vec!["chat".into()];
    config.headers = vec![("Cookie".into(), "a=b".into()), ("Origin".into(), "https://example.com".into())];
    config.deflate = Some(DeflateConfig::default());
    let (_, request) = client(config);
    assert!(request.starts_with("GET /chat HTTP/1.1\r\nHost: example.com:8080\r\n"));
    for field in [
        "Upgrade: websocket\r\n",
        "Connection: Upgrade\r\n",
        "Sec-WebSocket-Version: 13\r\n",
        "Sec-WebSocket-Protocol: chat\r\n",
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits\r\n",
        "Cookie: a=b\r\n",
        "Origin: https://example.com\r\n",
    ] {
        assert!(request.contains(field), "missing {field:?} in {request}");
    }
}

#[test]
fn header_injection_through_custom_headers_is_refused() {
    for (name, value) in [("X-Evil", "a\r\nInjected: yes"), ("Bad Name", "x"), ("Sec-WebSocket-Key", "x")] {
        let mut config = ClientHandshakeConfig::default();
        config.headers = vec![(name.into(), value.into())];
        let target = Target::parse("ws://example.com/").unwrap();
        assert!(matches!(ClientHandshake::new(&target, config), Err(HandshakeError::InvalidRequestHeader(_))));
    }
}

#[test]
fn the_client_accepts_a_correct_101() {
    let (handshake, _) = client(ClientHandshakeConfig::default());
    let accepted = handshake.verify(parse_response(GOOD_RESPONSE.as_bytes()).0).unwrap();
    assert_eq!((accepted.protocol, accepted.deflate), (None, None));
}

#[test]
fn the_client_rejects_bad_answers_with_a_typed_error() {
    let (handshake, _) = client(ClientHandshakeConfig::default());
    type Expectation = fn(&HandshakeError) -> bool;
    let cases: [(&str, Expectation); 5] = [
        ("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", |e| {
            matches!(e, HandshakeError::Status { status: 403, .. })
        }),
        (&GOOD_RESPONSE.replace("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="), |e| {
            matches!(e, HandshakeError::AcceptMismatch)
        }),
        (&GOOD_RESPONSE.replace("Upgrade: websocket\r\n", ""), |e| matches!(e, HandshakeError::MissingUpgrade)),
        (&GOOD_RESPONSE.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: nope\r\n\r\n"), |e| {
            matches!(e, HandshakeError::UnexpectedProtocol(_))
        }),
        (&GOOD_RESPONSE.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"), |e| {
            matches!(e, HandshakeError::Deflate(_))
        }),
    ];
    for (text, expected) in cases {
        let error = handshake.verify(parse_response(text.as_bytes()).0).unwrap_err();
        assert!(expected(&error), "{text}: {error:?}");
    }
}

#[test]
fn a_10_kib_status_line_is_refused_at_the_line_limit() {
    let mut reader = HeadReader::new(HandshakeLimits::default());
    let text = format!("HTTP/1.1 101 {}\r\n\r\n", "x".repeat(10 << 10));
    assert_eq!(reader.feed(text.as_bytes()), Err(HeadError::LineTooLong { limit: 8 << 10 }));
}

#[test]
fn frames_in_the_same_read_as_the_101_are_kept_at_every_split_point() {
    let mut wire = GOOD_RESPONSE.as_bytes().to_vec();
    wire.extend(FrameSpec::server(OpCode::Text, b"first frame").bytes());
    for split in 0..=wire.len() {
        let mut reader = HeadReader::new(HandshakeLimits::default());
        let mut connection = Connection::new(Role::Client, Config::default(), None);
        let mut head_done = false;
        for chunk in [&wire[..split], &wire[split..]] {
            let rest = if head_done {
                chunk
            } else {
                match reader.feed(chunk).unwrap() {
                    Some(used) => {
                        head_done = true;
                        &chunk[used..]
                    }
                    None => &[][..],
                }
            };
            connection.handle_read(rest).unwrap();
        }
        assert!(head_done);
        assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(connection.poll_event(), Some(Event::Message(Message::from("first frame"))), "split {split}");
    }
}

#[test]
fn input_that_is_not_http_is_refused_at_its_first_byte_not_at_a_timeout() {
    // A TLS ClientHello: record type 0x16, version 3.1, then the handshake.
    let client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
    let mut reader = HeadReader::new(HandshakeLimits::default());
    let error = reader.feed(&client_hello).unwrap_err();
    assert_eq!(error, HeadError::NotHttp { byte: 0x16, offset: 0 });
    assert_eq!(error.status(), 400);
    assert!(error.to_string().contains("TLS handshake"), "{error}");
    // Binary junk after a plausible start is refused where it turns binary.
    let mut reader = HeadReader::new(HandshakeLimits::default());
    let error = reader.feed(b"GET /\x00\x01 HTTP/1.1\r\n").unwrap_err();
    assert_eq!(error, HeadError::NotHttp { byte: 0, offset: 5 });
    // A tab in the request line is tolerated; bytes past 0x7f in a header
    // value (obs-text) are still HTTP.
    let mut reader = HeadReader::new(HandshakeLimits::default());
    assert!(reader.feed(b"GET /\tHTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n\r\n").unwrap().is_some());
}

#[test]
fn credentials_in_the_uri_are_sent_as_basic_authentication_unless_the_caller_sent_its_own() {
    let target = Target::parse("ws://ada:love%20lace@example.com/").unwrap();
    let (_, request) = ClientHandshake::with_key(&target, ClientHandshakeConfig::default(), KEY.into()).unwrap();
    let request = String::from_utf8(request).unwrap();
    // "ada:love lace" in base64.
    assert!(request.contains("Authorization: Basic YWRhOmxvdmUgbGFjZQ==\r\n"), "{request}");
    assert!(request.contains("Host: example.com\r\n") && !request.contains("ada@"), "{request}");
    let mut config = ClientHandshakeConfig::default();
    config.headers.push(("Authorization".into(), "Bearer t0ken".into()));
    let (_, request) = ClientHandshake::with_key(&target, config, KEY.into()).unwrap();
    let request = String::from_utf8(request).unwrap();
    assert_eq!(request.matches("Authorization").count(), 1, "{request}");
    assert!(request.contains("Authorization: Bearer t0ken\r\n"));
}
