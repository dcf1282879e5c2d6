//! `ws://` and `wss://` URIs (RFC 6455 §3).

use std::fmt;

/// Where a client connects: parsed from a `ws://` or `wss://` URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `wss://`: TLS.
    pub secure: bool,
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    /// Port; 80 or 443 when the URI names none.
    pub port: u16,
    /// The request target: path and query, at least `/`.
    pub resource: String,
    /// `user:password@` from the URI, percent-decoded: sent as HTTP Basic
    /// authentication (as both Python libraries do), never shown.
    pub credentials: Option<Credentials>,
}

/// A user name and password from a URI.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password (empty if the URI gave none).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"***").finish()
    }
}

impl Credentials {
    /// The `Authorization` header's value.
    #[must_use]
    pub fn basic(&self) -> String {
        use base64::Engine as _;
        let pair = format!("{}:{}", self.user, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

/// `%XX` escapes decoded; `None` if one is malformed or the result is not
/// UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A URI that is not a usable WebSocket URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriError(String);

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid WebSocket URI: {}", self.0)
    }
}

impl std::error::Error for UriError {}

impl Target {
    /// Parses `ws://host[:port][/path][?query]` or `wss://…`.
    ///
    /// # Errors
    /// Another scheme, a missing host, a bad port, malformed user info, or
    /// a fragment (§3: "MUST NOT" have one).
    pub fn parse(uri: &str) -> Result<Target, UriError> {
        let error = |why: &str| UriError(format!("{why}: {uri:?}"));
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| error("no scheme"))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "ws" => false,
            "wss" => true,
            _ => return Err(error("scheme must be ws or wss")),
        };
        if rest.contains('#') {
            return Err(error("fragment identifiers are not allowed"));
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(authority_end);
        let (credentials, authority) = match authority.rsplit_once('@') {
            None => (None, authority),
            Some((userinfo, authority)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decode = |part| percent_decode(part).ok_or_else(|| error("malformed user info"));
                (Some(Credentials { user: decode(user)?, password: decode(password)? }), authority)
            }
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| error("unclosed IPv6 bracket"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(error("missing or invalid host"));
        }
        // An internationalised name goes on the wire, to DNS and to TLS in
        // its ASCII form (`bücher.example` is `xn--bcher-kva.example`).
        let ascii;
        let host = if host.is_ascii() {
            host
        } else {
            ascii = idna::domain_to_ascii(host).map_err(|_| error("invalid international host name"))?;
            ascii.as_str()
        };
        let port = match port {
            None | Some("") => {
                if secure {
                    443
                } else {
                    80
                }
            }
            Some(port) => port.parse().map_err(|_| error("invalid port"))?,
        };
        let resource = if resource.starts_with('?') {
            format!("/{resource}")
        } else if resource.is_empty() {
            "/".to_owned()
        } else {
            resource.to_owned()
        };
        Ok(Target { secure, host: host.to_owned(), port, resource, credentials })
    }

    /// The `Host` header value: brackets around IPv6, the port only if not the default.
    #[must_use]
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    fn default_port(&self) -> u16 {
        if self.secure {
            443
        } else {
            80
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_resources() {
        let target = Target::parse("ws://localhost:9001/chat?room=1").unwrap();
        assert_eq!(
            target,
            Target {
                secure: false,
                host: "localhost".into(),
                port: 9001,
                resource: "/chat?room=1".into(),
                credentials: None
            }
        );
        let target = Target::parse("wss://[::1]/").unwrap();
        assert_eq!((target.host.as_str(), target.port, target.host_header()), ("::1", 443, "[::1]".to_owned()));
        let target = Target::parse("WS://example.com?x").unwrap();
        assert_eq!(
            (target.port, target.resource.as_str(), target.host_header()),
            (80, "/?x", "example.com".to_owned())
        );
        assert_eq!(Target::parse("ws://h:81").unwrap().to_string(), "ws://h:81/");
    }

    #[test]
    fn an_international_host_name_is_used_in_its_ascii_form() {
        let target = Target::parse("wss://Bücher.example:8443/straße").unwrap();
        assert_eq!(target.host, "xn--bcher-kva.example");
        assert_eq!(target.to_string(), "wss://xn--bcher-kva.example:8443/straße");
        assert_eq!(Target::parse("ws://пример.рф/").unwrap().host, "xn--e1afmkfd.xn--p1ai");
        for bad in ["xn--ü.example", "a\u{fffd}.example"] {
            let error = Target::parse(&format!("ws://{bad}/")).unwrap_err();
            assert!(error.to_string().contains("invalid international host name"), "{error}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_websocket_uri() {
        for bad in
            ["http://x/", "ws://", "ws://:80/", "ws://h:99999/", "ws://u:%zz@h/", "ws://h/#frag", "ws://[::1/", "x"]
        {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_info_becomes_basic_authentication_and_is_never_shown() {
        let target = Target::parse("wss://al%40ice:p%3Ass@h:8443/x").unwrap();
        let credentials = target.credentials.clone().unwrap();
        assert_eq!((credentials.user.as_str(), credentials.password.as_str()), ("al@ice", "p:ss"));
        assert_eq!(credentials.basic(), "Basic YWxAaWNlOnA6c3M=");
        assert_eq!((target.host.as_str(), target.port), ("h", 8443));
        assert_eq!(target.to_string(), "wss://h:8443/x", "no password in what is shown");
        assert!(!format!("{target:?}").contains("p:ss"), "nor in Debug");
        let only_user = Target::parse("ws://bob@h/").unwrap().credentials.unwrap();
        assert_eq!((only_user.user.as_str(), only_user.password.as_str()), ("bob", ""));
    }
}
