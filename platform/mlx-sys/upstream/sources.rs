//! Empty: this manifest exists only to make cargo fetch the mlx-c sources.
