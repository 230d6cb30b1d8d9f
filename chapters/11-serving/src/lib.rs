#[cfg(feature = "solution")]
pub use serving_solution::*;
