//! Raw bindings to mlx-c 0.7.0, compiled against the MLX shared library of the official wheels.
//! mlx-rs is the API to use; see README.md for how MLX is found and built.
#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]

// bindings/<target>.rs, picked by the build script.
include!(env!("MLX_SYS_BINDINGS"));
