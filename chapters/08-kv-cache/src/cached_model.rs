//! A model with its cache, the state that generation keeps between steps. Given: your
//! `next_token_logits` in `src/generate.rs` runs it.

use crate::{KvCache, Model};

/// A [`Model`] with its cache: what chapter 6's `generate` drives in week 2.
///
/// Given; how it runs new tokens is yours (book: week 2, chapter 8 (the KV cache), task 5).
pub struct CachedModel<'a> {
    pub(crate) model: &'a Model,
    pub(crate) cache: Vec<KvCache>,
    /// The tokens whose keys and values the cache holds.
    pub(crate) seen: Vec<u32>,
}

impl<'a> CachedModel<'a> {
    pub fn new(model: &'a Model) -> Self {
        CachedModel {
            model,
            cache: model.new_cache(),
            seen: Vec::new(),
        }
    }

    /// The cache, one [`KvCache`] per layer.
    pub fn cache(&self) -> &[KvCache] {
        &self.cache
    }
}
