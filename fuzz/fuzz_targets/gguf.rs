//! The GGUF reader on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    if let Ok(gguf) = tiny_llm_fuzz::parse_gguf(bytes) {
        // Every tensor the reader accepted lies inside the file.
        for tensor in &gguf.tensors {
            let _ = gguf.tensor_data(tensor);
        }
    }
});
