// mlx-c includes it for size_t.
#pragma once
#include <stddef.h>
