//! Reading an HTTP head off an async transport, within the core's limits.

use std::io;

use tether_proto::handshake::{HeadError, HeadReader};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why reading a head stopped.
pub(crate) enum HeadReadError {
    Io(io::Error),
    Head(HeadError),
}

/// Reads until `reader` has a complete head; returns the bytes read past it.
///
/// The read buffer lives on the heap only for the handshake, so it does not
/// become part of the connection's long-lived state.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    reader: &mut HeadReader,
) -> Result<Vec<u8>, HeadReadError> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.map_err(HeadReadError::Io)?;
        if n == 0 {
            return Err(HeadReadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed during the opening handshake",
            )));
        }
        if let Some(used) = reader.feed(&buf[..n]).map_err(HeadReadError::Head)? {
            return Ok(buf[used..n].to_vec());
        }
    }
}
