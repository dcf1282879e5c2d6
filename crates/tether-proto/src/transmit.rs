//! What waits to be written: small frames copied into one buffer, so a
//! burst of them leaves in one write, and large payloads held by reference,
//! so a big message (an echo, a broadcast) is never copied on its way out.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Bytes;

/// Output buffers larger than this are freed rather than kept for reuse
/// once drained, so one large burst does not pin memory forever.
const RETAINED_CAPACITY: usize = 64 << 10;

/// A payload queued by reference. It goes out after `buf[..at]` and before
/// `buf[at..]`.
#[derive(Debug)]
struct Shared {
    at: usize,
    bytes: Bytes,
    sent: usize,
}

/// The output byte stream of a connection.
#[derive(Debug, Default)]
pub(crate) struct Transmit {
    buf: Vec<u8>,
    /// How much of `buf` has been written.
    sent: usize,
    /// Boxed: absent until the first large payload, so an idle connection
    /// pays 8 bytes for it instead of a `VecDeque`'s 32.
    #[allow(clippy::box_collection)]
    shared: Option<Box<VecDeque<Shared>>>,
    /// Unwritten bytes held in `shared`.
    shared_unsent: usize,
}

impl Transmit {
    /// Unwritten bytes in all.
    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.sent + self.shared_unsent
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer to append copied bytes to (frame headers, small payloads).
    pub(crate) fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Queues `bytes` by reference, after everything queued so far.
    pub(crate) fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.shared_unsent += bytes.len();
        self.shared.get_or_insert_with(Box::default).push_back(Shared { at: self.buf.len(), bytes, sent: 0 });
    }

    fn next_shared(&self) -> Option<&Shared> {
        self.shared.as_ref()?.front()
    }

    /// Where the copied bytes stop before the next shared payload.
    fn copied_end(&self) -> usize {
        self.next_shared().map_or(self.buf.len(), |shared| shared.at)
    }

    /// The next contiguous run of unwritten bytes.
    pub(crate) fn first_chunk(&self) -> &[u8] {
        let end = self.copied_end();
        if self.sent < end {
            return &self.buf[self.sent..end];
        }
        match self.next_shared() {
            Some(shared) => &shared.bytes[shared.sent..],
            None => &[],
        }
    }

    /// Fills `out` with the unwritten bytes in order; returns how many slices.
    pub(crate) fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        let mut from = self.sent;
        let mut push = |slice: &'a [u8], count: &mut usize| {
            if !slice.is_empty() && *count < out.len() {
                out[*count] = IoSlice::new(slice);
                *count += 1;
            }
        };
        if let Some(shared) = &self.shared {
            for (index, segment) in shared.iter().enumerate() {
                push(&self.buf[from..segment.at], &mut count);
                push(&segment.bytes[if index == 0 { segment.sent } else { 0 }..], &mut count);
                from = segment.at;
            }
        }
        push(&self.buf[from..], &mut count);
        count
    }

    /// Records that `n` more bytes were written.
    pub(crate) fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let end = self.copied_end();
            if self.sent < end {
                let step = n.min(end - self.sent);
                self.sent += step;
                n -= step;
                continue;
            }
            let Some(queue) = self.shared.as_mut() else { break };
            let Some(front) = queue.front_mut() else { break };
            let step = n.min(front.bytes.len() - front.sent);
            front.sent += step;
            self.shared_unsent -= step;
            n -= step;
            if front.sent == front.bytes.len() {
                queue.pop_front();
            }
        }
        if self.is_empty() {
            self.sent = 0;
            self.shared = None;
            if self.buf.capacity() > RETAINED_CAPACITY {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
        }
    }

    /// Frees the buffer if nothing waits in it.
    pub(crate) fn release_memory(&mut self) {
        if self.is_empty() {
            *self = Transmit::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_by_chunks(transmit: &mut Transmit, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !transmit.is_empty() {
            let chunk = transmit.first_chunk();
            let n = chunk.len().min(step);
            out.extend_from_slice(&chunk[..n]);
            transmit.advance(n);
        }
        out
    }

    fn sample() -> (Transmit, Vec<u8>) {
        let mut transmit = Transmit::default();
        let mut expected = Vec::new();
        for (copied, shared) in [(&b"ab"[..], &b"SHARED-1"[..]), (b"", b"SHARED-2"), (b"cde", b"")] {
            transmit.buf_mut().extend_from_slice(copied);
            transmit.push_shared(Bytes::copy_from_slice(shared));
            expected.extend_from_slice(copied);
            expected.extend_from_slice(shared);
        }
        transmit.buf_mut().extend_from_slice(b"tail");
        expected.extend_from_slice(b"tail");
        (transmit, expected)
    }

    #[test]
    fn shared_payloads_go_out_in_order_whatever_the_write_sizes() {
        for step in 1..30 {
            let (mut transmit, expected) = sample();
            assert_eq!(transmit.len(), expected.len());
            assert_eq!(drain_by_chunks(&mut transmit, step), expected, "step {step}");
        }
    }

    #[test]
    fn vectored_slices_cover_everything_in_order_after_any_partial_write() {
        for written in 0..25 {
            let (mut transmit, expected) = sample();
            transmit.advance(written);
            let mut slices = [IoSlice::new(&[]); 16];
            let count = transmit.slices(&mut slices);
            let joined: Vec<u8> = slices[..count].iter().flat_map(|slice| slice.iter().copied()).collect();
            assert_eq!(joined, &expected[written..], "after {written}");
        }
    }

    #[test]
    fn a_drained_output_holds_nothing_shared() {
        let (mut transmit, expected) = sample();
        transmit.advance(expected.len());
        assert!(transmit.is_empty() && transmit.shared.is_none());
    }
}
