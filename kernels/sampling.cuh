// Token selection on the GPU: the penalties, greedy argmax and the seeded sampler defined in
// kernels/sampling.h, in one kernel. Only the chosen ids (int32, on the device) leave it.
#pragma once
#include <cstdint>

#include "kernels/cuda_utils.cuh"
#include "kernels/sampling.h"

namespace fc {

// Largest vocabulary sample() accepts.
constexpr int kMaxSamplingVocab = 256 * 1024;

// The penalty histories a step reads: row r uses words + rows[r] * vocab (kernels/sampling.h's
// SamplingHistory), or none when rows[r] < 0; rows == nullptr: no row has one. A row with a penalty must
// have a history. `workspace`: kSampleWorkspaceBytes (kernels/sampling.h) of device scratch where rows
// spread over several blocks meet; zero it once before the first use (every launch leaves it zero).
struct SamplingHistory {
  uint32_t* words = nullptr;       // (slots, vocab)
  const int32_t* rows = nullptr;   // (rows) slot of each row, on the device
};


// ids[r] = the sampler of kernels/sampling.h (penalties, greedy or seeded draw) on logits[r, :] with
// params[r] and the draw sampling_random(params[r].seed, params[r].step); a row with a penalty then adds
// its id to its history. params (rows) on the device. vocab <= kMaxSamplingVocab.
// Few rows (a decode step's usual batch) are each spread over a group of blocks (up to one per SM at
// batch 1, each over a slice of ~1K tokens) that meet at barriers in `workspace` (a cooperative launch:
// all blocks resident); many rows take one block each. Each row is a radix select over the order keys,
// 8 bits per level: argmax; top-k: 4 levels of count histograms narrowing to the k-th largest key;
// top-p: 4 levels of (count, weight) histograms narrowing to the lowest kept key; then the kept weight
// per block, whose prefix sums find the block and the token holding the draw.
void sample(const float* logits, int rows, int vocab, const SamplingParams* params, SamplingHistory history,
            void* workspace, int32_t* ids, cudaStream_t stream);

}  // namespace fc
