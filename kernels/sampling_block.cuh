// The sampler kernels the CUDA backend runs today: greedy argmax, and the seeded sampler of
// kernels/sampling.h with one block per row (penalties: on the host, engine/backend.cpp). They give way
// to the one-launch sampler of kernels/sampling.cuh (rows spread over many blocks, penalties on the
// device) once that one has run on a GPU (docs/PERFORMANCE.md, "Sampling"); then this file goes.
#pragma once
#include <cstdint>

#include "kernels/sampling.cuh"

namespace fc {

// Both accept vocab <= kMaxSamplingVocab (the final draw keeps 256 tile sums of 1024 tokens in shared memory).

// ids[r] = argmax(logits[r, :]), the first index on ties.   logits (rows, vocab) fp32; ids (rows) int32.
void argmax(const float* logits, int rows, int vocab, int32_t* ids, cudaStream_t stream);

// ids[r] = the sampler of kernels/sampling.h on logits[r, :] with params[r] and the draw
// sampling_random(params[r].seed, params[r].step). params (rows) on the device. vocab <= kMaxSamplingVocab.
// One block per row; the selection is radix select over the order keys, 8 bits per pass:
//   max pass; top-k: 4 passes of count histograms narrowing to the k-th largest key; top-p: one pass for
//   the top-k weight W_k, then 4 passes of (count, weight) histograms narrowing to the lowest kept key;
//   one pass of per-tile (1024 tokens) kept-weight sums; one warp then scans the tile sums and the one
//   tile that holds the draw. Each pass re-reads the row (L2-resident after the first).
// Measured per launch at vocab 128256 on an H200 (1 or 32 rows alike): greedy 13 us, plain or min-p
// 44-54 us, top-k 50: 79 us, top-k 40 + top-p 0.95 + min-p: 101 us, top-p 0.9 alone: 270 us. One block
// per row leaves the other SMs idle at batch 1; spreading a row over a cluster is the next step.
void sample_one_block_per_row(const float* logits, int rows, int vocab, const SamplingParams* params, int32_t* ids,
                              cudaStream_t stream);

}  // namespace fc
