//! The client's side of the opening handshake on arbitrary server answers:
//! `ClientHandshake::with_key` (a fixed key, so that a valid
//! `Sec-WebSocket-Accept` is reachable), then `HeadReader::feed` in
//! arbitrary pieces, `Response::parse` and `verify`.
//!
//! Input: `[selector, split_seed, response bytes...]`.
//! - selector bits 0–1: the permessage-deflate offer (none / defaults /
//!   `client_max_window_bits=10` with `server_no_context_takeover` /
//!   `server_max_window_bits=12`).
//! - bit 2: offer no subprotocols (else `chat`, `superchat`).
//!
//! Accepted outcomes: a `HeadError`, a `HandshakeError`, or a
//! `ClientAccepted` that honours our offer (and whose deflate parameters
//! work).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::handshake::{
    accept_request, ClientHandshake, ClientHandshakeConfig, HandshakeError, HeadError, HeadReader, Request, Response,
    ServerHandshakeConfig, Target,
};
use tether_proto::{DeflateConfig, HandshakeLimits};
use tether_proto_fuzz::{check_head_refusal, check_negotiated, Chunks};

fuzz_target!(|data: &[u8]| run(data));

/// RFC 6455 §1.3's sample key; its accept value is
/// `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn run(data: &[u8]) {
    let [selector, seed, ref input @ ..] = *data else {
        return;
    };
    let mut config = ClientHandshakeConfig::default();
    if selector & 4 == 0 {
        config.protocols = vec!["chat".into(), "superchat".into()];
    }
    config.headers = vec![("Origin".into(), "http://example.com".into())];
    config.deflate = match selector & 3 {
        0 => None,
        1 => Some(DeflateConfig::default()),
        2 => {
            let mut deflate = DeflateConfig::default();
            deflate.client_max_window_bits = 10;
            deflate.server_no_context_takeover = true;
            Some(deflate)
        }
        _ => {
            let mut deflate = DeflateConfig::default();
            deflate.server_max_window_bits = 12;
            Some(deflate)
        }
    };
    let target = Target::parse("ws://example.com:8080/chat?room=1").unwrap();
    let (handshake, request) = ClientHandshake::with_key(&target, config.clone(), KEY.into()).unwrap();
    our_server_accepts_our_request(&handshake, &request, &config);

    let limits = HandshakeLimits::default();
    let mut reader = HeadReader::new(limits.clone());
    let mut complete = false;
    for chunk in Chunks::new(input, seed) {
        match reader.feed(chunk) {
            Ok(None) => {}
            Ok(Some(used)) => {
                assert!((1..=chunk.len()).contains(&used));
                complete = true;
                break;
            }
            Err(error) => {
                check_head_refusal(&error, &reader, &limits);
                return;
            }
        }
    }
    if !complete {
        return;
    }
    let response = match Response::parse(&reader) {
        Ok(response) => response,
        Err(error) => {
            assert!(matches!(error, HeadError::Malformed(_)), "{error:?}");
            return;
        }
    };
    let status = response.status;
    match handshake.verify(response) {
        Ok(accepted) => {
            assert_eq!(status, 101);
            let headers = &accepted.response.headers;
            assert!(headers.has_token("Upgrade", "websocket"));
            assert!(headers.has_token("Connection", "upgrade"));
            if let Some(protocol) = &accepted.protocol {
                assert!(config.protocols.contains(protocol), "{protocol:?}");
            }
            match (accepted.deflate, &config.deflate) {
                (None, _) => {}
                (Some(_), None) => panic!("deflate accepted without an offer"),
                (Some(params), Some(offer)) => {
                    assert!(params.server_max_window_bits <= offer.server_max_window_bits);
                    assert!(params.client_max_window_bits <= offer.client_max_window_bits);
                    assert!(params.server_no_context_takeover || !offer.server_no_context_takeover);
                    assert!(params.client_no_context_takeover || !offer.client_no_context_takeover);
                    check_negotiated(params);
                }
            }
        }
        Err(HandshakeError::Status { status: refused, .. }) => {
            assert_eq!(refused, status);
            assert_ne!(status, 101);
        }
        Err(HandshakeError::InvalidRequestHeader(name)) => {
            panic!("verify never checks request headers: {name}")
        }
        Err(_) => assert_eq!(status, 101),
    }
}

/// The request we wrote is one our own server accepts, and the server's
/// answer is one this handshake accepts, agreeing on everything.
fn our_server_accepts_our_request(handshake: &ClientHandshake, request: &[u8], config: &ClientHandshakeConfig) {
    let mut reader = HeadReader::new(HandshakeLimits::default());
    assert_eq!(reader.feed(request), Ok(Some(request.len())));
    let request = Request::parse(&reader).expect("our request parses");
    let mut server = ServerHandshakeConfig::default();
    server.protocols = vec!["superchat".into(), "chat".into()];
    server.deflate = Some(DeflateConfig::default());
    let accepted = accept_request(&request, &server).expect("our server accepts our request");
    assert_eq!(accepted.deflate.is_some(), config.deflate.is_some());
    let answer = accepted.response(&[]);
    let mut reader = HeadReader::new(HandshakeLimits::default());
    assert_eq!(reader.feed(&answer), Ok(Some(answer.len())));
    let response = Response::parse(&reader).expect("our answer parses");
    let client = handshake.verify(response).expect("our client accepts our server's answer");
    assert_eq!(client.protocol, accepted.protocol);
    assert_eq!(client.deflate, accepted.deflate);
}
