#include "engine/cuda_parts.h"

namespace fc::cuda {

GraphCache::~GraphCache() {
  for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
}

void GraphCache::clear() {
  for (auto& [key, exec] : graphs_) CUDA_CHECK(cudaGraphExecDestroy(exec));
  graphs_.clear();
  seen_.clear();
}

bool GraphCache::replay(const Key& key, cudaStream_t s) {
  const auto it = graphs_.find(key);
  if (it == graphs_.end()) return false;
  CUDA_CHECK(cudaGraphLaunch(it->second, s));
  return true;
}

void GraphCache::run(const Key& key, cudaStream_t s, const std::function<void()>& launches) {
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    if (seen_.insert(key).second) {
      launches();
      return;
    }
    if (graphs_.size() >= kMaxGraphs) {
      for (auto& [k, exec] : graphs_) CUDA_CHECK(cudaGraphExecDestroy(exec));
      graphs_.clear();
    }
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    try {
      launches();
    } catch (...) {
      cudaStreamEndCapture(s, &graph);
      if (graph != nullptr) cudaGraphDestroy(graph);
      throw;
    }
    CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    CUDA_CHECK(status);
    it = graphs_.emplace(key, exec).first;
  }
  CUDA_CHECK(cudaGraphLaunch(it->second, s));
}

}  // namespace fc::cuda
