// Helpers shared by the tests.
#pragma once
#include <string>

namespace fc::test {

inline std::string data_path(const std::string& relative) {
  return std::string(FC_TEST_DATA_DIR) + "/" + relative;
}

}  // namespace fc::test
