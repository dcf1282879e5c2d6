//! Payload masking (RFC 6455 §5.3) and where mask keys come from.

/// XORs `data` in place with `key`, as if `data` started `offset` bytes into
/// the masked payload. Masking is its own inverse, so this both masks and
/// unmasks.
///
/// The bulk runs eight bytes at a time on a `u64` made of the key repeated,
/// which the compiler turns into SIMD on targets that have it; no `unsafe`.
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate_key(key, offset);
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // A chunk of eight is a whole number of keys, so the tail starts at key[0].
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// The key as seen from `offset` bytes into the payload.
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut rotated = key;
    rotated.rotate_left(offset % 4);
    rotated
}

/// Where a client's mask keys come from.
///
/// RFC 6455 §5.3: the masking key "MUST be derived from a strong source of
/// entropy" and be unpredictable per frame, so that a hostile script cannot
/// choose the bytes an intermediary sees. The default, [`RandomMask`], draws
/// from the thread-local CSPRNG. Tests and the seeds' `get_mask_key` hook may
/// supply their own.
pub trait MaskSource: Send {
    /// The key for the next frame.
    fn next_mask(&mut self) -> [u8; 4];
}

/// Mask keys from `rand`'s thread-local generator (ChaCha, seeded from the OS).
/// Zero-sized: a connection holds no generator state of its own.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomMask;

impl MaskSource for RandomMask {
    fn next_mask(&mut self) -> [u8; 4] {
        rand::random()
    }
}

impl<F> MaskSource for F
where
    F: FnMut() -> [u8; 4] + Send,
{
    fn next_mask(&mut self) -> [u8; 4] {
        self()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn fast_path_matches_byte_at_a_time_for_every_length_and_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..70 {
            for offset in 0..8 {
                let original: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = original.clone();
                let mut slow = original.clone();
                apply_mask(&mut fast, key, offset);
                naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn masking_split_at_any_point_equals_masking_whole() {
        let key = [1, 2, 3, 4];
        let original: Vec<u8> = (0..100u8).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        for split in 0..original.len() {
            let mut parts = original.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(parts, whole);
        }
    }

    #[test]
    fn rfc_example_hello_masked() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn random_masks_differ() {
        let mut source = RandomMask;
        let keys: std::collections::HashSet<[u8; 4]> = (0..64).map(|_| source.next_mask()).collect();
        assert!(keys.len() > 60);
    }
}
