// backends/cuda/cuda_conv_search.cpp — the choice of each convolution's cuDNN algorithm at
// compile: cuDNN's heuristic order and timed search on operands aligned as the executable's,
// cuda_decisions::choose_algorithm's rules, and the instance's cache by shape and alignment.
#include <cudnn.h>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_library.h"
#include "backends/gpu/gpu_executable.h"

namespace parity {
namespace gpu {
namespace {

template <class Perf>
std::vector<plan::AlgoCandidate> candidates_of(const Perf* perf, int count) {
  std::vector<plan::AlgoCandidate> out;
  for (int i = 0; i < count; ++i)
    out.push_back({static_cast<int>(perf[i].algo), perf[i].status == CUDNN_STATUS_SUCCESS, perf[i].time,
                   static_cast<int64_t>(perf[i].memory), perf[i].determinism == CUDNN_DETERMINISTIC,
                   perf[i].mathType != CUDNN_FMA_MATH, perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION,
                   static_cast<int>(perf[i].mathType)});
  return out;
}

template <class Perf>
std::vector<int> order_of(const Perf* perf, int count) {
  std::vector<int> out;
  for (int i = 0; i < count; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS) out.push_back(static_cast<int>(perf[i].algo));
  return out;
}

// Chooses the algorithm of one convolution unless the instance has chosen for this shape and
// alignment already: cudnnFind*AlgorithmEx runs and times every algorithm on the operands with
// a workspace of the limit's size; cudnnGet*Algorithm_v7 gives cuDNN's heuristic ranking;
// cuda_decisions::choose_algorithm picks by the rules.
plan::AlgoChoice search_conv_algorithm(parity_backend_t b, plan::ConvDirection direction,
                                       const plan::ConvDescriptors& d, ConvKernel& set, const ConvOperands& at,
                                       void* workspace, const std::string& node_name) {
  const std::string key = plan::conv_cache_key(direction, d, b->options, at.alignment);
  if (auto it = b->algorithms.find(key); it != b->algorithms.end()) return it->second;
  // f32: FMA math unless TF32 is allowed, so the search returns only what the math type permits;
  // half: tensor-op math (plan::search_math_type). choose_algorithm then applies the rules per type.
  CUDA_CHECK(cudnnSetConvolutionMathType(set.conv,
                                         static_cast<cudnnMathType_t>(plan::search_math_type(d.element, b->options))));
  const size_t ws = static_cast<size_t>(b->options.conv_workspace_limit);
  std::vector<plan::AlgoCandidate> candidates;
  std::vector<int> heuristic;
  int returned = 0;
  if (direction == plan::ConvDirection::forward) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    CUDA_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(b->library->cudnn, set.x, set.w, set.conv, set.y,
                                                      CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf));
    heuristic = order_of(perf, returned);
    CUDA_CHECK(cudnnFindConvolutionForwardAlgorithmEx(b->library->cudnn, set.x, at.x, set.w, at.w, set.conv, set.y, at.y,
                                                      CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf, workspace, ws));
    candidates = candidates_of(perf, returned);
  } else if (direction == plan::ConvDirection::backward_data) {  // dy at at.y, dx at at.x
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(b->library->cudnn, set.w, set.y, set.conv, set.x,
                                                           CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf));
    heuristic = order_of(perf, returned);
    CUDA_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(b->library->cudnn, set.w, at.w, set.y, at.y, set.conv, set.x, at.x,
                                                           CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf,
                                                           workspace, ws));
    candidates = candidates_of(perf, returned);
  } else {  // dy at at.y, dw at at.w
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(b->library->cudnn, set.x, set.y, set.conv, set.w,
                                                             CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf));
    heuristic = order_of(perf, returned);
    CUDA_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(b->library->cudnn, set.x, at.x, set.y, at.y, set.conv, set.w, at.w,
                                                             CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf,
                                                             workspace, ws));
    candidates = candidates_of(perf, returned);
  }
  const plan::AlgoChoice choice =
      plan::choose_algorithm(candidates, heuristic, b->options, d.element, msg("node '", node_name, "' (", key, ")"));
  b->algorithms.emplace(key, choice);
  return choice;
}

}  // namespace

// The chosen algorithm's math type is set on the node's descriptor, whether searched now or before.
plan::AlgoChoice choose_conv_algorithm(parity_backend_t b, plan::ConvDirection direction,
                                       const plan::ConvDescriptors& d, ConvKernel& kernel, const ConvOperands& at,
                                       void* workspace, const std::string& node_name) {
  const plan::AlgoChoice choice = search_conv_algorithm(b, direction, d, kernel, at, workspace, node_name);
  CUDA_CHECK(cudnnSetConvolutionMathType(kernel.conv, static_cast<cudnnMathType_t>(choice.math_type)));
  return choice;
}


}  // namespace gpu
}  // namespace parity
