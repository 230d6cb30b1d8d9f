//! The week-2 model's layers and weights: the [`Model`] type, loading it from a checkpoint, and
//! what the engine asks of it (its config, its kernels, a fresh cache, its linear layers). Given:
//! your `Model::forward` is in `src/model.rs`.

use crate::{
    block::{Block, Mlp},
    AttentionLayers, CachedAttention, DenseLoader, Kernels, KvCache, Linear, LinearLoader,
    Llama3Scaling, Norm, Tensors,
};
use load::{load_weights, LoadError, ModelConfig};
use mlx_rs::Array;
use rmsnorm_mlp::AttentionConfig;
use std::{collections::HashMap, path::Path};

/// A decoder-only transformer that runs new tokens against a KV cache.
///
/// Given; its forward pass is yours (book: week 2, chapter 8 (the KV cache), task 4).
pub struct Model {
    pub(crate) config: ModelConfig,
    /// `[V, E]`; also the output layer when the embeddings are tied.
    pub(crate) embed_tokens: Box<dyn Linear>,
    pub(crate) layers: Vec<Block>,
    pub(crate) norm: Norm,
    /// `[V, E]`; `None` when tied.
    pub(crate) lm_head: Option<Box<dyn Linear>>,
}

impl Model {
    /// Loads `dir/config.json` and the float weights in `dir`, as in chapter 5.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let path = dir.join("config.json");
        let config = ModelConfig::from_file(&path)?;
        let scaling = Llama3Scaling::from_config(&path)?;
        Ok(
            Model::from_weights(config, load_weights(dir)?, &DenseLoader)?
                .with_rope_scaling(scaling),
        )
    }

    /// Builds the model from tensors named as in chapter 5, each linear layer (the embedding
    /// table included) made by `loader`.
    pub fn from_weights(
        config: ModelConfig,
        weights: HashMap<String, Array>,
        loader: &dyn LinearLoader,
    ) -> Result<Self, LoadError> {
        let mut tensors = Tensors::new(weights);
        let (vocab, hidden, inner, head_dim) = (
            config.vocab_size,
            config.hidden_size,
            config.intermediate_size,
            config.head_dim,
        );
        let (q_width, kv_width) = (
            config.num_attention_heads * head_dim,
            config.num_key_value_heads * head_dim,
        );
        let attention_config = AttentionConfig {
            hidden_size: hidden,
            num_heads: config.num_attention_heads,
            num_kv_heads: config.num_key_value_heads,
            head_dim,
            rope_theta: config.rope_theta,
            rms_norm_eps: config.rms_norm_eps,
        };
        let eps = config.rms_norm_eps;
        let linear = |tensors: &mut Tensors, name: &str, out: i32, inp: i32| {
            loader.load(name, out, inp, tensors)
        };

        let embed_tokens = linear(&mut tensors, "model.embed_tokens", vocab, hidden)?;
        let mut layers = Vec::new();
        for n in 0..config.num_hidden_layers {
            let name = |suffix: &str| format!("model.layers.{n}.{suffix}");
            let (q, k, v) = (
                name("self_attn.q_proj"),
                name("self_attn.k_proj"),
                name("self_attn.v_proj"),
            );
            let (gate, up) = (name("mlp.gate_proj"), name("mlp.up_proj"));
            // The fused path's joined projections (`Kernels::Fused`), sharing the parts' memory.
            let qkv_name = name("self_attn.qkv_proj");
            let qkv_proj = if tensors.join_rows(&[&q, &k, &v], &qkv_name) {
                Some(linear(
                    &mut tensors,
                    &qkv_name,
                    q_width + 2 * kv_width,
                    hidden,
                )?)
            } else {
                None
            };
            let gate_up_name = name("mlp.gate_up_proj");
            let gate_up_proj = if tensors.join_rows(&[&gate, &up], &gate_up_name) {
                Some(linear(&mut tensors, &gate_up_name, 2 * inner, hidden)?)
            } else {
                None
            };
            let attention = AttentionLayers {
                q_proj: linear(&mut tensors, &q, q_width, hidden)?,
                k_proj: linear(&mut tensors, &k, kv_width, hidden)?,
                v_proj: linear(&mut tensors, &v, kv_width, hidden)?,
                o_proj: linear(&mut tensors, &name("self_attn.o_proj"), hidden, q_width)?,
                q_norm: None,
                k_norm: None,
            };
            let mlp = Mlp {
                gate_proj: linear(&mut tensors, &gate, inner, hidden)?,
                up_proj: linear(&mut tensors, &up, inner, hidden)?,
                down_proj: linear(&mut tensors, &name("mlp.down_proj"), hidden, inner)?,
                gate_up_proj,
                compiled_swiglu: true,
            };
            layers.push((n, attention, qkv_proj, mlp));
        }
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(linear(&mut tensors, "lm_head", vocab, hidden)?)
        };
        // The norms are plain float vectors whatever the format of the linear layers.
        let mut blocks = Vec::new();
        for (n, mut attention, qkv_proj, mlp) in layers {
            let name = |suffix: &str| format!("model.layers.{n}.{suffix}");
            attention.q_norm =
                tensors.take_optional(&name("self_attn.q_norm.weight"), Some(&[head_dim]))?;
            attention.k_norm =
                tensors.take_optional(&name("self_attn.k_norm.weight"), Some(&[head_dim]))?;
            blocks.push(Block {
                input_layernorm: Norm::new(
                    tensors.take(&name("input_layernorm.weight"), Some(&[hidden]))?,
                    eps,
                ),
                attention: CachedAttention {
                    qkv_proj,
                    ..CachedAttention::new(attention_config, attention)
                },
                post_attention_layernorm: Norm::new(
                    tensors.take(&name("post_attention_layernorm.weight"), Some(&[hidden]))?,
                    eps,
                ),
                mlp,
                kernels: Kernels::Course,
            });
        }
        let norm = Norm::new(tensors.take("model.norm.weight", Some(&[hidden]))?, eps);
        Ok(Model {
            config,
            embed_tokens,
            layers: blocks,
            norm,
            lm_head,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Gives the fused RoPE Llama 3's scaled periods (`None`: plain RoPE). Your RoPE, which
    /// `Kernels::Course` runs, keeps the plain frequencies.
    pub fn with_rope_scaling(mut self, scaling: Option<Llama3Scaling>) -> Self {
        let periods = scaling.map(|scaling| {
            let periods = scaling.periods(self.config.head_dim, self.config.rope_theta);
            Array::from_slice(&periods, &[periods.len() as i32]) // [D / 2]
        });
        for block in &mut self.layers {
            block.attention.rope_periods = periods.clone();
        }
        self
    }

    /// Runs normalization, RoPE and attention with `kernels` (yours by default).
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        for block in &mut self.layers {
            block.kernels = kernels;
            block.input_layernorm.set_kernels(kernels);
            block.post_attention_layernorm.set_kernels(kernels);
        }
        self.norm.set_kernels(kernels);
        self
    }

    /// The fused path as the engine ran it before joining q, k, v and gate, up into one matmul
    /// each and compiling SwiGLU into one kernel: `bench single-stream`'s "before".
    pub fn without_operation_fusion(mut self) -> Self {
        for block in &mut self.layers {
            block.attention.qkv_proj = None;
            block.mlp.gate_up_proj = None;
            block.mlp.compiled_swiglu = false;
        }
        self
    }

    /// A fresh, empty cache: one [`KvCache`] per layer.
    pub fn new_cache(&self) -> Vec<KvCache> {
        self.layers.iter().map(|_| KvCache::new()).collect()
    }

    /// Every linear layer, the embedding table included (each once, even when tied).
    pub fn linear_layers(&self) -> Vec<&dyn Linear> {
        let mut linears = vec![self.embed_tokens.as_ref()];
        for block in &self.layers {
            let attention = block.attention.layers();
            let mlp = &block.mlp;
            for linear in [
                &attention.q_proj,
                &attention.k_proj,
                &attention.v_proj,
                &attention.o_proj,
                &mlp.gate_proj,
                &mlp.up_proj,
                &mlp.down_proj,
            ] {
                linears.push(linear.as_ref());
            }
        }
        linears.extend(self.lm_head.as_deref());
        linears
    }
}
