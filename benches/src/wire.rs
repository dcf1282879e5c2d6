//! Wire helpers of the scale benchmarks (`fanout`, `handshakes`, `idle`):
//! a server-frame reader that hands out the start of each frame's payload
//! (the fan-out client needs the 16-byte stamp of each message, the idle
//! client the payload of each ping), masked client frames of any opcode,
//! and connecting from a chosen loopback source address.
//!
//! The reader is cheap on purpose: a frame that lies whole in the bytes
//! read is handed out as a slice of them, without a copy; only a frame
//! split across reads has its first bytes copied aside.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// The fixed mask key of every client frame built here.
const MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x81];

/// Most payload bytes of a frame the reader keeps: a control frame's
/// whole payload (RFC 6455 §5.5), the start of a data frame's.
pub const KEEP: usize = 125;

/// Frame opcodes used here.
pub mod opcode {
    /// Binary data frame.
    pub const BINARY: u8 = 0x2;
    /// Close frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping frame.
    pub const PING: u8 = 0x9;
    /// Pong frame.
    pub const PONG: u8 = 0xa;
}

/// One frame from the server, as the reader hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The opcode (low four bits of the first byte).
    pub opcode: u8,
    /// The FIN bit.
    pub fin: bool,
    /// Payload length.
    pub len: u64,
    /// The first `min(len, KEEP)` payload bytes.
    pub head: &'a [u8],
}

/// Splits the server's byte stream into frames, however it was cut into
/// reads.
#[derive(Debug)]
pub struct FrameReader {
    header: [u8; 14],
    header_len: usize,
    /// The frame whose payload is being read (valid when `in_body`).
    opcode: u8,
    fin: bool,
    len: u64,
    body_left: u64,
    in_body: bool,
    kept: [u8; KEEP],
    kept_len: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            header: [0; 14],
            header_len: 0,
            opcode: 0,
            fin: false,
            len: 0,
            body_left: 0,
            in_body: false,
            kept: [0; KEEP],
            kept_len: 0,
        }
    }
}

/// Header length implied by the second header byte.
fn header_len(b1: u8) -> usize {
    let extended = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + extended + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// (opcode, fin, payload length) from a complete header.
fn parse_header(header: &[u8]) -> (u8, bool, u64) {
    let len = match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[2..10]);
            u64::from_be_bytes(bytes)
        }
        len => u64::from(len),
    };
    (header[0] & 0x0f, header[0] & 0x80 != 0, len)
}

impl FrameReader {
    /// Feeds received bytes; calls `on_frame` for every frame they complete.
    pub fn feed(&mut self, mut data: &[u8], mut on_frame: impl FnMut(Frame<'_>)) {
        while !data.is_empty() {
            if self.in_body {
                let take = usize::try_from(self.body_left.min(data.len() as u64)).unwrap_or(data.len());
                let keep = take.min(KEEP - self.kept_len);
                self.kept[self.kept_len..self.kept_len + keep].copy_from_slice(&data[..keep]);
                self.kept_len += keep;
                self.body_left -= take as u64;
                data = &data[take..];
                if self.body_left == 0 {
                    self.in_body = false;
                    on_frame(Frame {
                        opcode: self.opcode,
                        fin: self.fin,
                        len: self.len,
                        head: &self.kept[..self.kept_len],
                    });
                }
                continue;
            }
            if self.header_len == 0 && data.len() >= 2 && data.len() >= header_len(data[1]) {
                // Fast path: the whole header is in this read, and maybe the
                // whole frame.
                let need = header_len(data[1]);
                let (opcode, fin, len) = parse_header(&data[..need]);
                data = &data[need..];
                if len <= data.len() as u64 {
                    let len_usize = len as usize;
                    on_frame(Frame { opcode, fin, len, head: &data[..len_usize.min(KEEP)] });
                    data = &data[len_usize..];
                } else {
                    self.start_body(opcode, fin, len);
                }
                continue;
            }
            self.header[self.header_len] = data[0];
            self.header_len += 1;
            data = &data[1..];
            if self.header_len < 2 || self.header_len < header_len(self.header[1]) {
                continue;
            }
            self.header_len = 0;
            let (opcode, fin, len) = parse_header(&self.header);
            if len == 0 {
                on_frame(Frame { opcode, fin, len, head: &[] });
            } else {
                self.start_body(opcode, fin, len);
            }
        }
    }

    fn start_body(&mut self, opcode: u8, fin: bool, len: u64) {
        self.opcode = opcode;
        self.fin = fin;
        self.len = len;
        self.body_left = len;
        self.kept_len = 0;
        self.in_body = true;
    }
}

/// Appends one masked client frame (FIN set) to `out`.
pub fn push_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | (opcode & 0x0f));
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ MASK[i % 4]));
}

/// A masked close frame with status code 1000 and no reason.
#[must_use]
pub fn close_frame() -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    push_masked(&mut out, opcode::CLOSE, &1000u16.to_be_bytes());
    out
}

/// The fixed opening request of every client here (fixed key, no
/// extension offered, so permessage-deflate is never negotiated).
#[must_use]
pub fn upgrade_request(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Source address number `i` of the loopback pool: 127.0.0.2, 127.0.0.3,
/// … (all of 127/8 is loopback on Linux). Each gives its own ~28k
/// ephemeral ports, so many connections need several.
#[must_use]
pub fn source_ip(i: usize) -> IpAddr {
    let n = 2 + (i % 250_000) as u32;
    IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | n))
}

/// Connects to `addr` from `source` (port chosen by the kernel at connect
/// time, so the same port can serve several destinations). `TCP_NODELAY`
/// is left off: every client here writes only when it has everything the
/// server waits for, so Nagle never holds anything back, and the system
/// call is saved.
///
/// # Errors
/// The socket cannot be made, bound or connected.
pub async fn connect_from(addr: SocketAddr, source: IpAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    bind_address_no_port(&socket);
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// `IP_BIND_ADDRESS_NO_PORT`: bind the address now, the port at connect
/// time, when the kernel knows the destination and can reuse ports across
/// destinations. Best effort: without it binding still works, with fewer
/// ports.
fn bind_address_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: the fd is owned by `socket`, alive for the call; the option
    // value is a valid c_int whose size is passed.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Where the answer head to an upgrade request ends, once `head` holds it
/// all: `Ok(Some(end))` (bytes after `end` are frames), `Ok(None)` if
/// more is needed.
///
/// # Errors
/// The answer is not `101`, or is too long.
pub fn upgrade_answer_end(head: &[u8]) -> io::Result<Option<usize>> {
    if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
        if !head.starts_with(b"HTTP/1.1 101") {
            let line =
                String::from_utf8_lossy(&head[..head.iter().position(|&b| b == b'\r').unwrap_or(0)]).into_owned();
            return Err(io::Error::other(format!("handshake refused: {line}")));
        }
        return Ok(Some(end + 4));
    }
    if head.len() > 16 << 10 {
        return Err(io::Error::other("handshake answer too long"));
    }
    Ok(None)
}

/// Opens a WebSocket connection from `source` to `addr` with the fixed
/// request for `path`, `TCP_NODELAY` on; returns the stream and any frame bytes that came
/// in the same read as the `101` head.
///
/// # Errors
/// Connecting failed, the server closed, or did not answer `101`.
pub async fn open_ws(addr: SocketAddr, source: IpAddr, path: &str) -> io::Result<(TcpStream, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = connect_from(addr, source).await?;
    // These connections write small frames the server never answers (a
    // publisher's messages): without NODELAY a write could wait for the
    // ACK of the previous one.
    tcp.set_nodelay(true)?;
    tcp.write_all(&upgrade_request(addr, path)).await?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake"));
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = upgrade_answer_end(&head)? {
            return Ok((tcp, head.split_off(end)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unmasked (server) frame.
    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut masked = Vec::new();
        push_masked(&mut masked, opcode, payload);
        masked[0] = if fin { 0x80 } else { 0 } | opcode;
        masked[1] &= 0x7f;
        let key_at = header_len(masked[1]);
        masked.drain(key_at..key_at + 4);
        // Undo the mask on the payload.
        for (i, byte) in masked[key_at..].iter_mut().enumerate() {
            *byte ^= MASK[i % 4];
        }
        masked
    }

    fn collect(stream: &[u8], chunk: usize) -> Vec<(u8, bool, u64, Vec<u8>)> {
        let mut reader = FrameReader::default();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            reader.feed(piece, |frame| out.push((frame.opcode, frame.fin, frame.len, frame.head.to_vec())));
        }
        out
    }

    #[test]
    fn frames_split_anywhere_keep_their_heads() {
        let payloads: Vec<Vec<u8>> = [0usize, 1, 16, 64, 125, 126, 200, 65535, 65536, 70000]
            .iter()
            .map(|&n| (0..n).map(|i| i as u8).collect())
            .collect();
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for payload in &payloads {
            stream.extend(server_frame(opcode::BINARY, true, payload));
            expected.push((opcode::BINARY, true, payload.len() as u64, payload[..payload.len().min(KEEP)].to_vec()));
        }
        stream.extend(server_frame(opcode::PING, true, b"1234"));
        expected.push((opcode::PING, true, 4, b"1234".to_vec()));
        stream.extend(server_frame(opcode::BINARY, false, b"part"));
        expected.push((opcode::BINARY, false, 4, b"part".to_vec()));
        stream.extend(server_frame(opcode::CLOSE, true, &1000u16.to_be_bytes()));
        expected.push((opcode::CLOSE, true, 2, vec![0x03, 0xe8]));
        for chunk in [1, 2, 3, 7, 66, 100, 4096, stream.len()] {
            assert_eq!(collect(&stream, chunk), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn masked_frames() {
        let mut out = Vec::new();
        push_masked(&mut out, opcode::PONG, b"ab");
        assert_eq!(out, [0x8a, 0x82, MASK[0], MASK[1], MASK[2], MASK[3], b'a' ^ MASK[0], b'b' ^ MASK[1]]);
        assert_eq!(close_frame()[..2], [0x88, 0x82]);
        let mut long = Vec::new();
        push_masked(&mut long, opcode::BINARY, &[0; 300]);
        assert_eq!(long.len(), 2 + 2 + 4 + 300);
    }

    #[test]
    fn upgrade_answers() {
        assert_eq!(upgrade_answer_end(b"HTTP/1.1 101 Switching").unwrap(), None);
        let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x88\x02";
        assert_eq!(upgrade_answer_end(answer).unwrap(), Some(answer.len() - 2));
        assert!(upgrade_answer_end(b"HTTP/1.1 400 Bad\r\n\r\n").is_err());
    }

    #[test]
    fn source_addresses() {
        assert_eq!(source_ip(0), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_ip(15), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 17)));
        assert_eq!(source_ip(300), IpAddr::V4(Ipv4Addr::new(127, 0, 1, 46)));
    }
}
