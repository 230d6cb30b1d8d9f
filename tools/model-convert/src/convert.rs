//! A llama, qwen2 or qwen3 GGUF to model directories: HF layout in float32, and MLX's quantized
//! layout (the GGUF's own Q4_0/Q4_1/Q8_0 numbers, repacked).
//!
//! The three differ only in a few tensors: Qwen2 has biases on q, k and v; Qwen3 an RMSNorm on
//! each head of q and k. And llama.cpp's converter (`convert_hf_to_gguf.py`) permutes the q/k rows
//! of Llama models only (`LlamaModel.modify_tensors`); Qwen2 and Qwen3 keep HF's row order, since
//! llama.cpp runs them with the NeoX-style (rotate-half) RoPE that HF uses.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    path::Path,
};

use anyhow::{bail, ensure, Context, Result};
use half::f16;
use indicatif::ProgressBar;
use safetensors::{Dtype, View};
use serde::Serialize;
use serde_json::{json, Value as Json};

use super::{
    dequant,
    gguf::{Gguf, TensorInfo, TensorType},
    mlx_pack::{self, Packed, GROUP_SIZE},
    tokenizer::write_json,
    unpermute::unpermute_rows,
};

/// The GGUF architectures this converter knows, with their HF class.
const ARCHITECTURES: [(&str, &str); 3] = [
    ("llama", "LlamaForCausalLM"),
    ("qwen2", "Qwen2ForCausalLM"),
    ("qwen3", "Qwen3ForCausalLM"),
];

/// The HF `config.json` of a model, with values from the GGUF's `{arch}.*` metadata.
#[derive(Debug, Clone, Serialize)]
pub struct HfConfig {
    architectures: [&'static str; 1],
    model_type: &'static str,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    head_dim: usize,
    hidden_act: &'static str,
    rms_norm_eps: f32,
    rope_theta: f32,
    max_position_embeddings: u32,
    vocab_size: usize,
    tie_word_embeddings: bool,
    attention_bias: bool,
    mlp_bias: bool,
    bos_token_id: Option<u32>,
    eos_token_id: u32,
    torch_dtype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantization: Option<Json>,
}

impl HfConfig {
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let file = gguf.path().display();
        let arch = gguf.get_str("general.architecture")?;
        let Some(&(model_type, class)) = ARCHITECTURES.iter().find(|(a, _)| *a == arch) else {
            bail!("{file}: architecture {arch:?} cannot be converted (only llama, qwen2, qwen3)");
        };
        let u = |key: &str| gguf.get_u32(&format!("{arch}.{key}")).map(|v| v as usize);
        let (hidden, n_head) = (u("embedding_length")?, u("attention.head_count")?);
        ensure!(
            n_head > 0 && hidden % n_head == 0,
            "{file}: {n_head} heads do not divide the hidden size {hidden}"
        );
        let head_dim = u("attention.key_length").unwrap_or(hidden / n_head);
        ensure!(
            head_dim % 2 == 0,
            "{file}: head_dim {head_dim} is odd, so RoPE cannot apply"
        );
        if let Ok(rope_dims) = u("rope.dimension_count") {
            ensure!(
                rope_dims == head_dim,
                "{file}: RoPE on {rope_dims} of {head_dim} dimensions is not supported"
            );
        }
        if let Ok(scaling) = gguf.get_str(&format!("{arch}.rope.scaling.type")) {
            ensure!(
                scaling == "none",
                "{file}: RoPE scaling {scaling:?} is not supported"
            );
        }
        let n_kv_head = u("attention.head_count_kv").unwrap_or(n_head);
        ensure!(
            n_kv_head > 0 && n_head % n_kv_head == 0,
            "{file}: {n_kv_head} KV heads do not divide {n_head} heads"
        );
        let vocab_size = match u("vocab_size") {
            Ok(n) => n,
            Err(_) => gguf.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        Ok(HfConfig {
            architectures: [class],
            model_type,
            hidden_size: hidden,
            intermediate_size: u("feed_forward_length")?,
            num_hidden_layers: u("block_count")?,
            num_attention_heads: n_head,
            num_key_value_heads: n_kv_head,
            head_dim,
            hidden_act: "silu",
            rms_norm_eps: gguf.get_f32(&format!("{arch}.attention.layer_norm_rms_epsilon"))?,
            rope_theta: gguf
                .get_f32(&format!("{arch}.rope.freq_base"))
                .unwrap_or(10_000.0),
            max_position_embeddings: gguf.get_u32(&format!("{arch}.context_length"))?,
            vocab_size,
            tie_word_embeddings: gguf.tensor("output.weight").is_err(),
            attention_bias: model_type == "qwen2",
            mlp_bias: false,
            bos_token_id: gguf.get_u32("tokenizer.ggml.bos_token_id").ok(),
            eos_token_id: gguf.get_u32("tokenizer.ggml.eos_token_id")?,
            torch_dtype: "float32",
            quantization: None,
        })
    }

    /// Fails with every tensor type of the file that cannot be dequantized, before any work.
    pub fn check_tensor_types(gguf: &Gguf) -> Result<()> {
        let mut unsupported: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for info in &gguf.tensors {
            if !dequant::SUPPORTED.contains(&info.ty) {
                unsupported
                    .entry(info.ty.to_string())
                    .or_default()
                    .push(&info.name);
            }
        }
        if unsupported.is_empty() {
            return Ok(());
        }
        let found: Vec<String> = unsupported
            .iter()
            .map(|(ty, names)| match names.as_slice() {
                [one] => format!("{ty} (1 tensor: {one})"),
                [first, ..] => format!("{ty} ({} tensors, e.g. {first})", names.len()),
                [] => ty.clone(),
            })
            .collect();
        let supported: Vec<String> = dequant::SUPPORTED.iter().map(|t| t.to_string()).collect();
        bail!(
            "{}: tensor types {} cannot be read; supported: {}. Pick a GGUF of one of these types \
             (e.g. the Q8_0 or F16 file of the model, or llama.cpp's `llama-quantize --pure` output)",
            gguf.path().display(),
            found.join(", "),
            supported.join(", ")
        )
    }
}

/// A GGUF tensor and what it becomes in HF layout.
struct Mapped<'a> {
    info: &'a TensorInfo,
    hf_name: String,
    /// q_proj and k_proj rows are stored permuted for llama.cpp's RoPE: their number of heads.
    unpermute_heads: Option<usize>,
}

/// Maps every GGUF tensor to its HF name, checking that the set and the shapes are what the
/// config says.
fn map_tensors<'a>(gguf: &'a Gguf, config: &HfConfig) -> Result<Vec<Mapped<'a>>> {
    let file = gguf.path().display();
    let (hidden, head_dim) = (config.hidden_size, config.head_dim);
    let (q_rows, kv_rows) = (
        config.num_attention_heads * head_dim,
        config.num_key_value_heads * head_dim,
    );
    let (inter, vocab) = (config.intermediate_size, config.vocab_size);

    let mut expected: HashMap<String, Vec<usize>> = HashMap::from([
        ("token_embd.weight".into(), vec![vocab, hidden]),
        ("output_norm.weight".into(), vec![hidden]),
    ]);
    if !config.tie_word_embeddings {
        expected.insert("output.weight".into(), vec![vocab, hidden]);
    }
    let (qwen2, qwen3) = (config.model_type == "qwen2", config.model_type == "qwen3");
    for layer in 0..config.num_hidden_layers {
        if qwen2 {
            for (kind, rows) in [("attn_q", q_rows), ("attn_k", kv_rows), ("attn_v", kv_rows)] {
                expected.insert(format!("blk.{layer}.{kind}.bias"), vec![rows]);
            }
        }
        if qwen3 {
            for kind in ["attn_q_norm", "attn_k_norm"] {
                expected.insert(format!("blk.{layer}.{kind}.weight"), vec![head_dim]);
            }
        }
        for (kind, shape) in [
            ("attn_norm", vec![hidden]),
            ("ffn_norm", vec![hidden]),
            ("attn_q", vec![q_rows, hidden]),
            ("attn_k", vec![kv_rows, hidden]),
            ("attn_v", vec![kv_rows, hidden]),
            ("attn_output", vec![hidden, q_rows]),
            ("ffn_gate", vec![inter, hidden]),
            ("ffn_up", vec![inter, hidden]),
            ("ffn_down", vec![hidden, inter]),
        ] {
            expected.insert(format!("blk.{layer}.{kind}.weight"), shape);
        }
    }

    let mut mapped = Vec::with_capacity(gguf.tensors.len());
    for info in &gguf.tensors {
        let shape = expected.remove(&info.name).with_context(|| {
            format!(
                "{file}: unexpected tensor {:?} for a {} model",
                info.name, config.model_type
            )
        })?;
        ensure!(
            info.shape() == shape,
            "{file}: tensor {:?} has shape {:?}, expected {shape:?} from the metadata",
            info.name,
            info.shape()
        );
        let (hf_name, unpermute_heads) = hf_name(&info.name, config);
        mapped.push(Mapped {
            info,
            hf_name,
            unpermute_heads,
        });
    }
    if let Some(missing) = expected.keys().min() {
        bail!(
            "{file}: tensor {missing:?} is missing ({} missing in all)",
            expected.len()
        );
    }
    Ok(mapped)
}

/// The HF name of a GGUF tensor name already checked by [`map_tensors`], and the heads to
/// unpermute (Llama's q and k only).
fn hf_name(name: &str, config: &HfConfig) -> (String, Option<usize>) {
    match name {
        "token_embd.weight" => ("model.embed_tokens.weight".into(), None),
        "output_norm.weight" => ("model.norm.weight".into(), None),
        "output.weight" => ("lm_head.weight".into(), None),
        _ => {
            let mut parts = name.split('.').skip(1);
            let (layer, kind, suffix) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let permuted = config.model_type == "llama";
            let (module, heads) = match kind {
                "attn_q" => ("self_attn.q_proj", Some(config.num_attention_heads)),
                "attn_k" => ("self_attn.k_proj", Some(config.num_key_value_heads)),
                "attn_v" => ("self_attn.v_proj", None),
                "attn_output" => ("self_attn.o_proj", None),
                "attn_q_norm" => ("self_attn.q_norm", None),
                "attn_k_norm" => ("self_attn.k_norm", None),
                "ffn_gate" => ("mlp.gate_proj", None),
                "ffn_up" => ("mlp.up_proj", None),
                "ffn_down" => ("mlp.down_proj", None),
                "attn_norm" => ("input_layernorm", None),
                _ => ("post_attention_layernorm", None),
            };
            let heads = heads.filter(|_| permuted);
            (format!("model.layers.{layer}.{module}.{suffix}"), heads)
        }
    }
}

/// Writes `config.json` and `model.safetensors` (every tensor dequantized to float32) into `dir`.
pub fn write_float32(
    gguf: &Gguf,
    config: &HfConfig,
    dir: &Path,
    progress: &ProgressBar,
) -> Result<()> {
    let mapped = map_tensors(gguf, config)?;
    progress.set_length(mapped.len() as u64);
    let mut tensors = Vec::with_capacity(mapped.len());
    for m in &mapped {
        progress.set_message(m.hf_name.clone());
        let values =
            dequant::dequantize(m.info.ty, gguf.tensor_data(m.info)).with_context(|| {
                format!(
                    "{}: tensor {:?} has type {}, which cannot be dequantized",
                    gguf.path().display(),
                    m.info.name,
                    m.info.ty
                )
            })?;
        let shape = m.info.shape();
        // A bias is one row of length 1 per output.
        let row_len = shape.iter().skip(1).product();
        let values = in_hf_row_order(values, m.unpermute_heads, row_len);
        tensors.push((
            m.hf_name.clone(),
            Tensor {
                shape,
                data: Data::F32(values),
            },
        ));
        progress.inc(1);
    }
    progress.set_message("writing model.safetensors");
    write_safetensors(&dir.join("model.safetensors"), tensors, "pt")?;
    write_json(&dir.join("config.json"), config)
}

/// Writes `config.json` and `model.safetensors` in MLX's quantized layout into `dir`: Q4_0 and Q4_1 matrices
/// as 4-bit and Q8_0 ones as 8-bit (group size 32, float16 scales and biases), norms in float32.
pub fn write_mlx_quantized(
    gguf: &Gguf,
    config: &HfConfig,
    dir: &Path,
    progress: &ProgressBar,
) -> Result<()> {
    let file = gguf.path().display();
    let mapped = map_tensors(gguf, config)?;
    progress.set_length(mapped.len() as u64);
    let mut tensors = Vec::with_capacity(3 * mapped.len());
    let mut quantization = json!({ "group_size": GROUP_SIZE, "bits": 4 });
    for m in &mapped {
        progress.set_message(m.hf_name.clone());
        let shape = m.info.shape();
        let bytes = gguf.tensor_data(m.info);
        if shape.len() == 1 {
            let values = dequant::dequantize(m.info.ty, bytes).with_context(|| {
                format!(
                    "{file}: tensor {:?} has type {}, which cannot be dequantized",
                    m.info.name, m.info.ty
                )
            })?;
            tensors.push((
                m.hf_name.clone(),
                Tensor {
                    shape,
                    data: Data::F32(values),
                },
            ));
            progress.inc(1);
            continue;
        }
        let packed = match m.info.ty {
            TensorType::Q4_0 => mlx_pack::pack_q4_0(bytes).with_context(|| format!("{file}: tensor {:?}", m.info.name))?,
            TensorType::Q4_1 => mlx_pack::pack_q4_1(bytes),
            TensorType::Q8_0 => mlx_pack::pack_q8_0(bytes).with_context(|| format!("{file}: tensor {:?}", m.info.name))?,
            ty => bail!("{file}: tensor {:?} is {ty}; the MLX quantized layout is made from Q4_0, Q4_1 or Q8_0 only", m.info.name),
        };
        let module = m.hf_name.trim_end_matches(".weight");
        if packed.bits != 4 {
            quantization[module] = json!({ "group_size": GROUP_SIZE, "bits": packed.bits });
        }
        let Packed {
            bits,
            weight,
            scales,
            biases,
        } = packed;
        let (rows, cols) = (shape[0], shape[1]);
        let (words_per_row, groups_per_row) = (cols * bits as usize / 32, cols / GROUP_SIZE);
        let weight = in_hf_row_order(weight, m.unpermute_heads, words_per_row);
        let scales = in_hf_row_order(scales, m.unpermute_heads, groups_per_row);
        let biases = in_hf_row_order(biases, m.unpermute_heads, groups_per_row);
        tensors.push((
            format!("{module}.weight"),
            Tensor {
                shape: vec![rows, words_per_row],
                data: Data::U32(weight),
            },
        ));
        tensors.push((
            format!("{module}.scales"),
            Tensor {
                shape: vec![rows, groups_per_row],
                data: Data::F16(scales),
            },
        ));
        tensors.push((
            format!("{module}.biases"),
            Tensor {
                shape: vec![rows, groups_per_row],
                data: Data::F16(biases),
            },
        ));
        progress.inc(1);
    }
    progress.set_message("writing model.safetensors");
    write_safetensors(&dir.join("model.safetensors"), tensors, "mlx")?;
    let config = HfConfig {
        quantization: Some(quantization),
        ..config.clone()
    };
    write_json(&dir.join("config.json"), &config)
}

/// Rows of `row_len` items, reordered from llama.cpp's q/k order to HF's when `heads` is given.
fn in_hf_row_order<T: Copy>(data: Vec<T>, heads: Option<usize>, row_len: usize) -> Vec<T> {
    match heads {
        Some(heads) => unpermute_rows(&data, heads, row_len),
        None => data,
    }
}

/// A tensor ready to be written.
struct Tensor {
    shape: Vec<usize>,
    data: Data,
}

enum Data {
    F32(Vec<f32>),
    F16(Vec<f16>),
    U32(Vec<u32>),
}

// safetensors stores little-endian numbers, which is how these hosts hold them in memory.
#[cfg(target_endian = "big")]
compile_error!("the model converter writes memory as little-endian safetensors");

impl View for &Tensor {
    fn dtype(&self) -> Dtype {
        match self.data {
            Data::F32(_) => Dtype::F32,
            Data::F16(_) => Dtype::F16,
            Data::U32(_) => Dtype::U32,
        }
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(match &self.data {
            Data::F32(v) => bytemuck::cast_slice(v),
            Data::F16(v) => bytemuck::cast_slice(v),
            Data::U32(v) => bytemuck::cast_slice(v),
        })
    }
    fn data_len(&self) -> usize {
        self.data().len()
    }
}

fn write_safetensors(path: &Path, tensors: Vec<(String, Tensor)>, format: &str) -> Result<()> {
    let metadata = HashMap::from([("format".to_string(), format.to_string())]);
    let views = tensors.iter().map(|(name, tensor)| (name.as_str(), tensor));
    safetensors::serialize_to_file(views, Some(metadata), path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // safetensors writes through a private (0600) temporary file; make it readable like the others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod fixture_tests;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use safetensors::SafeTensors;

    use super::*;
    use crate::test_gguf::Builder;

    const HIDDEN: u64 = 64;
    const HEAD_DIM: usize = 32;

    /// Deterministic, varied quantized blocks: Q4_1 (type 3) or Q8_0 (type 8).
    fn blocks(type_id: u32, n: usize, seed: u32) -> Vec<u8> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut byte = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        };
        let mut out = vec![];
        for k in 0..n {
            out.extend(f16::from_f32(0.01 * (k % 7 + 1) as f32).to_le_bytes());
            if type_id == 3 {
                out.extend(f16::from_f32(-0.1 * (k % 5) as f32).to_le_bytes());
                out.extend((0..16).map(|_| byte()));
            } else {
                out.extend((0..32).map(|_| byte()));
            }
        }
        out
    }

    /// A one-layer Llama: hidden 64, 2 heads and 1 KV head of dim 32, vocab 8.
    fn tiny_llama(k_rows: u64) -> Builder {
        let mut b = Builder::new()
            .str("general.architecture", "llama")
            .u32("llama.block_count", 1)
            .u32("llama.context_length", 128)
            .u32("llama.embedding_length", HIDDEN as u32)
            .u32("llama.feed_forward_length", 64)
            .u32("llama.attention.head_count", 2)
            .u32("llama.attention.head_count_kv", 1)
            .u32("llama.vocab_size", 8)
            .f32("llama.rope.freq_base", 10_000.0)
            .f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
            .u32("tokenizer.ggml.bos_token_id", 1)
            .u32("tokenizer.ggml.eos_token_id", 2)
            .tensor("token_embd.weight", &[HIDDEN, 8], 8, &blocks(8, 16, 0));
        let norm: Vec<u8> = (0..HIDDEN)
            .flat_map(|i| (1.0 + i as f32 / 64.0).to_le_bytes())
            .collect();
        for name in ["output_norm", "blk.0.attn_norm", "blk.0.ffn_norm"] {
            b = b.tensor(&format!("{name}.weight"), &[HIDDEN], 0, &norm);
        }
        let linears = [
            ("attn_q", 64),
            ("attn_k", k_rows),
            ("attn_v", 32),
            ("attn_output", 64),
            ("ffn_gate", 64),
            ("ffn_up", 64),
            ("ffn_down", 64),
        ];
        for (seed, (kind, rows)) in (1..).zip(linears) {
            b = b.tensor(
                &format!("blk.0.{kind}.weight"),
                &[HIDDEN, rows],
                3,
                &blocks(3, rows as usize * 2, seed),
            );
        }
        b
    }

    fn convert(builder: Builder) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let gguf = Gguf::parse(Path::new("tiny.gguf"), builder.build()).expect("valid GGUF");
        let config = HfConfig::from_gguf(&gguf).expect("llama config");
        let (float32, quantized) = (dir.path().join("f32"), dir.path().join("q"));
        for d in [&float32, &quantized] {
            std::fs::create_dir(d).expect("mkdir");
        }
        write_float32(&gguf, &config, &float32, &ProgressBar::hidden())
            .expect("float32 conversion");
        write_mlx_quantized(&gguf, &config, &quantized, &ProgressBar::hidden())
            .expect("MLX conversion");
        (dir, float32, quantized)
    }

    fn read<T, const N: usize>(
        st: &SafeTensors,
        name: &str,
        from_le_bytes: fn([u8; N]) -> T,
    ) -> Vec<T> {
        let view = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        view.data()
            .chunks_exact(N)
            .map(|b| from_le_bytes(b.try_into().expect("N bytes")))
            .collect()
    }

    fn floats(st: &SafeTensors, name: &str) -> Vec<f32> {
        read(st, name, f32::from_le_bytes)
    }

    #[test]
    fn float32_has_hf_names_and_unpermuted_q_rows() {
        let (_dir, float32, _) = convert(tiny_llama(32));
        let bytes = std::fs::read(float32.join("model.safetensors")).expect("read");
        let st = SafeTensors::deserialize(&bytes).expect("valid safetensors");
        let mut names = st.names();
        names.sort();
        assert_eq!(names.len(), 11, "{names:?}");
        assert_eq!(
            st.tensor("model.layers.0.self_attn.k_proj.weight")
                .expect("k")
                .shape(),
            [32, 64]
        );
        assert_eq!(
            st.tensor("model.embed_tokens.weight").expect("emb").shape(),
            [8, 64]
        );

        let gguf = Gguf::parse(Path::new("tiny.gguf"), tiny_llama(32).build()).expect("valid");
        let stored = dequant::dequantize(
            TensorType::Q4_1,
            gguf.tensor_data(gguf.tensor("blk.0.attn_q.weight").expect("q")),
        );
        let stored = stored.expect("Q4_1");
        let row = |data: &[f32], r: usize| data[r * 64..(r + 1) * 64].to_vec();
        let q = floats(&st, "model.layers.0.self_attn.q_proj.weight");
        // Within a head of dim 32, HF row a * 16 + b is stored at row 2b + a.
        for (hf, gguf_row) in [
            (0, 0),
            (1, 2),
            (15, 30),
            (16, 1),
            (17, 3),
            (31, 31),
            (32, 32),
            (48, 33),
        ] {
            assert_eq!(
                row(&q, hf),
                row(&stored, gguf_row),
                "HF q_proj row {hf} should be GGUF row {gguf_row}"
            );
        }

        let config: Json =
            serde_json::from_slice(&std::fs::read(float32.join("config.json")).expect("read"))
                .expect("json");
        assert_eq!(
            (
                config["head_dim"].as_u64(),
                config["num_key_value_heads"].as_u64()
            ),
            (Some(HEAD_DIM as u64), Some(1))
        );
        assert_eq!(config["tie_word_embeddings"], true);
    }

    #[test]
    fn mlx_quantized_dequantizes_to_the_float32_tensors_exactly() {
        let (_dir, float32, quantized) = convert(tiny_llama(32));
        let (f_bytes, q_bytes) = (
            std::fs::read(float32.join("model.safetensors")),
            std::fs::read(quantized.join("model.safetensors")),
        );
        let (f_bytes, q_bytes) = (f_bytes.expect("read"), q_bytes.expect("read"));
        let (f, q) = (
            SafeTensors::deserialize(&f_bytes).expect("valid"),
            SafeTensors::deserialize(&q_bytes).expect("valid"),
        );
        let config: Json =
            serde_json::from_slice(&std::fs::read(quantized.join("config.json")).expect("read"))
                .expect("json");
        assert_eq!(
            config["quantization"],
            json!({ "group_size": 32, "bits": 4, "model.embed_tokens": { "group_size": 32, "bits": 8 } })
        );

        for name in f.names() {
            let expected = floats(&f, name);
            let module = name.trim_end_matches(".weight");
            if q.tensor(&format!("{module}.scales")).is_err() {
                assert_eq!(floats(&q, name), expected, "{name} stays float32");
                continue;
            }
            let bits = if module == "model.embed_tokens" { 8 } else { 4 };
            let words = read(&q, name, u32::from_le_bytes);
            let scales = read(&q, &format!("{module}.scales"), f16::from_le_bytes);
            let biases = read(&q, &format!("{module}.biases"), f16::from_le_bytes);
            // MLX's affine dequantization: w = scale * q + bias, element j of a word in bits j*bits.
            let per_word = 32 / bits;
            let got: Vec<f32> = (0..expected.len())
                .map(|i| {
                    let value =
                        (words[i / per_word] >> (bits * (i % per_word))) & ((1 << bits) - 1);
                    let group = i / GROUP_SIZE;
                    scales[group].to_f32() * value as f32 + biases[group].to_f32()
                })
                .collect();
            assert_eq!(
                got, expected,
                "{module} ({bits}-bit) does not dequantize to the float32 tensor"
            );
        }
    }

    #[test]
    fn a_tensor_of_the_wrong_shape_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gguf = Gguf::parse(Path::new("tiny.gguf"), tiny_llama(64).build()).expect("valid GGUF");
        let config = HfConfig::from_gguf(&gguf).expect("llama config");
        let error = write_float32(&gguf, &config, dir.path(), &ProgressBar::hidden())
            .expect_err("k has 64 rows")
            .to_string();
        assert!(
            error.contains(
                "tiny.gguf: tensor \"blk.0.attn_k.weight\" has shape [64, 64], expected [32, 64]"
            ),
            "{error}"
        );
    }
}
