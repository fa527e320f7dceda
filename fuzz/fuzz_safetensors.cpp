// libFuzzer target: the safetensors header parser (model/safetensors.cpp) on arbitrary file bytes.
// Any input must either parse into tensors that lie inside the buffer or throw fc::Error; ASan/UBSan
// turn an out-of-bounds read or an overflow into a finding.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "model/llama_weights.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto tensors = fc::parse_safetensors("fuzz.safetensors", data, size);
    for (const auto& [name, info] : tensors) {
      // Touch every byte a tensor claims: a pointer outside the input shows up under ASan.
      if (info.nbytes > 0) {
        volatile unsigned char sink = info.data[0];
        sink = info.data[info.nbytes - 1];
        (void)sink;
      }
      try {
        fc::check_tensor_finite(info);
        if (info.numel() <= (1 << 16) && (info.dtype == fc::DType::F32 || info.dtype == fc::DType::F16 ||
                                          info.dtype == fc::DType::BF16)) {
          (void)fc::tensor_to_f32(info);
        }
      } catch (const fc::Error&) {
      }
    }
  } catch (const fc::Error&) {
  }
  return 0;
}
