//! Messages waiting to be framed: a message larger than the fragment size
//! is framed one fragment at a time, as the output drains, so that a ping,
//! a pong or a close frame queued meanwhile goes out after the current
//! fragment instead of after the whole message.
//!
//! Messages sent while one is being fragmented wait here behind it, already
//! compressed if they were to be: compression must happen in sending order
//! (the compressor's window carries over from message to message).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::frame::OpCode;

/// One message on its way out.
#[derive(Debug)]
struct Waiting {
    opcode: OpCode,
    compressed: bool,
    payload: Bytes,
    /// How much of `payload` has been framed.
    framed: usize,
}

/// The next frame to write.
#[derive(Debug)]
pub(crate) struct Fragment {
    pub(crate) opcode: OpCode,
    /// RSV1: set on the first frame of a compressed message only (RFC 7692 §6).
    pub(crate) compressed: bool,
    pub(crate) fin: bool,
    pub(crate) payload: Bytes,
}

/// Messages waiting to be framed, in sending order.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    queue: VecDeque<Waiting>,
    /// Payload bytes not yet framed.
    len: usize,
}

impl Backlog {
    pub(crate) fn push(&mut self, opcode: OpCode, compressed: bool, payload: Bytes) {
        self.len += payload.len();
        self.queue.push_back(Waiting { opcode, compressed, payload, framed: 0 });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Payload bytes not yet framed.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes the next frame of at most `fragment_size` payload bytes.
    /// Control frames (a close queued behind the data) are never split.
    pub(crate) fn next_fragment(&mut self, fragment_size: usize) -> Option<Fragment> {
        let waiting = self.queue.front_mut()?;
        let first = waiting.framed == 0;
        let remaining = waiting.payload.len() - waiting.framed;
        let take = if waiting.opcode.is_control() { remaining } else { remaining.min(fragment_size.max(1)) };
        let payload = waiting.payload.slice(waiting.framed..waiting.framed + take);
        waiting.framed += take;
        let fin = waiting.framed == waiting.payload.len();
        let fragment = Fragment {
            opcode: if first { waiting.opcode } else { OpCode::Continuation },
            compressed: first && waiting.compressed,
            fin,
            payload,
        };
        self.len -= take;
        if fin {
            self.queue.pop_front();
        }
        Some(fragment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_message_comes_out_in_fragments_and_the_next_one_follows_whole() {
        let mut backlog = Backlog::default();
        backlog.push(OpCode::Binary, true, Bytes::from(vec![7u8; 10]));
        backlog.push(OpCode::Text, false, Bytes::from_static(b"hi"));
        assert_eq!(backlog.len(), 12);
        let mut frames = Vec::new();
        while let Some(fragment) = backlog.next_fragment(4) {
            frames.push((fragment.opcode, fragment.compressed, fragment.fin, fragment.payload.len()));
        }
        assert_eq!(
            frames,
            [
                (OpCode::Binary, true, false, 4),
                (OpCode::Continuation, false, false, 4),
                (OpCode::Continuation, false, true, 2),
                (OpCode::Text, false, true, 2),
            ]
        );
        assert!(backlog.is_empty());
        assert_eq!(backlog.len(), 0);
    }

    #[test]
    fn an_empty_message_is_one_final_frame() {
        let mut backlog = Backlog::default();
        backlog.push(OpCode::Text, false, Bytes::new());
        let fragment = backlog.next_fragment(4).unwrap();
        assert!(fragment.fin && fragment.payload.is_empty());
        assert!(backlog.next_fragment(4).is_none());
    }

    #[test]
    fn a_close_behind_data_is_never_split() {
        let mut backlog = Backlog::default();
        backlog.push(OpCode::Close, false, Bytes::from_static(b"\x03\xe8goodbye"));
        let fragment = backlog.next_fragment(2).unwrap();
        assert_eq!((fragment.opcode, fragment.fin, fragment.payload.len()), (OpCode::Close, true, 9));
    }
}
