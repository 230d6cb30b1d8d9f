// __fp16 is built into clang on aarch64; the intrinsics this header declares are not bindings.
#pragma once
