// mlx-c 0.7.0 formats a few error messages with std::format, which libstdc++ 12 (Debian 12,
// gcc 12) does not have. This header is force-included into every mlx-c source and only
// defines a minimal std::format, for "{}" placeholders, when the standard library lacks one.
#pragma once
#include <version>
#if __has_include(<format>)
#include <format>
#endif

#ifndef __cpp_lib_format
#include <sstream>
#include <string>
#include <string_view>

namespace std {
template <class... Args>
string format(string_view pattern, const Args&... args) {
  ostringstream out;
  size_t next = 0;
  auto put_one = [&](const auto& value) {
    size_t hole = pattern.find("{}", next);
    out << pattern.substr(next, hole - next) << value;
    next = hole == string_view::npos ? pattern.size() : hole + 2;
  };
  (put_one(args), ...);
  out << pattern.substr(min(next, pattern.size()));
  return out.str();
}
} // namespace std
#endif
