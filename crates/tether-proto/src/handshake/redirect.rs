//! Following a redirect from the opening handshake: a `301`, `302`, `303`,
//! `307` or `308` answer with a `Location`, as both Python libraries follow
//! one (a WebSocket server moved behind a new path or host, or a plain
//! `ws://` sent to `wss://`). Deciding where to go is here; the clients
//! loop, bounded by their `max_redirects`.

use std::fmt;

use super::headers::Headers;
use super::uri::Target;

/// How many redirects a client follows by default (Python `websockets`'
/// default).
pub const DEFAULT_MAX_REDIRECTS: usize = 10;

/// A redirect the client will not follow.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedirectError {
    /// More redirects in a row than the client follows (the bound).
    TooMany(usize),
    /// From `wss://` to `ws://`: the server asked to drop TLS.
    Downgrade(String),
    /// A `Location` that is not a URI a WebSocket can go to.
    BadLocation(String),
}

impl fmt::Display for RedirectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedirectError::TooMany(max) => write!(f, "more than {max} redirects"),
            RedirectError::Downgrade(to) => write!(f, "refused a redirect from wss:// to {to}"),
            RedirectError::BadLocation(why) => write!(f, "cannot follow the redirect: {why}"),
        }
    }
}

impl std::error::Error for RedirectError {}

/// Where an answer sends the client, if it is a redirect: `None` for any
/// other answer (and for a redirect without a `Location`, or with an empty one, which cannot be
/// followed: the refusal stands). The `Location` may be absolute (`ws`,
/// `wss`, or `http`/`https`, taken as `ws`/`wss`), scheme-relative,
/// absolute-path or relative. The user and password of `from` go along
/// only to the same scheme, host and port.
///
/// # Errors
/// A `Location` that is no URI, or one that leaves `wss://` for `ws://`.
#[must_use]
pub fn redirect(from: &Target, status: u16, headers: &Headers) -> Option<Result<Target, RedirectError>> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = headers.get("Location")?.trim_ascii();
    if location.is_empty() {
        return None;
    }
    let Ok(location) = std::str::from_utf8(location) else {
        return Some(Err(RedirectError::BadLocation("Location is not UTF-8".to_owned())));
    };
    Some(resolve(from, location))
}

/// Whether two targets are the same origin (scheme, host, port): headers
/// with secrets (`Authorization`, `Cookie`) go only there.
#[must_use]
pub fn same_origin(a: &Target, b: &Target) -> bool {
    a.secure == b.secure && a.host.eq_ignore_ascii_case(&b.host) && a.port == b.port
}

fn resolve(from: &Target, location: &str) -> Result<Target, RedirectError> {
    let scheme = if from.secure { "wss" } else { "ws" };
    let here = format!("{scheme}://{}", from.host_header());
    let path = from.resource.split_once('?').map_or(from.resource.as_str(), |(path, _)| path);
    let absolute = if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{here}{location}")
    } else if location.starts_with('?') {
        format!("{here}{path}{location}")
    } else if let Some((given, rest)) = location.split_once("://").filter(|(given, _)| is_scheme(given)) {
        let scheme = match given.to_ascii_lowercase().as_str() {
            "ws" | "http" => "ws",
            "wss" | "https" => "wss",
            other => return Err(RedirectError::BadLocation(format!("scheme {other:?}"))),
        };
        format!("{scheme}://{rest}")
    } else if location.is_empty() {
        return Err(RedirectError::BadLocation("empty Location".to_owned()));
    } else {
        // Relative to the current path's last segment.
        let directory = &path[..=path.rfind('/').unwrap_or(0)];
        format!("{here}{directory}{location}")
    };
    let mut target = Target::parse(&absolute).map_err(|error| RedirectError::BadLocation(error.to_string()))?;
    if from.secure && !target.secure {
        return Err(RedirectError::Downgrade(target.to_string()));
    }
    if target.credentials.is_none() && same_origin(from, &target) {
        target.credentials.clone_from(&from.credentials);
    }
    Ok(target)
}

fn is_scheme(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, location: Option<&str>) -> Headers {
        let mut head = format!("HTTP/1.1 {status} Moved\r\n");
        if let Some(location) = location {
            head.push_str(&format!("Location: {location}\r\n"));
        }
        head.push_str("\r\n");
        let mut reader = super::super::HeadReader::new(crate::HandshakeLimits::default());
        reader.feed(head.as_bytes()).unwrap();
        super::super::Response::parse(&reader).unwrap().headers
    }

    fn follow(from: &str, status: u16, location: &str) -> Result<String, RedirectError> {
        let from = Target::parse(from).unwrap();
        redirect(&from, status, &answer(status, Some(location))).expect("a redirect").map(|to| to.to_string())
    }

    #[test]
    fn every_form_of_location_is_resolved_against_where_the_client_was() {
        let from = "ws://example.com:8080/chat/room?x=1";
        assert_eq!(follow(from, 301, "wss://other.org/ws"), Ok("wss://other.org/ws".to_owned()));
        assert_eq!(follow(from, 302, "https://other.org/ws?a=b"), Ok("wss://other.org/ws?a=b".to_owned()));
        assert_eq!(follow(from, 307, "http://other.org"), Ok("ws://other.org/".to_owned()));
        assert_eq!(follow(from, 308, "//cdn.example.com/ws"), Ok("ws://cdn.example.com/ws".to_owned()));
        assert_eq!(follow(from, 303, "/v2/chat"), Ok("ws://example.com:8080/v2/chat".to_owned()));
        assert_eq!(follow(from, 301, "lobby"), Ok("ws://example.com:8080/chat/lobby".to_owned()));
        assert_eq!(follow(from, 301, "?x=2"), Ok("ws://example.com:8080/chat/room?x=2".to_owned()));
        assert_eq!(follow(from, 301, "/a?next=http://b/c"), Ok("ws://example.com:8080/a?next=http://b/c".to_owned()));
    }

    #[test]
    fn what_is_not_a_followable_redirect_is_said() {
        let from = Target::parse("wss://example.com/").unwrap();
        assert!(redirect(&from, 200, &answer(200, Some("/x"))).is_none());
        assert!(redirect(&from, 403, &answer(403, Some("/x"))).is_none());
        assert!(redirect(&from, 302, &answer(302, None)).is_none(), "no Location: the refusal stands");
        assert_eq!(
            follow("wss://example.com/", 302, "ws://example.com/"),
            Err(RedirectError::Downgrade("ws://example.com/".to_owned()))
        );
        assert!(matches!(follow("wss://example.com/", 302, "ftp://example.com/"), Err(RedirectError::BadLocation(_))));
        assert!(matches!(follow("ws://example.com/", 302, "ws://"), Err(RedirectError::BadLocation(_))));
    }

    #[test]
    fn credentials_go_along_only_to_the_same_origin() {
        let from = Target::parse("ws://ada:secret@example.com/a").unwrap();
        let same = redirect(&from, 302, &answer(302, Some("/b"))).unwrap().unwrap();
        assert_eq!(same.credentials.as_ref().map(|c| c.user.as_str()), Some("ada"));
        let other = redirect(&from, 302, &answer(302, Some("ws://evil.example/"))).unwrap().unwrap();
        assert_eq!(other.credentials, None);
        let given = redirect(&from, 302, &answer(302, Some("ws://bob:pw@evil.example/"))).unwrap().unwrap();
        assert_eq!(given.credentials.map(|c| c.user), Some("bob".to_owned()));
        assert!(same_origin(&from, &same) && !same_origin(&from, &other));
    }
}
