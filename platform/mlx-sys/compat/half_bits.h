// mlx-c declares its float16/bfloat16 accessors only on aarch64, where the C compiler has
// __fp16/__bf16. On other targets the bridge declares them over the raw 16-bit patterns,
// which is what mlx-rs reads anyway (`float16_t(u16)`, `bfloat16_t = u16`).
#pragma once
#include <stdint.h>
typedef uint16_t float16_t;
typedef uint16_t bfloat16_t;
#define HAS_FLOAT16
#define HAS_BFLOAT16
