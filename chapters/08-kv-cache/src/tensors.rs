//! The tensors of a checkpoint as the week-2 model is built from them. Given.

use load::LoadError;
use mlx_rs::{ops, ops::indexing::IndexOp, Array};
use std::collections::{BTreeSet, HashMap};

/// A checkpoint's tensors by name, taken out one by one as the model is built.
pub struct Tensors(HashMap<String, Array>);

impl Tensors {
    pub fn new(tensors: HashMap<String, Array>) -> Self {
        Tensors(tensors)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Takes `name` out, checking its shape when `expected` is given.
    pub fn take(&mut self, name: &str, expected: Option<&[i32]>) -> Result<Array, LoadError> {
        let tensor = self
            .0
            .remove(name)
            .ok_or_else(|| LoadError::MissingTensor {
                name: name.to_string(),
            })?;
        match expected {
            Some(expected) if tensor.shape() != expected => Err(LoadError::WrongShape {
                name: name.to_string(),
                found: tensor.shape().to_vec(),
                expected: expected.to_vec(),
            }),
            _ => Ok(tensor),
        }
    }

    pub fn take_optional(
        &mut self,
        name: &str,
        expected: Option<&[i32]>,
    ) -> Result<Option<Array>, LoadError> {
        if self.contains(name) {
            self.take(name, expected).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Joins linear layers that read the same input (`parts`, like a layer's q, k and v
    /// projections) into one layer `joined`: each of their tensors (`.weight`, and `.bias`,
    /// `.scales`, `.biases` when present) is concatenated along its output rows. Each part is
    /// put back as a view of its rows, so the parts still load and run alone and share the
    /// joined layer's memory. One matmul then computes every part: fewer operations per step.
    ///
    /// Returns `false`, changing nothing, when the parts do not store the same tensors in the
    /// same dtypes (a checkpoint that quantized some of them, say).
    pub fn join_rows(&mut self, parts: &[&str], joined: &str) -> bool {
        let suffixes = |part: &str| -> BTreeSet<String> {
            let prefix = format!("{part}.");
            self.0
                .keys()
                .filter_map(|name| name.strip_prefix(&prefix).map(str::to_string))
                .collect()
        };
        let common = suffixes(parts[0]);
        let same_format = !common.is_empty()
            && parts.iter().all(|part| suffixes(part) == common)
            && common.iter().all(|suffix| {
                let dtype = self.0[&format!("{}.{suffix}", parts[0])].dtype();
                parts
                    .iter()
                    .all(|part| self.0[&format!("{part}.{suffix}")].dtype() == dtype)
            });
        if !same_format {
            return false;
        }
        let mut joined_tensors = Vec::new();
        for suffix in &common {
            let names: Vec<String> = parts
                .iter()
                .map(|part| format!("{part}.{suffix}"))
                .collect();
            let tensors: Vec<&Array> = names.iter().map(|name| &self.0[name]).collect();
            let Ok(whole) = ops::concatenate(&tensors, 0) else {
                return false; // widths differ: not one input
            };
            joined_tensors.push((suffix, names, whole));
        }
        for (suffix, names, whole) in joined_tensors {
            let mut start = 0;
            for name in names {
                let rows = self.0[&name].shape()[0];
                self.0.insert(name, whole.index(start..start + rows)); // a view of `whole`
                start += rows;
            }
            self.0.insert(format!("{joined}.{suffix}"), whole);
        }
        true
    }
}
