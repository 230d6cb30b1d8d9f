//! The tensors of a checkpoint as the week-2 model is built from them. Given.

use load::LoadError;
use mlx_rs::Array;
use std::collections::HashMap;

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
}
