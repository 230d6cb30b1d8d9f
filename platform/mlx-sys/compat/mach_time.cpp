// mlx-rs seeds `RandomState::new` from macOS's mach_approximate_time. Elsewhere the bridge
// provides it from the monotonic clock, in nanoseconds.
#include <cstdint>
#include <ctime>

extern "C" uint64_t mach_approximate_time(void) {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return uint64_t(now.tv_sec) * 1000000000u + uint64_t(now.tv_nsec);
}
