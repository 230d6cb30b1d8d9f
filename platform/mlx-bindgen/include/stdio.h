// mlx-c only passes FILE pointers on; an opaque FILE is all bindgen needs.
#pragma once
#include <stddef.h>
typedef struct FILE FILE;
