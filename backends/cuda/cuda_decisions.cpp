// backends/cuda/cuda_decisions.cpp — the CUDA plugin's device-free decisions (cuda_decisions.h says which).
#include "backends/cuda/cuda_decisions.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "backends/native/dispatch.h"  // msg, numel_of, shape_str, value_name
#include "ops/kernels/conv_geometry.h"
#include "ops/kernels/softmax.h"

namespace parity {
namespace cuda_decisions {

using native::msg;
using native::numel_of;
using native::shape_str;
using native::value_name;

namespace {

[[noreturn]] void fail(parity_status status, const std::string& message) { throw CudaError(status, message); }

int to_int(int64_t v, const std::string& what) {
  if (v < 0 || v > INT_MAX)
    fail(PARITY_STATUS_UNSUPPORTED, msg("cuda: ", what, " = ", v, " does not fit the int cuDNN and cuBLAS take"));
  return static_cast<int>(v);
}

bool flag_from_env(const GetEnv& getenv, const char* name, bool fallback) {
  const char* v = getenv(name);
  if (!v || !*v) return fallback;
  if (!std::strcmp(v, "1")) return true;
  if (!std::strcmp(v, "0")) return false;
  fail(PARITY_STATUS_INVALID_ARGUMENT, msg("cuda: ", name, "='", v, "' must be 0 or 1"));
}

int64_t align_up(int64_t bytes) { return (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment; }

}  // namespace

Options options_from_env(const GetEnv& getenv) {
  Options o;
  o.tf32 = flag_from_env(getenv, "PARITY_CUDA_TF32", o.tf32);
  o.deterministic = !flag_from_env(getenv, "PARITY_CUDA_NONDETERMINISTIC", !o.deterministic);
  o.graphs = flag_from_env(getenv, "PARITY_CUDA_GRAPHS", o.graphs);
  if (const char* mb = getenv("PARITY_CUDA_WORKSPACE_MB"); mb && *mb) {
    char* end = nullptr;
    const long long v = std::strtoll(mb, &end, 10);
    if (*end != '\0' || v < 0 || v > 65536)
      fail(PARITY_STATUS_INVALID_ARGUMENT,
           msg("cuda: PARITY_CUDA_WORKSPACE_MB='", mb, "' must be a whole number of MiB in [0, 65536]"));
    o.conv_workspace_limit = static_cast<int64_t>(v) << 20;
  }
  return o;
}

ElementType element_type_of(parity_dtype dtype, const std::string& what) {
  switch (dtype) {
    case PARITY_F32: return ElementType::f32;
    case PARITY_BF16: return ElementType::bf16;
    case PARITY_F16: return ElementType::f16;
    default: break;
  }
  fail(PARITY_STATUS_UNSUPPORTED, msg("cuda: ", what, " has dtype ", static_cast<int>(dtype),
                                      "; cuDNN and cuBLAS take it as f32, bf16 or f16 only"));
}

const char* element_type_name(ElementType t) {
  return t == ElementType::f32 ? "f32" : t == ElementType::bf16 ? "bf16" : "f16";
}

int cublas_math_mode(const Options& o) {
  constexpr int kDefaultMath = 0, kTf32TensorOpMath = 3, kDisallowReducedPrecisionReduction = 16;
  return (o.tf32 ? kTf32TensorOpMath : kDefaultMath) | kDisallowReducedPrecisionReduction;
}

ConvMath search_math_type(ElementType element, const Options& o) {
  if (element != ElementType::f32) return ConvMath::tensor_op;
  return o.tf32 ? ConvMath::default_math : ConvMath::fma;
}

bool uses_gemm_ex(const GemmCall& g) {
  return g.a_type != ElementType::f32 || g.b_type != ElementType::f32 || g.c_type != ElementType::f32;
}

std::string describe(const Options& o) {
  return msg("tf32 ", o.tf32 ? "on" : "off", ", ", o.deterministic ? "deterministic" : "nondeterministic allowed",
             ", graphs ", o.graphs ? "on" : "off", ", workspace ", o.conv_workspace_limit >> 20, " MiB");
}

Route route_of(parity_op op) {
  constexpr Activation none = Activation::identity;  // unused by routes other than activation
  switch (op) {
    case PARITY_OP_CONV2D:
    case PARITY_OP_CONV2D_BWD_DATA:
    case PARITY_OP_CONV2D_BWD_WEIGHT:
      return {Library::cudnn, RouteKind::convolution, none,
              "cuDNN convolution (legacy API), algorithm searched once per shape at compile"};
    case PARITY_OP_RELU:
      return {Library::cudnn, RouteKind::activation, Activation::relu, "cuDNN activation forward (RELU, NaN propagated)"};
    case PARITY_OP_SIGMOID:
      return {Library::cudnn, RouteKind::activation, Activation::sigmoid,
              "cuDNN activation forward (SIGMOID, NaN propagated)"};
    case PARITY_OP_TANH:
      return {Library::cudnn, RouteKind::activation, Activation::tanh, "cuDNN activation forward (TANH, NaN propagated)"};
    case PARITY_OP_SOFTMAX:
    case PARITY_OP_SOFTMAX_BWD:
      return {Library::cudnn, RouteKind::softmax, none,
              "cuDNN softmax forward/backward (ACCURATE: maximum subtracted; the dim as C), backward from the output",
              SoftmaxAlgorithm::accurate};
    case PARITY_OP_LOG_SOFTMAX:
    case PARITY_OP_LOG_SOFTMAX_BWD:
      return {Library::cudnn, RouteKind::softmax, none,
              "cuDNN softmax forward/backward (LOG; the dim as C), backward from the output", SoftmaxAlgorithm::log};
    // CONCAT and SLICE take the default (native) route: copies of contiguous image blocks.
    case PARITY_OP_LINEAR:
    case PARITY_OP_LINEAR_BWD_DATA:
    case PARITY_OP_LINEAR_BWD_WEIGHT:
      return {Library::cublas, RouteKind::gemm, none,
              "cuBLAS SGEMM (bias and its gradient as a GEMM and a GEMV with a ones vector)"};
    case PARITY_OP_ADAM_STEP:
    case PARITY_OP_SGD_STEP:
      return {Library::native, RouteKind::optimizer, none,
              "native: no optimizer in cuDNN; step and hyperparameters read on the device"};
    // Native by choice, with the reason cuDNN is not used:
    case PARITY_OP_RELU_BWD:
      return {Library::native, RouteKind::native, none,
              "native: cuDNN's backward needs the input and does not document relu'(0); "
              "the ABI fixes relu'(0) = 0 from the output"};
    case PARITY_OP_SIGMOID_BWD:
      return {Library::native, RouteKind::native, none,
              "native: cuDNN's backward also takes the forward input, which the ABI's "
              "backward (from the output) does not have"};
    case PARITY_OP_TANH_BWD:
      return {Library::native, RouteKind::native, none,
              "native: cuDNN's backward also takes the forward input, which the ABI's "
              "backward (from the output) does not have"};
    case PARITY_OP_BATCHNORM2D_TRAIN:
      return {Library::cudnn, RouteKind::batchnorm, none,
              "cuDNN batch normalization forward training (SPATIAL; PyTorch's running statistics, unbiased "
              "variance; the ONNX convention is native)"};
    case PARITY_OP_BATCHNORM2D_EVAL:
      return {Library::cudnn, RouteKind::batchnorm, none, "cuDNN batch normalization forward inference (SPATIAL)"};
    case PARITY_OP_BATCHNORM2D_BWD:
      return {Library::cudnn, RouteKind::batchnorm, none,
              "cuDNN batch normalization backward (SPATIAL) from the saved mean and inverse std; the "
              "backward of evaluation is native"};
    // LEAKY_RELU, GELU, HARDTANH and their backwards take the default (native) route below:
    // cuDNN's legacy activation API has no leaky relu or gelu, and its clipped relu clips to
    // [0, coef], which cannot express hardtanh's min_val.
    case PARITY_OP_MAXPOOL2D:
    case PARITY_OP_MAXPOOL2D_BWD:
      return {Library::native, RouteKind::native, none,
              "native: cuDNN pooling returns no argmax indices and breaks ties its own way; "
              "the ABI's backward takes the first maximum's index (and -1 for an empty window)"};
    case PARITY_OP_AVGPOOL2D:
      return {Library::cudnn, RouteKind::pooling, none,
              "cuDNN pooling forward (AVERAGE_COUNT_INCLUDE/EXCLUDE_PADDING) where its floor-mode windows are the "
              "ABI's (pooling_plan); ceil_mode overhang or padding above half the kernel: native"};
    case PARITY_OP_GLOBAL_AVGPOOL:
      return {Library::cudnn, RouteKind::pooling, none, "cuDNN pooling forward, one H x W average window per plane"};
    case PARITY_OP_AVGPOOL2D_BWD:
    case PARITY_OP_GLOBAL_AVGPOOL_BWD:
      return {Library::native, RouteKind::native, none,
              "native: cudnnPoolingBackward also takes the forward's x and y, which the ABI's backward "
              "(dy only) does not have"};
    case PARITY_OP_SOFTMAX_XENT:
    case PARITY_OP_SOFTMAX_XENT_BWD:
      return {Library::native, RouteKind::native, none,
              "native: cuDNN has softmax but no label gather, ignore_index or reduction (mean, sum, none); one "
              "fused kernel"};
    default:
      return {Library::native, RouteKind::native, none, "native element-wise or row kernel"};
  }
}

Route route_of(const parity_node_desc& node) {
  const bool convolution = node.op == PARITY_OP_CONV2D || node.op == PARITY_OP_CONV2D_BWD_DATA ||
                           node.op == PARITY_OP_CONV2D_BWD_WEIGHT;
  if (convolution && !kernels::conv2d_window(node.params.conv2d).symmetric())
    return {Library::native, RouteKind::native, Activation::identity,
            "native: asymmetric padding, which cuDNN's legacy convolution descriptor cannot express"};
  const Route route = route_of(node.op);
  const parity_batchnorm2d_params& p = node.params.batchnorm2d;
  if (node.op == PARITY_OP_BATCHNORM2D_TRAIN && p.convention != PARITY_BATCHNORM_PYTORCH)
    return {Library::native, RouteKind::native, route.activation,
            "native: cuDNN's running statistics are PyTorch's (its factor weighs the batch, its variance is "
            "unbiased); ONNX's weigh the old value and take the biased variance"};
  if (node.op == PARITY_OP_BATCHNORM2D_BWD && p.training == 0)
    return {Library::native, RouteKind::native, route.activation,
            "native: cuDNN's backward differentiates through the batch statistics; evaluation's statistics are "
            "constants"};
  return route;
}

namespace {
bool is_half(parity_dtype d) { return d == PARITY_BF16 || d == PARITY_F16; }
// Whether any of the node's values (that exist) is bf16 or f16.
bool touches_half(const parity_node_desc& node, const std::vector<parity_value_desc>& values) {
  auto half = [&](int32_t index) {
    return index >= 0 && index < static_cast<int32_t>(values.size()) && is_half(values[static_cast<size_t>(index)].dtype);
  };
  for (int32_t k = 0; k < node.num_inputs; ++k)
    if (half(node.inputs[k])) return true;
  for (int32_t k = 0; k < node.num_outputs; ++k)
    if (half(node.outputs[k])) return true;
  return false;
}
}  // namespace

Route route_of(const parity_node_desc& node, const std::vector<parity_value_desc>& values) {
  const Route route = route_of(node);
  if (route.library == Library::native || !touches_half(node, values)) return route;
  switch (route.kind) {
    case RouteKind::convolution:
      if (node.op == PARITY_OP_CONV2D && node.num_inputs == 3)
        return {Library::native, RouteKind::native, Activation::identity,
                "native: a half convolution with an f32 bias; cuDNN's half convolutions round y to x's dtype "
                "(PSEUDO_HALF/PSEUDO_BFLOAT16_CONFIG), so the bias would be added after a first rounding, "
                "where ref rounds once"};
      return route;
    case RouteKind::gemm:
      return route;
    default:
      return {Library::native, RouteKind::native, Activation::identity,
              "native: half values, and this route's cuDNN descriptors are f32"};
  }
}

Route executor_route(const parity_node_desc& node, const std::vector<parity_value_desc>& values, bool half_on_library) {
  if (half_on_library) return route_of(node, values);
  if (touches_half(node, values))
    return {Library::native, RouteKind::native, Activation::identity,
            "native: half values, on a target whose every route runs the native kernels"};
  return route_of(node);
}

PoolingPlan pooling_plan(const parity_node_desc& node, const std::vector<parity_value_desc>& values) {
  const bool global = node.op == PARITY_OP_GLOBAL_AVGPOOL;
  if (node.op != PARITY_OP_AVGPOOL2D && !global)
    fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' (", parity_op_name(node.op), ") is no pooling forward"));
  if (node.num_inputs < 1 || node.num_outputs < 1)
    fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' has no input or no output"));
  auto value = [&](int32_t index) -> const parity_value_desc& {
    if (index < 0 || index >= static_cast<int32_t>(values.size()))
      fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' refers to value ", index, ", outside [0, ",
                                       values.size(), ")"));
    return values[static_cast<size_t>(index)];
  };
  auto nchw = [&](const parity_value_desc& v) {
    if (v.rank != 4) fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': '", v.name, "' must have rank 4"));
    for (int i = 0; i < 4; ++i)
      if (v.dims[i] < 1 || v.dims[i] > INT32_MAX)
        fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': '", v.name, "' has a dimension cuDNN cannot take"));
    return Nchw{int(v.dims[0]), int(v.dims[1]), int(v.dims[2]), int(v.dims[3])};
  };
  PoolingPlan out{false, {}, ""};
  if (touches_half(node, values)) {  // the pooling descriptors are f32; the native kernels take half values
    out.why = "half values (cuDNN's pooling descriptors here are f32)";
    return out;
  }
  PoolingDescriptors& d = out.d;
  d.x = nchw(value(node.inputs[0]));
  d.y = nchw(value(node.outputs[0]));
  if (global) {
    d.window_h = d.stride_h = d.x.h;
    d.window_w = d.stride_w = d.x.w;
    d.pad_h = d.pad_w = 0;
    d.mode = PoolingMode::average_count_include_padding;  // no padding: both modes divide by H * W
  } else {
    const parity_avgpool2d_params& p = node.params.avgpool2d;
    d.window_h = p.kernel_h, d.window_w = p.kernel_w, d.stride_h = p.stride_h, d.stride_w = p.stride_w;
    d.pad_h = p.pad_h, d.pad_w = p.pad_w;
    d.mode = p.count_include_pad ? PoolingMode::average_count_include_padding
                                 : PoolingMode::average_count_exclude_padding;
    if (d.window_h < 1 || d.window_w < 1 || d.stride_h < 1 || d.stride_w < 1 || d.pad_h < 0 || d.pad_w < 0)
      fail(PARITY_STATUS_INVALID_ARGUMENT, msg("cuda: node '", node.name, "': kernel ", d.window_h, "x", d.window_w,
                                               " stride ", d.stride_h, "x", d.stride_w, " pad ", d.pad_h, "x", d.pad_w,
                                               " is no pooling window"));
    if (2 * d.pad_h > d.window_h || 2 * d.pad_w > d.window_w) {
      out.why = msg("padding ", d.pad_h, "x", d.pad_w, " is above half the kernel ", d.window_h, "x", d.window_w);
      return out;
    }
  }
  // cuDNN's output extent is the floor form's; every window of it ends inside the padded input,
  // so cuDNN's divisor (the whole window, or its input elements) is PyTorch's.
  const int floor_h = (d.x.h + 2 * d.pad_h - d.window_h) / d.stride_h + 1;
  const int floor_w = (d.x.w + 2 * d.pad_w - d.window_w) / d.stride_w + 1;
  if (d.x.h + 2 * d.pad_h < d.window_h || d.x.w + 2 * d.pad_w < d.window_w || d.y.n != d.x.n || d.y.c != d.x.c)
    fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': the window does not fit the input"));
  if (d.y.h != floor_h || d.y.w != floor_w) {
    out.why = msg("ceil_mode gives ", d.y.h, "x", d.y.w, " outputs, cuDNN's floor form ", floor_h, "x", floor_w);
    return out;
  }
  out.on_cudnn = true;
  return out;
}

ConvDescriptors conv_descriptors(const parity_node_desc& node, const std::vector<parity_value_desc>& values) {
  const bool bwd_data = node.op == PARITY_OP_CONV2D_BWD_DATA, bwd_weight = node.op == PARITY_OP_CONV2D_BWD_WEIGHT;
  if (node.op != PARITY_OP_CONV2D && !bwd_data && !bwd_weight)
    fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' is not a convolution"));
  // The fewest operands: bias and its gradient are optional (PARITY_OP_OPTIONAL_TRAILING).
  const int32_t need_in = 2, need_out = 1;
  if (node.num_inputs < need_in || node.num_outputs < need_out)
    fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' has ", node.num_inputs, " inputs and ",
                                     node.num_outputs, " outputs; the convolution needs ", need_in, " and ", need_out));
  auto value = [&](int32_t index) -> const parity_value_desc& {
    if (index < 0 || index >= static_cast<int32_t>(values.size()))
      fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' refers to value ", index, ", outside [0, ",
                                       values.size(), ")"));
    return values[static_cast<size_t>(index)];
  };
  const parity_value_desc& x = value(bwd_data ? node.outputs[0] : node.inputs[0]);
  const parity_value_desc& w = value(bwd_weight ? node.outputs[0] : node.inputs[1]);
  const parity_value_desc& y = value(node.op == PARITY_OP_CONV2D ? node.outputs[0] : node.inputs[bwd_data ? 0 : 1]);
  const ElementType element = element_type_of(x.dtype, msg("node '", node.name, "': value '", value_name(x), "'"));
  for (const parity_value_desc* v : {&x, &w, &y}) {
    if (v->rank != 4)
      fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': value '", value_name(*v), "' ",
                                    shape_str(v->rank, v->dims), " must have rank 4 (NCHW)"));
    if (element_type_of(v->dtype, msg("node '", node.name, "': value '", value_name(*v), "'")) != element)
      fail(PARITY_STATUS_UNSUPPORTED,
           msg("cuda: node '", node.name, "': value '", value_name(*v), "' is ",
               element_type_name(element_type_of(v->dtype, "")), " but '", value_name(x), "' is ",
               element_type_name(element), "; cuDNN's x, w and y descriptors take one element type"));
  }
  const parity_conv2d_params& p = node.params.conv2d;
  if (p.stride_h < 1 || p.stride_w < 1 || p.pad_h < 0 || p.pad_w < 0)
    fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': stride ", p.stride_h, "x", p.stride_w,
                                  " must be > 0 and padding ", p.pad_h, "x", p.pad_w, " >= 0"));
  if (p.dilation_h < 0 || p.dilation_w < 0 || p.groups < 0)
    fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': dilation ", p.dilation_h, "x", p.dilation_w,
                                  " and groups ", p.groups, " must be >= 0 (0 reads as 1)"));
  const kernels::Conv2dWindow window = kernels::conv2d_window(p);
  if (!window.symmetric())
    fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' has asymmetric padding, which route_of sends to "
                                     "the native kernels, not cuDNN"));
  auto nchw = [&](const parity_value_desc& v) {
    const std::string what = msg("dimension of '", value_name(v), "'");
    return Nchw{to_int(v.dims[0], what), to_int(v.dims[1], what), to_int(v.dims[2], what), to_int(v.dims[3], what)};
  };
  ConvDescriptors d{nchw(x), nchw(w), nchw(y), Nchw{1, 0, 1, 1}, p.pad_h, p.pad_w, p.stride_h, p.stride_w};
  d.bias.c = d.w.n;
  d.dilation_h = static_cast<int>(window.dilation_h), d.dilation_w = static_cast<int>(window.dilation_w);
  d.groups = static_cast<int>(window.groups);
  d.has_bias = node.op == PARITY_OP_CONV2D ? node.num_inputs == 3 : bwd_weight ? node.num_outputs == 2 : false;
  const int64_t out_h = kernels::conv2d_output_h(window, d.x.h, d.w.h);
  const int64_t out_w = kernels::conv2d_output_w(window, d.x.w, d.w.w);
  if (d.x.c % d.groups != 0 || d.w.n % d.groups != 0 || d.w.c != d.x.c / d.groups || d.y.n != d.x.n ||
      d.y.c != d.w.n || d.y.h != out_h || d.y.w != out_w ||
      int64_t{d.x.h} + 2 * int64_t{d.pad_h} < kernels::conv2d_kernel_span(d.w.h, d.dilation_h) ||
      int64_t{d.x.w} + 2 * int64_t{d.pad_w} < kernels::conv2d_kernel_span(d.w.w, d.dilation_w))
    fail(PARITY_STATUS_SHAPE,
         msg("cuda: node '", node.name, "': input ", shape_str(x.rank, x.dims), ", filter ", shape_str(w.rank, w.dims),
             " and output ", shape_str(y.rank, y.dims), " do not agree (stride ", d.stride_h, "x", d.stride_w,
             ", padding ", d.pad_h, "x", d.pad_w, ", dilation ", d.dilation_h, "x", d.dilation_w, ", groups ",
             d.groups, " gives an output of ", out_h, "x", out_w, ")"));
  d.element = element;
  if (d.has_bias) {  // CONV2D's b or BWD_WEIGHT's db: f32 whatever the convolution's element type
    const parity_value_desc& b = value(bwd_weight ? node.outputs[1] : node.inputs[2]);
    const char* what = bwd_weight ? "bias gradient '" : "bias '";
    if (numel_of(b) != d.w.n)
      fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': ", what, value_name(b), "' ",
                                    shape_str(b.rank, b.dims), " must have ", d.w.n, " elements"));
    if (b.dtype != PARITY_F32)
      fail(PARITY_STATUS_UNSUPPORTED, msg("cuda: node '", node.name, "': ", what, value_name(b),
                                          "' must be f32 (the bias of a half convolution stays f32)"));
  }
  if (element != ElementType::f32 && node.op == PARITY_OP_CONV2D && d.has_bias)
    fail(PARITY_STATUS_INTERNAL,
         msg("cuda: node '", node.name, "': a ", element_type_name(element), " convolution with an f32 bias, which "
             "route_of(node, values) sends to the native kernels: on cuDNN the bias would be added after y is rounded "
             "to ", element_type_name(element), " (the executor must route by route_of(node, values))"));
  d.db_by_channel_sum = element != ElementType::f32 && bwd_weight && d.has_bias;
  return d;
}

BatchnormDescriptors batchnorm_descriptors(const parity_node_desc& node, const std::vector<parity_value_desc>& values) {
  if (node.op != PARITY_OP_BATCHNORM2D_TRAIN && node.op != PARITY_OP_BATCHNORM2D_EVAL &&
      node.op != PARITY_OP_BATCHNORM2D_BWD)
    fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' is not a batch normalization"));
  const int32_t need_out = node.op == PARITY_OP_BATCHNORM2D_EVAL ? 1 : 3;
  if (node.num_inputs < 5 || node.num_outputs < need_out)
    fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' has ", node.num_inputs, " inputs and ",
                                     node.num_outputs, " outputs; the batch normalization needs 5 and ", need_out));
  auto value = [&](int32_t index) -> const parity_value_desc& {
    if (index < 0 || index >= static_cast<int32_t>(values.size()))
      fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' refers to value ", index, ", outside [0, ",
                                       values.size(), ")"));
    return values[static_cast<size_t>(index)];
  };
  const parity_value_desc& x = value(node.inputs[0]);
  if (x.rank != 4)
    fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': value '", value_name(x), "' ",
                                  shape_str(x.rank, x.dims), " must have rank 4 (NCHW)"));
  const std::string what = msg("dimension of '", value_name(x), "'");
  const Nchw d{to_int(x.dims[0], what), to_int(x.dims[1], what), to_int(x.dims[2], what), to_int(x.dims[3], what)};
  // The [C] operands: inputs 1-4 (gamma, beta or dy, ...), and the [C] outputs of TRAIN and BWD.
  std::vector<int32_t> channel_values;
  for (int32_t slot = node.op == PARITY_OP_BATCHNORM2D_BWD ? 2 : 1; slot < 5; ++slot)
    channel_values.push_back(node.inputs[slot]);
  if (need_out == 3) channel_values.insert(channel_values.end(), {node.outputs[1], node.outputs[2]});
  for (int32_t index : channel_values) {
    const parity_value_desc& v = value(index);
    if (numel_of(v) != d.c)
      fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': value '", value_name(v), "' ",
                                    shape_str(v.rank, v.dims), " must have C = ", d.c, " elements"));
  }
  for (int32_t index : {node.inputs[0], node.outputs[0]})
    if (value(index).dtype != PARITY_F32)
      fail(PARITY_STATUS_UNSUPPORTED, msg("cuda: node '", node.name, "': value '", value_name(value(index)),
                                          "' must be f32"));
  const parity_batchnorm2d_params& p = node.params.batchnorm2d;
  if (!(p.eps > 0.0f))
    fail(PARITY_STATUS_INVALID_ARGUMENT, msg("cuda: node '", node.name, "': eps must be > 0, got ", p.eps));
  return BatchnormDescriptors{d, static_cast<double>(p.eps), static_cast<double>(p.momentum)};
}

SoftmaxDescriptors softmax_descriptors(const parity_node_desc& node, const std::vector<parity_value_desc>& values) {
  const bool backward = node.op == PARITY_OP_SOFTMAX_BWD || node.op == PARITY_OP_LOG_SOFTMAX_BWD;
  const bool log = node.op == PARITY_OP_LOG_SOFTMAX || node.op == PARITY_OP_LOG_SOFTMAX_BWD;
  if (!backward && !log && node.op != PARITY_OP_SOFTMAX)
    fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' is not a softmax"));
  const int32_t need_in = backward ? 2 : 1;
  if (node.num_inputs < need_in || node.num_outputs < 1)
    fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' has ", node.num_inputs, " inputs and ",
                                     node.num_outputs, " outputs; the softmax needs ", need_in, " and 1"));
  auto value = [&](int32_t index) -> const parity_value_desc& {
    if (index < 0 || index >= static_cast<int32_t>(values.size()))
      fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' refers to value ", index, ", outside [0, ",
                                       values.size(), ")"));
    return values[static_cast<size_t>(index)];
  };
  const parity_value_desc& x = value(node.inputs[0]);
  const int dim = kernels::softmax_dim(node.params.softmax, x.rank);
  if (dim < 0)
    fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': dim ",
                                  node.params.softmax.has_dim ? node.params.softmax.dim : 1, " is outside the ", x.rank,
                                  " dims of value '", value_name(x), "'"));
  std::vector<const parity_value_desc*> operands{&x, &value(node.outputs[0])};
  if (backward) operands.push_back(&value(node.inputs[1]));
  for (const parity_value_desc* v : operands) {
    if (v->dtype != PARITY_F32)
      fail(PARITY_STATUS_UNSUPPORTED, msg("cuda: node '", node.name, "': value '", value_name(*v), "' must be f32"));
    if (numel_of(*v) != numel_of(x))
      fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': value '", value_name(*v), "' ",
                                    shape_str(v->rank, v->dims), " must have the ", numel_of(x), " elements of '",
                                    value_name(x), "'"));
  }
  const kernels::SoftmaxLanes l = kernels::softmax_lanes(x.dims, x.rank, dim);
  const std::string what = msg("dimension of '", value_name(x), "' seen as [outer, dim, inner]");
  (void)to_int(numel_of(x), msg("element count of '", value_name(x), "' (cuDNN's strides are int)"));
  return SoftmaxDescriptors{Nchw{to_int(l.outer, what), to_int(l.k, what), to_int(l.inner, what), 1},
                            log ? SoftmaxAlgorithm::log : SoftmaxAlgorithm::accurate,
                            l.inner == 1 ? SoftmaxMode::instance : SoftmaxMode::channel, backward};
}

int address_alignment(int64_t offset) {
  int alignment = 4;
  while (alignment < 256 && offset % (alignment * 2) == 0) alignment *= 2;
  return alignment;
}

std::string conv_cache_key(ConvDirection direction, const ConvDescriptors& d, const Options& o, int alignment) {
  const char* dir = direction == ConvDirection::forward ? "fwd" : direction == ConvDirection::backward_data ? "bwd_data"
                                                                                                            : "bwd_filter";
  return msg(dir, " x", d.x.n, ",", d.x.c, ",", d.x.h, ",", d.x.w, " w", d.w.n, ",", d.w.c, ",", d.w.h, ",", d.w.w,
             " pad", d.pad_h, ",", d.pad_w, " stride", d.stride_h, ",", d.stride_w, " dil", d.dilation_h, ",",
             d.dilation_w, " groups", d.groups, " ", element_type_name(d.element), o.tf32 ? " tf32" : " fma", o.deterministic ? " det" : " nondet", " ws",
             o.conv_workspace_limit, " align", alignment);
}

AlgoChoice choose_algorithm(const std::vector<AlgoCandidate>& candidates, const std::vector<int>& heuristic_order,
                            const Options& options, const std::string& what) {
  return choose_algorithm(candidates, heuristic_order, options, ElementType::f32, what);
}

AlgoChoice choose_algorithm(const std::vector<AlgoCandidate>& candidates, const std::vector<int>& heuristic_order,
                            const Options& options, ElementType element, const std::string& what) {
  const bool half = element != ElementType::f32;
  // The order of preference: cuDNN's heuristic order when the choice must not depend on a
  // timing (candidates it does not rank come after, by algorithm number), else the measured one.
  std::vector<AlgoCandidate> ordered = candidates;
  if (options.deterministic) {
    auto rank = [&](const AlgoCandidate& c) {
      const auto it = std::find(heuristic_order.begin(), heuristic_order.end(), c.algo);
      return std::make_pair(static_cast<int64_t>(it - heuristic_order.begin()), c.algo);
    };
    std::stable_sort(ordered.begin(), ordered.end(),
                     [&](const AlgoCandidate& a, const AlgoCandidate& b) { return rank(a) < rank(b); });
  }
  std::string refused;
  for (const AlgoCandidate& c : ordered) {
    const char* why = !c.succeeded                                       ? "failed or unsupported"
                      : c.workspace_bytes > options.conv_workspace_limit ? "needs more workspace than the limit"
                      : options.deterministic && !c.deterministic        ? "nondeterministic"
                      : c.down_conversion                                ? (half ? "may convert its operands to another type"
                                                                                         : "may convert to half precision")
                      : !half && !options.tf32 && c.tensor_op_math       ? "tensor-op (TF32) math"
                                                                         : nullptr;
    if (!why) return AlgoChoice{c.algo, c.workspace_bytes, c.tensor_op_math, c.math_type};
    refused += msg(refused.empty() ? "" : "; ", "algo ", c.algo, ": ", why, " (", c.workspace_bytes, " bytes)");
  }
  fail(PARITY_STATUS_UNSUPPORTED,
       msg("cuda: no cuDNN algorithm for ", what, " (", element_type_name(element), ") satisfies ", describe(options), ": ",
           refused.empty() ? std::string("cuDNN returned no candidate") : refused,
           " (PARITY_CUDA_WORKSPACE_MB, PARITY_CUDA_NONDETERMINISTIC=1 or PARITY_CUDA_TF32=1 widen the choice)"));
}

namespace {
struct LinearDims {
  int n, in, out;
};
LinearDims linear_dims(int64_t rows, int64_t in, int64_t out) {
  if (rows < 1 || in < 1 || out < 1)
    fail(PARITY_STATUS_SHAPE, msg("cuda: linear sizes must be >= 1: rows ", rows, ", in ", in, ", out ", out));
  return {to_int(rows, "linear batch"), to_int(in, "linear input features"), to_int(out, "linear output features")};
}
}  // namespace

LinearCalls linear_forward_calls(int64_t rows, int64_t in, int64_t out) {
  const LinearDims d = linear_dims(rows, in, out);
  LinearCalls calls;
  calls.ones_count = d.n;
  // y^T [O,N] = b [O,1] 1^T [1,N]
  calls.gemms.push_back({false, false, d.out, d.n, 1, Operand::bias, Operand::ones, Operand::y, d.out, 1, d.out, 0.0f});
  // y^T [O,N] += (w buffer: column-major [I,O])^T x buffer (column-major [I,N])
  calls.gemms.push_back({true, false, d.out, d.n, d.in, Operand::w, Operand::x, Operand::y, d.in, d.in, d.out, 1.0f});
  return calls;
}

LinearCalls linear_backward_data_calls(int64_t rows, int64_t in, int64_t out) {
  const LinearDims d = linear_dims(rows, in, out);
  LinearCalls calls;
  // dx^T [I,N] = w buffer (column-major [I,O]) dy buffer (column-major [O,N])
  calls.gemms.push_back({false, false, d.in, d.n, d.out, Operand::w, Operand::dy, Operand::dx, d.in, d.out, d.in, 0.0f});
  return calls;
}

LinearCalls linear_backward_weight_calls(int64_t rows, int64_t in, int64_t out) {
  const LinearDims d = linear_dims(rows, in, out);
  LinearCalls calls;
  // dw^T [I,O] = x buffer (column-major [I,N]) (dy buffer: column-major [O,N])^T
  calls.gemms.push_back({false, true, d.in, d.out, d.n, Operand::x, Operand::dy, Operand::dw, d.in, d.out, d.in, 0.0f});
  // db [O] = dy buffer (column-major [O,N]) 1 [N]
  calls.ones_count = d.n;
  calls.gemvs.push_back({false, d.out, d.n, Operand::dy, Operand::ones, Operand::db, d.out, 0.0f});
  return calls;
}

LinearCalls linear_calls(const parity_node_desc& node, const std::vector<parity_value_desc>& values) {
  const bool forward = node.op == PARITY_OP_LINEAR, bwd_data = node.op == PARITY_OP_LINEAR_BWD_DATA,
             bwd_weight = node.op == PARITY_OP_LINEAR_BWD_WEIGHT;
  if (!forward && !bwd_data && !bwd_weight)
    fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' is not a linear op"));
  const int32_t need_in = forward ? 3 : 2, need_out = bwd_weight ? 2 : 1;
  if (node.num_inputs < need_in || node.num_outputs < need_out)
    fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' has ", node.num_inputs, " inputs and ",
                                     node.num_outputs, " outputs; the linear op needs ", need_in, " and ", need_out));
  auto value = [&](int32_t index) -> const parity_value_desc& {
    if (index < 0 || index >= static_cast<int32_t>(values.size()))
      fail(PARITY_STATUS_INTERNAL, msg("cuda: node '", node.name, "' refers to value ", index, ", outside [0, ",
                                       values.size(), ")"));
    return values[static_cast<size_t>(index)];
  };
  // x [N,I] (dx for BWD_DATA), w [O,I] (dw for BWD_WEIGHT), the [N,O] one (y, or dy), and the f32 [O] one.
  const parity_value_desc& x = value(bwd_data ? node.outputs[0] : node.inputs[0]);
  const parity_value_desc& w = value(bwd_weight ? node.outputs[0] : node.inputs[1]);
  const parity_value_desc& y = value(forward ? node.outputs[0] : bwd_data ? node.inputs[0] : node.inputs[1]);
  if (w.rank != 2)
    fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': weight '", value_name(w), "' ",
                                  shape_str(w.rank, w.dims), " must have rank 2 [out, in]"));
  const int64_t out = w.dims[0], in = w.dims[1];
  if (in < 1 || numel_of(x) % in != 0 || numel_of(y) != numel_of(x) / in * out)
    fail(PARITY_STATUS_SHAPE, msg("cuda: node '", node.name, "': '", value_name(x), "' ", shape_str(x.rank, x.dims),
                                  " and '", value_name(y), "' ", shape_str(y.rank, y.dims),
                                  " are not [N, in] and [N, out] for weight ", shape_str(w.rank, w.dims)));
  const int64_t rows = numel_of(x) / in;
  const ElementType element = element_type_of(x.dtype, msg("node '", node.name, "': value '", value_name(x), "'"));
  for (const parity_value_desc* v : {&w, &y})
    if (element_type_of(v->dtype, msg("node '", node.name, "': value '", value_name(*v), "'")) != element)
      fail(PARITY_STATUS_UNSUPPORTED,
           msg("cuda: node '", node.name, "': value '", value_name(*v), "' is ", element_type_name(element_type_of(v->dtype, "")),
               " but '", value_name(x), "' is ", element_type_name(element), "; a product takes one element type"));
  if (!bwd_data) {  // the bias or db: f32, [out]
    const parity_value_desc& b = value(forward ? node.inputs[2] : node.outputs[1]);
    if (numel_of(b) != out || b.dtype != PARITY_F32)
      fail(PARITY_STATUS_UNSUPPORTED, msg("cuda: node '", node.name, "': ", forward ? "bias '" : "bias gradient '",
                                          value_name(b), "' ", shape_str(b.rank, b.dims), " must be f32 with ", out,
                                          " elements"));
  }
  if (element == ElementType::f32)
    return forward ? linear_forward_calls(rows, in, out)
                   : bwd_data ? linear_backward_data_calls(rows, in, out) : linear_backward_weight_calls(rows, in, out);

  // Half: the f32 plans' GEMMs with the operands' types; the bias and db in f32 by the epilogues.
  const LinearDims d = linear_dims(rows, in, out);
  const ElementType h = element, f = ElementType::f32;
  LinearCalls calls;
  calls.element = h;
  if (forward) {
    // staging^T [O,N] (f32) = (w buffer: column-major [I,O])^T x buffer (column-major [I,N]); then
    // y = round(staging + b): one rounding, after the f32 bias.
    calls.gemms.push_back({true, false, d.out, d.n, d.in, Operand::w, Operand::x, Operand::staging, d.in, d.in, d.out,
                           0.0f, h, h, f});
    calls.rounds.push_back({Operand::staging, Operand::bias, Operand::y, true, rows, out, 1});
    calls.staging_bytes = rows * out * 4;
  } else if (bwd_data) {
    calls.gemms.push_back({false, false, d.in, d.n, d.out, Operand::w, Operand::dy, Operand::dx, d.in, d.out, d.in,
                           0.0f, h, h, h});
  } else {
    calls.gemms.push_back({false, true, d.in, d.out, d.n, Operand::x, Operand::dy, Operand::dw, d.in, d.out, d.in,
                           0.0f, h, h, h});
    calls.sums.push_back({Operand::dy, Operand::db, rows, out, 1});
  }
  return calls;
}

ArenaLayout layout_arena(const ArenaRequest& r) {
  for (int64_t b : {r.plan_arena_bytes, r.conv_workspace_bytes, r.native_workspace_bytes, r.cublas_workspace_bytes,
                    r.ones_count, r.hyperparameter_bytes, r.gemm_staging_bytes})
    if (b < 0) fail(PARITY_STATUS_INTERNAL, msg("cuda: arena request with a negative size ", b));
  ArenaLayout l;
  int64_t at = 0;
  auto region = [&](int64_t bytes) {
    const int64_t start = at;
    at += align_up(bytes);
    return start;
  };
  l.plan_offset = region(r.plan_arena_bytes);
  int64_t in_slot = 0;
  for (int64_t b : r.input_bytes) {
    if (b < 0) fail(PARITY_STATUS_INTERNAL, msg("cuda: an input of negative size ", b));
    l.input_offsets.push_back(in_slot);
    in_slot += align_up(b);
  }
  l.slot_bytes = in_slot;
  l.slot_offset[0] = region(in_slot);
  l.slot_offset[1] = region(in_slot);
  l.native_workspace_offset = region(r.native_workspace_bytes);
  l.cublas_workspace_offset = region(r.cublas_workspace_bytes);
  l.cublas_workspace_bytes = r.cublas_workspace_bytes;
  l.gemm_staging_offset = region(r.gemm_staging_bytes);
  l.gemm_staging_bytes = r.gemm_staging_bytes;
  l.ones_offset = region(r.ones_count * 4);
  l.hyperparameter_offset = region(r.hyperparameter_bytes);
  l.conv_workspace_offset = region(r.conv_workspace_bytes);
  l.total_bytes = at;
  return l;
}

CaptureDecision decide_capture(const Options& options, bool external_legacy_stream, int32_t num_nodes) {
  if (!options.graphs) return {false, "PARITY_CUDA_GRAPHS=0: each step is launched node by node"};
  if (external_legacy_stream)
    return {false, "the caller's stream is the legacy default stream, which CUDA cannot capture; "
                   "steps are launched node by node"};
  if (num_nodes == 0) return {false, "the plan has no nodes: nothing to capture"};
  return {true, "one CUDA graph per input slot, captured at the second execute that uses the slot, then replayed "
                "(not while node hooks are set: those executes are launched node by node, calling them)"};
}

std::string cuda_version_string(int version) {
  if (version <= 0) return "unknown";
  return msg(version / 1000, ".", version % 1000 / 10);
}

bool device_can_run(int major, int minor, const std::vector<ProbeFacts::Architecture>& built) {
  const int capability = major * 10 + minor;
  for (const ProbeFacts::Architecture& a : built) {
    if (a.sass && a.sm / 10 == major && a.sm % 10 <= minor) return true;
    if (a.ptx && a.sm <= capability) return true;
  }
  return false;
}

std::vector<ProbeFacts::Architecture> parse_architectures(const std::string& list) {
  std::vector<ProbeFacts::Architecture> out;
  size_t start = 0;
  while (start < list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    std::string item = list.substr(start, comma - start);
    ProbeFacts::Architecture a{0, true, true};
    if (const size_t dash = item.find('-'); dash != std::string::npos) {
      const std::string kind = item.substr(dash + 1);
      a.sass = kind == "real";
      a.ptx = kind == "virtual";
      item = item.substr(0, dash);
    }
    a.sm = std::atoi(item.c_str());
    if (a.sm > 0) out.push_back(a);
    start = comma + 1;
  }
  return out;
}

ProbeOutcome classify_probe(const ProbeFacts& f) {
  const std::string runtime = msg("CUDA runtime ", cuda_version_string(f.runtime_version));
  if (!f.libcuda_loadable) {
    std::string detail = msg("the NVIDIA driver library libcuda.so.1 cannot be loaded (", f.libcuda_error, ")");
    if (f.count_status != DeviceCountStatus::ok && !f.count_error_name.empty())
      detail += msg("; the ", runtime, " reports ", f.count_error_name);
    return {PARITY_UNAVAILABLE_NO_DRIVER, 0, detail};
  }
  switch (f.count_status) {
    case DeviceCountStatus::insufficient_driver:
      return {PARITY_UNAVAILABLE_DRIVER_TOO_OLD, 0,
              msg("the NVIDIA driver (CUDA ", cuda_version_string(f.driver_version), ") is older than this plugin's ",
                  runtime, " (", f.count_error_name, "); update the driver")};
    case DeviceCountStatus::no_device:
      return {PARITY_UNAVAILABLE_NO_DEVICE, 0, msg("the NVIDIA driver reports no CUDA device (", f.count_error_name, ")")};
    case DeviceCountStatus::no_driver:
      return {PARITY_UNAVAILABLE_NO_DRIVER, 0,
              msg("the NVIDIA driver is installed but not usable (", f.count_error_name, ")")};
    case DeviceCountStatus::other:
      return {PARITY_UNAVAILABLE_OTHER, 0, msg("cudaGetDeviceCount failed: ", f.count_error_name)};
    case DeviceCountStatus::ok:
      break;
  }
  if (f.device_count <= 0 || f.devices.empty())
    return {PARITY_UNAVAILABLE_NO_DEVICE, 0, "the NVIDIA driver reports no CUDA device"};
  std::string built, seen;
  for (const ProbeFacts::Architecture& a : f.built_architectures)
    built += msg(built.empty() ? "" : ", ", "sm_", a.sm, a.sass ? "" : " (PTX only)", a.ptx || !a.sass ? "" : " (no PTX)");
  int usable = 0;
  std::string first;
  for (const ProbeFacts::Device& d : f.devices) {
    seen += msg(seen.empty() ? "" : ", ", d.name, " (sm_", d.major, d.minor, ")");
    if (!device_can_run(d.major, d.minor, f.built_architectures)) continue;
    if (usable++ == 0)
      first = msg(d.name, " (sm_", d.major, d.minor, "), driver CUDA ", cuda_version_string(f.driver_version), ", ",
                  runtime, ", cuDNN ", f.cudnn_version);
  }
  if (usable == 0)
    return {PARITY_UNAVAILABLE_DEVICE_TOO_OLD, 0,
            msg("CUDA devices are ", seen, "; this plugin was built for ", built,
                " (rebuild with -DCMAKE_CUDA_ARCHITECTURES=<your sm>)")};
  return {PARITY_AVAILABLE, usable, first};
}

}  // namespace cuda_decisions
}  // namespace parity
