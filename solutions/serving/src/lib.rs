//! Reference solution of week 2, chapter 11: an HTTP server in front of the scheduler. One engine
//! thread owns the model and runs continuous batching; request handlers talk to it through
//! channels.
mod engine;
mod guard;
mod listen;
mod metrics;
mod protocol;
mod server;
pub use engine::*;
pub use guard::*;
pub use listen::*;
pub use metrics::*;
pub use protocol::*;
pub use server::*;
// What the tests use alongside the server, from the chapters it builds on.
pub use continuous_batching_solution::{FinishReason, Model, SamplingParams, SchedulerConfig};
pub use decode_solution::{ContextPolicy, Tokenizer};
