// The one checking macro behind every CUDA / cuBLAS / cuBLASLt call, and the RAII owner of device memory
// (the only place that calls cudaMalloc / cudaFree).
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace fc {

using bf16 = __nv_bfloat16;

// Throw fc::Error "CUDA error <name> (<text>) in <call> at file:line".
[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);

#define CUDA_CHECK(call)                                                                 \
  do {                                                                                   \
    const cudaError_t fc_status_ = (call);                                               \
    if (fc_status_ != cudaSuccess) ::fc::throw_cuda_error(fc_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_CHECK(call)                                                                   \
  do {                                                                                       \
    const cublasStatus_t fc_status_ = (call);                                                \
    if (fc_status_ != CUBLAS_STATUS_SUCCESS) ::fc::throw_cublas_error(fc_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: launch-configuration errors now; with FC_DEBUG_SYNC defined, also the
// kernel's own faults (synchronizes, so debug builds only; launchers never synchronize otherwise).
#ifdef FC_DEBUG_SYNC
#define CUDA_CHECK_LAUNCH()                      \
  do {                                           \
    CUDA_CHECK(cudaGetLastError());              \
    CUDA_CHECK(cudaDeviceSynchronize());         \
  } while (0)
#else
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
#endif

// Owns `bytes` of device memory. Out of memory is an fc::Error saying what was asked, what is free and
// what the allocation was for.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes, const char* what = "buffer");
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Owns `bytes` of page-locked host memory (cudaHostAlloc): copies to and from it are real asynchronous
// DMA on the stream, never a staged synchronous copy.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Number of CUDA devices, 0 when there is no driver or no GPU (never throws).
int cuda_device_count();

// What the launchers ask of the current device, queried once per device and cached: cheap enough to
// call on every launch (the decode loop does, between graph replays).
struct DeviceLimits {
  int sms = 0;       // multiprocessors
  int cc_major = 0;  // compute capability
  int cc_minor = 0;
  // Programmatic dependent launch: an sm_90+ GPU and kernels compiled from sm_90 source for it (a
  // compute_80 image has no griddepcontrol: its kernels would neither wait nor let the next one in).
  bool pdl = false;
};
const DeviceLimits& current_device_limits();

// The GPU code this binary carries, as built (e.g. "sm_90a", "sm_80 sm_90a", "compute_80 (PTX)").
const char* cuda_build_targets();

// A launch configuration with programmatic stream serialization (PDL) when `pdl` and the device has it:
// the kernel may start while the previous kernel on the stream drains, and must griddepcontrol.wait
// before it reads that kernel's results. Keeps the attribute it points at.
struct LaunchConfig {
  cudaLaunchConfig_t config{};
  cudaLaunchAttribute attribute{};
  LaunchConfig(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl);
  LaunchConfig(const LaunchConfig&) = delete;
  LaunchConfig& operator=(const LaunchConfig&) = delete;
};

}  // namespace fc
