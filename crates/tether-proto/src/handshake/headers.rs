//! HTTP header fields as received, in order, with case-insensitive lookup.

/// The header fields of a request or response, in the order received.
/// Values are kept as bytes, since HTTP allows non-UTF-8 (obs-text) values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// No fields.
    #[must_use]
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.fields.push((name.into(), value.into()));
    }

    /// The first value of `name` (case-insensitive).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(field, _)| field.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_slice())
    }

    /// The first value of `name` as text, if it is valid UTF-8.
    #[must_use]
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields.iter().filter(move |(field, _)| field.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_slice())
    }

    /// How many fields named `name` there are.
    #[must_use]
    pub fn count(&self, name: &str) -> usize {
        self.fields.iter().filter(|(field, _)| field.eq_ignore_ascii_case(name)).count()
    }

    /// Whether any value of `name`, read as a comma-separated list, holds
    /// `token` (case-insensitive), as for `Connection: keep-alive, Upgrade`.
    #[must_use]
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(|value| value.split(|&b| b == b','))
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Every comma-separated item of every `name` field, trimmed, in order.
    pub fn list_items<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name)
            .flat_map(|value| value.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|item| !item.is_empty())
    }

    /// All the values of `name` joined with `, `, as HTTP allows (RFC 7230 §3.2.2).
    #[must_use]
    pub fn joined(&self, name: &str) -> Option<Vec<u8>> {
        let mut values = self.get_all(name);
        let mut joined = values.next()?.to_vec();
        for value in values {
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(value);
        }
        Some(joined)
    }

    /// Every field, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(|(name, value)| (name.as_str(), value.as_slice()))
    }

    /// How many fields there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_tokens_are_listed() {
        let mut headers = Headers::new();
        headers.push("Connection", "keep-alive, Upgrade");
        headers.push("sec-websocket-protocol", "chat, superchat");
        headers.push("Sec-WebSocket-Protocol", "v2");
        assert!(headers.has_token("connection", "upgrade"));
        assert!(!headers.has_token("connection", "close"));
        let items: Vec<&[u8]> = headers.list_items("SEC-WEBSOCKET-PROTOCOL").collect();
        assert_eq!(items, [&b"chat"[..], b"superchat", b"v2"]);
        assert_eq!(headers.joined("sec-websocket-protocol").unwrap(), b"chat, superchat, v2");
        assert_eq!(headers.count("Sec-WebSocket-Protocol"), 2);
    }
}
