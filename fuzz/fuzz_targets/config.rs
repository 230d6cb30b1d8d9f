//! `config.json` parsing on arbitrary text.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = tiny_llm_fuzz::parse_config(text);
    }
});
