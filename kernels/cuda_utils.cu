#include "core/error.h"
#include "kernels/cuda_utils.cuh"

#include <mutex>
#include <string>

namespace fc {

namespace {

// "NVIDIA H200 (sm_90)" of the device current_device_limits() last described, for error messages (set
// before any kernel runs; read without a CUDA call, which could fail again after a launch failure).
std::string& described_device() {
  static std::string name;
  return name;
}

// Errors that mean a kernel could not run on this GPU as built: no image for it, PTX the driver cannot
// compile, or a kernel that died (a Hopper-only body compiled out traps rather than return garbage).
bool kernel_image_error(cudaError_t status) {
  return status == cudaErrorNoKernelImageForDevice || status == cudaErrorInvalidDeviceFunction ||
         status == cudaErrorUnsupportedPtxVersion || status == cudaErrorInvalidPtx ||
         status == cudaErrorLaunchFailure || status == cudaErrorIllegalInstruction;
}

// An sm_90 probe: whether the image loaded for this GPU carries the griddepcontrol instructions PDL needs.
__global__ void pdl_probe_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

}  // namespace

const char* cuda_build_targets() { return FC_CUDA_TARGETS; }

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  if (kernel_image_error(status) && !described_device().empty()) {
    fail("CUDA error {} ({}) in {} at {}:{}: the CUDA kernels in this build ({}) may not support {}; rebuild with "
         "-DFC_CUDA_ARCHS= naming this GPU's architecture (90a for H100/H200, 80 for A100, 86 / 89 for RTX 30xx "
         "/ 40xx and L4)",
         cudaGetErrorName(status), cudaGetErrorString(status), call, file, line, cuda_build_targets(),
         described_device());
  }
  fail("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(status), cudaGetErrorString(status), call, file,
       line);
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  fail("cuBLAS error {} ({}) in {} at {}:{}", cublasGetStatusName(status), cublasGetStatusString(status), call,
       file, line);
}

DeviceBuffer::DeviceBuffer(size_t bytes, const char* what) : bytes_(bytes) {
  if (bytes == 0) return;
  const cudaError_t status = cudaMalloc(&ptr_, bytes);
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // clear the sticky-free error state
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    ptr_ = nullptr;
    bytes_ = 0;
    fail("out of GPU memory: {} needs {:.2f} GiB, {:.2f} GiB free of {:.2f} GiB", what, bytes / 1073741824.0,
         free_bytes / 1073741824.0, total_bytes / 1073741824.0);
  }
  if (status != cudaSuccess) {
    ptr_ = nullptr;
    bytes_ = 0;
    throw_cuda_error(status, "cudaMalloc", __FILE__, __LINE__);
  }
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

PinnedBuffer::PinnedBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaHostAlloc(&ptr_, bytes, cudaHostAllocDefault));
}

PinnedBuffer::~PinnedBuffer() {
  if (ptr_ != nullptr) cudaFreeHost(ptr_);
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

const DeviceLimits& current_device_limits() {
  constexpr int kMaxDevices = 64;
  static DeviceLimits infos[kMaxDevices];
  static std::once_flag once[kMaxDevices];
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= kMaxDevices) fail("CUDA device {} is beyond the {} this build supports", device, kMaxDevices);
  std::call_once(once[device], [device] {
    DeviceLimits& d = infos[device];
    CUDA_CHECK(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&d.cc_major, cudaDevAttrComputeCapabilityMajor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&d.cc_minor, cudaDevAttrComputeCapabilityMinor, device));
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    described_device() = fmt::format("{} (sm_{}{})", prop.name, d.cc_major, d.cc_minor);
    cudaFuncAttributes probe{};
    if (cudaFuncGetAttributes(&probe, pdl_probe_kernel) != cudaSuccess) {
      (void)cudaGetLastError();  // no image for this GPU: nothing of ours will run (said at the first launch)
    }
    d.pdl = d.cc_major >= 9 && probe.ptxVersion >= 90 && probe.binaryVersion >= 90;
  });
  return infos[device];
}

LaunchConfig::LaunchConfig(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl) {
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = pdl && current_device_limits().pdl ? 1 : 0;
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

}  // namespace fc
