// Errors that reach the user. Every refusal in FlashCore is an fc::Error whose message is one line
// naming the cause (file, tensor, what was expected); apps/ prints it and exits with status 1.
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace fc {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws fc::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace fc
