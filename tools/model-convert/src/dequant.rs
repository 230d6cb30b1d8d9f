//! Dequantization of GGUF tensors to float32, exactly as ggml computes it.
//!
//! - F32, F16, BF16: plain little-endian floats.
//! - Q8_0, blocks of 32: f16 scale `d`, then 32 int8 `q`; `w = d * q`.
//! - Q4_1, blocks of 32: f16 scale `d`, f16 minimum `m`, then 16 bytes; element `i` is the low
//!   nibble of byte `i`, element `i + 16` its high nibble; `w = d * q + m`.
//! - Q4_0, blocks of 32: f16 scale `d`, then 16 bytes of nibbles as in Q4_1; `w = d * (q - 8)`.

use half::f16;

use super::gguf::TensorType;

/// The types [`dequantize`] reads.
pub const SUPPORTED: [TensorType; 6] = [
    TensorType::F32,
    TensorType::F16,
    TensorType::BF16,
    TensorType::Q8_0,
    TensorType::Q4_0,
    TensorType::Q4_1,
];

/// Dequantizes a tensor's bytes (whole blocks, as the GGUF reader guarantees) to float32, or
/// returns `None` for a type not in [`SUPPORTED`].
pub fn dequantize(ty: TensorType, bytes: &[u8]) -> Option<Vec<f32>> {
    let dequantize_block: fn(&[u8], &mut [f32]) = match ty {
        TensorType::F32 => |b, out| out[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        TensorType::F16 => |b, out| out[0] = f16_at(b, 0),
        // bfloat16 is the top half of a float32.
        TensorType::BF16 => {
            |b, out| out[0] = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
        }
        TensorType::Q8_0 => q8_0_block,
        TensorType::Q4_0 => q4_0_block,
        TensorType::Q4_1 => q4_1_block,
        _ => return None,
    };
    let (block_elements, block_bytes) = ty.block();
    let (block_elements, block_bytes) = (block_elements as usize, block_bytes as usize);
    let mut out = vec![0.0; bytes.len() / block_bytes * block_elements];
    for (block, out) in bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(block_elements))
    {
        dequantize_block(block, out);
    }
    Some(out)
}

/// The little-endian f16 at `bytes[at..at + 2]`, as f32 (exact: every f16 is an f32).
pub fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

fn q8_0_block(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    for (w, &q) in out.iter_mut().zip(&block[2..]) {
        *w = d * f32::from(q as i8);
    }
}

fn q4_0_block(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    for (i, &q) in block[2..18].iter().enumerate() {
        out[i] = d * (f32::from(q & 0x0f) - 8.0);
        out[i + 16] = d * (f32::from(q >> 4) - 8.0);
    }
}

fn q4_1_block(block: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(block, 0), f16_at(block, 2));
    for (i, &q) in block[4..].iter().enumerate() {
        out[i] = d * f32::from(q & 0x0f) + m;
        out[i + 16] = d * f32::from(q >> 4) + m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q8_0_block_is_scale_times_int8() {
        let mut block = f16_bytes(0.5).to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8)); // q = -16..=15
        let w = dequantize(TensorType::Q8_0, &block).expect("Q8_0 is supported");
        assert_eq!(w.len(), 32);
        assert_eq!(w[0], -8.0); // 0.5 * -16
        assert_eq!(w[16], 0.0);
        assert_eq!(w[31], 7.5); // 0.5 * 15
    }

    #[test]
    fn q4_1_block_low_nibbles_first_then_high() {
        let mut block = f16_bytes(0.25).to_vec();
        block.extend(f16_bytes(-1.0));
        // byte i = (high nibble 15 - i) << 4 | (low nibble i)
        block.extend((0..16u8).map(|i| ((15 - i) << 4) | i));
        let w = dequantize(TensorType::Q4_1, &block).expect("Q4_1 is supported");
        assert_eq!(w[0], -1.0); // 0.25 * 0 - 1
        assert_eq!(w[3], -0.25); // 0.25 * 3 - 1
        assert_eq!(w[15], 2.75); // 0.25 * 15 - 1
        assert_eq!(w[16], 2.75); // high nibble of byte 0 is 15
        assert_eq!(w[31], -1.0); // high nibble of byte 15 is 0
    }

    #[test]
    fn q4_0_block_is_scale_times_nibble_minus_8() {
        let mut block = f16_bytes(0.5).to_vec();
        block.extend((0..16u8).map(|i| ((15 - i) << 4) | i));
        let w = dequantize(TensorType::Q4_0, &block).expect("Q4_0 is supported");
        assert_eq!((w[0], w[8], w[15]), (-4.0, 0.0, 3.5)); // 0.5 * (q - 8)
        assert_eq!((w[16], w[31]), (3.5, -4.0));
    }

    #[test]
    fn bf16_is_the_top_half_of_f32() {
        let bits = (-1.5f32).to_bits() >> 16;
        let w = dequantize(TensorType::BF16, &(bits as u16).to_le_bytes());
        assert_eq!(w, Some(vec![-1.5]));
    }

    #[test]
    fn f16_and_f32_are_read_little_endian() {
        let f16s = [f16_bytes(1.5), f16_bytes(-2.0)].concat();
        assert_eq!(dequantize(TensorType::F16, &f16s), Some(vec![1.5, -2.0]));
        let f32s = [0.1f32.to_le_bytes(), 3.0f32.to_le_bytes()].concat();
        assert_eq!(dequantize(TensorType::F32, &f32s), Some(vec![0.1, 3.0]));
    }

    #[test]
    fn other_types_are_not_dequantized() {
        assert_eq!(dequantize(TensorType::Q4K, &[0; 144]), None);
    }
}
