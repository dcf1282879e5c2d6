//! The `Sec-WebSocket-Extensions` header grammar (RFC 6455 §9.1), parsed in
//! one linear pass with no backtracking, so no input can make it slow.

use std::fmt;

/// One extension from the header, with its parameters in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// `(name, value)` pairs; a bare parameter has no value. Quoted values are unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// The header does not follow the grammar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionParseError {
    /// Byte offset of the first character that does not fit.
    pub at: usize,
}

impl fmt::Display for ExtensionParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed Sec-WebSocket-Extensions at byte {}", self.at)
    }
}

impl std::error::Error for ExtensionParseError {}

/// `tchar` of RFC 7230 §3.2.6.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    input: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn skip_space(&mut self) {
        while matches!(self.input.get(self.at), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn error(&self) -> ExtensionParseError {
        ExtensionParseError { at: self.at }
    }

    fn token(&mut self) -> Result<String, ExtensionParseError> {
        let start = self.at;
        while self.peek().is_some_and(is_token_char) {
            self.at += 1;
        }
        if self.at == start {
            return Err(self.error());
        }
        // Token characters are ASCII.
        Ok(String::from_utf8_lossy(&self.input[start..self.at]).into_owned())
    }

    fn quoted_string(&mut self) -> Result<String, ExtensionParseError> {
        self.at += 1; // opening quote
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error()),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(String::from_utf8_lossy(&value).into_owned());
                }
                Some(b'\\') => {
                    let escaped = self.input.get(self.at + 1).copied().ok_or_else(|| self.error())?;
                    value.push(escaped);
                    self.at += 2;
                }
                Some(b) => {
                    value.push(b);
                    self.at += 1;
                }
            }
        }
    }
}

/// Parses a `Sec-WebSocket-Extensions` value (several header lines may be
/// joined with commas first) into its extensions, in order.
///
/// # Errors
/// Anything that does not follow the grammar, with the offset where it broke.
pub fn parse_extensions(header: &[u8]) -> Result<Vec<ExtensionOffer>, ExtensionParseError> {
    let mut cursor = Cursor { input: header, at: 0 };
    let mut offers = Vec::new();
    loop {
        cursor.skip_space();
        match cursor.peek() {
            None => return Ok(offers),
            // Empty list elements are allowed by the #rule (RFC 7230 §7).
            Some(b',') => {
                cursor.at += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = cursor.token()?;
        let mut params = Vec::new();
        loop {
            cursor.skip_space();
            match cursor.peek() {
                None | Some(b',') => break,
                Some(b';') => {
                    cursor.at += 1;
                    cursor.skip_space();
                    let param = cursor.token()?;
                    cursor.skip_space();
                    let value = if cursor.peek() == Some(b'=') {
                        cursor.at += 1;
                        cursor.skip_space();
                        Some(if cursor.peek() == Some(b'"') { cursor.quoted_string()? } else { cursor.token()? })
                    } else {
                        None
                    };
                    params.push((param, value));
                }
                Some(_) => return Err(cursor.error()),
            }
        }
        offers.push(ExtensionOffer { name, params });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(name: &str, params: &[(&str, Option<&str>)]) -> ExtensionOffer {
        ExtensionOffer {
            name: name.into(),
            params: params.iter().map(|(k, v)| ((*k).into(), v.map(Into::into))).collect(),
        }
    }

    #[test]
    fn parses_offers_params_and_quoted_values() {
        let parsed = parse_extensions(
            b"permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\" , x-foo,permessage-deflate",
        )
        .unwrap();
        assert_eq!(
            parsed,
            vec![
                offer(
                    "permessage-deflate",
                    &[("client_max_window_bits", None), ("server_max_window_bits", Some("10"))]
                ),
                offer("x-foo", &[]),
                offer("permessage-deflate", &[]),
            ]
        );
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        for bad in [&b"permessage-deflate; =1"[..], b"a b", b"a; b=\"unclosed", b"a; b=", b";", b"a; b=\"x\\"] {
            assert!(parse_extensions(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_extensions(b" , ,").unwrap(), vec![]);
    }

    #[test]
    fn long_pathological_input_is_linear() {
        let mut input = b"b".to_vec();
        input.extend(std::iter::repeat_n(b' ', 64 << 10));
        input.push(b'x');
        let start = std::time::Instant::now();
        assert!(parse_extensions(&input).is_err());
        let mut quoted = b"a; b=\"".to_vec();
        quoted.extend(std::iter::repeat_n(b'\\', 64 << 10));
        let _ = parse_extensions(&quoted);
        assert!(start.elapsed() < std::time::Duration::from_millis(200));
    }
}
