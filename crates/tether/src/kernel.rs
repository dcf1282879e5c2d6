//! What the kernel knows and the socket API does not say: how many bytes
//! a TCP socket still holds for its peer. Keepalive uses it to tell a slow
//! reader (the queue shrinks) from a dead one (it does not), once our own
//! output has all been handed to the kernel.

#[cfg(unix)]
pub(crate) type RawSocket = std::os::fd::RawFd;
#[cfg(not(unix))]
pub(crate) type RawSocket = i32;

/// The descriptor of a TCP stream, to ask about it later.
#[cfg(unix)]
pub(crate) fn raw_socket(tcp: &impl std::os::fd::AsRawFd) -> Option<RawSocket> {
    Some(tcp.as_raw_fd())
}

#[cfg(not(unix))]
pub(crate) fn raw_socket<T>(_tcp: &T) -> Option<RawSocket> {
    None
}

/// Bytes in the socket's send queue not yet acknowledged by the peer.
/// `None` where the platform cannot tell (all but Linux).
#[cfg(target_os = "linux")]
pub(crate) fn unsent_bytes(socket: RawSocket) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one `c_int` through the pointer,
    // which points to a live local. The descriptor belongs to a socket the
    // caller owns; were it closed, the call would fail with EBADF.
    let result = unsafe { libc::ioctl(socket, libc::TIOCOUTQ, &mut queued) };
    (result == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn unsent_bytes(_socket: RawSocket) -> Option<usize> {
    None
}

/// Reads from a socket into memory not yet initialized (the spare room of
/// a large message being received), which `Read::read` cannot take without
/// the room being zeroed first: one pass over the payload fewer.
#[cfg(all(unix, feature = "server"))]
pub(crate) fn recv_into(
    socket: &impl std::os::fd::AsRawFd,
    room: &mut [std::mem::MaybeUninit<u8>],
) -> std::io::Result<usize> {
    // SAFETY: the pointer and length describe `room`, which we borrow
    // mutably; recv writes at most that many bytes and initializes what it
    // reports.
    let read = unsafe { libc::recv(socket.as_raw_fd(), room.as_mut_ptr().cast(), room.len(), 0) };
    usize::try_from(read).map_err(|_| std::io::Error::last_os_error())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_queue_holds_what_the_peer_has_not_taken() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        assert_eq!(super::unsent_bytes(client.as_raw_fd()), Some(0));
        client.write_all(&[1u8; 1000]).unwrap();
        // Loopback acknowledges at once: the bytes sit in the peer's receive
        // buffer, not in our send queue.
        let queued = super::unsent_bytes(client.as_raw_fd()).unwrap();
        assert!(queued <= 1000, "{queued}");
    }
}
