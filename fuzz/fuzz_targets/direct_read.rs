//! Large payloads read straight into their message
//! (`Connection::payload_room` / `payload_received`) must behave exactly as
//! the same bytes given to `handle_read`: same events, same error, same
//! output, same state. A differential target: two connections take one
//! wire, one through its room whenever it offers one.
//!
//! The room is only offered for a data frame with 64 KiB or more still to
//! come, which raw fuzz bytes would almost never declare and fill; so the
//! input describes frames and the target builds them:
//!
//! Input: `[selector, split_seed, frame specs..., raw tail]`.
//! - selector bit 0: our role (0 server: frames masked; 1 client).
//! - each frame spec is 5 bytes `[first, size, salt, bad_at_hi, bad_at_lo]`:
//!   `first` is the frame's first byte as is (FIN, RSV, opcode: anything);
//!   `size` bit 7 makes it large (64 KiB + `size & 0x7f` KiB), else
//!   `size & 0x7f` bytes; `salt` picks the payload's letters, and with bit
//!   7 set puts a 0xff (invalid in text) at `bad_at` (mod the length) and
//!   bit 6 leaves the frame unmasked whatever the role. At most 6 frames.
//! - what follows the specs is appended to the wire raw.
//! - `split_seed`: how the wire is cut into reads (up to 128 KiB each).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::{Config, Connection, Event, ProtocolError, Role, State};
use tether_proto_fuzz::{drain_output, Rng};

fuzz_target!(|data: &[u8]| run(data));

const SPEC: usize = 5;
const MAX_FRAMES: usize = 6;

fn run(data: &[u8]) {
    let [selector, seed, ref rest @ ..] = *data else {
        return;
    };
    let role = if selector & 1 == 0 { Role::Server } else { Role::Client };
    let frames = (rest.len() / SPEC).min(MAX_FRAMES);
    let mut wire = Vec::new();
    for (index, spec) in rest.chunks_exact(SPEC).take(frames).enumerate() {
        build_frame(&mut wire, role, spec, index);
    }
    wire.extend_from_slice(&rest[frames * SPEC..]);

    let mut plain = Side::new(role);
    let mut direct = Side::new(role);
    let mut rng = Rng::new(seed);
    let mut at = 0;
    while at < wire.len() {
        let want = read_size(&mut rng).min(wire.len() - at);
        // The plain side reads what the direct side read, so both see the
        // same cuts: the room may be smaller than the read it replaces.
        let took = direct.read(&wire[at..at + want]);
        plain.feed(&wire[at..at + took]);
        at += took;
        assert_eq!(plain.events, direct.events, "events differ after {at} bytes");
        assert_eq!(plain.error, direct.error, "errors differ after {at} bytes");
        assert_eq!(plain.connection.state(), direct.connection.state());
        if plain.error.is_some() {
            break;
        }
    }
    let (mut out_rng_a, mut out_rng_b) = (Rng::new(seed), Rng::new(seed));
    let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
    drain_output(&mut plain.connection, &mut out_rng_a, &mut out_a);
    drain_output(&mut direct.connection, &mut out_rng_b, &mut out_b);
    assert_eq!(out_a, out_b, "outputs differ");
    if plain.error.is_some() {
        assert_eq!(direct.connection.state(), State::Closed);
    }
}

/// One connection and what it produced.
struct Side {
    connection: Connection,
    events: Vec<Event>,
    error: Option<ProtocolError>,
}

impl Side {
    fn new(role: Role) -> Side {
        let mut connection = Connection::new(role, Config::default().with_deflate(None), None);
        let mut counter = 0x9e37_79b9_u32;
        connection.set_mask_source(Box::new(move || {
            counter = counter.wrapping_mul(0x0101_0101).wrapping_add(0x3779_b97f);
            counter.to_le_bytes()
        }));
        Side { connection, events: Vec::new(), error: None }
    }

    /// `handle_read`, then the events.
    fn feed(&mut self, bytes: &[u8]) {
        if let Err(error) = self.connection.handle_read(bytes) {
            self.error.get_or_insert(error);
        }
        self.take_events();
    }

    /// Reads from `bytes` as a driver would: into the room when there is
    /// one (at most its size), else through `handle_read`. How much it took.
    fn read(&mut self, bytes: &[u8]) -> usize {
        let taken = match self.connection.payload_room() {
            Some(room) => {
                let n = room.len().min(bytes.len());
                assert!(n > 0, "an offered room is never empty");
                for (slot, byte) in room.iter_mut().zip(&bytes[..n]) {
                    slot.write(*byte);
                }
                // SAFETY: the first `n` bytes of the room were just written.
                if let Err(error) = unsafe { self.connection.payload_received(n) } {
                    self.error.get_or_insert(error);
                }
                n
            }
            None => {
                if let Err(error) = self.connection.handle_read(bytes) {
                    self.error.get_or_insert(error);
                }
                bytes.len()
            }
        };
        self.take_events();
        taken
    }

    fn take_events(&mut self) {
        while let Some(event) = self.connection.poll_event() {
            self.events.push(event);
        }
    }
}

fn read_size(rng: &mut Rng) -> usize {
    let r = rng.next() as usize;
    match r % 4 {
        0 => 1 + (r >> 2) % 64,
        1 => 1 + (r >> 2) % 4096,
        _ => 1 + (r >> 2) % (128 << 10),
    }
}

/// Appends the frame `spec` describes.
fn build_frame(wire: &mut Vec<u8>, role: Role, spec: &[u8], index: usize) {
    let [first, size, salt, bad_hi, bad_lo] = *spec else { return };
    let len = if size & 0x80 != 0 { (64 << 10) + usize::from(size & 0x7f) * 1024 } else { usize::from(size & 0x7f) };
    let mut payload: Vec<u8> = (0..len).map(|i| b'a' + ((i + usize::from(salt)) % 26) as u8).collect();
    if salt & 0x80 != 0 && len > 0 {
        payload[usize::from(u16::from_be_bytes([bad_hi, bad_lo])) % len] = 0xff;
    }
    let masked = role == Role::Server && salt & 0x40 == 0;
    wire.push(first);
    let mask_bit = if masked { 0x80 } else { 0 };
    match len {
        0..=125 => wire.push(mask_bit | len as u8),
        126..=0xffff => {
            wire.push(mask_bit | 126);
            wire.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            wire.push(mask_bit | 127);
            wire.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [salt, bad_hi ^ 0x5a, bad_lo, index as u8];
        wire.extend_from_slice(&key);
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= key[i % 4];
        }
    }
    wire.extend_from_slice(&payload);
}
