//! Negotiating permessage-deflate's four parameters (RFC 7692 §7.1).

use std::fmt;

use super::{DeflateConfig, ExtensionOffer};
use crate::Role;

/// The extension token.
pub(crate) const EXTENSION_NAME: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// What both sides agreed on for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window, in bits.
    pub server_max_window_bits: u8,
    /// The client's LZ77 window, in bits.
    pub client_max_window_bits: u8,
}

impl DeflateParams {
    /// (window bits, reset after each message) of the compressor `role` sends with.
    #[must_use]
    pub fn outgoing(&self, role: Role) -> (u8, bool) {
        match role {
            Role::Server => (self.server_max_window_bits, self.server_no_context_takeover),
            Role::Client => (self.client_max_window_bits, self.client_no_context_takeover),
        }
    }

    /// (window bits, reset after each message) of the decompressor `role` receives with.
    #[must_use]
    pub fn incoming(&self, role: Role) -> (u8, bool) {
        match role {
            Role::Server => (self.client_max_window_bits, self.client_no_context_takeover),
            Role::Client => (self.server_max_window_bits, self.server_no_context_takeover),
        }
    }

    /// The `Sec-WebSocket-Extensions` value a server answers with.
    #[must_use]
    pub fn to_response_header(&self) -> String {
        let narrowed = |bits: u8| (bits < 15).then_some(bits);
        ParsedParams {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: narrowed(self.server_max_window_bits),
            client_max_window_bits: narrowed(self.client_max_window_bits).map(Some),
        }
        .to_header()
    }
}

/// A server's permessage-deflate answer the client cannot accept (RFC 7692
/// §7.1: the client MUST then fail the connection).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeflateError {
    /// An extension we did not offer, or permessage-deflate twice.
    UnexpectedExtension(String),
    /// A parameter that is unknown, repeated, or has an invalid value.
    InvalidParameter(String),
    /// A window larger than the one we asked for, or a parameter we required missing.
    NotAsRequested(String),
}

impl fmt::Display for DeflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeflateError::UnexpectedExtension(name) => {
                write!(f, "server accepted an extension not offered: {name}")
            }
            DeflateError::InvalidParameter(param) => {
                write!(f, "invalid permessage-deflate parameter: {param}")
            }
            DeflateError::NotAsRequested(what) => {
                write!(f, "permessage-deflate response does not honour the offer: {what}")
            }
        }
    }
}

impl std::error::Error for DeflateError {}

/// RFC 7692 §7.1.2: window bits are an integer 8–15 "without leading zeros".
fn parse_window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [digit @ b'8'..=b'9'] => Some(digit - b'0'),
        [b'1', digit @ b'0'..=b'5'] => Some(10 + digit - b'0'),
        _ => None,
    }
}

/// The parameters of one offer or response: parsed from a header (checked
/// for the RFC 7692 §7.1 rules every side applies: known names, no repeats,
/// well-formed values), or rendered into one.
#[derive(Default)]
struct ParsedParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (only legal in an offer).
    client_max_window_bits: Option<Option<u8>>,
}

impl ParsedParams {
    /// The extension with these parameters, as a header value. The one
    /// rendering used for both offers and answers.
    fn to_header(&self) -> String {
        let mut value = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            value.push_str(&format!("; {SERVER_NO_CONTEXT_TAKEOVER}"));
        }
        if self.client_no_context_takeover {
            value.push_str(&format!("; {CLIENT_NO_CONTEXT_TAKEOVER}"));
        }
        if let Some(bits) = self.server_max_window_bits {
            value.push_str(&format!("; {SERVER_MAX_WINDOW_BITS}={bits}"));
        }
        match self.client_max_window_bits {
            Some(Some(bits)) => value.push_str(&format!("; {CLIENT_MAX_WINDOW_BITS}={bits}")),
            Some(None) => value.push_str(&format!("; {CLIENT_MAX_WINDOW_BITS}")),
            None => {}
        }
        value
    }
}

fn parse_params(params: &[(String, Option<String>)]) -> Result<ParsedParams, String> {
    let mut parsed = ParsedParams::default();
    let mut seen: Vec<&str> = Vec::with_capacity(params.len());
    for (name, value) in params {
        if seen.contains(&name.as_str()) {
            return Err(format!("{name} repeated"));
        }
        seen.push(name);
        let bits = || value.as_deref().and_then(parse_window_bits).ok_or_else(|| format!("{name}={value:?}"));
        match name.as_str() {
            SERVER_NO_CONTEXT_TAKEOVER | CLIENT_NO_CONTEXT_TAKEOVER if value.is_some() => {
                return Err(format!("{name} takes no value"));
            }
            SERVER_NO_CONTEXT_TAKEOVER => parsed.server_no_context_takeover = true,
            CLIENT_NO_CONTEXT_TAKEOVER => parsed.client_no_context_takeover = true,
            SERVER_MAX_WINDOW_BITS => parsed.server_max_window_bits = Some(bits()?),
            CLIENT_MAX_WINDOW_BITS => {
                parsed.client_max_window_bits = Some(if value.is_some() { Some(bits()?) } else { None });
            }
            _ => return Err(format!("unknown parameter {name}")),
        }
    }
    Ok(parsed)
}

impl DeflateConfig {
    /// The `Sec-WebSocket-Extensions` value a client offers.
    ///
    /// It always includes `client_max_window_bits` (with a value only below
    /// 15), telling the server we can compress with a smaller window if it
    /// asks (RFC 7692 §7.1.2.2).
    #[must_use]
    pub fn to_offer_header(&self) -> String {
        let narrowed = |bits: u8| (bits < 15).then_some(bits);
        ParsedParams {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: narrowed(self.server_max_window_bits),
            client_max_window_bits: Some(narrowed(self.client_max_window_bits)),
        }
        .to_header()
    }

    /// As a server: the parameters for the first acceptable permessage-deflate
    /// offer among `offers`, or `None` to decline them all.
    ///
    /// RFC 7692 §7.1: an offer with an unknown, repeated or invalid parameter
    /// is declined (not an error: the next offer may do).
    #[must_use]
    pub fn accept_offer(&self, offers: &[ExtensionOffer]) -> Option<DeflateParams> {
        offers.iter().filter(|offer| offer.name.eq_ignore_ascii_case(EXTENSION_NAME)).find_map(|offer| {
            let requested = parse_params(&offer.params).ok()?;
            let server_max_window_bits = requested
                .server_max_window_bits
                .map_or(self.server_max_window_bits, |bits| bits.min(self.server_max_window_bits));
            // §7.1.2.2: without client_max_window_bits in the offer the client
            // may not support a smaller window, so we cannot ask for one.
            let client_max_window_bits = match requested.client_max_window_bits {
                None => 15,
                Some(offered) => offered.unwrap_or(15).min(self.client_max_window_bits),
            };
            Some(DeflateParams {
                // §7.1.1.1: a requested server_no_context_takeover MUST be honoured.
                server_no_context_takeover: requested.server_no_context_takeover || self.server_no_context_takeover,
                // §7.1.1.2: echoing the client's hint is always allowed, and it
                // lets us drop our decompressor's context between messages.
                client_no_context_takeover: requested.client_no_context_takeover || self.client_no_context_takeover,
                server_max_window_bits,
                client_max_window_bits,
            })
        })
    }

    /// As a client: checks the server's `Sec-WebSocket-Extensions` answer
    /// against what [`to_offer_header`](Self::to_offer_header) offered.
    ///
    /// # Errors
    /// An extension we did not offer, a malformed parameter, or a parameter
    /// that does not honour our offer: RFC 7692 §7.1 requires the client to
    /// fail the connection then.
    pub fn accept_response(&self, response: &[ExtensionOffer]) -> Result<Option<DeflateParams>, DeflateError> {
        let [accepted] = response else {
            return match response.first() {
                None => Ok(None),
                Some(_) => Err(DeflateError::UnexpectedExtension("more than one extension".into())),
            };
        };
        if !accepted.name.eq_ignore_ascii_case(EXTENSION_NAME) {
            return Err(DeflateError::UnexpectedExtension(accepted.name.clone()));
        }
        let answer = parse_params(&accepted.params).map_err(DeflateError::InvalidParameter)?;
        if self.server_no_context_takeover && !answer.server_no_context_takeover {
            return Err(DeflateError::NotAsRequested(SERVER_NO_CONTEXT_TAKEOVER.into()));
        }
        let server_max_window_bits = match answer.server_max_window_bits {
            Some(bits) if bits > self.server_max_window_bits => {
                return Err(DeflateError::NotAsRequested(format!("{SERVER_MAX_WINDOW_BITS}={bits}")));
            }
            Some(bits) => bits,
            None if self.server_max_window_bits < 15 => {
                return Err(DeflateError::NotAsRequested(format!("{SERVER_MAX_WINDOW_BITS} missing")));
            }
            None => 15,
        };
        let client_max_window_bits = match answer.client_max_window_bits {
            Some(None) => {
                return Err(DeflateError::InvalidParameter(format!("{CLIENT_MAX_WINDOW_BITS} without a value")))
            }
            Some(Some(bits)) => bits.min(self.client_max_window_bits),
            None => self.client_max_window_bits,
        };
        Ok(Some(DeflateParams {
            server_no_context_takeover: answer.server_no_context_takeover,
            client_no_context_takeover: answer.client_no_context_takeover || self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::parse_extensions;

    fn accept(config: &DeflateConfig, header: &str) -> Option<DeflateParams> {
        config.accept_offer(&parse_extensions(header.as_bytes()).unwrap())
    }

    #[test]
    fn server_honours_requested_parameters() {
        let params = accept(
            &DeflateConfig::default(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits",
        )
        .unwrap();
        assert!(params.server_no_context_takeover);
        assert_eq!((params.server_max_window_bits, params.client_max_window_bits), (9, 15));
        assert_eq!(
            params.to_response_header(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9"
        );
    }

    #[test]
    fn server_limits_client_window_only_when_offered() {
        let config = DeflateConfig { client_max_window_bits: 10, ..DeflateConfig::default() };
        assert_eq!(accept(&config, "permessage-deflate").unwrap().client_max_window_bits, 15);
        assert_eq!(accept(&config, "permessage-deflate; client_max_window_bits").unwrap().client_max_window_bits, 10);
        assert_eq!(accept(&config, "permessage-deflate; client_max_window_bits=8").unwrap().client_max_window_bits, 8);
    }

    #[test]
    fn server_declines_invalid_offers_and_takes_the_next() {
        let config = DeflateConfig::default();
        for bad in [
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; constructor",
            "permessage-deflate; __proto__=1",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(accept(&config, bad), None, "{bad}");
        }
        let params =
            accept(&config, "permessage-deflate; bogus, permessage-deflate; client_no_context_takeover").unwrap();
        assert!(params.client_no_context_takeover);
    }

    #[test]
    fn client_offer_round_trips_through_a_server() {
        let client = DeflateConfig {
            server_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 12,
            ..DeflateConfig::default()
        };
        let offer = client.to_offer_header();
        let params = accept(&DeflateConfig::default(), &offer).unwrap();
        let response = parse_extensions(params.to_response_header().as_bytes()).unwrap();
        assert_eq!(client.accept_response(&response).unwrap(), Some(params));
    }

    #[test]
    fn client_rejects_answers_that_break_the_offer() {
        let client = DeflateConfig { server_max_window_bits: 10, ..DeflateConfig::default() };
        for bad in [
            "permessage-deflate; server_max_window_bits=12",
            "permessage-deflate",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=10; mystery",
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
            "x-other",
        ] {
            let response = parse_extensions(bad.as_bytes()).unwrap();
            assert!(client.accept_response(&response).is_err(), "{bad}");
        }
        assert_eq!(client.accept_response(&[]).unwrap(), None);
    }
}
