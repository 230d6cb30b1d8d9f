//! Checking a safetensors file's header before MLX reads it. Given.
//!
//! Layout: an 8-byte little-endian header length `n`, `n` bytes of JSON (`{name: {dtype, shape,
//! data_offsets: [start, end]}}`, offsets relative to the data), then the data. MLX trusts the
//! header; a corrupt or hostile one (a length of terabytes, offsets past the end, a shape whose
//! size overflows) must be an error naming the file, never a huge allocation or a crash. Nothing
//! is allocated for the header before its length is checked against the file's size.

use crate::LoadError;
use safetensors::{tensor::Metadata, Dtype};
use std::{fs::File, io::Read, path::Path};

/// The largest header accepted (as the `safetensors` crate's own limit): 100 MB of JSON.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Checks the header of the safetensors file at `path`: its length, its JSON, each tensor's
/// dtype (one MLX reads), shape and offsets, and that the data ends where the file does.
pub fn check_safetensors(path: &Path) -> Result<(), LoadError> {
    let unreadable = |message: String| LoadError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let mut file = File::open(path).map_err(|error| unreadable(error.to_string()))?;
    let file_size = file
        .metadata()
        .map_err(|error| unreadable(error.to_string()))?
        .len();
    let mut length = [0u8; 8];
    file.read_exact(&mut length).map_err(|_| {
        unreadable(format!(
            "truncated: {file_size} bytes, too short for the 8-byte header length of a safetensors file"
        ))
    })?;
    let header_bytes = header_length(u64::from_le_bytes(length), file_size).map_err(unreadable)?;
    let mut header = vec![0u8; header_bytes];
    file.read_exact(&mut header)
        .map_err(|error| unreadable(format!("cannot read the header: {error}")))?;
    check_header(&header, file_size).map_err(unreadable)
}

/// The header's length, once it fits the file and the limit.
pub(crate) fn header_length(claimed: u64, file_size: u64) -> Result<usize, String> {
    let room = file_size.saturating_sub(8);
    if claimed > room || claimed > MAX_HEADER_BYTES {
        return Err(format!(
            "the header claims {claimed} bytes, but the file has {file_size} bytes (and headers are at most {MAX_HEADER_BYTES}): it is truncated or not a safetensors file"
        ));
    }
    usize::try_from(claimed).map_err(|_| format!("the header claims {claimed} bytes"))
}

/// Checks the JSON `header` of a file of `file_size` bytes (see [`check_safetensors`]). The
/// `safetensors` crate's parser already checks that the tensors' offsets follow each other from
/// 0 and that each span fits its shape and dtype (without overflow); what is left is the dtype
/// and that the last tensor ends where the file does.
pub(crate) fn check_header(header: &[u8], file_size: u64) -> Result<(), String> {
    let metadata: Metadata = serde_json::from_slice(header)
        .map_err(|error| format!("the header is not valid safetensors JSON: {error}"))?;
    let data_bytes = file_size.saturating_sub(8 + header.len() as u64);
    let mut end_of_data = 0u64;
    for (name, info) in metadata.tensors() {
        if !MLX_DTYPES.contains(&info.dtype) {
            return Err(format!(
                "tensor {name:?} has dtype {:?}, which this engine does not read",
                info.dtype
            ));
        }
        end_of_data = end_of_data.max(info.data_offsets.1 as u64);
    }
    if end_of_data > data_bytes {
        return Err(format!(
            "truncated: the tensors need {end_of_data} bytes of data, but the file holds {data_bytes}"
        ));
    }
    if end_of_data < data_bytes {
        return Err(format!(
            "the tensors end at byte {end_of_data} of the data, but the file holds {data_bytes} bytes of data"
        ));
    }
    Ok(())
}

/// The dtypes MLX's safetensors reader accepts.
const MLX_DTYPES: [Dtype; 13] = [
    Dtype::BOOL,
    Dtype::U8,
    Dtype::I8,
    Dtype::U16,
    Dtype::I16,
    Dtype::U32,
    Dtype::I32,
    Dtype::U64,
    Dtype::I64,
    Dtype::F16,
    Dtype::BF16,
    Dtype::F32,
    Dtype::C64,
];
