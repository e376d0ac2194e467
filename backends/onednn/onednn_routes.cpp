// backends/onednn/onednn_routes.cpp — which ops the onednn backend hands to oneDNN, why the
// others stay on cpu's kernels, the per-op table of `parity info --backend onednn`, and the
// backend's `parity info` line.
#include "backends/onednn/onednn_routes.h"

#include <dnnl.hpp>

#include <cstdlib>

#include <fmt/format.h>

namespace parity {
namespace onednn {

Route route_of(parity_op op) {
  switch (op) {
    case PARITY_OP_CONV2D:
    case PARITY_OP_CONV2D_BWD_DATA:
    case PARITY_OP_CONV2D_BWD_WEIGHT: return Route::conv2d;
    case PARITY_OP_LINEAR:
    case PARITY_OP_LINEAR_BWD_DATA:
    case PARITY_OP_LINEAR_BWD_WEIGHT: return Route::linear;
    case PARITY_OP_SIGMOID:
    case PARITY_OP_SIGMOID_BWD:
    case PARITY_OP_TANH:
    case PARITY_OP_TANH_BWD:
    case PARITY_OP_LEAKY_RELU:
    case PARITY_OP_GELU:
    case PARITY_OP_GELU_BWD: return Route::eltwise;
    case PARITY_OP_AVGPOOL2D:
    case PARITY_OP_AVGPOOL2D_BWD:
    case PARITY_OP_GLOBAL_AVGPOOL:
    case PARITY_OP_GLOBAL_AVGPOOL_BWD: return Route::avgpool;
    case PARITY_OP_BATCHNORM2D_EVAL:
    case PARITY_OP_BATCHNORM2D_BWD: return Route::batchnorm;
    case PARITY_OP_SOFTMAX_BWD: return Route::softmax;
    default: return Route::cpu;
  }
}

std::string cpu_reason(parity_op op) {
  switch (op) {
    case PARITY_OP_MAXPOOL2D:
    case PARITY_OP_MAXPOOL2D_BWD:
      return "the op's idx output (each window's first maximum, h*W+w), which MAXPOOL2D_BWD takes as an input, "
             "has no oneDNN counterpart (oneDNN keeps an opaque workspace), and oneDNN's max skips a NaN that "
             "the op lets win its window";
    case PARITY_OP_RELU: return "oneDNN 2.6's relu turns a NaN into 0; the op keeps it (torch.relu)";
    case PARITY_OP_HARDTANH: return "oneDNN 2.6's clip_v2 turns a NaN into min_val; the op keeps it";
    case PARITY_OP_LEAKY_RELU_BWD: return "oneDNN 2.6 passes dy where x is NaN; the op takes the slope branch there";
    case PARITY_OP_RELU_BWD:
    case PARITY_OP_HARDTANH_BWD:
      return "oneDNN's eltwise backward writes dy * 0, -0 for a negative dy, where the op writes +0, and its "
             "tolerance is bit equality";
    case PARITY_OP_BATCHNORM2D_TRAIN:
      return "oneDNN normalises with x minus the float32-rounded batch mean; the op subtracts a shift, then "
             "the correction, and keeps digits oneDNN loses on a large common offset (nmse 9.9e-9, limit 1e-11)";
    case PARITY_OP_SOFTMAX:
    case PARITY_OP_LOG_SOFTMAX:
      return "oneDNN 2.6's softmax_v2 gives a row holding a NaN or +inf zeros (log: -inf) around it; the op gives "
             "NaN there (torch)";
    case PARITY_OP_LOG_SOFTMAX_BWD:
      return "oneDNN 2.6's softmax_v2 (log) backward gives -inf where y is NaN; the op gives NaN";
    case PARITY_OP_SOFTMAX_XENT:
    case PARITY_OP_SOFTMAX_XENT_BWD: return "oneDNN has no cross-entropy primitive";
    case PARITY_OP_ARGMAX:
    case PARITY_OP_ACCURACY: return "oneDNN's reductions give values, not the index of the first maximum";
    case PARITY_OP_ADAM_STEP:
    case PARITY_OP_SGD_STEP: return "oneDNN has no optimizer primitives";
    case PARITY_OP_DROPOUT:
    case PARITY_OP_DROPOUT_BWD: return "the mask is parity's philox stream (plugin.h); oneDNN 2.6 has no dropout";
    case PARITY_OP_RESHAPE:
    case PARITY_OP_FILL:
    case PARITY_OP_SLICE:
    case PARITY_OP_CONCAT: return "a copy or a constant: no arithmetic to hand over";
    case PARITY_OP_ADD:
    case PARITY_OP_MUL:
    case PARITY_OP_REDUCE_SUM:
      return "not moved yet (oneDNN's binary and reduction primitives could run it)";
    case PARITY_OP_CLIP_COEF: return "one scalar: nothing for oneDNN to do";
    default: return route_of(op) == Route::cpu ? "no oneDNN primitive for this op in this backend" : "";
  }
}

const char* const kHalfReason =
    "bf16/f16 values run on the cpu backend's kernels (widened to f32, or gemm_bf16; rounded once), not oneDNN's "
    "half primitives";

std::vector<OpRoute> route_table() {
  std::vector<OpRoute> table;
  for (int i = 0; i < PARITY_OP_COUNT; ++i) {
    const parity_op op = static_cast<parity_op>(i);
    std::string runs_on;
    switch (route_of(op)) {
      case Route::conv2d:
        runs_on = op == PARITY_OP_CONV2D
                      ? "oneDNN convolution (blocked layouts, reordered at the node; a relu fused into it runs "
                        "after, on the host, as oneDNN's post-op would turn a NaN into 0)"
                      : "oneDNN convolution (blocked layouts, reordered at the node); cpu kernel where its dy is a "
                        "max-pool gradient (sparse-dy) or never written (pooled-gradient fusion)";
        break;
      case Route::linear: runs_on = "oneDNN inner_product"; break;
      case Route::eltwise:  // every shape: a flat vector
        runs_on = op == PARITY_OP_LEAKY_RELU ? "oneDNN eltwise (relu with the slope); cpu kernel for slope 0, "
                                               "which is relu (oneDNN turns its NaN into 0)"
                                             : "oneDNN eltwise";
        break;
      case Route::avgpool:
        runs_on = op == PARITY_OP_GLOBAL_AVGPOOL || op == PARITY_OP_GLOBAL_AVGPOOL_BWD
                      ? "oneDNN pooling (avg, one window over the whole plane)"
                      : "oneDNN pooling (avg); cpu kernel where a window holds no input element, or ceil_mode's "
                        "last window passes the padding with count_include_pad (torch's divisor differs there)";
        break;
      case Route::batchnorm:
        runs_on = op == PARITY_OP_BATCHNORM2D_EVAL
                      ? "oneDNN batch_normalization (the running statistics as use_global_stats)"
                      : "oneDNN batch_normalization backward (of TRAIN: saved_invstd turned back into the variance "
                        "oneDNN reads, before each run; of EVAL: use_global_stats)";
        break;
      case Route::softmax:
        runs_on = "oneDNN softmax_v2 backward; cpu kernel for the shapes where oneDNN offers only its reference "
                  "implementation";
        break;
      case Route::cpu: runs_on = "cpu kernel: " + cpu_reason(op); break;
    }
    // The routed ops whose rules accept bf16 and f16 values (ops/*.cpp, OpRule::half).
    const bool takes_half = route_of(op) == Route::conv2d || route_of(op) == Route::linear ||
                            op == PARITY_OP_LEAKY_RELU || op == PARITY_OP_AVGPOOL2D || op == PARITY_OP_AVGPOOL2D_BWD;
    if (takes_half) runs_on += std::string("; ") + kHalfReason;
    table.push_back({parity_op_name(op), runs_on});
  }
  return table;
}

std::string describe() {
  const dnnl_version_t* v = dnnl_version();
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  return fmt::format("float32: oneDNN {}.{}.{} (OpenMP) runs conv, linear, sigmoid/tanh/gelu, avg-pool, batch-norm "
                     "eval+bwd; max-pool, relu, softmax, bn training, losses, optimizers on cpu (info --backend "
                     "onednn: each op); OMP_WAIT_POLICY={}",
                     v->major, v->minor, v->patch, policy && *policy ? policy : "unset (spins, then sleeps)");
}

}  // namespace onednn
}  // namespace parity
