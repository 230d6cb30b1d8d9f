// size_t as on every 64-bit target the bridge supports (bindgen maps it to usize).
#pragma once
typedef unsigned long size_t;
