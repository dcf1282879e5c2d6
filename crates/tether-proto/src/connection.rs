//! The RFC 6455 state machine of an open connection.
//!
//! A [`Connection`] never touches a socket or a clock. Bytes from the
//! network go in through [`handle_read`](Connection::handle_read); what
//! the application should see comes out of [`poll_event`](Connection::poll_event);
//! what must go on the wire accumulates in one buffer that the I/O layer
//! drains with [`pending_transmit`](Connection::pending_transmit) and
//! [`advance_transmit`](Connection::advance_transmit). Everything sent in
//! between is batched into that buffer, so a burst of messages costs one
//! write. Pong replies and the close echo are queued output like any other.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::assemble::{Assembler, MessageKind};
use crate::backlog::{Backlog, Fragment};
use crate::config::Config;
use crate::deflate::{Compressor, Decompressor, DeflateParams};
use crate::error::{ProtocolError, UsageError};
use crate::frame::{
    apply_mask, CloseCode, FrameHeader, MaskSource, OpCode, RandomMask, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
};
use crate::keepalive::{Due, Phase, RoundTrip, Schedule, Timers};
use crate::message::{CloseFrame, Message};
use crate::prepared::PreparedMessage;
use crate::time::Timeout;
use crate::transmit::Transmit;
use crate::Role;

/// Where the connection is in its life (RFC 6455 §4–§7). The opening
/// handshake happens before a `Connection` exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// Both close frames were exchanged, or the connection failed. Once
    /// [`pending_transmit`](Connection::pending_transmit) is empty the
    /// transport should be closed.
    Closed,
}

/// Something the application should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete data message.
    Message(Message),
    /// A ping arrived; the pong is already queued.
    Ping(Bytes),
    /// A pong arrived.
    Pong(Bytes),
    /// The peer's close frame: it started the closing handshake (our echo
    /// is queued), or answered ours. `None` when it carried no status code.
    Close(Option<CloseFrame>),
    /// One data frame of a message, as it arrived (only with
    /// [`Config::fragment_events`]): `opcode` is the frame's own (text or
    /// binary for the first frame, continuation after), `payload` its
    /// bytes after decompression. Text may end inside a character; the
    /// whole message is still validated and delivered as `Message` after
    /// its final fragment.
    Fragment {
        /// The frame's opcode.
        opcode: OpCode,
        /// The frame's payload, decompressed.
        payload: Bytes,
        /// Whether it is the message's final frame.
        fin: bool,
    },
}

/// Which way a frame went, for a [`FrameObserver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received from the peer.
    Incoming,
    /// Queued to be sent to the peer.
    Outgoing,
}

/// Sees every frame that goes in or out (for tracing). Payloads are given
/// unmasked; incoming data payloads after decompression, outgoing ones
/// before compression is visible (the header's RSV1 says whether it is).
pub trait FrameObserver: Send {
    /// One frame: its header and payload.
    fn frame(&mut self, direction: Direction, header: &FrameHeader, payload: &[u8]);
}

impl<F: FnMut(Direction, &FrameHeader, &[u8]) + Send> FrameObserver for F {
    fn frame(&mut self, direction: Direction, header: &FrameHeader, payload: &[u8]) {
        self(direction, header, payload);
    }
}

/// What only some connections use, boxed so the others do not pay for it.
#[derive(Default)]
struct Hooks {
    observer: Option<Box<dyn FrameObserver>>,
    /// A client's own mask keys (tests, the seeds' `get_mask_key`).
    mask_source: Option<Box<dyn MaskSource>>,
    fragment_events: bool,
    /// Where the current frame's payload starts in the message buffer.
    frame_start: usize,
}

/// Beyond this many unsent bytes, pongs stop accumulating: only the answer
/// to the latest ping is kept (RFC 6455 §5.5.3 allows answering only the
/// most recent one), so a peer that floods pings and never reads cannot
/// grow our output without bound.
const PONG_BACKLOG_LIMIT: usize = 16 << 10;

/// The incoming buffer grows by at least this much, so a run of small
/// messages is received into one allocation (each handed out as a slice of
/// it) instead of one allocation each.
const INCOMING_RESERVE: usize = 4 << 10;

/// A server sends payloads at least this large by reference (a vectored
/// write of header and payload) instead of copying them into the output
/// buffer. Below it, copying is cheaper than another slice to write.
const SHARED_PAYLOAD_MIN: usize = 16 << 10;

/// How many fragments of a large message are framed ahead of the
/// transport: one vectored write then carries them all (a 1 MiB echo took
/// 16 writes at one fragment ahead, four at this), while a control frame
/// waits behind at most these few fragments in our queue, less than a
/// loaded socket's send buffer holds anyway.
const FRAGMENTS_AHEAD: usize = 4;

/// A data payload with at least this much still to come may be read
/// straight into the message ([`Connection::payload_room`]).
const DIRECT_READ_MIN: usize = 64 << 10;

/// Room for a directly read payload is reserved for the whole rest of the
/// frame up to this much beyond what has arrived (so a large message is
/// neither copied from a read buffer nor moved as it grows); past it, the
/// buffer at most doubles, so a header that lies about its length costs
/// little.
const DIRECT_RESERVE: usize = 1 << 20;

#[derive(Debug)]
enum ReadState {
    /// Collecting a header; `have` bytes of it are in `buf`.
    Header { buf: [u8; MAX_HEADER_LEN], have: usize },
    /// Inside a frame's payload.
    Payload { header: FrameHeader, remaining: u64, offset: usize },
    /// After a failure or the closing handshake: input is ignored.
    Discard,
}

/// What a connection holds only while bytes move: the frame being read,
/// the message being assembled, events not yet taken, output not yet
/// written. About 200 bytes that an idle connection does without.
#[derive(Debug)]
struct Io {
    read: ReadState,
    incoming: Assembler,
    /// A control frame's payload as it arrives, or unmasked compressed bytes
    /// on their way to the decompressor (never both at once).
    scratch: Vec<u8>,
    events: VecDeque<Event>,
    output: Transmit,
}

impl Default for Io {
    fn default() -> Io {
        Io {
            read: ReadState::Header { buf: [0; MAX_HEADER_LEN], have: 0 },
            incoming: Assembler::default(),
            scratch: Vec::new(),
            events: VecDeque::new(),
            output: Transmit::default(),
        }
    }
}

impl Io {
    /// Holds nothing that an [`Io::default`] would not: between frames,
    /// no message begun, no event or output waiting. (Between frames the
    /// scratch buffer holds only the last control frame's payload, already
    /// handled.)
    fn is_idle(&self) -> bool {
        matches!(self.read, ReadState::Header { have: 0, .. })
            && !self.incoming.in_progress()
            && self.incoming.buf.is_empty()
            && self.events.is_empty()
            && self.output.is_empty()
    }
}

/// The [`Io`] part of a connection, allocated on first use and given back
/// by [`Connection::release_memory`] once idle: a server holding a hundred
/// thousand quiet connections keeps ~200 bytes less for each. Reading an
/// absent one reads an empty [`Io`]; writing to it allocates it.
#[derive(Debug)]
struct LazyIo(Option<Box<Io>>);

impl std::ops::Deref for LazyIo {
    type Target = Io;

    fn deref(&self) -> &Io {
        static EMPTY: std::sync::LazyLock<Io> = std::sync::LazyLock::new(Io::default);
        match &self.0 {
            Some(io) => io,
            None => &EMPTY,
        }
    }
}

impl std::ops::DerefMut for LazyIo {
    fn deref_mut(&mut self) -> &mut Io {
        self.0.get_or_insert_with(Box::default)
    }
}

/// What a connection takes from its [`Config`]: made once and shared by
/// every connection made from that configuration, so a server's hundred
/// thousand connections hold one copy of their limits and timer settings,
/// not one each.
#[derive(Debug)]
pub struct Settings {
    limits: Limits,
    schedule: Schedule,
    /// permessage-deflate's level, memLevel and smallest message
    /// compressed, for connections that negotiate it.
    deflate: (u32, u8, usize),
    fragment_events: bool,
}

impl Settings {
    /// The settings of connections made from `config`.
    #[must_use]
    pub fn new(config: &Config) -> Arc<Settings> {
        Arc::new(Settings {
            limits: Limits {
                max_frame_size: config.max_frame_size,
                max_message_size: config.max_message_size,
                max_fragments: config.max_fragments,
                fragment_size: config.fragment_size.max(1),
            },
            schedule: Schedule::new(config),
            deflate: config.deflate.as_ref().map_or((1, 5, 0), |d| (d.level, d.mem_level, d.min_size)),
            fragment_events: config.fragment_events,
        })
    }
}

/// The limits the connection enforces.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_frame_size: usize,
    max_message_size: usize,
    max_fragments: usize,
    fragment_size: usize,
}

/// permessage-deflate state, boxed: it is large, and absent unless negotiated.
#[derive(Debug)]
struct Deflate {
    compressor: Compressor,
    decompressor: Decompressor,
    min_size: usize,
}

/// How the connection is ending, boxed: nothing of it exists while open.
#[derive(Debug, Default)]
struct Ending {
    close_sent: Option<CloseFrame>,
    /// A close frame (echo or failure) waiting for the application to take
    /// the events before it, so it can still answer them (see `poll_event`).
    deferred_close: Option<CloseFrame>,
    close_received: Option<Option<CloseFrame>>,
    error: Option<ProtocolError>,
    /// The deadline that ended the connection, if one did.
    timeout: Option<Timeout>,
}

/// One WebSocket connection's protocol state, after the opening handshake.
///
/// Small on purpose (a few hundred bytes): what is only needed sometimes
/// (deflate, the closing handshake, a flood's pending pong) lives behind a
/// pointer, and the buffers are freed when idle
/// ([`release_memory`](Self::release_memory)).
pub struct Connection {
    role: Role,
    state: State,
    settings: Arc<Settings>,
    /// Absent while idle (see [`LazyIo`]).
    io: LazyIo,
    deflate: Option<Box<Deflate>>,
    /// The answer to the latest ping, while the output is backed up.
    pending_pong: Option<Box<[u8]>>,
    ending: Option<Box<Ending>>,
    /// Messages waiting to be framed behind a large one (see `backlog`).
    backlog: Option<Box<Backlog>>,
    timers: Timers,
    hooks: Option<Box<Hooks>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("deflate", &self.deflate.is_some())
            .field("unsent", &self.io.output.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection in the `Open` state, with `deflate` as negotiated.
    #[must_use]
    pub fn new(role: Role, config: Config, deflate: Option<DeflateParams>) -> Connection {
        Connection::with_settings(role, &Settings::new(&config), deflate)
    }

    /// A connection in the `Open` state, with `deflate` as negotiated, and
    /// settings shared with others made from the same configuration.
    #[must_use]
    pub fn with_settings(role: Role, settings: &Arc<Settings>, deflate: Option<DeflateParams>) -> Connection {
        let deflate = deflate.map(|params| {
            let (level, mem_level, min_size) = settings.deflate;
            let (out_bits, out_reset) = params.outgoing(role);
            let (in_bits, in_reset) = params.incoming(role);
            Box::new(Deflate {
                compressor: Compressor::new(out_bits, level, mem_level, out_reset),
                decompressor: Decompressor::new(in_bits, in_reset),
                min_size,
            })
        });
        Connection {
            role,
            state: State::Open,
            settings: settings.clone(),
            io: LazyIo(None),
            deflate,
            pending_pong: None,
            ending: None,
            backlog: None,
            timers: Timers::new(),
            hooks: settings.fragment_events.then(|| Box::new(Hooks { fragment_events: true, ..Hooks::default() })),
        }
    }

    /// Shows every frame sent and received to `observer` (trace).
    pub fn set_frame_observer(&mut self, observer: Box<dyn FrameObserver>) {
        self.hooks.get_or_insert_with(Box::default).observer = Some(observer);
    }

    /// Replaces the CSPRNG as the source of client mask keys (the seeds'
    /// `get_mask_key`). Only clients mask.
    pub fn set_mask_source(&mut self, source: Box<dyn MaskSource>) {
        self.hooks.get_or_insert_with(Box::default).mask_source = Some(source);
    }

    // ---- getters -------------------------------------------------------

    /// Client or server.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the connection is in its life.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// The largest message accepted, in bytes.
    #[must_use]
    pub fn max_message_size(&self) -> usize {
        self.settings.limits.max_message_size
    }

    /// Whether permessage-deflate was negotiated.
    #[must_use]
    pub fn is_compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// The close frame we sent, if any.
    #[must_use]
    pub fn close_sent(&self) -> Option<&CloseFrame> {
        self.ending.as_ref()?.close_sent.as_ref()
    }

    /// The close frame we received: `Some(None)` for one without a status code.
    #[must_use]
    pub fn close_received(&self) -> Option<Option<&CloseFrame>> {
        self.ending.as_ref()?.close_received.as_ref().map(Option::as_ref)
    }

    /// The protocol error that failed the connection, if one did.
    #[must_use]
    pub fn error(&self) -> Option<&ProtocolError> {
        self.ending.as_ref()?.error.as_ref()
    }

    /// The deadline that ended the connection, if one did: a keepalive
    /// ping left unanswered, an idle limit, a close handshake that did
    /// not finish.
    #[must_use]
    pub fn timeout(&self) -> Option<Timeout> {
        self.ending.as_ref()?.timeout
    }

    /// The round-trip time measured by keepalive pings, once one was answered.
    #[must_use]
    pub fn round_trip(&self) -> Option<RoundTrip> {
        self.timers.round_trip()
    }

    fn ending(&mut self) -> &mut Ending {
        self.ending.get_or_insert_with(Box::default)
    }

    fn has_sent_close(&self) -> bool {
        self.ending.as_ref().is_some_and(|ending| ending.close_sent.is_some())
    }

    fn has_deferred_close(&self) -> bool {
        self.ending.as_ref().is_some_and(|ending| ending.deferred_close.is_some())
    }

    /// Whether events wait in [`poll_event`](Self::poll_event).
    #[must_use]
    pub fn has_events(&self) -> bool {
        !self.io.events.is_empty()
    }

    /// How many bytes wait to be transmitted.
    #[must_use]
    pub fn unsent_len(&self) -> usize {
        self.unsent()
    }

    /// Whether a data message is partly received.
    #[must_use]
    pub fn is_receiving_message(&self) -> bool {
        self.io.incoming.in_progress()
    }

    // ---- input -----------------------------------------------------------

    /// Feeds bytes read from the transport. Everything is consumed: partial
    /// frames are kept until the rest arrives.
    ///
    /// # Errors
    /// The first protocol violation. The connection has then queued a close
    /// frame with the matching code, moved to [`State::Closed`], and will
    /// ignore further input.
    pub fn handle_read(&mut self, mut data: &[u8]) -> Result<(), ProtocolError> {
        while !data.is_empty() {
            match &mut self.io.read {
                ReadState::Discard => return Ok(()),
                ReadState::Header { have: 0, .. }
                    if data.len() >= 2 && {
                        let whole = FrameHeader::len_from_prefix([data[0], data[1]]);
                        data.len() >= whole
                    } =>
                {
                    // The whole header is in this read (the common case):
                    // decoded where it lies, without copying it aside.
                    let decoded = FrameHeader::decode(data);
                    if let Ok(Some((_, len))) = decoded {
                        data = &data[len..];
                    }
                    self.begin_decoded(decoded)?;
                }
                ReadState::Header { buf, have } => {
                    let needed = if *have < 2 { 2 } else { FrameHeader::len_from_prefix([buf[0], buf[1]]) };
                    if *have < needed {
                        let n = (needed - *have).min(data.len());
                        buf[*have..*have + n].copy_from_slice(&data[..n]);
                        *have += n;
                        data = &data[n..];
                        if *have < needed || needed == 2 && FrameHeader::len_from_prefix([buf[0], buf[1]]) > 2 {
                            continue;
                        }
                    }
                    let decoded = FrameHeader::decode(&buf[..*have]);
                    self.begin_decoded(decoded)?;
                }
                ReadState::Payload { header, remaining, offset } => {
                    let header = *header;
                    if !header.opcode.is_control() {
                        self.timers.note_progress_in();
                    }
                    let take = usize::try_from(*remaining).unwrap_or(usize::MAX).min(data.len());
                    let chunk_offset = *offset;
                    let frame_rest = usize::try_from(*remaining).unwrap_or(usize::MAX);
                    *remaining -= take as u64;
                    *offset += take;
                    let done = *remaining == 0;
                    let (chunk, rest) = data.split_at(take);
                    data = rest;
                    let result = self.frame_payload(&header, chunk, chunk_offset, frame_rest).and_then(|()| {
                        if done {
                            self.end_frame(&header)
                        } else {
                            Ok(())
                        }
                    });
                    if let Err(error) = result {
                        return Err(self.fail(error));
                    }
                }
            }
        }
        Ok(())
    }

    /// Where the rest of a large incoming payload may be read to directly,
    /// sparing the copy from a read buffer: the spare room of the message
    /// being received, at most up to the end of the current frame. `None`
    /// unless an uncompressed data frame has at least 64 KiB still to
    /// come; then read into [`handle_read`](Self::handle_read)'s buffer as
    /// usual.
    ///
    /// After writing `n` bytes at the start of the room, call
    /// [`payload_received`](Self::payload_received).
    pub fn payload_room(&mut self) -> Option<&mut [MaybeUninit<u8>]> {
        let ReadState::Payload { header, remaining, .. } = &self.io.read else { return None };
        if header.opcode.is_control() || self.io.incoming.is_compressed() || *remaining < DIRECT_READ_MIN as u64 {
            return None;
        }
        let rest = usize::try_from(*remaining).unwrap_or(usize::MAX);
        let buf = &mut self.io.incoming.buf;
        if buf.capacity() - buf.len() < DIRECT_READ_MIN {
            buf.reserve(rest.min(buf.len().max(DIRECT_RESERVE)));
        }
        let spare = buf.spare_capacity_mut();
        let room = spare.len().min(rest);
        Some(&mut spare[..room])
    }

    /// `n` bytes of payload were written at the start of the room that
    /// [`payload_room`](Self::payload_room) gave: they are unmasked and
    /// checked as if [`handle_read`](Self::handle_read) had been given them.
    ///
    /// # Errors
    /// As [`handle_read`](Self::handle_read).
    ///
    /// # Panics
    /// If `n` is larger than that room.
    ///
    /// # Safety
    /// The first `n` bytes of that room must have been initialized, and
    /// the connection not used in between.
    pub unsafe fn payload_received(&mut self, n: usize) -> Result<(), ProtocolError> {
        let io = &mut *self.io;
        let ReadState::Payload { header, remaining, offset } = &mut io.read else {
            panic!("payload_received without a payload_room");
        };
        let buf = &mut io.incoming.buf;
        assert!(n as u64 <= *remaining && n <= buf.capacity() - buf.len(), "more than the room given");
        let header = *header;
        let start = buf.len();
        // SAFETY: the caller initialized these `n` bytes of spare capacity
        // (checked above to exist).
        unsafe { buf.set_len(start + n) };
        if let Some(key) = header.mask {
            apply_mask(&mut buf[start..], key, *offset);
        }
        *remaining -= n as u64;
        *offset += n;
        let done = *remaining == 0;
        self.timers.note_progress_in();
        let result =
            self.io.incoming.check_utf8(false).and_then(|()| if done { self.end_frame(&header) } else { Ok(()) });
        result.map_err(|error| self.fail(error))
    }

    /// The transport reached end-of-file. Returns `true` if that was
    /// expected (after the closing handshake); otherwise the connection
    /// closed abnormally (1006) and any partial message is discarded.
    pub fn handle_eof(&mut self) -> bool {
        let clean = self.state == State::Closed && self.error().is_none() && self.close_received().is_some();
        self.state = State::Closed;
        self.io.read = ReadState::Discard;
        clean
    }

    /// Validates a header and prepares to receive its payload.
    /// Begins the frame whose complete header was decoded; a refused
    /// header fails the connection.
    fn begin_decoded(
        &mut self,
        decoded: Result<Option<(FrameHeader, usize)>, ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let result = match decoded {
            Ok(Some((header, _))) => self.begin_frame(header),
            Ok(None) => Err(ProtocolError::ReservedBitsSet), // unreachable: the header is complete
            Err(error) => Err(error),
        };
        result.map_err(|error| self.fail(error))
    }

    fn begin_frame(&mut self, header: FrameHeader) -> Result<(), ProtocolError> {
        if header.rsv2 || header.rsv3 {
            return Err(ProtocolError::ReservedBitsSet);
        }
        if header.rsv1 {
            if self.deflate.is_none() {
                return Err(ProtocolError::ReservedBitsSet);
            }
            if header.opcode.is_control() || header.opcode == OpCode::Continuation {
                return Err(ProtocolError::CompressedControlOrContinuation);
            }
        }
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        if header.opcode.is_control() {
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong(header.payload_len));
            }
            self.io.scratch.clear();
        } else {
            self.timers.note_progress_in();
            match (header.opcode, self.io.incoming.in_progress()) {
                (OpCode::Continuation, false) => return Err(ProtocolError::UnexpectedContinuation),
                (OpCode::Text | OpCode::Binary, true) => return Err(ProtocolError::ExpectedContinuation),
                (OpCode::Text, false) => self.io.incoming.start(MessageKind::Text, header.rsv1),
                (OpCode::Binary, false) => self.io.incoming.start(MessageKind::Binary, header.rsv1),
                _ => {}
            }
            if header.payload_len > self.settings.limits.max_frame_size as u64 {
                return Err(ProtocolError::FrameTooLarge {
                    limit: self.settings.limits.max_frame_size,
                    actual: header.payload_len,
                });
            }
            // Uncompressed, the declared length is the message growth: refuse
            // it now, before a byte of it is read or a byte of memory reserved.
            let total = self.io.incoming.len() as u64 + header.payload_len;
            if !self.io.incoming.is_compressed() && total > self.settings.limits.max_message_size as u64 {
                return Err(ProtocolError::MessageTooLarge {
                    limit: self.settings.limits.max_message_size,
                    actual: total,
                });
            }
            self.io.incoming.count_fragment(self.settings.limits.max_fragments)?;
            if let Some(hooks) = &mut self.hooks {
                hooks.frame_start = self.io.incoming.len();
            }
        }
        if header.payload_len == 0 {
            self.io.read = ReadState::Header { buf: [0; MAX_HEADER_LEN], have: 0 };
            return self.end_frame(&header);
        }
        self.io.read = ReadState::Payload { header, remaining: header.payload_len, offset: 0 };
        Ok(())
    }

    /// Takes in a piece of the current frame's payload.
    fn frame_payload(
        &mut self,
        header: &FrameHeader,
        chunk: &[u8],
        offset: usize,
        frame_rest: usize,
    ) -> Result<(), ProtocolError> {
        if header.opcode.is_control() {
            let start = self.io.scratch.len();
            self.io.scratch.extend_from_slice(chunk);
            if let Some(key) = header.mask {
                apply_mask(&mut self.io.scratch[start..], key, offset);
            }
            return Ok(());
        }
        if self.io.incoming.is_compressed() {
            self.io.scratch.clear();
            self.io.scratch.extend_from_slice(chunk);
            if let Some(key) = header.mask {
                apply_mask(&mut self.io.scratch, key, offset);
            }
            if let Some(deflate) = &mut self.deflate {
                let io = &mut *self.io;
                deflate.decompressor.decompress(
                    &io.scratch,
                    &mut io.incoming.buf,
                    self.settings.limits.max_message_size,
                )?;
            }
        } else {
            let buf = &mut self.io.incoming.buf;
            if buf.capacity() - buf.len() < chunk.len() {
                // Grow geometrically, so a large message is not copied again
                // at every read, but never past what the frame still declares
                // nor past what has already arrived: a header that lies about
                // its length makes us hold at most twice what was sent. Never
                // by less than `INCOMING_RESERVE` either: small messages then
                // share one allocation (reclaimed once they are dropped)
                // instead of taking two allocations each.
                let doubling = buf.len().max(INCOMING_RESERVE);
                buf.reserve(chunk.len().max(doubling.min(frame_rest.max(INCOMING_RESERVE))));
            }
            let start = buf.len();
            buf.extend_from_slice(chunk);
            if let Some(key) = header.mask {
                apply_mask(&mut buf[start..], key, offset);
            }
        }
        self.io.incoming.check_utf8(false)
    }

    /// A frame's payload is complete.
    fn end_frame(&mut self, header: &FrameHeader) -> Result<(), ProtocolError> {
        self.io.read = ReadState::Header { buf: [0; MAX_HEADER_LEN], have: 0 };
        if !header.opcode.is_control() && header.fin {
            self.finish_inflating()?;
        }
        if self.hooks.is_some() {
            self.observe_incoming(header);
        }
        match header.opcode {
            OpCode::Ping => {
                let payload = std::mem::take(&mut self.io.scratch);
                self.queue_pong(&payload);
                self.io.events.push_back(Event::Ping(Bytes::copy_from_slice(&payload)));
                self.io.scratch = payload;
            }
            OpCode::Pong => {
                self.timers.note_pong(&self.settings.schedule, &self.io.scratch);
                let pong = Event::Pong(Bytes::copy_from_slice(&self.io.scratch));
                self.io.events.push_back(pong);
            }
            OpCode::Close => self.receive_close()?,
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if header.fin {
                    let message = self.io.incoming.finish()?;
                    self.timers.note_activity();
                    self.io.events.push_back(Event::Message(message));
                }
            }
        }
        Ok(())
    }

    /// Shows a received frame to the observer, and hands it out as a
    /// fragment event if asked.
    fn observe_incoming(&mut self, header: &FrameHeader) {
        let Some(hooks) = &mut self.hooks else { return };
        let payload: &[u8] =
            if header.opcode.is_control() { &self.io.scratch } else { &self.io.incoming.buf[hooks.frame_start..] };
        if let Some(observer) = &mut hooks.observer {
            observer.frame(Direction::Incoming, header, payload);
        }
        if hooks.fragment_events && !header.opcode.is_control() {
            let payload = Bytes::copy_from_slice(payload);
            self.io.events.push_back(Event::Fragment { opcode: header.opcode, payload, fin: header.fin });
        }
    }

    /// Flushes the decompressor at the end of a compressed message.
    fn finish_inflating(&mut self) -> Result<(), ProtocolError> {
        if self.io.incoming.is_compressed() {
            if let Some(deflate) = &mut self.deflate {
                deflate
                    .decompressor
                    .finish_message(&mut self.io.incoming.buf, self.settings.limits.max_message_size)?;
            }
        }
        Ok(())
    }

    fn receive_close(&mut self) -> Result<(), ProtocolError> {
        let frame = match self.io.scratch.as_slice() {
            [] => None,
            [_] => return Err(ProtocolError::CloseFrameTooShort),
            [high, low, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*high, *low]));
                if !code.is_sendable() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason = simdutf8::basic::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
                Some(CloseFrame::new(code, reason))
            }
        };
        self.ending().close_received = Some(frame.clone());
        self.io.read = ReadState::Discard;
        if self.has_sent_close() {
            self.state = State::Closed;
        } else {
            // RFC 6455 §5.5.1: "If an endpoint receives a Close frame and did
            // not previously send a Close frame, the endpoint MUST send a Close
            // frame in response", echoing the status code (none received: 1000).
            let code = frame.as_ref().map_or(CloseCode::NORMAL, |frame| frame.code);
            self.end_with_close(CloseFrame::new(code, ""));
        }
        self.io.events.push_back(Event::Close(frame));
        Ok(())
    }

    /// Fails the connection (RFC 6455 §7.1.7): queue a close frame with the
    /// error's code unless one was sent, and ignore all further input.
    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        self.io.read = ReadState::Discard;
        self.ending().error = Some(error.clone());
        if self.has_deferred_close() {
            // The close already waiting (an echo of the peer's) goes out as planned.
        } else if self.has_sent_close() {
            // Ours is out, or queued behind data still being fragmented.
            self.state = State::Closed;
        } else {
            if self.io.events.is_empty() {
                // The close goes out now, and nothing after it: the rest of
                // a message being fragmented is abandoned. (With events
                // still to take, the application may answer them first, and
                // those answers must follow that message whole, so it stays.)
                self.backlog = None;
            }
            let mut reason = error.to_string();
            truncate_at_char_boundary(&mut reason, MAX_CONTROL_PAYLOAD - 2);
            self.end_with_close(CloseFrame::new(error.close_code(), reason));
        }
        error
    }

    /// Sends our last close frame: now if the application has taken every
    /// event, otherwise once it has. Messages that arrived before a close or
    /// a violation are still delivered, and the application may answer them
    /// (an echo server echoes them) before the close goes out, as a peer
    /// that sent them in good faith expects.
    fn end_with_close(&mut self, frame: CloseFrame) {
        if self.io.events.is_empty() {
            self.write_close(frame);
            self.state = State::Closed;
        } else {
            self.ending().deferred_close = Some(frame);
        }
    }

    // ---- output: events ------------------------------------------------

    /// The next event for the application, if any.
    #[must_use]
    ///
    /// When it returns `None` and a close frame was waiting for the events
    /// to be taken, that close frame is queued now.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = if self.io.events.is_empty() { None } else { self.io.events.pop_front() };
        if event.is_none() {
            if let Some(frame) = self.ending.as_mut().and_then(|ending| ending.deferred_close.take()) {
                self.write_close(frame);
                self.state = State::Closed;
            }
        }
        event
    }

    // ---- commands ----------------------------------------------------------

    /// Queues a message, compressed if permessage-deflate was negotiated and
    /// the message is at least the configured minimum size.
    ///
    /// # Errors
    /// [`UsageError::Closed`] once the closing handshake has started.
    pub fn send(&mut self, message: &Message) -> Result<(), UsageError> {
        self.send_with(message, true)
    }

    /// Queues a message; `compress: false` opts this message out of
    /// permessage-deflate (e.g. data already compressed, like images).
    ///
    /// # Errors
    /// [`UsageError::Closed`] once the closing handshake has started.
    pub fn send_with(&mut self, message: &Message, compress: bool) -> Result<(), UsageError> {
        let opcode = if message.is_text() { OpCode::Text } else { OpCode::Binary };
        self.send_data(opcode, message.as_bytes(), Some(message.shared_bytes()), compress)
    }

    /// Queues a text message.
    ///
    /// # Errors
    /// [`UsageError::Closed`] once the closing handshake has started.
    pub fn send_text(&mut self, text: &str) -> Result<(), UsageError> {
        self.send_data(OpCode::Text, text.as_bytes(), None, true)
    }

    /// Queues a binary message.
    ///
    /// # Errors
    /// [`UsageError::Closed`] once the closing handshake has started.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), UsageError> {
        self.send_data(OpCode::Binary, data, None, true)
    }

    /// Queues one data message, choosing how in one place: compressed if
    /// deflate applies; fragmented if larger than the fragment size (or
    /// behind one that is); by reference if we are the server and the
    /// payload is large and `shared` holds it; otherwise copied into the
    /// output.
    fn send_data(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        shared: Option<&Bytes>,
        compress: bool,
    ) -> Result<(), UsageError> {
        if self.state != State::Open {
            return Err(UsageError::Closed);
        }
        self.timers.note_activity();
        let fragment_size = self.settings.limits.fragment_size;
        match &mut self.deflate {
            Some(deflate) if compress && payload.len() >= deflate.min_size => {
                // Borrow `scratch` past what it holds: between two reads of
                // a control frame, that is the frame's payload so far.
                let mut scratch = std::mem::take(&mut self.io.scratch);
                let held = scratch.len();
                deflate.compressor.compress_message(payload, &mut scratch);
                let compressed = &scratch[held..];
                if self.backlog.is_some() || compressed.len() > fragment_size {
                    self.push_backlog(opcode, true, Bytes::copy_from_slice(compressed));
                } else {
                    self.write_frame(opcode, true, compressed);
                }
                scratch.truncate(held);
                self.io.scratch = scratch;
            }
            _ if self.backlog.is_some() || payload.len() > fragment_size => {
                let bytes = shared.cloned().unwrap_or_else(|| Bytes::copy_from_slice(payload));
                self.push_backlog(opcode, false, bytes);
            }
            _ => match shared {
                Some(bytes) if self.role == Role::Server && bytes.len() >= SHARED_PAYLOAD_MIN => {
                    self.write_header(opcode, true, false, bytes);
                    self.io.output.push_shared(bytes.clone());
                }
                _ => self.write_frame(opcode, false, payload),
            },
        }
        Ok(())
    }

    /// Queues a message framed once for many connections (broadcast). A
    /// server writes the shared frame as is; past 16 KiB by reference, so
    /// the bytes are never copied per connection. With permessage-deflate
    /// and no server context takeover, it sends the message's one
    /// compressed frame, made by the first connection that needed it; with
    /// context takeover, where each connection's output depends on its own
    /// history, the message goes uncompressed (RFC 7692 lets any message).
    /// A client, or a message behind a fragmented one, frames the payload
    /// itself.
    ///
    /// # Errors
    /// [`UsageError::Closed`] once the closing handshake has started.
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<(), UsageError> {
        if self.state != State::Open {
            return Err(UsageError::Closed);
        }
        if self.role == Role::Client
            || self.backlog.is_some()
            || prepared.payload_len() > self.settings.limits.fragment_size
        {
            let payload = prepared.payload();
            return self.send_data(prepared.opcode(), &payload, Some(&payload), false);
        }
        self.timers.note_activity();
        let compressed = match self.deflate.as_mut() {
            Some(deflate) if deflate.compressor.is_stateless() && prepared.payload_len() >= deflate.min_size => {
                prepared.compressed_for(&mut deflate.compressor)
            }
            _ => None,
        };
        if let Some(compressed) = compressed {
            self.write_shared_frame(prepared.opcode(), &compressed.frame, compressed.header_len, true);
        } else if self.deflate.as_ref().is_some_and(|deflate| deflate.compressor.is_stateless())
            && prepared.compressed_len().is_some()
        {
            // Worth compressing, but with a larger window than this peer
            // accepts: this connection compresses its own.
            let payload = prepared.payload();
            return self.send_data(prepared.opcode(), &payload, None, true);
        } else {
            self.write_shared_frame(prepared.opcode(), prepared.frame(), prepared.header_len(), false);
        }
        Ok(())
    }

    /// Queues a whole server frame built elsewhere (a prepared message's),
    /// by reference when large.
    fn write_shared_frame(&mut self, opcode: OpCode, frame: &Bytes, header_len: u8, compressed: bool) {
        if let Some(observer) = self.hooks.as_mut().and_then(|hooks| hooks.observer.as_mut()) {
            let payload = &frame[usize::from(header_len)..];
            let header = FrameHeader { rsv1: compressed, ..FrameHeader::new(opcode, payload.len() as u64) };
            observer.frame(Direction::Outgoing, &header, payload);
        }
        if frame.len() >= SHARED_PAYLOAD_MIN {
            self.io.output.push_shared(frame.clone());
        } else {
            self.io.output.buf_mut().extend_from_slice(frame);
        }
    }

    fn push_backlog(&mut self, opcode: OpCode, compressed: bool, payload: Bytes) {
        self.backlog.get_or_insert_with(Box::default).push(opcode, compressed, payload);
        self.refill();
    }

    /// Frames what waits in the backlog while the output holds less than
    /// [`FRAGMENTS_AHEAD`] fragments, so what is queued next (a pong, a
    /// ping) waits behind at most about that many and one more.
    fn refill(&mut self) {
        let ahead = self.settings.limits.fragment_size.saturating_mul(FRAGMENTS_AHEAD);
        while self.io.output.len() < ahead {
            let Some(backlog) = self.backlog.as_mut() else { return };
            let fragment = backlog.next_fragment(self.settings.limits.fragment_size);
            if backlog.is_empty() {
                self.backlog = None;
            }
            let Some(fragment) = fragment else { return };
            self.write_fragment(fragment);
        }
    }

    fn write_fragment(&mut self, fragment: Fragment) {
        let Fragment { opcode, compressed, fin, payload } = fragment;
        if opcode == OpCode::Close {
            // Nothing may follow the close frame, not even a pong (§5.5.1).
            self.flush_pending_pong();
        }
        if self.role == Role::Server && payload.len() >= SHARED_PAYLOAD_MIN {
            self.write_header(opcode, fin, compressed, &payload);
            self.io.output.push_shared(payload);
        } else {
            let mask = self.write_header(opcode, fin, compressed, &payload);
            self.append_payload(&payload, mask);
        }
    }

    /// Queues a ping.
    ///
    /// # Errors
    /// A payload over 125 bytes, or the closing handshake has started.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), UsageError> {
        self.send_control(OpCode::Ping, payload)?;
        self.timers.note_app_ping(payload);
        Ok(())
    }

    /// Queues an unsolicited pong (a one-way heartbeat, RFC 6455 §5.5.3).
    ///
    /// # Errors
    /// A payload over 125 bytes, or the closing handshake has started.
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), UsageError> {
        self.send_control(OpCode::Pong, payload)
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), UsageError> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(UsageError::ControlPayloadTooLong(payload.len()));
        }
        if self.state != State::Open {
            return Err(UsageError::Closed);
        }
        self.write_frame(opcode, false, payload);
        Ok(())
    }

    /// Starts the closing handshake with `code` and `reason`. Closing twice,
    /// or after the peer's close, does nothing.
    ///
    /// # Errors
    /// A code that may not be sent (1005, 1006, 1015, out of range) or a
    /// reason over 123 bytes.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), UsageError> {
        if !code.is_sendable() {
            return Err(UsageError::UnsendableCloseCode(code.0));
        }
        if reason.len() > MAX_CONTROL_PAYLOAD - 2 {
            return Err(UsageError::ControlPayloadTooLong(reason.len() + 2));
        }
        if self.has_sent_close() || self.has_deferred_close() || self.state == State::Closed {
            return Ok(());
        }
        self.write_close(CloseFrame::new(code, reason));
        self.state = State::Closing;
        Ok(())
    }

    fn write_close(&mut self, frame: CloseFrame) {
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        payload[..2].copy_from_slice(&frame.code.0.to_be_bytes());
        let reason = frame.reason.as_bytes();
        payload[2..2 + reason.len()].copy_from_slice(reason);
        if let Some(backlog) = &mut self.backlog {
            // Data is still being framed: the close goes after it, since
            // no data may follow a close frame.
            backlog.push(OpCode::Close, false, Bytes::copy_from_slice(&payload[..2 + reason.len()]));
        } else {
            // A pong still waiting must not follow the close frame (§5.5.1:
            // nothing after close); flush it first.
            self.flush_pending_pong();
            self.write_frame(OpCode::Close, false, &payload[..2 + reason.len()]);
        }
        self.ending().close_sent = Some(frame);
    }

    fn queue_pong(&mut self, payload: &[u8]) {
        if self.has_sent_close() || self.has_deferred_close() {
            return;
        }
        if self.io.output.len() < PONG_BACKLOG_LIMIT {
            self.write_frame(OpCode::Pong, false, payload);
        } else {
            self.pending_pong = Some(payload.into());
        }
    }

    fn flush_pending_pong(&mut self) {
        if let Some(pong) = self.pending_pong.take() {
            self.write_frame(OpCode::Pong, false, &pong);
        }
    }

    /// Appends one frame header to the output; returns its mask key, if we mask.
    fn write_header(&mut self, opcode: OpCode, fin: bool, compressed: bool, payload: &[u8]) -> Option<[u8; 4]> {
        let payload_len = payload.len();
        let mask = match self.role {
            Role::Server => None,
            Role::Client => Some(match self.hooks.as_mut().and_then(|hooks| hooks.mask_source.as_mut()) {
                Some(source) => source.next_mask(),
                None => RandomMask.next_mask(),
            }),
        };
        let header = FrameHeader { fin, rsv1: compressed, mask, ..FrameHeader::new(opcode, payload_len as u64) };
        if let Some(observer) = self.hooks.as_mut().and_then(|hooks| hooks.observer.as_mut()) {
            observer.frame(Direction::Outgoing, &header, payload);
        }
        let mut encoded = [0u8; MAX_HEADER_LEN];
        let header_len = header.encode(&mut encoded);
        let buf = self.io.output.buf_mut();
        buf.reserve(header_len + payload_len);
        buf.extend_from_slice(&encoded[..header_len]);
        mask
    }

    /// Appends one frame to the output, masking it if we are the client.
    fn write_frame(&mut self, opcode: OpCode, compressed: bool, payload: &[u8]) {
        let mask = self.write_header(opcode, true, compressed, payload);
        self.append_payload(payload, mask);
    }

    /// Appends a frame's payload after its header, masked with `mask`.
    fn append_payload(&mut self, payload: &[u8], mask: Option<[u8; 4]>) {
        let buf = self.io.output.buf_mut();
        let start = buf.len();
        buf.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut buf[start..], key, 0);
        }
    }

    // ---- output: bytes -------------------------------------------------

    /// Bytes waiting: in the output, and still to be framed.
    fn unsent(&self) -> usize {
        self.io.output.len() + self.backlog.as_ref().map_or(0, |backlog| backlog.len())
    }

    /// The next run of bytes waiting to be written to the transport
    /// (possibly many frames: write them in one call). Empty when nothing
    /// waits. Large payloads come as runs of their own: prefer
    /// [`pending_transmit_vectored`](Self::pending_transmit_vectored).
    #[must_use]
    pub fn pending_transmit(&mut self) -> &[u8] {
        self.refill();
        self.flush_pending_pong_if_room();
        self.io.output.first_chunk()
    }

    /// Everything waiting to be written, as slices for one vectored write;
    /// returns how many of `slices` were filled.
    pub fn pending_transmit_vectored<'a>(&'a mut self, slices: &mut [IoSlice<'a>]) -> usize {
        self.refill();
        self.flush_pending_pong_if_room();
        self.io.output.slices(slices)
    }

    fn flush_pending_pong_if_room(&mut self) {
        if self.pending_pong.is_some() && self.io.output.len() < PONG_BACKLOG_LIMIT {
            self.flush_pending_pong();
        }
    }

    /// Whether anything waits to be written.
    #[must_use]
    pub fn wants_transmit(&self) -> bool {
        !self.io.output.is_empty() || self.pending_pong.is_some() || self.backlog.is_some()
    }

    /// Records that the next `n` bytes of the output were written.
    pub fn advance_transmit(&mut self, n: usize) {
        if n > 0 {
            self.timers.note_progress_out(n);
        }
        self.io.output.advance(n);
    }

    /// Whether the transport should now be closed: the connection is
    /// closed and all its output has been written.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.state == State::Closed && !self.wants_transmit()
    }

    // ---- time --------------------------------------------------------------

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do:
    /// a keepalive ping to send, a pong, idle or close deadline to check.
    /// `None` when nothing is scheduled, and until `handle_timeout` has
    /// been called once (that starts the connection's clock).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.poll_timeout(&self.settings.schedule, self.timer_phase())
    }

    /// Tells the connection what time it is. Call it once when the
    /// connection opens, after every batch of reads (that times pongs and
    /// activity precisely), and whenever [`poll_timeout`](Self::poll_timeout)'s
    /// instant passes. Calling it more often is harmless.
    ///
    /// It may queue a keepalive ping, or end the connection: an unanswered
    /// ping closes it with 1011 "keepalive ping timeout", an idle limit
    /// with 1001 "idle timeout", and a closing handshake past its timeout
    /// is abandoned (output dropped, state `Closed`). Returns the deadline
    /// that passed, if one did; [`timeout`](Self::timeout) remembers it.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Timeout> {
        match self.timers.handle_timeout(&self.settings.schedule, now, self.timer_phase(), self.wants_transmit()) {
            Due::Nothing => None,
            Due::Ping => {
                let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
                let len = self.timers.ping_payload(&self.settings.schedule, &mut payload);
                self.write_frame(OpCode::Ping, false, &payload[..len]);
                self.timers.note_ping_queued(self.io.output.len());
                None
            }
            Due::Expired(timeout) => {
                self.expire(timeout);
                Some(timeout)
            }
        }
    }

    /// Tells the connection how many bytes the transport still holds for
    /// the peer (on Linux, the socket's `SIOCOUTQ`). Optional: when it
    /// shrinks between two ticks the peer is reading, only slowly, and a
    /// late pong (stuck behind those bytes) is not taken for a dead peer.
    /// Without it, only our own output draining counts as such progress.
    pub fn handle_transport_queue(&mut self, queued: usize) {
        self.timers.note_transport_queue(queued);
    }

    /// Where the connection is, as its timers see it: a close waiting for
    /// the application to take its events counts as closing.
    fn timer_phase(&self) -> Phase {
        if self.state == State::Open && !self.has_deferred_close() {
            Phase::Open
        } else if self.is_finished() {
            Phase::Done
        } else {
            Phase::Closing
        }
    }

    fn expire(&mut self, timeout: Timeout) {
        self.ending().timeout.get_or_insert(timeout);
        match timeout {
            Timeout::Ping => {
                // The peer is presumed dead: tell it why, in case it is
                // not, but wait neither for its answer nor for it to take
                // our output: a peer that stopped reading leaves the
                // server's registry now, not a close timeout later.
                self.io.read = ReadState::Discard;
                self.backlog = None;
                self.write_close(CloseFrame::new(CloseCode::INTERNAL_ERROR, timeout.reason()));
                self.state = State::Closed;
                self.timers.close_without_waiting();
            }
            Timeout::Idle => {
                // Cannot fail: the code is sendable and the reason short.
                let _ = self.close(CloseCode::GOING_AWAY, timeout.reason());
            }
            Timeout::Close | Timeout::Open | Timeout::Heartbeat | Timeout::Receive => {
                // Give up: nothing more is read or written.
                self.io.read = ReadState::Discard;
                self.backlog = None;
                self.pending_pong = None;
                self.io.output = Transmit::default();
                if let Some(ending) = &mut self.ending {
                    ending.deferred_close = None;
                }
                self.state = State::Closed;
            }
        }
    }

    /// Frees buffers that hold nothing, so that an idle connection costs
    /// only its fixed state. The I/O layer calls this when it goes idle.
    pub fn release_memory(&mut self) {
        let Some(io) = &mut self.io.0 else { return };
        if io.is_idle() {
            self.io.0 = None;
            return;
        }
        io.output.release_memory();
        io.incoming.release_memory();
        if !matches!(io.read, ReadState::Payload { .. }) {
            io.scratch = Vec::new();
        }
        if io.events.is_empty() {
            io.events = VecDeque::new();
        }
    }
}

fn truncate_at_char_boundary(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_small() {
        // An idle connection is this struct and nothing else: keep it small.
        // (264 bytes before keepalive; the timers, the fragment backlog
        // and the hooks for trace and fragment events added 168; the I/O
        // state behind a pointer and the mask source among the hooks took
        // 208 off; limits and timer settings shared through `Settings`, 56
        // more, 2026-12-04.)
        let size = std::mem::size_of::<Connection>();
        println!("Connection is {size} bytes");
        assert!(size <= 176, "Connection is {size} bytes");
    }
}
