//! The safetensors header check on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = tiny_llm_fuzz::check_safetensors(bytes);
});
