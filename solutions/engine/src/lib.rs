//! What the engine's binaries share: `tiny-llm` (src/main.rs) and `bench` (src/bench/).

pub mod read_ahead;
