// backends/cuda/cuda_decisions.h — the CUDA plugin's decisions that need no device, kept apart from
// the device calls so the tests run them on the CPU (tests/test_cuda_decisions.cpp): the options
// (environment), where each op runs (cuDNN, cuBLAS or a native kernel) and why, the cuDNN
// descriptor parameters of a convolution node, the algorithm choice among cuDNN's measured
// candidates, the cuBLAS calls of the linear ops (row-major parity tensors as column-major
// GEMMs), the element types and math of half-precision (bf16, f16) convolutions and products and
// the f32 epilogues that keep ref's one rounding, the layout of the executable's one device arena,
// whether a step is captured as a CUDA graph, and what the probe says from the facts it gathered.
//
// Plain C++ (no CUDA header): compiled by g++ for the tests and into the plugin.
#pragma once

#include <stdint.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/native/plugin_support.h"
#include "parity/plugin.h"

namespace parity {
namespace cuda_decisions {

// A failure of a decision or a device call: the status and message an entry point returns.
using CudaError = native::PluginError;

// ---- options ---------------------------------------------------------------------------------
// The plugin ABI's config has no backend-specific options, so the CUDA plugin reads them from
// the environment when an instance is created (README, "The CUDA backend"):
//   PARITY_CUDA_TF32=1              allow TF32 tensor-core math in cuDNN and cuBLAS [0: full float32,
//                                   as the tolerance table assumes]
//   PARITY_CUDA_NONDETERMINISTIC=1  allow cuDNN algorithms whose result depends on scheduling [0]
//   PARITY_CUDA_GRAPHS=0            run each step node by node instead of replaying a captured
//                                   CUDA graph (for debugging) [1]
//   PARITY_CUDA_WORKSPACE_MB=N      the most workspace one convolution algorithm may use [256]
struct Options {
  bool tf32 = false;
  bool deterministic = true;
  bool graphs = true;
  int64_t conv_workspace_limit = int64_t{256} << 20;
};
using GetEnv = std::function<const char*(const char*)>;
// A value other than 0/1 (or a number of MiB in [0, 65536]) is a CudaError naming the variable.
Options options_from_env(const GetEnv& getenv);
std::string describe(const Options& options);  // "tf32 off, deterministic, graphs on, workspace 256 MiB"

// ---- element types (ABI 9: bf16 and f16 next to f32) ---------------------------------------------
// `parity train --precision bf16|fp16` runs CONV2D, LINEAR and their backwards on half operands
// with f32 accumulation (README, "Mixed precision training"): x, w, dy in one half dtype; the
// bias and db f32; y, dx, dw in the half dtype, each rounded once (round to nearest even) from
// the f32 result, the bias added in f32 before that rounding, as ref (float64, rounded once) and
// cpu (backends/cpu/half_nodes.cpp) compute them.
enum class ElementType { f32, bf16, f16 };
// PARITY_F32, PARITY_BF16, PARITY_F16; any other dtype is a CudaError naming `what`.
ElementType element_type_of(parity_dtype dtype, const std::string& what);
const char* element_type_name(ElementType t);  // "f32", "bf16", "f16"
// The vendor enums' values (this header includes no CUDA header; cuda_library.cpp checks each
// against cudnn.h, library_types.h and cublas_api.h):
//   cudnnDataType_t: CUDNN_DATA_FLOAT 0, CUDNN_DATA_HALF 2, CUDNN_DATA_BFLOAT16 9
//   cudaDataType:    CUDA_R_32F 0, CUDA_R_16F 2, CUDA_R_16BF 14
constexpr int cudnn_data_type(ElementType t) { return t == ElementType::f32 ? 0 : t == ElementType::f16 ? 2 : 9; }
constexpr int cuda_data_type(ElementType t) { return t == ElementType::f32 ? 0 : t == ElementType::f16 ? 2 : 14; }
// cublasComputeType_t CUBLAS_COMPUTE_32F and cublasGemmAlgo_t CUBLAS_GEMM_DEFAULT: every product
// accumulates in f32, half operands included (never CUBLAS_COMPUTE_32F_FAST_16F/16BF, which would
// round f32 operands, nor a 16-bit compute type); the default algorithm (cuBLAS picks tensor
// cores for half operands; CUBLAS_GEMM_DEFAULT_TENSOR_OP is deprecated and means the same).
constexpr int kCublasCompute32F = 68;
constexpr int kCublasGemmDefault = -1;
// The cuBLAS handle's math mode (cublasMath_t): CUBLAS_DEFAULT_MATH (0), or CUBLAS_TF32_TENSOR_OP_MATH
// (3) with PARITY_CUDA_TF32=1, always with CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION (16):
// a split-K GEMM writing a half C would otherwise be allowed to reduce its partial sums in the
// half type, rounding more than once.
int cublas_math_mode(const Options& options);
// cudnnMathType_t values.
enum class ConvMath : int { default_math = 0, tensor_op = 1, tensor_op_allow_conversion = 2, fma = 3 };

// ---- where each op runs ------------------------------------------------------------------------
enum class Library { cudnn, cublas, native };
// How the GPU executor builds (backends/gpu/gpu_compile.cpp) and launches (gpu_launch.cpp, then
// the target's routes: cuda_library.cpp here; HIP and the emulated device run every route on the
// native kernels) a node of the route.
enum class RouteKind {
  convolution,  // cuDNN convolution forward, backward data, backward filter (+ bias)
  activation,   // cuDNN activation forward over the value as one flat tensor
  softmax,      // cuDNN softmax forward or backward over the node's dim (softmax_descriptors)
  gemm,         // cuBLAS SGEMM/SGEMV calls of a linear op
  optimizer,    // native optimizer kernels reading their hyperparameters on the device
  batchnorm,    // cuDNN batch normalization (CUDNN_BATCHNORM_SPATIAL): training, inference, backward
  native,       // the native kernels through the dispatcher (the default)
  pooling,      // cuDNN pooling forward where it computes the ABI's windows (pooling_plan), else native
};
// The cuDNN activation of an `activation` route. The values are cudnnActivationMode_t's, so this
// header needs no cuDNN; cuda_library.cpp checks each against cudnn.h.
enum class Activation : int { sigmoid = 0, relu = 1, tanh = 2, clipped_relu = 3, elu = 4, identity = 5, swish = 6 };
// The cuDNN softmax algorithm and mode of a `softmax` route; the values are cudnnSoftmaxAlgorithm_t's
// and cudnnSoftmaxMode_t's (checked against cudnn.h in cuda_library.cpp).
enum class SoftmaxAlgorithm : int { fast = 0, accurate = 1, log = 2 };
enum class SoftmaxMode : int { instance = 0, channel = 1 };
struct Route {
  Library library;
  RouteKind kind;
  Activation activation;  // for RouteKind::activation
  const char* why;        // one line, for the README's table and `parity info`
  SoftmaxAlgorithm softmax = SoftmaxAlgorithm::accurate;  // for RouteKind::softmax
};
// Ops not listed in cuda_decisions.cpp run on the native kernels.
Route route_of(parity_op op);
// The route of one node: route_of(node.op), except where the node's params ask for what the
// op's library does not compute, which run on the native kernels: a convolution with asymmetric
// padding (cudnnSetConvolution2dDescriptor pads both sides alike), a batchnorm2d of the ONNX
// convention, the backward of evaluation. The overload below adds the rules for half values;
// the executor calls it through executor_route.
Route route_of(const parity_node_desc& node);
// The route of a node with its values' dtypes, which the CUDA executor builds every step by
// (executor_route). Where a node has half (bf16, f16) values:
//  - CONV2D with a bias runs on the native kernels: cuDNN's half convolutions write y in x's
//    dtype (PSEUDO_HALF_CONFIG / PSEUDO_BFLOAT16_CONFIG: the f32 accumulator is rounded to y's
//    dtype inside cuDNN), so the f32 bias could only be added after a first rounding; ref
//    rounds once after adding it, and the second rounding moves over a quarter of the outputs
//    by one ulp (NMSE ~8e-6 for bf16, ~1.2e-7 for f16, measured in tests/test_cuda_decisions.cpp),
//    above the ops' half tolerances (3e-6, 5e-8).
//  - CONV2D without a bias and the convolution backwards stay on cuDNN (conv_descriptors); the
//    linear ops stay on cuBLAS (linear_calls).
//  - the activation, pooling, softmax and batchnorm routes, whose cuDNN descriptors are f32,
//    take the native kernels (autocast runs relu and the poolings on half values).
Route route_of(const parity_node_desc& node, const std::vector<parity_value_desc>& values);
// The route the GPU executor (backends/gpu/gpu_compile.cpp) builds a node by. `half_on_library`:
// the target's library routes take half values as CUDA's do (CUDA, and the emulated device,
// which plans as CUDA and checks and emulates those calls): route_of(node, values). Otherwise
// (HIP, whose every route runs the native kernels) a node with a half value takes the native
// route outright, so that target's library code never sees half descriptors or half
// LinearCalls; f32 nodes route_of(node) on every target.
Route executor_route(const parity_node_desc& node, const std::vector<parity_value_desc>& values, bool half_on_library);


// ---- convolution descriptors ---------------------------------------------------------------------
// cuDNN takes int dimensions: every one is checked to fit.
struct Nchw {
  int n, c, h, w;
};
struct ConvDescriptors {
  Nchw x, w, y;  // input, filter (k, c, r, s as n, c, h, w), output; packed NCHW float
  Nchw bias;     // [1, K, 1, 1]
  int pad_h, pad_w, stride_h, stride_w;  // symmetric padding (route_of sends asymmetric to native)
  int dilation_h = 1, dilation_w = 1;
  int groups = 1;                        // cudnnSetConvolutionGroupCount; w.c = x.c / groups
  bool has_bias = true;                  // CONV2D with b, CONV2D_BWD_WEIGHT with db (ABI 5: optional)
  // The element type of x, w and y (dx, dw, dy): cuDNN's tensor and filter descriptors. The
  // convolution descriptor's compute type is always CUDNN_DATA_FLOAT: f32 has FLOAT_CONFIG,
  // half values PSEUDO_HALF_CONFIG / PSEUDO_BFLOAT16_CONFIG (f32 accumulation, one rounding to
  // the half dtype), never TRUE_HALF_CONFIG. The bias and db stay f32 [1,K,1,1].
  ElementType element = ElementType::f32;
  // CONV2D_BWD_WEIGHT with db on half dy: db = the sum of dy over N, H, W in f32 by
  // channel_sum_f32 (cuda_half_kernels.h), as cuDNN's backward bias writes db in dy's dtype.
  bool db_by_channel_sum = false;
};
// The math type set on a convolution descriptor before cuDNN's search: f32 FMA (full float32)
// unless PARITY_CUDA_TF32=1 (DEFAULT: TF32 allowed); half values TENSOR_OP (tensor cores on the
// half operands, f32 accumulation). Never ALLOW_CONVERSION.
ConvMath search_math_type(ElementType element, const Options& options);
// From a CONV2D, CONV2D_BWD_DATA or CONV2D_BWD_WEIGHT node: x [N,C,H,W] is the forward input
// (dx for BWD_DATA), w [K,C,R,S] the filter (dw for BWD_WEIGHT), y the forward output (dy for
// the backward ops). The output size must be cuDNN's, (H + 2 pad - dilation (R - 1) - 1) / stride + 1.
ConvDescriptors conv_descriptors(const parity_node_desc& node, const std::vector<parity_value_desc>& values);
// The key under which an instance caches the algorithm chosen for a convolution: direction,
// every descriptor parameter (the element type included), the options that restrict the choice, and the alignment of the
// operands (the largest power of two, up to 256, dividing every operand's address: some
// algorithms need 16 bytes, and the search runs on the real addresses).
enum class ConvDirection { forward, backward_data, backward_filter };
std::string conv_cache_key(ConvDirection direction, const ConvDescriptors& d, const Options& options, int alignment);
int address_alignment(int64_t offset);  // of base (256-aligned) + offset: 4, 8, ..., 256

// ---- batch normalization descriptors --------------------------------------------------------------
// cuDNN's spatial batch normalization of a BATCHNORM2D_TRAIN, _EVAL or _BWD node on its batchnorm
// route: x [N,C,H,W] (the scale, bias, mean and variance [1,C,1,1], derived from it), eps, and
// the running average factor (PyTorch's momentum, the weight of the batch: cuDNN's
// runningMean = newMean * factor + runningMean * (1 - factor), with the unbiased variance).
struct BatchnormDescriptors {
  Nchw x;
  double eps;
  double exponential_average_factor;
};
BatchnormDescriptors batchnorm_descriptors(const parity_node_desc& node, const std::vector<parity_value_desc>& values);

// ---- pooling descriptors -------------------------------------------------------------------------
// The cuDNN pooling mode of a pooling route. The values are cudnnPoolingMode_t's (checked in
// cuda_library.cpp).
enum class PoolingMode : int { max = 0, average_count_include_padding = 1, average_count_exclude_padding = 2 };
struct PoolingDescriptors {
  Nchw x, y;  // input and output, packed NCHW float
  int window_h, window_w, pad_h, pad_w, stride_h, stride_w;
  PoolingMode mode;
};
// A node of a pooling route (AVGPOOL2D, GLOBAL_AVGPOOL): cuDNN's descriptors when cuDNN's
// floor-mode average pooling computes exactly the ABI's windows and divisors, else native with
// the reason: a ceil_mode window hanging past the padded input (PyTorch counts the window
// clipped to it, cuDNN the whole window) or padding above half the kernel (windows entirely in
// padding, outside what PyTorch and cuDNN's pooling are documented for).
struct PoolingPlan {
  bool on_cudnn;
  PoolingDescriptors d;
  std::string why;  // why native, when not on cuDNN
};
PoolingPlan pooling_plan(const parity_node_desc& node, const std::vector<parity_value_desc>& values);

// ---- algorithm choice ------------------------------------------------------------------------
// One row of cudnnFind*AlgorithmEx's results: each algorithm run on the executable's own
// addresses and timed, listed by cuDNN fastest first.
struct AlgoCandidate {
  int algo;
  bool succeeded;          // status == CUDNN_STATUS_SUCCESS
  float time_ms;
  int64_t workspace_bytes;
  bool deterministic;      // determinism == CUDNN_DETERMINISTIC
  bool tensor_op_math;     // mathType is not CUDNN_FMA_MATH (may use tensor cores: TF32 for float)
  bool down_conversion;    // CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: may compute in half precision
  int math_type;           // the cudnnMathType_t to set on the descriptor when it is chosen
};
struct AlgoChoice {
  int algo;
  int64_t workspace_bytes;
  bool tensor_op_math;
  int math_type;
};
// Among the candidates that succeeded, fit the workspace limit, are deterministic unless the
// options allow otherwise, use FMA math unless TF32 is allowed and never down-convert:
//  - deterministic (the default): the first in `heuristic_order` (cudnnGet*Algorithm_v7's
//    order, which depends on the device, the cuDNN version and the shape, never on a timing),
//    so every process on the same machine picks the same algorithm and repeats bit for bit;
//  - otherwise the fastest measured.
// None: a CudaError that lists every candidate and why it was refused.
// The math rule depends on the operands' element type:
//  - f32: FMA math only, unless PARITY_CUDA_TF32=1 allows tensor-op (TF32) math;
//  - bf16, f16: tensor-op and FMA math alike, whatever PARITY_CUDA_TF32 says. Both accumulate
//    in f32 (the descriptor's compute type) on operands that are already half, so neither
//    have); and FMA kernels may be the only ones for some shapes (NVIDIA asks for channel counts
//    in multiples of 8 for half tensor-op kernels; seed-cnn's conv1 has C = 1), so refusing them
//    could refuse the node.
//  - every type: never ALLOW_CONVERSION (its kernels may convert operands to another type).
AlgoChoice choose_algorithm(const std::vector<AlgoCandidate>& candidates, const std::vector<int>& heuristic_order,
                            const Options& options, const std::string& what);  // f32 operands
AlgoChoice choose_algorithm(const std::vector<AlgoCandidate>& candidates, const std::vector<int>& heuristic_order,
                            const Options& options, ElementType element, const std::string& what);

// ---- softmax descriptors --------------------------------------------------------------------------
// A SOFTMAX, LOG_SOFTMAX or backward node's tensor as lanes [outer, k, inner] along its dim
// (ops/kernels/softmax.h), given to cuDNN as the packed NCHW tensor (outer, k, inner, 1):
// CHANNEL mode takes the softmax over C at every (n, h, w), which is every lane; rows
// (inner == 1, the [N,K] head) use INSTANCE mode, the softmax over C*H*W = k per n. The same
// descriptor serves x and y (dy and dx for the backward). The algorithm is the route's: ACCURATE
// (maximum subtracted) or LOG. cuDNN's backward takes y and dy, as the ABI's does.
struct SoftmaxDescriptors {
  Nchw x;
  SoftmaxAlgorithm algorithm;
  SoftmaxMode mode;
  bool backward;
};
// Sizes that do not fit int, a dim outside the value's rank or operands of differing sizes are
// a CudaError naming the node.
SoftmaxDescriptors softmax_descriptors(const parity_node_desc& node, const std::vector<parity_value_desc>& values);

// ---- linear ops as cuBLAS calls ----------------------------------------------------------------
// cuBLAS is column-major; a row-major [rows, cols] buffer is the column-major [cols, rows]
// matrix (its transpose), so each parity product is computed as its transpose:
//   LINEAR             y[N,O]  = x[N,I] w[O,I]^T  as  y^T  = w x^T     (after y^T = b 1^T)
//   LINEAR_BWD_DATA    dx[N,I] = dy[N,O] w[O,I]   as  dx^T = w^T dy^T
//   LINEAR_BWD_WEIGHT  dw[O,I] = dy^T x           as  dw^T = x^T dy,   db = dy^T 1 (a GEMV)
// Operands name parity values (staging: the arena's f32 GEMM staging region); a GEMM computes
// C = op(A) op(B) + beta C (alpha is 1) in f32: cublasSgemm when every operand is f32, else
// cublasGemmEx with the operands' cudaDataTypes, CUBLAS_COMPUTE_32F and CUBLAS_GEMM_DEFAULT.
enum class Operand { x, w, dy, y, dx, dw, bias, ones, db, staging };
struct GemmCall {
  bool transpose_a, transpose_b;
  int m, n, k;
  Operand a, b, c;
  int lda, ldb, ldc;
  float beta;
  ElementType a_type = ElementType::f32, b_type = ElementType::f32, c_type = ElementType::f32;
};
bool uses_gemm_ex(const GemmCall& call);  // any operand not f32
struct GemvCall {  // y = alpha op(A) x + beta y
  bool transpose_a;
  int m, n;        // A is m x n column-major
  Operand a, x, y;
  int lda;
  float beta;
};
// Half values only, after the GEMMs (the kernels of cuda_half_kernels.h), on tensors seen as
// [outer, channels, inner] (linear: [N, O, 1]; a convolution's: [N, K, H*W]):
struct RoundCall {  // y = round_to_element(acc + bias[c]) (bias optional), one rounding
  Operand acc, bias, y;
  bool has_bias;
  int64_t outer, channels, inner;
};
struct ChannelSumCall {  // db[c] = sum of dy[o, c, i] over o and i, in f32 (db f32, dy half)
  Operand dy, db;
  int64_t outer, channels, inner;
};
struct LinearCalls {
  ElementType element = ElementType::f32;  // of x, w, dy, y, dx, dw
  std::vector<GemmCall> gemms;  // in order
  std::vector<GemvCall> gemvs;
  std::vector<RoundCall> rounds;       // after the GEMMs
  std::vector<ChannelSumCall> sums;
  int64_t ones_count = 0;     // floats of the ones vector the calls read (0: none)
  int64_t staging_bytes = 0;  // of the f32 GEMM staging region they use (0: none)
};
// rows: the batch N; in, out: the weight's [out, in]. Sizes that do not fit int are a CudaError.
LinearCalls linear_forward_calls(int64_t rows, int64_t in, int64_t out);          // bias, then x w^T
LinearCalls linear_backward_data_calls(int64_t rows, int64_t in, int64_t out);    // dx = dy w
LinearCalls linear_backward_weight_calls(int64_t rows, int64_t in, int64_t out);  // dw = dy^T x, db = dy^T 1
// The calls of a LINEAR, LINEAR_BWD_DATA or LINEAR_BWD_WEIGHT node, its sizes and element type
// read from its values (the executor plans every linear step by this one and sizes the arena's
// GEMM staging from staging_bytes). f32: the calls above. Half (x, w, dy in one half
// dtype; bias and db f32):
//   LINEAR             staging [N,O] f32 = x w^T (GemmEx: A, B half, C f32), then
//                      y = round(staging + b) (RoundCall): the bias added in f32, one rounding,
//                      as ref. (cuBLAS's beta C cannot take an f32 bias into a half C without
//                      rounding the bias first, nor cublasLt's bias epilogue, whose bias vector
//                      has D's type for half D.)
//   LINEAR_BWD_DATA    dx = dy w (GemmEx, C half: cuBLAS rounds the f32 result once)
//   LINEAR_BWD_WEIGHT  dw = dy^T x (GemmEx, C half); db = column sums of dy in f32
//                      (ChannelSumCall: no half vector of ones to GEMV with, and GemmEx cannot
//                      mix a half A with an f32 B)
// Operands of mixed element types (an f16 w with a bf16 x), an f32 value where a half one is
// due, or a half bias/db are a CudaError naming the value.
LinearCalls linear_calls(const parity_node_desc& node, const std::vector<parity_value_desc>& values);

// ---- the executable's device arena ---------------------------------------------------------------
// One allocation per executable. INPUT values live in two slots, so the next batch can be
// copied in (on the copy stream) while the step that reads the other slot runs; TEMP values at
// the plan's offsets; then the workspaces, the f32 staging of half LINEARs (their GEMM's
// result before the bias and the one rounding), a vector of ones (bias GEMMs) and the optimizer
// nodes' hyperparameters (read on the device, so a captured step stays valid if they change).
struct ArenaRequest {
  int64_t plan_arena_bytes;           // the plan's suggested arena (TEMP values at their offsets)
  std::vector<int64_t> input_bytes;   // per INPUT value, in value order
  int64_t conv_workspace_bytes;       // the largest chosen algorithm's (the last region, so the
                                      // others' offsets do not depend on it)
  int64_t native_workspace_bytes;     // the native kernels' (softmax cross-entropy row terms)
  int64_t cublas_workspace_bytes;
  int64_t ones_count;                 // floats
  int64_t hyperparameter_bytes;
  int64_t gemm_staging_bytes = 0;     // the largest LinearCalls::staging_bytes (half LINEAR's f32 result)
};
struct ArenaLayout {
  int64_t plan_offset = 0;
  std::vector<int64_t> input_offsets;  // within a slot, per INPUT value
  int64_t slot_offset[2] = {0, 0};
  int64_t slot_bytes = 0;
  int64_t conv_workspace_offset = 0, native_workspace_offset = 0, cublas_workspace_offset = 0;
  int64_t cublas_workspace_bytes = 0;
  int64_t ones_offset = 0, hyperparameter_offset = 0;
  int64_t gemm_staging_offset = 0, gemm_staging_bytes = 0;
  int64_t total_bytes = 0;
};
constexpr int64_t kArenaAlignment = 256;  // cudaMalloc's alignment; every region starts on it
ArenaLayout layout_arena(const ArenaRequest& request);

// ---- graph capture --------------------------------------------------------------------------------
struct CaptureDecision {
  bool capture;
  std::string why;
};
// external_legacy_stream: the caller passed the legacy default stream (NULL / cudaStreamLegacy),
// on which capture is not allowed.
CaptureDecision decide_capture(const Options& options, bool external_legacy_stream, int32_t num_nodes);

// ---- the probe ------------------------------------------------------------------------------------
enum class DeviceCountStatus { ok, no_device, insufficient_driver, no_driver, other };
struct ProbeFacts {
  bool libcuda_loadable = false;
  std::string libcuda_error;           // dlerror() when it is not
  DeviceCountStatus count_status = DeviceCountStatus::other;
  std::string count_error_name;        // cudaGetErrorName of cudaGetDeviceCount's status
  int device_count = 0;
  int driver_version = 0;              // cudaDriverGetVersion (0: unknown); 12040 = 12.4
  int runtime_version = 0;             // CUDART_VERSION the plugin was built with
  struct Device {
    std::string name;
    int major, minor;
  };
  std::vector<Device> devices;
  struct Architecture {
    int sm;    // 80, 90, ...
    bool sass;  // machine code for it (CMake's "80" and "80-real")
    bool ptx;   // PTX for it, compiled for newer devices at load time ("80" and "80-virtual")
  };
  std::vector<Architecture> built_architectures;
  std::string cudnn_version;             // "9.19.0"
};
struct ProbeOutcome {
  parity_unavailable_reason reason;
  int usable_devices;
  std::string detail;
};
ProbeOutcome classify_probe(const ProbeFacts& facts);
// "13.0" from 13000.
std::string cuda_version_string(int version);
// Whether a device of compute capability major.minor runs the plugin: sm_XY machine code runs
// on devices of major X and minor >= Y; compute_XY PTX is compiled at load time for any device
// of capability >= XY.
bool device_can_run(int major, int minor, const std::vector<ProbeFacts::Architecture>& built);
// "80,90-real,100-virtual" (CMAKE_CUDA_ARCHITECTURES joined by commas) -> architectures.
std::vector<ProbeFacts::Architecture> parse_architectures(const std::string& list);

}  // namespace cuda_decisions
}  // namespace parity
