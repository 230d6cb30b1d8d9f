//! A small reader for GGUF, llama.cpp's model file format (spec: ggml's `docs/gguf.md`).
//!
//! Layout, all little-endian: `"GGUF"`, version (u32), tensor count (u64), metadata count (u64), the
//! metadata key/values, the tensor infos (name, dims, type, offset), padding up to the alignment, then
//! the tensor data. Every count, length and offset read from the file is checked against what is left
//! of the file *before* anything is allocated for it, so a corrupt or hostile header gives an error
//! naming the file and the field instead of a huge allocation or a panic.

use std::{
    collections::{BTreeMap, HashSet},
    fmt,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// GGUF's default alignment of the tensor data, when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most 4 dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal; this bound keeps a hostile file from exhausting the stack.
const MAX_ARRAY_NESTING: usize = 8;

/// A parsed GGUF file: metadata, tensor infos, and the bytes the tensors point into.
pub struct Gguf {
    path: PathBuf,
    bytes: Vec<u8>,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Where the tensor data section starts (tensor offsets are relative to it).
    pub data_offset: u64,
}

/// A metadata value, one variant per GGUF value type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

/// The ggml tensor types this reader knows the block layout of (ids from ggml.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
}

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying (the row length); the reverse of the HF shape.
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// Relative to [`Gguf::data_offset`].
    pub offset: u64,
    pub n_bytes: u64,
}

/// An error reading a GGUF file: the file, and what is wrong with it.
#[derive(Debug, Error)]
#[error("GGUF file {}: {problem}", path.display())]
pub struct GgufError {
    pub path: PathBuf,
    pub problem: Problem,
}

#[derive(Debug, Error)]
pub enum Problem {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a GGUF file (it starts with {0:?}, expected \"GGUF\")")]
    BadMagic(Vec<u8>),
    #[error("GGUF version {0} is not supported (only versions 2 and 3)")]
    Version(u32),
    #[error(
        "truncated: {field} needs {need} bytes at offset {offset}, but the file has {file_size}"
    )]
    Truncated {
        field: String,
        offset: u64,
        need: u64,
        file_size: u64,
    },
    #[error("{field} claims {count} {unit}, more than the {left} bytes left in the file can hold")]
    TooLarge {
        field: String,
        count: u64,
        unit: &'static str,
        left: u64,
    },
    #[error("{field} is not valid UTF-8")]
    Utf8 { field: String },
    #[error("{field} has unknown value type {id}")]
    ValueType { field: String, id: u32 },
    #[error("{field} is a bool stored as {byte} (must be 0 or 1)")]
    Bool { field: String, byte: u8 },
    #[error("{field}: arrays nested more than {MAX_ARRAY_NESTING} deep")]
    Nesting { field: String },
    #[error("metadata key {0:?} appears twice")]
    DuplicateKey(String),
    #[error("tensor {0:?} appears twice")]
    DuplicateTensor(String),
    #[error("general.alignment must be a u32 power of two, got {0}")]
    Alignment(String),
    #[error("tensor {tensor:?} has unknown type id {id}")]
    TensorType { tensor: String, id: u32 },
    #[error("tensor {tensor:?} has {n_dims} dimensions (ggml allows 1 to {MAX_DIMS})")]
    Dims { tensor: String, n_dims: u32 },
    #[error("tensor {tensor:?} of type {ty} has dims {dims:?}: {why}")]
    Shape {
        tensor: String,
        ty: TensorType,
        dims: Vec<u64>,
        why: &'static str,
    },
    #[error("tensor {tensor:?} offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    #[error(
        "tensor {tensor:?} data [{start}, {end}) lies past the end of the file ({file_size} bytes)"
    )]
    OutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        file_size: u64,
    },
    #[error("metadata key {0:?} is missing")]
    MissingKey(String),
    #[error("metadata key {key:?} holds {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("tensor {0:?} is missing")]
    MissingTensor(String),
}

impl Gguf {
    /// Reads and parses the GGUF file at `path`.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let error = |problem| GgufError {
            path: path.to_path_buf(),
            problem,
        };
        let bytes = std::fs::read(path).map_err(|e| error(Problem::Io(e)))?;
        Self::parse(path, bytes).map_err(error)
    }

    /// Parses a whole GGUF file held in memory; `path` is only used to name it in errors.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, Problem> {
        let mut r = Reader {
            bytes: &bytes,
            pos: 0,
        };
        let magic = r.take(4, "header field magic")?;
        if magic != b"GGUF" {
            return Err(Problem::BadMagic(magic.to_vec()));
        }
        let version = r.u32("header field version")?;
        if !(2..=3).contains(&version) {
            return Err(Problem::Version(version));
        }
        let tensor_count = r.u64("header field tensor_count")?;
        let kv_count = r.u64("header field metadata_kv_count")?;
        // Smallest possible entries: key length + type + 1 byte; name length + n_dims + type + offset.
        r.check_count(
            kv_count,
            8 + 4 + 1,
            "header field metadata_kv_count",
            "metadata entries",
        )?;
        r.check_count(
            tensor_count,
            8 + 4 + 4 + 8,
            "header field tensor_count",
            "tensor infos",
        )?;

        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = r.string(&format!("metadata entry #{i} key"))?;
            let field = format!("metadata key {key:?}");
            let id = r.u32(&field)?;
            let value = r.value(id, &field, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(Problem::DuplicateKey(key));
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(other) => return Err(Problem::Alignment(format!("{other:?}"))),
        };

        let mut tensors = Vec::with_capacity(to_usize(tensor_count));
        let mut names = HashSet::new();
        for i in 0..tensor_count {
            let name = r.string(&format!("tensor #{i} name"))?;
            let field = format!("tensor {name:?}");
            let n_dims = r.u32(&format!("{field} n_dims"))?;
            if !(1..=MAX_DIMS).contains(&n_dims) {
                return Err(Problem::Dims {
                    tensor: name,
                    n_dims,
                });
            }
            let dims = (0..n_dims)
                .map(|_| r.u64(&format!("{field} dims")))
                .collect::<Result<Vec<_>, _>>()?;
            let id = r.u32(&format!("{field} type"))?;
            let ty = TensorType::from_id(id).ok_or_else(|| Problem::TensorType {
                tensor: name.clone(),
                id,
            })?;
            let offset = r.u64(&format!("{field} offset"))?;
            let n_bytes = tensor_bytes(&name, ty, &dims)?;
            if offset % alignment != 0 {
                return Err(Problem::Misaligned {
                    tensor: name,
                    offset,
                    alignment,
                });
            }
            if !names.insert(name.clone()) {
                return Err(Problem::DuplicateTensor(name));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                n_bytes,
            });
        }

        let file_size = bytes.len() as u64;
        let data_offset = (r.pos as u64).next_multiple_of(alignment);
        for t in &tensors {
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(_), Some(end)) if end <= file_size => {}
                _ => {
                    return Err(Problem::OutOfBounds {
                        tensor: t.name.clone(),
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        file_size,
                    })
                }
            }
        }
        Ok(Gguf {
            path: path.to_path_buf(),
            bytes,
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes of a tensor (bounds were checked when the file was parsed).
    pub fn tensor_data(&self, tensor: &TensorInfo) -> &[u8] {
        let start = to_usize(self.data_offset + tensor.offset);
        &self.bytes[start..start + to_usize(tensor.n_bytes)]
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| self.error(Problem::MissingTensor(name.into())))
    }

    pub fn get(&self, key: &str) -> Result<&Value, GgufError> {
        self.metadata
            .get(key)
            .ok_or_else(|| self.error(Problem::MissingKey(key.into())))
    }

    /// An integer metadata value of any integer type, if it fits in a u32.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        let value = self.get(key)?;
        value
            .as_i128()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| self.wrong_type(key, "an integer fitting u32", value))
    }

    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match self.get(key)? {
            Value::F32(v) => Ok(*v),
            other => Err(self.wrong_type(key, "f32", other)),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.get(key)? {
            Value::Bool(v) => Ok(*v),
            other => Err(self.wrong_type(key, "bool", other)),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.get(key)? {
            Value::String(s) => Ok(s),
            other => Err(self.wrong_type(key, "string", other)),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let value = self.get(key)?;
        let items = match value {
            Value::Array(items) => items,
            other => return Err(self.wrong_type(key, "array of strings", other)),
        };
        let strings = items.iter().map(|v| match v {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        });
        strings
            .collect::<Option<_>>()
            .ok_or_else(|| self.wrong_type(key, "array of strings", value))
    }

    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        let value = self.get(key)?;
        let items = match value {
            Value::Array(items) => items,
            other => return Err(self.wrong_type(key, "array of i32", other)),
        };
        let ints = items
            .iter()
            .map(|v| v.as_i128().and_then(|i| i32::try_from(i).ok()));
        ints.collect::<Option<_>>()
            .ok_or_else(|| self.wrong_type(key, "array of i32", value))
    }

    pub fn error(&self, problem: Problem) -> GgufError {
        GgufError {
            path: self.path.clone(),
            problem,
        }
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &Value) -> GgufError {
        self.error(Problem::WrongType {
            key: key.into(),
            expected,
            found: found.describe(),
        })
    }
}

impl Value {
    fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// A short description for error messages (arrays can hold 100k strings).
    fn describe(&self) -> String {
        match self {
            Value::String(s) if s.len() > 40 => format!("a string of {} bytes", s.len()),
            Value::Array(items) => format!("an array of {} items", items.len()),
            other => format!("{other:?}"),
        }
    }
}

impl TensorType {
    fn from_id(id: u32) -> Option<Self> {
        use TensorType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            15 => Q8K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block), from ggml's type traits.
    pub fn block(self) -> (u64, u64) {
        use TensorType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2K => (256, 84),
            Q3K => (256, 110),
            Q4K => (256, 144),
            Q5K => (256, 176),
            Q6K => (256, 210),
            Q8K => (256, 292),
        }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl TensorInfo {
    /// The shape in HF (row-major) order.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| to_usize(d)).collect()
    }
}

/// The size in bytes of a tensor's data, or why its dims cannot be right.
fn tensor_bytes(name: &str, ty: TensorType, dims: &[u64]) -> Result<u64, Problem> {
    let (block_elements, block_bytes) = ty.block();
    let shape_error = |why| Problem::Shape {
        tensor: name.into(),
        ty,
        dims: dims.to_vec(),
        why,
    };
    if !dims[0].is_multiple_of(block_elements) {
        return Err(shape_error(
            "the row length is not a multiple of the block size",
        ));
    }
    let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    elements
        .and_then(|n| (n / block_elements).checked_mul(block_bytes))
        .ok_or_else(|| shape_error("the size overflows 64 bits"))
}

/// Lengths are checked against the file before conversion, so they always fit in usize.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A cursor over the file's bytes whose every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, field: &str) -> Result<&'a [u8], Problem> {
        if n > self.left() {
            return Err(Problem::Truncated {
                field: field.into(),
                offset: self.pos as u64,
                need: n,
                file_size: self.bytes.len() as u64,
            });
        }
        let start = self.pos;
        self.pos += to_usize(n);
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], Problem> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N as u64, field)?);
        Ok(out)
    }

    fn u32(&mut self, field: &str) -> Result<u32, Problem> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &str) -> Result<u64, Problem> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// Fails unless `count` items of at least `min_size` bytes each fit in the rest of the file.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        field: &str,
        unit: &'static str,
    ) -> Result<(), Problem> {
        if count > self.left() / min_size {
            return Err(Problem::TooLarge {
                field: field.into(),
                count,
                unit,
                left: self.left(),
            });
        }
        Ok(())
    }

    fn string(&mut self, field: &str) -> Result<String, Problem> {
        let len = self.u64(field)?;
        if len > self.left() {
            return Err(Problem::TooLarge {
                field: format!("{field} (string length)"),
                count: len,
                unit: "bytes",
                left: self.left(),
            });
        }
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Problem::Utf8 {
            field: field.into(),
        })
    }

    fn value(&mut self, id: u32, field: &str, depth: usize) -> Result<Value, Problem> {
        Ok(match id {
            0 => Value::U8(u8::from_le_bytes(self.array(field)?)),
            1 => Value::I8(i8::from_le_bytes(self.array(field)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(field)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(field)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(field)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(field)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(field)?)),
            7 => match self.array::<1>(field)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                byte => {
                    return Err(Problem::Bool {
                        field: field.into(),
                        byte,
                    })
                }
            },
            8 => Value::String(self.string(field)?),
            9 => {
                if depth >= MAX_ARRAY_NESTING {
                    return Err(Problem::Nesting {
                        field: field.into(),
                    });
                }
                let item_id = self.u32(&format!("{field} (array item type)"))?;
                let count = self.u64(&format!("{field} (array length)"))?;
                let min_size = match item_id {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 4 + 8,
                    id => {
                        return Err(Problem::ValueType {
                            field: format!("{field} (array item)"),
                            id,
                        })
                    }
                };
                self.check_count(count, min_size, &format!("{field} (array length)"), "items")?;
                let mut items = Vec::with_capacity(to_usize(count));
                for _ in 0..count {
                    items.push(self.value(item_id, field, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(u64::from_le_bytes(self.array(field)?)),
            11 => Value::I64(i64::from_le_bytes(self.array(field)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(field)?)),
            id => {
                return Err(Problem::ValueType {
                    field: field.into(),
                    id,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_gguf::{array, string, Builder};

    fn parse(bytes: Vec<u8>) -> Result<Gguf, Problem> {
        Gguf::parse(Path::new("test.gguf"), bytes)
    }

    fn parse_err(bytes: Vec<u8>) -> String {
        match parse(bytes) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    fn every_value_type() -> Builder {
        Builder::new()
            .kv("u8", 0, &[200])
            .kv("i8", 1, &(-5i8).to_le_bytes())
            .kv("u16", 2, &60_000u16.to_le_bytes())
            .kv("i16", 3, &(-30_000i16).to_le_bytes())
            .kv("u32", 4, &4_000_000_000u32.to_le_bytes())
            .kv("i32", 5, &(-2_000_000_000i32).to_le_bytes())
            .kv("f32", 6, &1.5f32.to_le_bytes())
            .kv("bool", 7, &[1])
            .kv("string", 8, &string("héllo"))
            .kv(
                "strings",
                9,
                &array(8, &[string("a"), string(""), string("<|im_end|>")]),
            )
            .kv(
                "i32s",
                9,
                &array(
                    5,
                    &[(-1i32).to_le_bytes().to_vec(), 3i32.to_le_bytes().to_vec()],
                ),
            )
            .kv(
                "nested",
                9,
                &array(9, &[array(0, &[vec![1], vec![2]]), array(0, &[])]),
            )
            .kv("u64", 10, &u64::MAX.to_le_bytes())
            .kv("i64", 11, &i64::MIN.to_le_bytes())
            .kv("f64", 12, &0.1f64.to_le_bytes())
    }

    #[test]
    fn reads_every_value_type_and_arrays() {
        let gguf = parse(every_value_type().build()).expect("valid file");
        assert_eq!(gguf.version, 3);
        let m = &gguf.metadata;
        assert_eq!(m["u8"], Value::U8(200));
        assert_eq!(m["i8"], Value::I8(-5));
        assert_eq!(m["u16"], Value::U16(60_000));
        assert_eq!(m["i16"], Value::I16(-30_000));
        assert_eq!(m["u32"], Value::U32(4_000_000_000));
        assert_eq!(m["i32"], Value::I32(-2_000_000_000));
        assert_eq!(m["f32"], Value::F32(1.5));
        assert_eq!(m["bool"], Value::Bool(true));
        assert_eq!(m["string"], Value::String("héllo".into()));
        assert_eq!(m["u64"], Value::U64(u64::MAX));
        assert_eq!(m["i64"], Value::I64(i64::MIN));
        assert_eq!(m["f64"], Value::F64(0.1));
        assert_eq!(
            m["nested"],
            Value::Array(vec![
                Value::Array(vec![Value::U8(1), Value::U8(2)]),
                Value::Array(vec![])
            ])
        );
        assert_eq!(
            gguf.get_str_array("strings").expect("strings"),
            vec!["a", "", "<|im_end|>"]
        );
        assert_eq!(gguf.get_i32_array("i32s").expect("i32s"), vec![-1, 3]);
        assert_eq!(gguf.get_u32("u16").expect("u16 fits u32"), 60_000);
        assert_eq!(gguf.alignment, DEFAULT_ALIGNMENT);

        let error = gguf.get_u32("i8").expect_err("negative").to_string();
        assert!(
            error.contains("test.gguf") && error.contains("\"i8\"") && error.contains("u32"),
            "{error}"
        );
        let error = gguf.get_str("missing").expect_err("missing").to_string();
        assert!(error.contains("\"missing\" is missing"), "{error}");
    }

    #[test]
    fn tensors_are_located_after_the_aligned_header() {
        let q8: Vec<u8> = (0..34).collect();
        let bytes = Builder::new()
            .alignment(64)
            .tensor(
                "norm",
                &[3],
                0,
                &[1.0f32, 2.0, 3.0].map(f32::to_le_bytes).concat(),
            )
            .tensor("emb", &[32, 2], 8, &[q8.clone(), q8.clone()].concat())
            .build();
        let gguf = parse(bytes).expect("valid file");
        assert_eq!(gguf.alignment, 64);
        assert_eq!(gguf.data_offset % 64, 0);
        let emb = gguf.tensor("emb").expect("emb");
        assert_eq!(
            (emb.ty, emb.offset, emb.n_bytes, emb.shape()),
            (TensorType::Q8_0, 64, 68, vec![2, 32])
        );
        assert_eq!(gguf.tensor_data(emb), [q8.clone(), q8].concat());
        let norm = gguf.tensor("norm").expect("norm");
        assert_eq!(
            gguf.tensor_data(norm),
            [1.0f32, 2.0, 3.0].map(f32::to_le_bytes).concat()
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = every_value_type().tensor("t", &[4], 0, &[0; 16]).build();
        // The file ends with the tensor's 16 bytes and 16 bytes of padding to the alignment.
        let end_of_data = bytes.len() - 16;
        for len in 0..end_of_data {
            let error = parse_err(bytes[..len].to_vec());
            assert!(
                error.contains("truncated")
                    || error.contains("past the end")
                    || error.contains("claims"),
                "{len}: {error}"
            );
        }
        parse(bytes[..end_of_data].to_vec())
            .expect("the padding after the last tensor is optional");
        let error = parse_err(bytes[..end_of_data - 1].to_vec());
        assert!(
            error.contains("tensor \"t\" data") && error.contains("past the end"),
            "{error}"
        );
    }

    #[test]
    fn huge_counts_and_lengths_are_refused_before_allocating() {
        let mut huge_tensors = Builder::new();
        huge_tensors.n_tensors = u64::MAX;
        let error = parse_err(huge_tensors.build());
        assert!(
            error.contains("tensor_count claims 18446744073709551615 tensor infos"),
            "{error}"
        );

        let mut huge_kvs = Builder::new();
        huge_kvs.n_kv = 1 << 40;
        assert!(parse_err(huge_kvs.build()).contains("metadata_kv_count claims 1099511627776"));

        let huge_string = Builder::new().kv("name", 8, &(1u64 << 50).to_le_bytes());
        let error = parse_err(huge_string.build());
        assert!(
            error.contains("metadata key \"name\" (string length) claims 1125899906842624 bytes"),
            "{error}"
        );

        let huge_array = Builder::new().kv(
            "tokens",
            9,
            &[&8u32.to_le_bytes()[..], &u64::MAX.to_le_bytes()].concat(),
        );
        let error = parse_err(huge_array.build());
        assert!(
            error.contains("metadata key \"tokens\" (array length) claims"),
            "{error}"
        );

        let huge_dims = Builder::new().tensor_at("big", &[1 << 30, 1 << 20], 0, 0);
        let error = parse_err(huge_dims.build());
        assert!(
            error.contains("tensor \"big\"") && error.contains("past the end"),
            "{error}"
        );

        let overflowing = Builder::new().tensor_at("big", &[u64::MAX, 2], 0, 0);
        assert!(parse_err(overflowing.build()).contains("overflows"));
    }

    #[test]
    fn bad_offsets_and_headers_are_named() {
        let past_end =
            Builder::new()
                .tensor("a", &[8], 0, &[0; 32])
                .tensor_at("b", &[8], 0, 1 << 20);
        let error = parse_err(past_end.build());
        assert!(
            error.contains("tensor \"b\" data [") && error.contains("past the end of the file"),
            "{error}"
        );

        let misaligned = Builder::new().tensor_at("m", &[1], 0, 4);
        assert!(parse_err(misaligned.build())
            .contains("offset 4 is not a multiple of the alignment 32"));

        let mut bytes = Builder::new().build();
        bytes[0] = b'X';
        assert!(parse_err(bytes).contains("not a GGUF file"));

        let mut old = Builder::new();
        old.version = 1;
        assert!(parse_err(old.build()).contains("version 1 is not supported"));

        let unknown_type = Builder::new().kv("k", 13, &[]);
        assert!(parse_err(unknown_type.build()).contains("unknown value type 13"));

        let unknown_tensor_type = Builder::new().tensor_at("t", &[1], 99, 0);
        assert!(parse_err(unknown_tensor_type.build()).contains("unknown type id 99"));

        let ragged = Builder::new().tensor_at("q", &[31], 3, 0);
        assert!(parse_err(ragged.build()).contains("not a multiple of the block size"));

        let bad_alignment = Builder::new().kv("general.alignment", 4, &24u32.to_le_bytes());
        assert!(parse_err(bad_alignment.build())
            .contains("general.alignment must be a u32 power of two"));

        let mut deep = vec![];
        for _ in 0..20 {
            deep = array(9, &[deep]);
        }
        let deep = Builder::new().kv("deep", 9, &deep[12..]);
        assert!(parse_err(deep.build()).contains("nested more than"));
    }

    /// The fuzzer's seeds parse; the crash inputs `cargo xtask fuzz gguf` found (committed
    /// under fuzz/artifacts/gguf with their fix) are errors now, not panics.
    #[test]
    fn fuzz_seeds_parse_and_crash_inputs_are_errors() {
        let fuzz = crate::workspace_root().join("fuzz");
        let files = |folder: &str| -> Vec<std::path::PathBuf> {
            std::fs::read_dir(fuzz.join(folder).join("gguf"))
                .map(|entries| {
                    entries
                        .filter_map(|entry| Some(entry.ok()?.path()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let seeds = files("seeds");
        assert!(
            !seeds.is_empty(),
            "fuzz/seeds/gguf holds the fuzzer's seeds"
        );
        for seed in seeds {
            Gguf::open(&seed).unwrap_or_else(|error| panic!("the seed is valid: {error}"));
        }
        for input in files("artifacts") {
            let _ = Gguf::open(&input);
        }
    }

    #[test]
    fn open_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("broken.gguf");
        std::fs::write(&path, b"GGUF\x03\x00").expect("write");
        let error = Gguf::open(&path).err().expect("truncated").to_string();
        assert!(
            error.contains("broken.gguf") && error.contains("truncated: header field version"),
            "{error}"
        );
        let error = Gguf::open(&dir.path().join("absent.gguf"))
            .err()
            .expect("absent")
            .to_string();
        assert!(error.contains("absent.gguf: cannot read it"), "{error}");
    }
}
