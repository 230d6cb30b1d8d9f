//! The week-2 model: chapter 5's model with a KV cache per layer, and linear layers that may be
//! dense or quantized (chapter 9).

use crate::{
    AttentionLayers, CachedAttention, DenseLinear, Kernels, KvCache, LayerCache, Linear, Norm,
};
use load::{load_weights, LoadError, ModelConfig};
use mlx_rs::{error::Exception, Array};
use rmsnorm_mlp::{silu, AttentionConfig};
use std::{collections::HashMap, path::Path};

/// A checkpoint's tensors by name, taken out one by one as the model is built.
///
/// Given.
pub struct Tensors(HashMap<String, Array>);

impl Tensors {
    pub fn new(tensors: HashMap<String, Array>) -> Self {
        Tensors(tensors)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Takes `name` out, checking its shape when `expected` is given.
    pub fn take(&mut self, name: &str, expected: Option<&[i32]>) -> Result<Array, LoadError> {
        let tensor = self
            .0
            .remove(name)
            .ok_or_else(|| LoadError::MissingTensor {
                name: name.to_string(),
            })?;
        match expected {
            Some(expected) if tensor.shape() != expected => Err(LoadError::WrongShape {
                name: name.to_string(),
                found: tensor.shape().to_vec(),
                expected: expected.to_vec(),
            }),
            _ => Ok(tensor),
        }
    }

    pub fn take_optional(
        &mut self,
        name: &str,
        expected: Option<&[i32]>,
    ) -> Result<Option<Array>, LoadError> {
        if self.contains(name) {
            self.take(name, expected).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Builds each linear layer from the checkpoint's tensors: dense here, quantized in chapter 9.
///
/// Given.
pub trait LinearLoader {
    /// The layer `name` (like `model.layers.0.self_attn.q_proj`; the embedding table is
    /// `model.embed_tokens`) of shape `[out, in]`, from `{name}.weight` and, when present,
    /// `{name}.bias` (and whatever else its format stores), taken out of `tensors`.
    fn load(
        &self,
        name: &str,
        out_features: i32,
        in_features: i32,
        tensors: &mut Tensors,
    ) -> Result<Box<dyn Linear>, LoadError>;
}

/// Loads float weights as they are.
///
/// Given.
pub struct DenseLoader;

impl LinearLoader for DenseLoader {
    fn load(
        &self,
        name: &str,
        out_features: i32,
        in_features: i32,
        tensors: &mut Tensors,
    ) -> Result<Box<dyn Linear>, LoadError> {
        let weight = tensors.take(
            &format!("{name}.weight"),
            Some(&[out_features, in_features]),
        )?;
        let bias = tensors.take_optional(&format!("{name}.bias"), Some(&[out_features]))?;
        Ok(Box::new(DenseLinear::new(weight, bias)))
    }
}

/// The SwiGLU MLP of chapter 4 over [`Linear`] layers.
struct Mlp {
    gate_proj: Box<dyn Linear>,
    up_proj: Box<dyn Linear>,
    down_proj: Box<dyn Linear>,
}

impl Mlp {
    fn forward(&self, x: &Array) -> mlx_rs::error::Result<Array> {
        let gate = silu(&self.gate_proj.forward(x)?)?; // [B, L, I]
        self.down_proj
            .forward(&gate.multiply(self.up_proj.forward(x)?)?) // [B, L, E]
    }
}

/// One decoder layer, as in chapter 4, with a cache for its attention.
struct Block {
    input_layernorm: Norm,
    attention: CachedAttention,
    post_attention_layernorm: Norm,
    mlp: Mlp,
    kernels: Kernels,
}

impl Block {
    fn forward(&self, x: &Array, cache: &mut dyn LayerCache) -> mlx_rs::error::Result<Array> {
        let normalized = self.input_layernorm.forward(x)?; // [B, L, E]
        let attended = match self.kernels {
            Kernels::Course => self.attention.forward(&normalized, cache)?,
            Kernels::Fused => self.attention.forward_fused(&normalized, cache)?,
        };
        let h = x.add(&attended)?; // [B, L, E]
        h.add(
            self.mlp
                .forward(&self.post_attention_layernorm.forward(&h)?)?,
        ) // [B, L, E]
    }
}

/// A decoder-only transformer that runs new tokens against a KV cache.
///
/// Book: week 2, chapter 8 (the KV cache), task 4.
pub struct Model {
    config: ModelConfig,
    /// `[V, E]`; also the output layer when the embeddings are tied.
    embed_tokens: Box<dyn Linear>,
    layers: Vec<Block>,
    norm: Norm,
    /// `[V, E]`; `None` when tied.
    lm_head: Option<Box<dyn Linear>>,
}

impl Model {
    /// Loads `dir/config.json` and the float weights in `dir`, as in chapter 5.
    ///
    /// Given.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        Model::from_weights(config, load_weights(dir)?, &DenseLoader)
    }

    /// Builds the model from tensors named as in chapter 5, each linear layer (the embedding
    /// table included) made by `loader`.
    ///
    /// Given.
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
        let mut linear = |name: &str, out: i32, inp: i32| loader.load(name, out, inp, &mut tensors);

        let embed_tokens = linear("model.embed_tokens", vocab, hidden)?;
        let mut layers = Vec::new();
        for n in 0..config.num_hidden_layers {
            let name = |suffix: &str| format!("model.layers.{n}.{suffix}");
            let attention = AttentionLayers {
                q_proj: linear(&name("self_attn.q_proj"), q_width, hidden)?,
                k_proj: linear(&name("self_attn.k_proj"), kv_width, hidden)?,
                v_proj: linear(&name("self_attn.v_proj"), kv_width, hidden)?,
                o_proj: linear(&name("self_attn.o_proj"), hidden, q_width)?,
                q_norm: None,
                k_norm: None,
            };
            let mlp = Mlp {
                gate_proj: linear(&name("mlp.gate_proj"), inner, hidden)?,
                up_proj: linear(&name("mlp.up_proj"), inner, hidden)?,
                down_proj: linear(&name("mlp.down_proj"), hidden, inner)?,
            };
            layers.push((n, attention, mlp));
        }
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(linear("lm_head", vocab, hidden)?)
        };
        // The norms are plain float vectors whatever the format of the linear layers.
        let mut blocks = Vec::new();
        for (n, mut attention, mlp) in layers {
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
                attention: CachedAttention::new(attention_config, attention),
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

    /// Runs normalization, RoPE and attention with `kernels` (yours by default).
    ///
    /// Given.
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        for block in &mut self.layers {
            block.kernels = kernels;
            block.input_layernorm.set_kernels(kernels);
            block.post_attention_layernorm.set_kernels(kernels);
        }
        self.norm.set_kernels(kernels);
        self
    }

    /// A fresh, empty cache: one [`KvCache`] per layer.
    ///
    /// Given.
    pub fn new_cache(&self) -> Vec<KvCache> {
        self.layers.iter().map(|_| KvCache::new()).collect()
    }

    /// Every linear layer, the embedding table included (each once, even when tied).
    ///
    /// Given.
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

    /// Runs `L` new tokens of each of `B` sequences, which continue what `cache` holds.
    ///
    /// - `tokens`: `[B, L]` integer ids; `cache`: one cache per layer (from
    ///   [`Model::new_cache`], or chapter 10's batched cache), where these tokens start.
    /// - Returns the logits `[B, L, V]`, float32; the cache then holds the new tokens too.
    /// - Fails when `cache` does not have one entry per layer.
    ///
    /// Book: week 2, chapter 8 (the KV cache), task 4.
    pub fn forward<C: LayerCache>(
        &self,
        tokens: &Array,
        cache: &mut [C],
    ) -> mlx_rs::error::Result<Array> {
        if cache.len() != self.layers.len() {
            return Err(Exception::custom(format!(
                "the cache has {} layers, the model {}: make it with Model::new_cache",
                cache.len(),
                self.layers.len()
            )));
        }
        let mut h = self.embed_tokens.rows(tokens)?; // [B, L, E]
        for (layer, layer_cache) in self.layers.iter().zip(cache) {
            h = layer.forward(&h, layer_cache)?; // [B, L, E]
        }
        let h = self.norm.forward(&h)?; // [B, L, E]
        self.lm_head
            .as_ref()
            .unwrap_or(&self.embed_tokens)
            .forward(&h)? // [B, L, V]
            .as_dtype(mlx_rs::Dtype::Float32)
    }
}
