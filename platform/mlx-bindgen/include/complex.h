// mlx-c spells its complex type float _Complex, built into C; nothing else is needed.
#pragma once
