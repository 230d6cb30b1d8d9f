//! The backend's floor: the time MLX itself needs for one decode token's matmuls, measured on a
//! stack of plain `matmul`s (or `quantized_matmul`s) with the shapes and formats of the model's
//! linear layers, the LM head included. A decode step cannot be faster than this; how close the
//! engine comes is its efficiency.

use anyhow::Result;
use decode::ModelConfig;
use mlx_rs::{ops, random, transforms::eval, Array};
use serde::Serialize;
use std::time::Instant;

/// How a layer's weight is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    Float32,
    Quantized { bits: i32, group_size: i32 },
}

/// One linear layer of a decode step: `[1, in] x [out, in]^T`.
#[derive(Clone, Debug)]
pub struct LayerShape {
    pub out_features: i32,
    pub in_features: i32,
    pub format: WeightFormat,
}

/// The linear layers one token goes through, in order, with `format_of` naming each one's format.
/// The embedding lookup is a gather, not a matmul: it is left out, but a tied LM head (the
/// embedding table used as the output layer) is in.
pub fn decode_layers(
    config: &ModelConfig,
    format_of: impl Fn(&str) -> Result<WeightFormat>,
) -> Result<Vec<LayerShape>> {
    let (hidden, inner) = (config.hidden_size, config.intermediate_size);
    let q_width = config.num_attention_heads * config.head_dim;
    let kv_width = config.num_key_value_heads * config.head_dim;
    let mut layers = Vec::new();
    let mut push = |name: String, out_features, in_features| -> Result<()> {
        layers.push(LayerShape {
            format: format_of(&name)?,
            out_features,
            in_features,
        });
        Ok(())
    };
    for n in 0..config.num_hidden_layers {
        let prefix = format!("model.layers.{n}");
        push(format!("{prefix}.self_attn.q_proj"), q_width, hidden)?;
        push(format!("{prefix}.self_attn.k_proj"), kv_width, hidden)?;
        push(format!("{prefix}.self_attn.v_proj"), kv_width, hidden)?;
        push(format!("{prefix}.self_attn.o_proj"), hidden, q_width)?;
        push(format!("{prefix}.mlp.gate_proj"), inner, hidden)?;
        push(format!("{prefix}.mlp.up_proj"), inner, hidden)?;
        push(format!("{prefix}.mlp.down_proj"), hidden, inner)?;
    }
    let head = if config.tie_word_embeddings {
        "model.embed_tokens"
    } else {
        "lm_head"
    };
    push(head.to_string(), config.vocab_size, hidden)?;
    Ok(layers)
}

/// A layer's weight, random but of the right shape and format.
enum Weight {
    /// `[out, in]`
    Dense(Array),
    /// MLX's affine layout: packed `[out, in * bits / 32]`, scales and biases `[out, in / G]`.
    Quantized {
        packed: Array,
        scales: Array,
        biases: Array,
        bits: i32,
        group_size: i32,
    },
}

impl Weight {
    fn random(layer: &LayerShape, key: &Array) -> Result<Weight> {
        let shape = [layer.out_features, layer.in_features];
        let dense = random::normal::<f32>(&shape[..], 0.0, 0.02, key)?; // [out, in]
        Ok(match layer.format {
            WeightFormat::Float32 => Weight::Dense(dense),
            WeightFormat::Quantized { bits, group_size } => {
                let (packed, scales, biases) = ops::quantize(&dense, group_size, bits)?;
                Weight::Quantized {
                    packed,
                    scales,
                    biases,
                    bits,
                    group_size,
                }
            }
        })
    }

    /// `x`: `[1, in]` -> `[1, out]`, as the engine's linear layers compute it.
    fn apply(&self, x: &Array) -> Result<Array> {
        Ok(match self {
            Weight::Dense(weight) => x.matmul(weight.t())?,
            Weight::Quantized {
                packed,
                scales,
                biases,
                bits,
                group_size,
            } => ops::quantized_matmul(x, packed, scales, biases, true, *group_size, *bits)?,
        })
    }

    fn arrays(&self) -> Vec<&Array> {
        match self {
            Weight::Dense(weight) => vec![weight],
            Weight::Quantized {
                packed,
                scales,
                biases,
                ..
            } => vec![packed, scales, biases],
        }
    }
}

/// The matmul stack, its random weights and inputs made once.
pub struct MatmulStack {
    weights: Vec<Weight>,
    /// `[1, in]`, one per layer.
    inputs: Vec<Array>,
}

impl MatmulStack {
    pub fn new(layers: &[LayerShape]) -> Result<MatmulStack> {
        let key = random::key(7)?;
        let weights = layers
            .iter()
            .map(|layer| Weight::random(layer, &key))
            .collect::<Result<Vec<_>>>()?;
        eval(weights.iter().flat_map(Weight::arrays))?;
        let inputs = layers
            .iter()
            .map(|layer| random::normal::<f32>(&[1, layer.in_features][..], None, None, &key))
            .collect::<mlx_rs::error::Result<Vec<_>>>()?;
        eval(&inputs)?;
        let stack = MatmulStack { weights, inputs };
        stack.step()?; // MLX allocates its buffers on first use
        Ok(stack)
    }

    /// Builds every layer's product and evaluates them together, once.
    fn step(&self) -> Result<()> {
        let outputs = self
            .weights
            .iter()
            .zip(&self.inputs)
            .map(|(weight, x)| weight.apply(x))
            .collect::<Result<Vec<_>>>()?;
        eval(&outputs)?;
        Ok(())
    }

    /// Seconds per step, over `steps` steps.
    pub fn seconds_per_step(&self, steps: usize) -> Result<f64> {
        let started = Instant::now();
        for _ in 0..steps {
            self.step()?;
        }
        Ok(started.elapsed().as_secs_f64() / steps.max(1) as f64)
    }
}
