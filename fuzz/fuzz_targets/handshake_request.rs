//! The server's side of the opening handshake on arbitrary bytes:
//! `HeadReader::feed` in arbitrary pieces, `Request::parse`, then
//! `accept_request` with a config that offers permessage-deflate and
//! subprotocols. Also `parse_extensions` and deflate negotiation on
//! arbitrary header values.
//!
//! Input: `[selector, split_seed, bytes...]`.
//! - selector bit 7 set: `bytes` is a `Sec-WebSocket-Extensions` value;
//!   bits 0–1 choose our deflate preferences.
//! - otherwise `bytes` is a request head (and whatever follows it); bits
//!   0–1 choose our deflate preferences, bit 2 drops subprotocols.
//!
//! Accepted outcomes: a `HeadError` (431 at a limit, 400 at a byte that is
//! not HTTP), or an `Accepted` consistent
//! with the request and our config, or a `Rejection` (400/426) whose HTTP
//! answer parses back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::deflate::{parse_extensions, ExtensionOffer};
use tether_proto::handshake::{
    accept_key, accept_request, is_valid_key, HeadError, HeadReader, Request, Response, ServerHandshakeConfig,
};
use tether_proto::{DeflateConfig, DeflateParams, HandshakeLimits};
use tether_proto_fuzz::{check_head_refusal, check_negotiated, Chunks};

fuzz_target!(|data: &[u8]| run(data));

const PROTOCOLS: [&str; 3] = ["chat", "superchat", "v2.json.tether"];

fn run(data: &[u8]) {
    let [selector, seed, ref input @ ..] = *data else {
        return;
    };
    let deflate = deflate_config(selector);
    if selector & 0x80 != 0 {
        extensions(input, &deflate);
        return;
    }
    let mut config = ServerHandshakeConfig::default();
    if selector & 4 == 0 {
        config.protocols = PROTOCOLS.iter().map(|p| (*p).to_owned()).collect();
    }
    config.deflate = Some(deflate.clone());
    config.headers = vec![("Server".into(), "tether-fuzz".into())];

    let mut limits = HandshakeLimits::default();
    limits.max_head_bytes = 2048;
    limits.max_headers = 24;
    limits.max_line_len = 512;
    let mut reader = HeadReader::new(limits.clone());
    let mut consumed = 0;
    let mut head_len = None;
    for chunk in Chunks::new(input, seed) {
        match reader.feed(chunk) {
            Ok(None) => {
                consumed += chunk.len();
                assert_eq!(reader.buffered(), consumed);
            }
            Ok(Some(used)) => {
                assert!((1..=chunk.len()).contains(&used));
                consumed += used;
                assert_eq!(reader.buffered(), consumed);
                head_len = Some(consumed);
                break;
            }
            Err(error) => {
                check_head_refusal(&error, &reader, &limits);
                return;
            }
        }
    }
    let Some(head_len) = head_len else { return };
    assert!(head_len <= limits.max_head_bytes);
    assert_eq!(reader.head(), &input[..head_len]);
    assert!(reader.head().ends_with(b"\n"));

    let request = match Request::parse(&reader) {
        Ok(request) => request,
        Err(error) => {
            assert!(matches!(error, HeadError::Malformed(_)), "{error:?}");
            assert_eq!(error.status(), 400);
            return;
        }
    };
    assert!(request.headers.len() <= limits.max_headers);
    match accept_request(&request, &config) {
        Ok(accepted) => {
            assert_eq!(request.method, "GET");
            assert!(request.minor_version >= 1);
            assert_eq!(request.headers.count("Host"), 1);
            let key = request.headers.get("Sec-WebSocket-Key").unwrap();
            assert!(is_valid_key(key));
            assert_eq!(accepted.accept, accept_key(key));
            if let Some(protocol) = &accepted.protocol {
                assert!(config.protocols.contains(protocol));
                assert!(request
                    .headers
                    .list_items("Sec-WebSocket-Protocol")
                    .any(|offered| offered == protocol.as_bytes()));
            }
            if let Some(params) = accepted.deflate {
                assert!(request.headers.get("Sec-WebSocket-Extensions").is_some());
                check_server_params(params, &deflate);
            }
            let answer = accepted.response(&config.headers);
            let (response, used) = parse_response(&answer);
            assert_eq!(used, answer.len());
            assert_eq!(response.status, 101);
            assert!(response.headers.has_token("Upgrade", "websocket"));
            assert!(response.headers.has_token("Connection", "upgrade"));
            assert_eq!(response.headers.get("Sec-WebSocket-Accept"), Some(accepted.accept.as_bytes()));
            match accepted.deflate {
                None => assert_eq!(response.headers.get("Sec-WebSocket-Extensions"), None),
                Some(params) => {
                    // What we answer is what a client offering the defaults accepts.
                    let value = response.headers.joined("Sec-WebSocket-Extensions").unwrap();
                    let answer = parse_extensions(&value).expect("our answer parses");
                    let mut client = DeflateConfig::default();
                    client.client_max_window_bits = params.client_max_window_bits;
                    client.server_no_context_takeover = params.server_no_context_takeover;
                    client.server_max_window_bits = params.server_max_window_bits;
                    let agreed = client.accept_response(&answer).expect("a client accepts our answer to its offer");
                    assert_eq!(agreed.map(key_of), Some(key_of(params)));
                }
            }
        }
        Err(rejection) => {
            assert!(matches!(rejection.status, 400 | 426), "{}", rejection.status);
            let answer = rejection.to_bytes();
            let (response, used) = parse_response(&answer);
            assert_eq!(response.status, rejection.status);
            let body = &answer[used..];
            assert_eq!(body, format!("{}\n", rejection.reason).as_bytes());
            assert_eq!(response.headers.get_str("Content-Length"), Some(body.len().to_string().as_str()));
        }
    }
}

fn key_of(params: DeflateParams) -> (bool, bool, u8, u8) {
    (
        params.server_no_context_takeover,
        params.client_no_context_takeover,
        params.server_max_window_bits,
        params.client_max_window_bits,
    )
}

/// Our deflate preferences as a server, chosen by two bits.
fn deflate_config(selector: u8) -> DeflateConfig {
    let mut deflate = DeflateConfig::default();
    match selector & 3 {
        0 => {}
        1 => {
            deflate.server_max_window_bits = 10;
            deflate.client_max_window_bits = 12;
        }
        2 => {
            deflate.server_no_context_takeover = true;
            deflate.client_no_context_takeover = true;
        }
        _ => {
            deflate.server_max_window_bits = 8;
            deflate.client_max_window_bits = 8;
        }
    }
    deflate
}

/// What a server agreed to honours its own limits and RFC 7692 §7.1, and works.
fn check_server_params(params: DeflateParams, ours: &DeflateConfig) {
    assert!(params.server_max_window_bits <= ours.server_max_window_bits);
    // RFC 7692 §7.1.2.2: a client that did not offer client_max_window_bits
    // cannot be asked for a smaller window, so it keeps 15.
    assert!(params.client_max_window_bits <= ours.client_max_window_bits || params.client_max_window_bits == 15);
    assert!(params.server_no_context_takeover || !ours.server_no_context_takeover);
    assert!(params.client_no_context_takeover || !ours.client_no_context_takeover);
    check_negotiated(params);
}

/// A head we wrote, read back.
fn parse_response(bytes: &[u8]) -> (Response, usize) {
    let mut reader = HeadReader::new(HandshakeLimits::default());
    let used = reader.feed(bytes).expect("our answer is within limits").expect("our answer is a complete head");
    let response = Response::parse(&reader).expect("our answer parses");
    (response, used)
}

/// `parse_extensions` on arbitrary bytes: an error points inside the input;
/// a success re-serializes to something that parses to the same offers,
/// and negotiating over it either way gives parameters that work.
fn extensions(input: &[u8], deflate: &DeflateConfig) {
    let offers = match parse_extensions(input) {
        Ok(offers) => offers,
        Err(error) => {
            assert!(error.at <= input.len(), "{error:?}");
            return;
        }
    };
    let is_token =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    for offer in &offers {
        assert!(is_token(&offer.name), "{offer:?}");
        for (name, _) in &offer.params {
            assert!(is_token(name), "{offer:?}");
        }
    }
    let reparsed = parse_extensions(serialize(&offers).as_bytes()).expect("re-serialized parses");
    assert_eq!(reparsed, offers);
    if let Some(params) = deflate.accept_offer(&offers) {
        check_server_params(params, deflate);
    }
    if let Ok(Some(params)) = deflate.accept_response(&offers) {
        // A client never agrees to windows larger than it offered.
        assert!(params.server_max_window_bits <= deflate.server_max_window_bits);
        assert!(params.client_max_window_bits <= deflate.client_max_window_bits);
        assert!(params.server_no_context_takeover || !deflate.server_no_context_takeover);
        check_negotiated(params);
    }
}

/// Offers as a header value, every parameter value quoted.
fn serialize(offers: &[ExtensionOffer]) -> String {
    let mut out = String::new();
    for (i, offer) in offers.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&offer.name);
        for (name, value) in &offer.params {
            out.push_str("; ");
            out.push_str(name);
            if let Some(value) = value {
                out.push_str("=\"");
                for c in value.chars() {
                    if matches!(c, '"' | '\\') {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out
}
