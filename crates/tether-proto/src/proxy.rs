//! Reaching a WebSocket server through a proxy, without I/O: an HTTP
//! proxy's `CONNECT` tunnel (RFC 9110 §9.3.6) with Basic credentials, or
//! SOCKS5 (RFC 1928) with username and password (RFC 1929). The server's
//! host name is always given to the proxy to resolve ("remote DNS"), so
//! names only the proxy can resolve work, and nothing leaks to the local
//! resolver.
//!
//! Which proxy to use comes from the program ([`Proxy::parse`]) or from the
//! environment as `websocket-client` and `websockets` read it
//! ([`Proxy::from_env`]: `https_proxy` for `wss://`, `http_proxy` for
//! `ws://`, `all_proxy` for either, `no_proxy` to exclude hosts).

use std::fmt;

use crate::handshake::{Response, Target};

/// A user name and password for the proxy: the same as a URI's.
pub use crate::handshake::Credentials;

/// The kind of proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// An HTTP proxy, tunnelling with `CONNECT`.
    Http,
    /// A SOCKS5 proxy.
    Socks5,
}

/// A proxy to connect through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    /// HTTP or SOCKS5.
    pub kind: ProxyKind,
    /// The proxy's host.
    pub host: String,
    /// The proxy's port.
    pub port: u16,
    /// Credentials, if the proxy wants them.
    pub credentials: Option<Credentials>,
}

/// What went wrong with a proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL cannot be used.
    Url(String),
    /// The proxy wants credentials (407), or refused the ones given.
    AuthRequired,
    /// The HTTP proxy refused the tunnel with this status.
    Refused {
        /// The status, e.g. 403 or 502.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The SOCKS5 proxy answered something we cannot use.
    Socks(String),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Url(why) => write!(f, "bad proxy URL: {why}"),
            ProxyError::AuthRequired => f.write_str("the proxy refused our credentials, or wants some"),
            ProxyError::Refused { status, reason } => write!(f, "the proxy refused the tunnel: {status} {reason}"),
            ProxyError::Socks(why) => write!(f, "SOCKS5 proxy: {why}"),
        }
    }
}

impl std::error::Error for ProxyError {}

impl Proxy {
    /// Parses `http://[user:password@]host[:port]` (default port 80) or
    /// `socks5://…` / `socks5h://…` (default 1080; both resolve names at
    /// the proxy). User and password may be percent-encoded.
    ///
    /// # Errors
    /// Another scheme, no host, a bad port.
    pub fn parse(url: &str) -> Result<Proxy, ProxyError> {
        let error = |why: &str| ProxyError::Url(format!("{why}: {:?}", redact(url)));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| error("no scheme"))?;
        let (kind, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (ProxyKind::Http, 80),
            "socks5" | "socks5h" => (ProxyKind::Socks5, 1080),
            _ => return Err(error("scheme must be http, socks5 or socks5h")),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let credentials = Credentials { user: percent_decode(user), password: percent_decode(password) };
                (Some(credentials), host_port)
            }
            None => (None, authority),
        };
        let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| error("unclosed IPv6 bracket"))?;
            (host, after.strip_prefix(':'))
        } else {
            match host_port.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return Err(error("no host"));
        }
        let port = match port {
            None | Some("") => default_port,
            Some(port) => port.parse().map_err(|_| error("bad port"))?,
        };
        Ok(Proxy { kind, host: host.to_owned(), port, credentials })
    }

    /// The proxy the environment names for `target`, read through `var`
    /// (normally `std::env::var`): `https_proxy` for `wss://`, `http_proxy`
    /// for `ws://`, else `all_proxy`; lowercase names first, then uppercase.
    /// `None` when none is set, or when `no_proxy` lists the host (`*`, a
    /// name, a `.suffix` or `suffix`, optionally with `:port`); when
    /// `no_proxy` is unset, loopback hosts (`localhost`, `127.0.0.1`, `::1`)
    /// go direct, as in `websocket-client`.
    #[must_use]
    pub fn from_env(target: &Target, var: impl Fn(&str) -> Option<String>) -> Option<Result<Proxy, ProxyError>> {
        let read =
            |name: &str| var(name).or_else(|| var(&name.to_ascii_uppercase())).filter(|value| !value.trim().is_empty());
        // As websocket-client: without `no_proxy`, loopback hosts go
        // direct (a proxy elsewhere could not reach them); with it, it rules.
        let bypass = match read("no_proxy") {
            Some(no_proxy) => excluded(&no_proxy, &target.host, target.port),
            None => is_loopback(&target.host),
        };
        if bypass {
            return None;
        }
        let scheme_var = if target.secure { "https_proxy" } else { "http_proxy" };
        let url = read(scheme_var).or_else(|| read("all_proxy"))?;
        Some(Proxy::parse(url.trim()))
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn excluded(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host.to_ascii_lowercase();
    no_proxy.split([',', ' ']).map(str::trim).filter(|entry| !entry.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let (name, entry_port): (&str, Option<u16>) = match entry.rsplit_once(':') {
            Some((name, entry_port)) if entry_port.parse::<u16>().is_ok() => (name, entry_port.parse().ok()),
            _ => (entry, None),
        };
        if entry_port.is_some_and(|entry_port| entry_port != port) {
            return false;
        }
        let name = name.trim_start_matches('.').to_ascii_lowercase();
        host == name || host.ends_with(&format!(".{name}"))
    })
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}://***@{}", &url[..start], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

fn percent_decode(text: &str) -> String {
    let hex = |byte: u8| char::from(byte).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- HTTP CONNECT ---------------------------------------------------------------

/// The `CONNECT` request for a tunnel to `host:port`.
#[must_use]
pub fn connect_request(host: &str, port: u16, credentials: Option<&Credentials>) -> Vec<u8> {
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(credentials) = credentials {
        request.push_str(&format!("Proxy-Authorization: {}\r\n", credentials.basic()));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// Checks the proxy's answer to `CONNECT`: any 2xx opens the tunnel
/// (HTTP/1.0 answers too, as tinyproxy sends them).
///
/// # Errors
/// 407 (or 401, which some proxies send for wrong credentials) as
/// [`ProxyError::AuthRequired`]; any other status as [`ProxyError::Refused`].
pub fn check_connect_response(response: &Response) -> Result<(), ProxyError> {
    match response.status {
        200..=299 => Ok(()),
        401 | 407 => Err(ProxyError::AuthRequired),
        status => Err(ProxyError::Refused { status, reason: response.reason.clone() }),
    }
}

// ---- SOCKS5 ---------------------------------------------------------------------

/// What the SOCKS5 exchange needs next from the I/O layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Socks5Step {
    /// Write these bytes, then call [`Socks5Handshake::next`] with nothing.
    Write(Vec<u8>),
    /// Read exactly this many bytes and pass them to [`Socks5Handshake::next`].
    Read(usize),
    /// The tunnel is open: the WebSocket handshake can start.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Socks5State {
    Greeting,
    MethodChoice,
    Auth,
    AuthReply,
    Connect,
    ReplyHead,
    ReplyAddress,
    Done,
}

/// The client side of a SOCKS5 exchange (RFC 1928, RFC 1929), as a state
/// machine: [`start`](Self::start), then [`next`](Self::next) with what
/// each step asked for, until [`Socks5Step::Done`].
#[derive(Clone, Debug)]
pub struct Socks5Handshake {
    host: String,
    port: u16,
    credentials: Option<Credentials>,
    state: Socks5State,
}

const SOCKS_VERSION: u8 = 5;
const METHOD_NONE: u8 = 0;
const METHOD_PASSWORD: u8 = 2;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;

impl Socks5Handshake {
    /// A tunnel to `host:port`, resolved by the proxy.
    #[must_use]
    pub fn new(host: &str, port: u16, credentials: Option<Credentials>) -> Socks5Handshake {
        Socks5Handshake { host: host.to_owned(), port, credentials, state: Socks5State::Greeting }
    }

    /// The first step: the greeting, offering no authentication and, with
    /// credentials, username/password.
    #[must_use]
    pub fn start(&mut self) -> Socks5Step {
        self.state = Socks5State::MethodChoice;
        let methods: &[u8] = if self.credentials.is_some() { &[METHOD_NONE, METHOD_PASSWORD] } else { &[METHOD_NONE] };
        let mut greeting = vec![SOCKS_VERSION, methods.len() as u8];
        greeting.extend_from_slice(methods);
        Socks5Step::Write(greeting)
    }

    /// The next step, given the bytes the previous step read (empty after
    /// a write).
    ///
    /// # Errors
    /// The proxy refused (no acceptable method, bad credentials, the
    /// connection to the server failed) or answered nonsense; credentials
    /// or a host name longer than 255 bytes.
    pub fn next(&mut self, input: &[u8]) -> Result<Socks5Step, ProxyError> {
        match self.state {
            Socks5State::Greeting => Ok(self.start()),
            Socks5State::MethodChoice if input.is_empty() => Ok(Socks5Step::Read(2)),
            Socks5State::MethodChoice => {
                if input[0] != SOCKS_VERSION {
                    return Err(ProxyError::Socks(format!("not a SOCKS5 answer (version {})", input[0])));
                }
                match input[1] {
                    METHOD_NONE => self.connect(),
                    METHOD_PASSWORD => match &self.credentials {
                        Some(credentials) => {
                            let (user, password) = (credentials.user.as_bytes(), credentials.password.as_bytes());
                            if user.is_empty() || user.len() > 255 || password.len() > 255 {
                                return Err(ProxyError::Socks("user and password must be 1–255 bytes".into()));
                            }
                            let mut auth = vec![1, user.len() as u8];
                            auth.extend_from_slice(user);
                            auth.push(password.len() as u8);
                            auth.extend_from_slice(password);
                            self.state = Socks5State::Auth;
                            Ok(Socks5Step::Write(auth))
                        }
                        None => Err(ProxyError::AuthRequired),
                    },
                    NO_ACCEPTABLE_METHOD if self.credentials.is_none() => Err(ProxyError::AuthRequired),
                    method => {
                        Err(ProxyError::Socks(format!("no acceptable authentication method (answered {method})")))
                    }
                }
            }
            Socks5State::Auth => {
                self.state = Socks5State::AuthReply;
                Ok(Socks5Step::Read(2))
            }
            Socks5State::AuthReply => {
                if input[1] != 0 {
                    return Err(ProxyError::AuthRequired);
                }
                self.connect()
            }
            Socks5State::Connect => {
                self.state = Socks5State::ReplyHead;
                Ok(Socks5Step::Read(5))
            }
            Socks5State::ReplyHead => {
                // VER REP RSV ATYP, and the first byte of the address.
                if input[0] != SOCKS_VERSION {
                    return Err(ProxyError::Socks(format!("not a SOCKS5 reply (version {})", input[0])));
                }
                if input[1] != 0 {
                    return Err(ProxyError::Socks(reply_meaning(input[1]).into()));
                }
                let rest = match input[3] {
                    1 => 4 - 1 + 2,
                    4 => 16 - 1 + 2,
                    3 => usize::from(input[4]) + 2,
                    kind => return Err(ProxyError::Socks(format!("unknown address type {kind}"))),
                };
                self.state = Socks5State::ReplyAddress;
                Ok(Socks5Step::Read(rest))
            }
            Socks5State::ReplyAddress | Socks5State::Done => {
                self.state = Socks5State::Done;
                Ok(Socks5Step::Done)
            }
        }
    }

    /// What it means that the proxy closed the connection at this step:
    /// some proxies close instead of answering "no acceptable method" or
    /// "bad credentials".
    #[must_use]
    pub fn closed_early(&self) -> ProxyError {
        match self.state {
            Socks5State::MethodChoice | Socks5State::Auth | Socks5State::AuthReply => ProxyError::AuthRequired,
            _ => ProxyError::Socks("the proxy closed the connection before the tunnel opened".into()),
        }
    }

    fn connect(&mut self) -> Result<Socks5Step, ProxyError> {
        let host = self.host.as_bytes();
        let mut request = vec![SOCKS_VERSION, 1, 0];
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            match ip {
                std::net::IpAddr::V4(v4) => {
                    request.push(1);
                    request.extend_from_slice(&v4.octets());
                }
                std::net::IpAddr::V6(v6) => {
                    request.push(4);
                    request.extend_from_slice(&v6.octets());
                }
            }
        } else {
            if host.is_empty() || host.len() > 255 {
                return Err(ProxyError::Socks("host names must be 1–255 bytes".into()));
            }
            request.push(3);
            request.push(host.len() as u8);
            request.extend_from_slice(host);
        }
        request.extend_from_slice(&self.port.to_be_bytes());
        self.state = Socks5State::Connect;
        Ok(Socks5Step::Write(request))
    }
}

fn reply_meaning(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused by the server",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn proxy_urls_parse_with_credentials_and_default_ports() {
        let proxy = Proxy::parse("http://al%40ice:s3c%3Aret@proxy.example:3128").unwrap();
        assert_eq!((proxy.kind, proxy.host.as_str(), proxy.port), (ProxyKind::Http, "proxy.example", 3128));
        let credentials = proxy.credentials.unwrap();
        assert_eq!((credentials.user.as_str(), credentials.password.as_str()), ("al@ice", "s3c:ret"));
        assert_eq!(Proxy::parse("socks5h://10.0.0.1").unwrap().port, 1080);
        assert_eq!(Proxy::parse("http://[::1]:8080/").unwrap().host, "::1");
        let error = Proxy::parse("ftp://user:secret@host").unwrap_err().to_string();
        assert!(!error.contains("secret"), "never print the password: {error}");
    }

    #[test]
    fn the_environment_picks_by_scheme_and_honours_no_proxy() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
        };
        let vars = env(&[
            ("http_proxy", "http://plain:80"),
            ("HTTPS_PROXY", "http://secure:443"),
            ("no_proxy", "internal.example, .corp:8443"),
        ]);
        let pick = |url: &str| Proxy::from_env(&target(url), vars).map(|proxy| proxy.unwrap().host);
        assert_eq!(pick("ws://example.com/"), Some("plain".into()));
        assert_eq!(pick("wss://example.com/"), Some("secure".into()));
        assert_eq!(pick("ws://internal.example/"), None);
        assert_eq!(pick("ws://api.internal.example/"), None);
        assert_eq!(pick("wss://a.corp:8443/"), None);
        assert_eq!(pick("ws://a.corp:80/"), Some("plain".into()), "the port must match too");
        assert_eq!(pick("ws://127.0.0.1:9001/"), Some("plain".into()), "no_proxy is set and does not list it");
        let without_no_proxy = env(&[("http_proxy", "http://plain:80")]);
        let loopback = Proxy::from_env(&target("ws://localhost:9001/"), without_no_proxy);
        assert!(loopback.is_none(), "without no_proxy, loopback goes direct");
        let all = env(&[("all_proxy", "socks5://s:1080")]);
        assert_eq!(Proxy::from_env(&target("wss://x.example/"), all).unwrap().unwrap().kind, ProxyKind::Socks5);
        assert!(
            Proxy::from_env(&target("ws://x.example/"), env(&[("no_proxy", "*"), ("all_proxy", "http://p")])).is_none()
        );
    }

    #[test]
    fn connect_requests_carry_basic_credentials() {
        let credentials = Credentials { user: "alice".into(), password: "s3cret".into() };
        let request = String::from_utf8(connect_request("example.com", 443, Some(&credentials))).unwrap();
        assert!(request.starts_with("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"));
        assert!(request.contains("Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"));
        assert!(request.ends_with("\r\n\r\n"));
        assert!(String::from_utf8(connect_request("::1", 80, None)).unwrap().starts_with("CONNECT [::1]:80 "));
    }

    #[test]
    fn a_socks5_exchange_with_password_sends_the_host_name() {
        let credentials = Credentials { user: "u".into(), password: "pw".into() };
        let mut socks = Socks5Handshake::new("example.com", 443, Some(credentials));
        assert_eq!(socks.start(), Socks5Step::Write(vec![5, 2, 0, 2]));
        assert_eq!(socks.next(&[]).unwrap(), Socks5Step::Read(2));
        assert_eq!(socks.next(&[5, 2]).unwrap(), Socks5Step::Write(vec![1, 1, b'u', 2, b'p', b'w']));
        assert_eq!(socks.next(&[]).unwrap(), Socks5Step::Read(2));
        let mut connect = vec![5, 1, 0, 3, 11];
        connect.extend_from_slice(b"example.com");
        connect.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(socks.next(&[1, 0]).unwrap(), Socks5Step::Write(connect));
        assert_eq!(socks.next(&[]).unwrap(), Socks5Step::Read(5));
        assert_eq!(socks.next(&[5, 0, 0, 1, 127]).unwrap(), Socks5Step::Read(5));
        assert_eq!(socks.next(&[0, 0, 1, 0x1f, 0x90]).unwrap(), Socks5Step::Done);
    }

    #[test]
    fn socks5_refusals_are_errors_that_say_why() {
        let mut socks = Socks5Handshake::new("example.com", 80, None);
        let _ = socks.start();
        socks.next(&[]).unwrap();
        assert_eq!(socks.next(&[5, 0xff]).unwrap_err(), ProxyError::AuthRequired);

        let mut socks =
            Socks5Handshake::new("example.com", 80, Some(Credentials { user: "u".into(), password: "bad".into() }));
        let _ = socks.start();
        socks.next(&[]).unwrap();
        socks.next(&[5, 2]).unwrap();
        socks.next(&[]).unwrap();
        assert_eq!(socks.next(&[1, 1]).unwrap_err(), ProxyError::AuthRequired);

        let mut socks = Socks5Handshake::new("10.1.2.3", 80, None);
        let _ = socks.start();
        socks.next(&[]).unwrap();
        assert_eq!(socks.next(&[5, 0]).unwrap(), Socks5Step::Write(vec![5, 1, 0, 1, 10, 1, 2, 3, 0, 80]));
        socks.next(&[]).unwrap();
        let error = socks.next(&[5, 5, 0, 1, 0]).unwrap_err();
        assert!(error.to_string().contains("refused"), "{error}");
    }
}
