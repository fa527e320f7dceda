// libFuzzer target: the config.json parser (model/config.cpp). Any JSON must either give a Config or
// throw fc::Error; a JSON type error or an arithmetic overflow escaping is a finding.
#include <cstddef>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;  // load_config reports unparsable JSON before parse_config sees it
  try {
    const fc::Config config = fc::parse_config(j, "config.json");
    (void)config.parameter_count();
  } catch (const fc::Error&) {
  }
  return 0;
}
