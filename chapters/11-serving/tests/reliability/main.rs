//! The server under hostile input, slow or vanishing clients and shutdown: every bad request is a
//! 4xx in OpenAI's error shape naming the problem, and the server keeps serving afterwards.
//!
//! These test given code (the guards, the listener, the request checks), so they live beside the
//! solution rather than in the chapter's tests, which must fail on the stubs; `cargo xtask
//! check-solutions` runs them with the platform tests. The model is the tiny Llama of
//! `models/fixtures/llama-tiny`; requests go to the router in-process, or over loopback TCP to
//! [`serve`] where the connection itself is under test.

mod api_additions;
mod api_key_and_cors;
mod bad_requests;
mod harness;
mod over_tcp;
