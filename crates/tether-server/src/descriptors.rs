//! Running out of file descriptors while accepting (`EMFILE`, `ENFILE`).
//!
//! A listener whose backlog holds connections it cannot accept stays
//! readable: an edge-triggered loop that gives up is never told again, and
//! a level-triggered one spins. Either way the queued clients hang until
//! their own timeouts. The classic way out (libev, nginx, Go's runtime do
//! variants of it): keep one descriptor in reserve; when accept fails for
//! lack of descriptors, release the reserve, accept one client, answer it
//! `503` at once and close it, take the reserve back, and repeat until the
//! backlog is empty (the refused socket's descriptor becomes the reserve
//! in place, see [`Reserve::restore_from`]). Nobody hangs: past the limit clients hear at once
//! that the server is full, and as soon as descriptors free, accepting
//! works again (the drivers also retry on a timer, should the reserve
//! itself be lost to another thread).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};

use tether_proto::handshake::Rejection;

/// How long a driver waits before trying to accept again when it could
/// not even use the reserve.
pub const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// One descriptor held back for answering clients when none is left.
#[derive(Debug)]
pub struct Reserve {
    spare: Option<OwnedFd>,
}

impl Default for Reserve {
    fn default() -> Self {
        Reserve::new()
    }
}

impl Reserve {
    /// Takes the spare descriptor now, while descriptors are available.
    #[must_use]
    pub fn new() -> Reserve {
        Reserve { spare: File::open("/dev/null").ok().map(OwnedFd::from) }
    }

    /// Frees the spare so that one `accept` can succeed; `false` if there
    /// was none to free (the driver should retry after [`ACCEPT_RETRY`]).
    pub fn release(&mut self) -> bool {
        self.spare.take().is_some()
    }

    /// Closes `refused` (a client socket accepted with the spare and
    /// answered) and keeps its descriptor number as the spare again, in
    /// one step: `dup2` of `template` (any open descriptor, e.g. the
    /// listener) over it. Closing first and reopening after would leave a
    /// moment in which another thread's `accept` could take the place and
    /// the reserve would be lost for good.
    pub fn restore_from(&mut self, refused: OwnedFd, template: BorrowedFd<'_>) {
        let number = refused.into_raw_fd();
        // SAFETY: `number` is a descriptor this process owns (taken out of
        // its `OwnedFd` just above), and `template` is open for the call.
        // dup2 closes the socket behind `number` and makes `number` a
        // duplicate of `template`, atomically.
        let duplicated = unsafe { libc::dup2(template.as_raw_fd(), number) } == number;
        if duplicated {
            // SAFETY: `number` is open (dup2 succeeded) and owned by nothing
            // else: its previous owner gave it up with `into_raw_fd`.
            self.spare = Some(unsafe { OwnedFd::from_raw_fd(number) });
        } else {
            // SAFETY: dup2 failed, so `number` still holds the refused
            // socket, which only we own: close it.
            drop(unsafe { OwnedFd::from_raw_fd(number) });
            self.restore();
        }
    }

    /// Takes a spare back if there is none (after a failed attempt), when
    /// a descriptor is available.
    pub fn restore(&mut self) {
        if self.spare.is_none() {
            self.spare = File::open("/dev/null").ok().map(OwnedFd::from);
        }
    }
}

/// Whether an accept failed for lack of descriptors (process or system).
#[must_use]
pub fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(code) if code == libc::EMFILE || code == libc::ENFILE)
}

/// What a client accepted past the limit is told before the close: the
/// same `503` as past [`max_connections`](crate::config::ServerConfig::max_connections).
#[must_use]
pub fn busy_answer() -> Vec<u8> {
    Rejection::new(503, "too many connections; try again").with_header("Retry-After", "1").to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_errors_that_mean_no_descriptor_left_are_recognised() {
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!is_out_of_descriptors(&io::Error::from_raw_os_error(libc::ECONNABORTED)));
        assert!(!is_out_of_descriptors(&io::Error::from(io::ErrorKind::WouldBlock)));
    }

    #[test]
    fn the_reserve_is_released_once_and_taken_back() {
        let mut reserve = Reserve::new();
        assert!(reserve.release());
        assert!(!reserve.release());
        reserve.restore();
        assert!(reserve.release());
    }

    #[test]
    fn a_refused_socket_becomes_the_reserve_in_place() {
        use std::os::fd::AsFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let number = accepted.as_raw_fd();
        let mut reserve = Reserve::new();
        assert!(reserve.release());
        reserve.restore_from(OwnedFd::from(accepted), listener.as_fd());
        assert_eq!(reserve.spare.as_ref().map(AsRawFd::as_raw_fd), Some(number), "the same descriptor number");
        // The client sees the end of its connection.
        let mut byte = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &client, &mut byte).unwrap(), 0);
    }

    #[test]
    fn the_busy_answer_is_a_503_with_retry_after() {
        let answer = String::from_utf8(busy_answer()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("Retry-After: 1"), "{answer}");
    }
}
