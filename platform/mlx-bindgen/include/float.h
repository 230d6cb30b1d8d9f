// mlx-c includes it but uses none of its macros.
#pragma once
