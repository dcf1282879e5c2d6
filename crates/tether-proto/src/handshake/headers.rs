//! HTTP header fields as received, in order, with case-insensitive lookup.

/// The header fields of a request or response, in the order received.
///
/// Stored compactly, because a server keeps its connections' requests for
/// their whole life: all names and values in one byte buffer, and one small
/// index entry per field, so a request of any size costs two allocations.
/// Values are bytes, since HTTP allows non-UTF-8 (obs-text) values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    text: Vec<u8>,
    /// (name start, name end, value end): the value starts at the name's end.
    fields: Vec<(u32, u32, u32)>,
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter().map(|(name, value)| (name, String::from_utf8_lossy(value)))).finish()
    }
}

impl Headers {
    /// No fields.
    #[must_use]
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl AsRef<str>, value: impl AsRef<[u8]>) {
        let start = self.text.len() as u32;
        self.text.extend_from_slice(name.as_ref().as_bytes());
        let name_end = self.text.len() as u32;
        self.text.extend_from_slice(value.as_ref());
        self.fields.push((start, name_end, self.text.len() as u32));
    }

    /// Frees spare capacity once all fields are in.
    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.fields.shrink_to_fit();
    }

    fn field(&self, &(start, name_end, value_end): &(u32, u32, u32)) -> (&str, &[u8]) {
        let name = &self.text[start as usize..name_end as usize];
        let value = &self.text[name_end as usize..value_end as usize];
        // Names are pushed as &str, so they are UTF-8.
        (std::str::from_utf8(name).unwrap_or_default(), value)
    }

    /// The first value of `name` (case-insensitive).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(field, _)| field.eq_ignore_ascii_case(name)).map(|(_, value)| value)
    }

    /// The first value of `name` as text, if it is valid UTF-8.
    #[must_use]
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter().filter(move |(field, _)| field.eq_ignore_ascii_case(name)).map(|(_, value)| value)
    }

    /// How many fields named `name` there are.
    #[must_use]
    pub fn count(&self, name: &str) -> usize {
        self.iter().filter(|(field, _)| field.eq_ignore_ascii_case(name)).count()
    }

    /// Whether any value of `name`, read as a comma-separated list, holds
    /// `token` (case-insensitive), as for `Connection: keep-alive, Upgrade`.
    #[must_use]
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.iter()
            .filter(|(field, _)| field.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(|&b| b == b','))
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
        self.fields.iter().map(|field| self.field(field))
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
