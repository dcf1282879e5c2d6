//! Frames: the header codec, opcodes, close codes and masking (RFC 6455 §5).

mod close_code;
mod header;
mod mask;
mod opcode;

pub use close_code::CloseCode;
pub use header::{FrameHeader, MAX_HEADER_LEN};
pub use mask::{apply_mask, MaskSource, RandomMask};
pub use opcode::OpCode;

/// The largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
