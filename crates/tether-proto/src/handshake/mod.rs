//! The opening handshake (RFC 6455 §4), both sides: bounded head parsing,
//! key and accept computation, subprotocol and extension negotiation.

mod accept;
mod client;
mod head;
mod headers;
mod redirect;
mod server;
mod uri;

pub use accept::{accept_key, generate_key, is_valid_key};
pub use client::{ClientAccepted, ClientHandshake, ClientHandshakeConfig, HandshakeError};
pub use head::{HeadError, HeadReader, Request, Response};
pub use headers::Headers;
pub use redirect::{redirect, same_origin, RedirectError, DEFAULT_MAX_REDIRECTS};
pub use server::{accept_request, reason_phrase, Accepted, Rejection, ServerHandshakeConfig};
pub use uri::{Credentials, Target, UriError};
