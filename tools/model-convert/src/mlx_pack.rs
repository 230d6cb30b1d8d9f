//! Repacking GGUF blocks into MLX's affine quantized layout, losslessly.
//!
//! MLX stores a quantized `[out, in]` matrix as `weight` (uint32 `[out, in * bits / 32]`), `scales`
//! and `biases` (`[out, in / group_size]`), and dequantizes `w = scale * q + bias`. Element `j` of a
//! word sits in bits `j * bits .. (j + 1) * bits`, elements in order along the input dimension.
//! - Q4_1 (`w = d * q + m`, q in 0..16) is that with group 32, 4 bits, scale `d`, bias `m`.
//! - Q4_0 (`w = d * (q - 8)`, q in 0..16) is that with group 32, 4 bits, scale `d`, bias `-8 * d`.
//! - Q8_0 (`w = d * q`, q in -128..128) is that with group 32, 8 bits, `q + 128` and bias `-128 * d`.
//!
//! Scales and biases stay float16, the type the GGUF holds them in, so nothing is rounded.

use half::f16;
use thiserror::Error;

use super::gguf::TensorType;

/// GGUF blocks and MLX groups both hold 32 elements.
pub const GROUP_SIZE: usize = 32;

/// One tensor in MLX's quantized layout, rows in the GGUF's order.
#[derive(Debug, PartialEq)]
pub struct Packed {
    pub bits: u32,
    pub weight: Vec<u32>,
    pub scales: Vec<f16>,
    pub biases: Vec<f16>,
}

#[derive(Debug, Error, PartialEq)]
#[error("block {block} has scale {d}: its MLX bias (-8 * d or -128 * d) does not fit in float16")]
pub struct BiasOverflow {
    pub block: usize,
    pub d: f32,
}

pub fn pack_q4_1(bytes: &[u8]) -> Packed {
    let blocks = bytes.chunks_exact(TensorType::Q4_1.block().1 as usize);
    let mut packed = Packed::with_capacity(4, blocks.len());
    for block in blocks {
        let qs = &block[4..20];
        // Elements 0..16 are the low nibbles of qs, elements 16..32 the high ones.
        let mut q = [0u8; GROUP_SIZE];
        for (i, &byte) in qs.iter().enumerate() {
            q[i] = byte & 0x0f;
            q[i + 16] = byte >> 4;
        }
        packed.push_group(&q);
        packed.scales.push(f16::from_le_bytes([block[0], block[1]]));
        packed.biases.push(f16::from_le_bytes([block[2], block[3]]));
    }
    packed
}

pub fn pack_q4_0(bytes: &[u8]) -> Result<Packed, BiasOverflow> {
    let blocks = bytes.chunks_exact(TensorType::Q4_0.block().1 as usize);
    let mut packed = Packed::with_capacity(4, blocks.len());
    for (index, block) in blocks.enumerate() {
        let d = f16::from_le_bytes([block[0], block[1]]);
        let bias = f16::from_f32(-8.0 * d.to_f32());
        if !bias.is_finite() {
            return Err(BiasOverflow {
                block: index,
                d: d.to_f32(),
            });
        }
        let mut q = [0u8; GROUP_SIZE];
        for (i, &byte) in block[2..18].iter().enumerate() {
            q[i] = byte & 0x0f;
            q[i + 16] = byte >> 4;
        }
        packed.push_group(&q);
        packed.scales.push(d);
        packed.biases.push(bias);
    }
    Ok(packed)
}

pub fn pack_q8_0(bytes: &[u8]) -> Result<Packed, BiasOverflow> {
    let blocks = bytes.chunks_exact(TensorType::Q8_0.block().1 as usize);
    let mut packed = Packed::with_capacity(8, blocks.len());
    for (index, block) in blocks.enumerate() {
        let d = f16::from_le_bytes([block[0], block[1]]);
        // Multiplying by a power of two is exact in f16 unless it overflows.
        let bias = f16::from_f32(-128.0 * d.to_f32());
        if !bias.is_finite() {
            return Err(BiasOverflow {
                block: index,
                d: d.to_f32(),
            });
        }
        // int8 q in -128..128 becomes q + 128 in 0..256: flipping the sign bit does exactly that.
        let mut q = [0u8; GROUP_SIZE];
        for (q, &byte) in q.iter_mut().zip(&block[2..]) {
            *q = byte ^ 0x80;
        }
        packed.push_group(&q);
        packed.scales.push(d);
        packed.biases.push(bias);
    }
    Ok(packed)
}

impl Packed {
    fn with_capacity(bits: u32, groups: usize) -> Self {
        Packed {
            bits,
            weight: Vec::with_capacity(groups * GROUP_SIZE * bits as usize / 32),
            scales: Vec::with_capacity(groups),
            biases: Vec::with_capacity(groups),
        }
    }

    /// Appends one group of unsigned `bits`-wide values, element `j` of a word in bits `j * bits`.
    fn push_group(&mut self, q: &[u8; GROUP_SIZE]) {
        let per_word = 32 / self.bits as usize;
        for chunk in q.chunks_exact(per_word) {
            let mut word = 0u32;
            for (j, &value) in chunk.iter().enumerate() {
                word |= u32::from(value) << (j as u32 * self.bits);
            }
            self.weight.push(word);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_packs_eight_nibbles_per_word_lowest_first() {
        let mut block = f16::from_f32(0.5).to_le_bytes().to_vec();
        block.extend(f16::from_f32(-2.0).to_le_bytes());
        // Elements 0..16 are 0, 1, .., 15 (low nibbles); elements 16..32 are 15, 14, .., 0 (high).
        block.extend((0..16u8).map(|i| ((15 - i) << 4) | i));
        let packed = pack_q4_1(&block);
        assert_eq!(packed.bits, 4);
        assert_eq!(
            packed.weight,
            vec![0x7654_3210, 0xfedc_ba98, 0x89ab_cdef, 0x0123_4567]
        );
        assert_eq!(packed.scales, vec![f16::from_f32(0.5)]);
        assert_eq!(packed.biases, vec![f16::from_f32(-2.0)]);
    }

    #[test]
    fn q8_0_packs_four_offset_bytes_per_word() {
        let mut block = f16::from_f32(0.25).to_le_bytes().to_vec();
        let q: [i8; 32] = std::array::from_fn(|i| match i {
            0 => -128,
            1 => -1,
            2 => 0,
            3 => 127,
            _ => 1,
        });
        block.extend(q.iter().map(|&v| v as u8));
        let packed = pack_q8_0(&block).expect("small scale");
        // q + 128 = 0, 127, 128, 255 in the first word, then 129 everywhere.
        assert_eq!(packed.weight[0], 0xff80_7f00);
        assert_eq!(&packed.weight[1..], &[0x8181_8181; 7]);
        assert_eq!(packed.scales, vec![f16::from_f32(0.25)]);
        assert_eq!(packed.biases, vec![f16::from_f32(-32.0)]);
    }

    #[test]
    fn q8_0_with_a_huge_scale_is_an_error() {
        let mut block = f16::from_f32(1000.0).to_le_bytes().to_vec();
        block.extend([0u8; 32]);
        assert_eq!(
            pack_q8_0(&block),
            Err(BiasOverflow {
                block: 0,
                d: 1000.0
            })
        );
    }
}
