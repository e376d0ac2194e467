// tests/test_cuda_decisions.cpp — the CUDA plugin's device-free decisions (backends/cuda/cuda_decisions.h),
// run on the CPU: options from the environment, where each op runs, cuDNN descriptor
// parameters from real seed-cnn plans, the algorithm choice, the cuBLAS calls of the linear ops
// (executed here by a column-major reference GEMM with cuBLAS's argument meaning and compared
// with the row-major definitions), the arena layout, the capture decision and the probe's
// messages; and for half precision (bf16, f16): the routes and descriptors of autocast training
// steps, the algorithm rule, and the half products' calls executed with their operands' types
// and compared with ref's one rounding. Built whether or not a CUDA toolkit is installed.
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "backends/cuda/cuda_decisions.h"
#include "model/autocast.h"
#include "ops/kernels/half.h"
#include "ops/op_rule.h"
#include "parity/parity.h"

namespace parity {
namespace cuda_decisions {
namespace {

GetEnv env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

std::string error_of(const std::function<void()>& f, parity_status* status = nullptr) {
  try {
    f();
  } catch (const CudaError& e) {
    if (status) *status = e.status;
    return e.what();
  }
  return "";
}

TEST(CudaDecisions, OptionsDefaultToFullFloat32DeterministicCaptured) {
  const Options o = options_from_env(env_of({}));
  EXPECT_FALSE(o.tf32);
  EXPECT_TRUE(o.deterministic);
  EXPECT_TRUE(o.graphs);
  EXPECT_EQ(o.conv_workspace_limit, int64_t{256} << 20);
  EXPECT_EQ(describe(o), "tf32 off, deterministic, graphs on, workspace 256 MiB");
  const Options set = options_from_env(env_of({{"PARITY_CUDA_TF32", "1"}, {"PARITY_CUDA_NONDETERMINISTIC", "1"},
                                               {"PARITY_CUDA_GRAPHS", "0"}, {"PARITY_CUDA_WORKSPACE_MB", "64"}}));
  EXPECT_TRUE(set.tf32);
  EXPECT_FALSE(set.deterministic);
  EXPECT_FALSE(set.graphs);
  EXPECT_EQ(set.conv_workspace_limit, int64_t{64} << 20);
}

TEST(CudaDecisions, NonsensicalOptionsNameTheVariable) {
  parity_status status = PARITY_OK;
  EXPECT_EQ(error_of([] { options_from_env(env_of({{"PARITY_CUDA_TF32", "yes"}})); }, &status),
            "cuda: PARITY_CUDA_TF32='yes' must be 0 or 1");
  EXPECT_EQ(status, PARITY_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(error_of([] { options_from_env(env_of({{"PARITY_CUDA_WORKSPACE_MB", "-3"}})); })
                .find("PARITY_CUDA_WORKSPACE_MB='-3' must be a whole number"),
            std::string::npos);
  EXPECT_NE(error_of([] { options_from_env(env_of({{"PARITY_CUDA_WORKSPACE_MB", "12x"}})); }), "");
}

TEST(CudaDecisions, EveryOpHasARouteWithAReason) {
  for (int op = 0; op < PARITY_OP_COUNT; ++op) {
    const Route r = route_of(static_cast<parity_op>(op));
    EXPECT_STRNE(r.why, "unknown op") << op;
    // The kind (how the plugin builds and launches it) agrees with the library named.
    const Library library_of_kind = r.kind == RouteKind::convolution || r.kind == RouteKind::activation ||
                                            r.kind == RouteKind::batchnorm || r.kind == RouteKind::pooling ||
                                            r.kind == RouteKind::softmax
                                        ? Library::cudnn
                                    : r.kind == RouteKind::gemm                                         ? Library::cublas
                                                                                                        : Library::native;
    EXPECT_EQ(r.library, library_of_kind) << op;
  }
  EXPECT_EQ(route_of(PARITY_OP_RELU).activation, Activation::relu);
  EXPECT_EQ(route_of(PARITY_OP_SIGMOID).activation, Activation::sigmoid);
  EXPECT_EQ(route_of(PARITY_OP_ADAM_STEP).kind, RouteKind::optimizer);
  EXPECT_EQ(route_of(PARITY_OP_CONV2D).library, Library::cudnn);
  EXPECT_EQ(route_of(PARITY_OP_CONV2D_BWD_DATA).library, Library::cudnn);
  EXPECT_EQ(route_of(PARITY_OP_CONV2D_BWD_WEIGHT).library, Library::cudnn);
  EXPECT_EQ(route_of(PARITY_OP_RELU).library, Library::cudnn);
  EXPECT_EQ(route_of(PARITY_OP_LINEAR).library, Library::cublas);
  EXPECT_EQ(route_of(PARITY_OP_LINEAR_BWD_WEIGHT).library, Library::cublas);
  // The ABI's conventions cuDNN does not offer: relu'(0) = 0 from the output, first-maximum indices.
  EXPECT_EQ(route_of(PARITY_OP_RELU_BWD).library, Library::native);
  EXPECT_EQ(route_of(PARITY_OP_MAXPOOL2D).library, Library::native);
  EXPECT_EQ(route_of(PARITY_OP_ADAM_STEP).library, Library::native);
  // sigmoid: cuDNN's activation forward; its backward from the output only is native.
  EXPECT_EQ(route_of(PARITY_OP_SIGMOID).library, Library::cudnn);
  EXPECT_EQ(route_of(PARITY_OP_SIGMOID_BWD).library, Library::native);
  // tanh likewise; leaky_relu, gelu and hardtanh have no cuDNN legacy activation mode.
  EXPECT_EQ(route_of(PARITY_OP_TANH).library, Library::cudnn);
  EXPECT_EQ(route_of(PARITY_OP_TANH).activation, Activation::tanh);
  EXPECT_EQ(route_of(PARITY_OP_TANH_BWD).library, Library::native);
  for (parity_op op : {PARITY_OP_LEAKY_RELU, PARITY_OP_LEAKY_RELU_BWD, PARITY_OP_GELU, PARITY_OP_GELU_BWD,
                       PARITY_OP_HARDTANH, PARITY_OP_HARDTANH_BWD})
    EXPECT_EQ(route_of(op).library, Library::native) << parity_op_name(op);
  // Average pooling forwards on cuDNN (where pooling_plan says it computes the ABI's windows);
  // the backwards take dy only, cudnnPoolingBackward also x and y: native.
  EXPECT_EQ(route_of(PARITY_OP_AVGPOOL2D).kind, RouteKind::pooling);
  EXPECT_EQ(route_of(PARITY_OP_GLOBAL_AVGPOOL).kind, RouteKind::pooling);
  EXPECT_EQ(route_of(PARITY_OP_AVGPOOL2D_BWD).library, Library::native);
  EXPECT_EQ(route_of(PARITY_OP_GLOBAL_AVGPOOL_BWD).library, Library::native);
}

// Which average-pooling nodes cuDNN takes: floor-mode windows (cuDNN's output size) with padding
// up to half the kernel; ceil_mode overhang and wider padding stay native, each with its reason.
TEST(CudaDecisions, PoolingPlanTakesOnlyWindowsCuDnnComputesAsTheAbi) {
  GraphBuilder b;
  Value x = b.input("x", Shape{2, 3, 5, 5});
  b.avgpool2d(x, 3, 2, 1, false, true, "floor");
  b.avgpool2d(x, 4, 2, 1, true, false, "ceil");           // 3x3 outputs, cuDNN's floor form 2x2
  b.avgpool2d(x, 2, 2, 0, true, true, "ceil_even");       // 5 odd: ceil adds a window
  b.avgpool2d(x, 3, 2, 0, true, true, "ceil_no_change");  // (5 - 3) / 2 exact: ceil changes nothing
  b.avgpool2d(x, 2, 1, 2, false, true, "wide_pad");
  b.global_avgpool(x, "gap");
  const Plan plan(b.take());
  std::map<std::string, PoolingPlan> by_name;
  for (const parity_node_desc& node : plan.nodes()) by_name.emplace(node.name, pooling_plan(node, plan.values()));
  EXPECT_TRUE(by_name.at("floor").on_cudnn);
  EXPECT_EQ(by_name.at("floor").d.mode, PoolingMode::average_count_include_padding);
  EXPECT_EQ(by_name.at("floor").d.y.h, 3);
  EXPECT_EQ(by_name.at("floor").d.pad_w, 1);
  EXPECT_FALSE(by_name.at("ceil").on_cudnn);
  EXPECT_NE(by_name.at("ceil").why.find("ceil_mode gives 3x3 outputs, cuDNN's floor form 2x2"), std::string::npos)
      << by_name.at("ceil").why;
  EXPECT_FALSE(by_name.at("ceil_even").on_cudnn);
  EXPECT_TRUE(by_name.at("ceil_no_change").on_cudnn);
  EXPECT_FALSE(by_name.at("wide_pad").on_cudnn);
  EXPECT_NE(by_name.at("wide_pad").why.find("above half the kernel"), std::string::npos);
  const PoolingPlan& gap = by_name.at("gap");
  EXPECT_TRUE(gap.on_cudnn);
  EXPECT_EQ(gap.d.window_h, 5);
  EXPECT_EQ(gap.d.window_w, 5);
  EXPECT_EQ(gap.d.y.h, 1);
  EXPECT_EQ(gap.d.pad_h, 0);
  GraphBuilder exclude;
  exclude.avgpool2d(exclude.input("x", Shape{1, 1, 4, 4}), 2, 2, 1, false, false, "ex");
  const Plan excluding(exclude.take());
  EXPECT_EQ(pooling_plan(excluding.nodes()[0], excluding.values()).d.mode, PoolingMode::average_count_exclude_padding);
}

// batchnorm2d: cuDNN's spatial batch normalization where its convention is the node's (PyTorch's
// running statistics; the backward of training), the native kernels where it is not.
TEST(CudaDecisions, BatchnormRoutesByConventionAndDescriptors) {
  GraphBuilder b;
  const Shape channels{3};
  Value x = b.input("x", Shape{2, 3, 5, 7});
  Value gamma = b.input("gamma", channels), beta = b.input("beta", channels);
  Value rm = b.state("rm", channels), rv = b.state("rv", channels);
  b.batchnorm2d_train(x, gamma, beta, rm, rv, 1e-3f, 0.25f, PARITY_BATCHNORM_PYTORCH, "torch");
  b.batchnorm2d_train(x, gamma, beta, rm, rv, 1e-5f, 0.9f, PARITY_BATCHNORM_ONNX, "onnx");
  b.batchnorm2d_eval(x, gamma, beta, rm, rv, 1e-5f, "eval");
  const Graph forward = b.take();
  const Plan plan(forward);
  const std::vector<parity_node_desc>& nodes = plan.nodes();
  ASSERT_EQ(nodes.size(), 3u);
  EXPECT_EQ(route_of(nodes[0]).kind, RouteKind::batchnorm);
  EXPECT_EQ(route_of(nodes[0]).library, Library::cudnn);
  EXPECT_EQ(route_of(nodes[1]).kind, RouteKind::native);  // ONNX: momentum weighs the old value, biased variance
  EXPECT_NE(std::string(route_of(nodes[1]).why).find("ONNX"), std::string::npos);
  EXPECT_EQ(route_of(nodes[2]).kind, RouteKind::batchnorm);
  parity_node_desc bwd = nodes[0];
  bwd.op = PARITY_OP_BATCHNORM2D_BWD;
  bwd.params.batchnorm2d.training = 1;
  EXPECT_EQ(route_of(bwd).kind, RouteKind::batchnorm);
  bwd.params.batchnorm2d.training = 0;
  EXPECT_EQ(route_of(bwd).kind, RouteKind::native);  // evaluation's statistics are constants
  for (parity_op op : {PARITY_OP_BATCHNORM2D_TRAIN, PARITY_OP_BATCHNORM2D_EVAL, PARITY_OP_BATCHNORM2D_BWD})
    EXPECT_EQ(route_of(op).kind, RouteKind::batchnorm) << parity_op_name(op);
  // Other nodes: route_of(node) is route_of(op).
  parity_node_desc relu{};
  relu.op = PARITY_OP_RELU;
  EXPECT_EQ(route_of(relu).kind, RouteKind::activation);

  const BatchnormDescriptors d = batchnorm_descriptors(nodes[0], plan.values());
  EXPECT_EQ(d.x.n, 2);
  EXPECT_EQ(d.x.c, 3);
  EXPECT_EQ(d.x.h, 5);
  EXPECT_EQ(d.x.w, 7);
  EXPECT_EQ(d.eps, static_cast<double>(1e-3f));
  EXPECT_EQ(d.exponential_average_factor, 0.25);  // cuDNN's factor weighs the batch, as PyTorch's momentum
  parity_status status{};
  parity_node_desc wrong = nodes[2];
  wrong.inputs[1] = wrong.inputs[0];  // gamma of x's size
  EXPECT_NE(error_of([&] { batchnorm_descriptors(wrong, plan.values()); }, &status).find("must have C = 3 elements"),
            std::string::npos);
  EXPECT_EQ(status, PARITY_STATUS_SHAPE);
  EXPECT_NE(error_of([&] { batchnorm_descriptors(relu, plan.values()); }).find("is not a batch normalization"),
            std::string::npos);
  // softmax and log_softmax: cuDNN both ways (its backward reads y and dy, as the ABI's does);
  // concat and its slices are copies on the native kernels.
  for (parity_op op : {PARITY_OP_SOFTMAX, PARITY_OP_SOFTMAX_BWD, PARITY_OP_LOG_SOFTMAX, PARITY_OP_LOG_SOFTMAX_BWD}) {
    EXPECT_EQ(route_of(op).kind, RouteKind::softmax) << parity_op_name(op);
    const bool log = op == PARITY_OP_LOG_SOFTMAX || op == PARITY_OP_LOG_SOFTMAX_BWD;
    EXPECT_EQ(route_of(op).softmax, log ? SoftmaxAlgorithm::log : SoftmaxAlgorithm::accurate) << parity_op_name(op);
  }
  EXPECT_EQ(route_of(PARITY_OP_CONCAT).library, Library::native);
  EXPECT_EQ(route_of(PARITY_OP_SLICE).library, Library::native);
}

// Lanes along the node's dim as cuDNN's NCHW: rows in INSTANCE mode, channels of NCHW (and any
// dim with elements after it) in CHANNEL mode with H the elements after the dim.
TEST(CudaDecisions, SoftmaxDescriptorsSeeTheDimAsChannels) {
  GraphBuilder b;
  Value logits = b.input("logits", Shape{8, 10});
  Value image = b.input("image", Shape{2, 3, 5, 7});
  Value rows = b.log_softmax(logits, -1, "rows");
  b.softmax(image, 1, "channels");
  b.softmax(image, 2, "heights");
  b.node(PARITY_OP_LOG_SOFTMAX_BWD, b.graph().nodes()[0].params, {rows, logits}, "rows_bwd");
  const Plan plan(b.graph());
  std::map<std::string, SoftmaxDescriptors> d;
  for (const parity_node_desc& node : plan.nodes()) d.emplace(node.name, softmax_descriptors(node, plan.values()));
  auto nchw = [](const SoftmaxDescriptors& s) { return std::vector<int>{s.x.n, s.x.c, s.x.h, s.x.w}; };
  EXPECT_EQ(nchw(d.at("rows")), (std::vector<int>{8, 10, 1, 1}));
  EXPECT_EQ(d.at("rows").mode, SoftmaxMode::instance);
  EXPECT_EQ(d.at("rows").algorithm, SoftmaxAlgorithm::log);
  EXPECT_FALSE(d.at("rows").backward);
  EXPECT_TRUE(d.at("rows_bwd").backward);
  EXPECT_EQ(d.at("rows_bwd").algorithm, SoftmaxAlgorithm::log);
  EXPECT_EQ(nchw(d.at("channels")), (std::vector<int>{2, 3, 35, 1}));
  EXPECT_EQ(d.at("channels").mode, SoftmaxMode::channel);
  EXPECT_EQ(d.at("channels").algorithm, SoftmaxAlgorithm::accurate);
  EXPECT_EQ(nchw(d.at("heights")), (std::vector<int>{6, 5, 7, 1}));

  // A dim outside the value (a plan written by hand) is refused naming the node.
  std::vector<parity_value_desc> values = plan.values();
  parity_node_desc bad = plan.nodes()[1];
  bad.params.softmax.dim = 4;
  parity_status status = PARITY_OK;
  EXPECT_NE(error_of([&] { softmax_descriptors(bad, values); }, &status).find("node 'channels': dim 4 is outside"),
            std::string::npos);
  EXPECT_EQ(status, PARITY_STATUS_SHAPE);
}

// The training plan of a model as train compiles it.
Plan training_plan(const std::string& model, int64_t batch) {
  const ModelSpec& spec = model_spec(model);
  const Graph forward = build_forward(spec, batch);
  OptimizerConfig adam;
  return Plan(differentiate(forward, forward.find("loss"), &adam));
}

TEST(CudaDecisions, ConvolutionDescriptorsOfTheSeedCnnTrainingStep) {
  const Plan plan = training_plan("seed-cnn", 64);
  int convs = 0;
  for (const parity_node_desc& node : plan.nodes()) {
    if (route_of(node.op).library != Library::cudnn || node.op == PARITY_OP_RELU) continue;
    const ConvDescriptors d = conv_descriptors(node, plan.values());
    ++convs;
    EXPECT_EQ(d.x.n, 64) << node.name;
    EXPECT_EQ(d.w.c, d.x.c) << node.name;
    EXPECT_EQ(d.y.c, d.w.n) << node.name;
    EXPECT_EQ(d.bias.c, d.w.n) << node.name;
    EXPECT_EQ(d.y.h, (d.x.h + 2 * d.pad_h - d.w.h) / d.stride_h + 1) << node.name;
    EXPECT_EQ(d.dilation_h, 1);
    if (std::string(node.name) == "conv1") {  // 1x28x28 -> 16 filters 3x3, padding 1
      EXPECT_EQ(d.x.c, 1);
      EXPECT_EQ(d.x.h, 28);
      EXPECT_EQ(d.w.n, 16);
      EXPECT_EQ(d.w.h, 3);
      EXPECT_EQ(d.pad_h, 1);
      EXPECT_EQ(d.stride_h, 1);
      EXPECT_EQ(d.y.h, 28);
    }
  }
  EXPECT_EQ(convs, 5);  // conv1, conv2 forward; conv1, conv2 backward-weight; conv2 backward-data
}

// Groups, dilation and a missing bias go to cuDNN (group count, the dilation of the convolution
// descriptor, no bias add); asymmetric padding, which cuDNN's legacy descriptor cannot express,
// takes the native route, and conv_descriptors refuses it as a routing bug.
TEST(CudaDecisions, GroupedDilatedConvolutionsOnCuDnnAsymmetricPaddingNative) {
  GraphBuilder b;
  Value x = b.input("x", Shape{2, 4, 9, 9});
  Conv2dOptions grouped;
  grouped.groups = 2, grouped.dilation_h = grouped.dilation_w = 2, grouped.pad_h = grouped.pad_w = 2;
  b.conv2d(x, b.parameter("w", Shape{6, 2, 3, 3}), grouped, "grouped");
  Conv2dOptions depthwise;
  depthwise.groups = 4, depthwise.pad_h = depthwise.pad_w = 1;
  b.conv2d(x, b.parameter("wd", Shape{4, 1, 3, 3}), b.parameter("bd", Shape{4}), depthwise, "depthwise");
  Conv2dOptions asymmetric;
  asymmetric.stride_h = asymmetric.stride_w = 2, asymmetric.pad_end = true, asymmetric.pad_bottom = 1,
  asymmetric.pad_right = 1;
  b.conv2d(x, b.parameter("wa", Shape{3, 4, 3, 3}), b.parameter("ba", Shape{3}), asymmetric, "asym");
  Graph g = b.take();
  const Plan plan(g);
  const parity_node_desc& grouped_node = plan.nodes()[0];
  const parity_node_desc& depthwise_node = plan.nodes()[1];
  const parity_node_desc& asym_node = plan.nodes()[2];

  EXPECT_EQ(route_of(grouped_node).kind, RouteKind::convolution);
  const ConvDescriptors d = conv_descriptors(grouped_node, plan.values());
  EXPECT_EQ(d.groups, 2);
  EXPECT_EQ(d.dilation_h, 2);
  EXPECT_EQ(d.dilation_w, 2);
  EXPECT_EQ(d.w.c, 2);  // [K, C/groups, R, S]
  EXPECT_EQ(d.y.h, 9);  // (9 + 4 - 2*2 - 1) / 1 + 1
  EXPECT_FALSE(d.has_bias);
  const ConvDescriptors dd = conv_descriptors(depthwise_node, plan.values());
  EXPECT_EQ(dd.groups, 4);
  EXPECT_TRUE(dd.has_bias);
  // Groups and dilation tell algorithm searches apart.
  EXPECT_NE(conv_cache_key(ConvDirection::forward, d, Options{}, 256).find(" groups2"), std::string::npos);

  const Route asym_route = route_of(asym_node);
  EXPECT_EQ(asym_route.library, Library::native);
  EXPECT_EQ(asym_route.kind, RouteKind::native);
  EXPECT_NE(std::string(asym_route.why).find("asymmetric padding"), std::string::npos);
  parity_status status = PARITY_OK;
  EXPECT_NE(error_of([&] { conv_descriptors(asym_node, plan.values()); }, &status).find("asymmetric padding"),
            std::string::npos);
  EXPECT_EQ(status, PARITY_STATUS_INTERNAL);
}

TEST(CudaDecisions, ConvolutionShapesCuDnnWouldRejectAreRefusedWithBothShapes) {
  Plan plan = training_plan("seed-cnn", 4);
  std::vector<parity_value_desc> values = plan.values();
  parity_node_desc conv1{};
  for (const parity_node_desc& n : plan.nodes())
    if (std::string(n.name) == "conv1") conv1 = n;
  ASSERT_EQ(conv1.op, PARITY_OP_CONV2D);
  values[static_cast<size_t>(conv1.outputs[0])].dims[2] = 27;  // not (28 + 2 - 3) / 1 + 1
  parity_status status = PARITY_OK;
  const std::string e = error_of([&] { conv_descriptors(conv1, values); }, &status);
  EXPECT_EQ(status, PARITY_STATUS_SHAPE);
  EXPECT_NE(e.find("cuda: node 'conv1': input [4,1,28,28], filter [16,1,3,3] and output [4,16,27,28] do not agree "
                   "(stride 1x1, padding 1x1, dilation 1x1, groups 1 gives an output of 28x28)"),
            std::string::npos)
      << e;
  values = plan.values();
  values[static_cast<size_t>(conv1.inputs[0])].dims[0] = int64_t{3} << 31;  // batch beyond int
  EXPECT_NE(error_of([&] { conv_descriptors(conv1, values); }, &status).find("does not fit the int"), std::string::npos);
  EXPECT_EQ(status, PARITY_STATUS_UNSUPPORTED);
}

TEST(CudaDecisions, AlgorithmCacheKeySeparatesDirectionsShapesAndOptions) {
  const Plan a = training_plan("seed-cnn", 64), b = training_plan("seed-cnn", 32);
  auto conv1 = [](const Plan& p) {
    for (const parity_node_desc& n : p.nodes())
      if (std::string(n.name) == "conv1") return conv_descriptors(n, p.values());
    throw std::runtime_error("no conv1");
  };
  const Options o;
  Options tf32 = o;
  tf32.tf32 = true;
  const std::string key = conv_cache_key(ConvDirection::forward, conv1(a), o, 256);
  EXPECT_EQ(key, conv_cache_key(ConvDirection::forward, conv1(a), o, 256));
  EXPECT_NE(key, conv_cache_key(ConvDirection::backward_filter, conv1(a), o, 256));
  EXPECT_NE(key, conv_cache_key(ConvDirection::forward, conv1(b), o, 256));  // the last partial batch searches anew
  EXPECT_NE(key, conv_cache_key(ConvDirection::forward, conv1(a), tf32, 256));
  EXPECT_NE(key, conv_cache_key(ConvDirection::forward, conv1(a), o, 4));  // parity check's tight layout
  EXPECT_EQ(address_alignment(0), 256);
  EXPECT_EQ(address_alignment(64 * 7), 64);
  EXPECT_EQ(address_alignment(12), 4);
  EXPECT_EQ(address_alignment(4096 + 16), 16);
}

TEST(CudaDecisions, AlgorithmChoiceFollowsTheRulesAndNeverATimingWhenDeterministic) {
  // As cudnnFind*Ex lists them, fastest first.
  const std::vector<AlgoCandidate> found = {
      {6, true, 0.10f, 0, false, false, false, 3},                   // fastest, but nondeterministic
      {5, true, 0.12f, 0, true, true, true, 2},                      // may convert to half precision
      {1, true, 0.20f, int64_t{512} << 20, true, false, false, 3},   // deterministic, too much workspace
      {7, true, 0.25f, 1024, true, true, false, 1},                  // deterministic, tensor-op (TF32) math
      {4, true, 0.30f, 0, true, false, false, 3},                    // deterministic, FMA, no workspace
      {0, true, 0.40f, 0, true, false, false, 3},                    // deterministic, FMA, no workspace
      {2, false, -1.0f, 0, true, false, false, 3}};                  // not supported
  const std::vector<int> heuristic = {2, 0, 7, 4, 1, 6, 5};  // cuDNN's ranking, no timing in it
  Options o;
  AlgoChoice c = choose_algorithm(found, heuristic, o, "conv1");
  EXPECT_EQ(c.algo, 0);  // the first acceptable in heuristic order, although 4 measured faster
  EXPECT_EQ(c.math_type, 3);
  o.tf32 = true;
  EXPECT_EQ(choose_algorithm(found, heuristic, o, "conv1").algo, 0);
  EXPECT_EQ(choose_algorithm(found, {7, 0}, o, "conv1").algo, 7);
  o.deterministic = false;  // the fastest acceptable; never the down-converting one
  EXPECT_EQ(choose_algorithm(found, heuristic, o, "conv1").algo, 6);
  Options fma_only;
  fma_only.deterministic = false;
  EXPECT_EQ(choose_algorithm(found, heuristic, fma_only, "conv1").algo, 6);
  Options roomy;
  roomy.conv_workspace_limit = int64_t{1} << 30;
  EXPECT_EQ(choose_algorithm(found, {1, 0}, roomy, "conv1").algo, 1);
  EXPECT_EQ(choose_algorithm(found, {1, 0}, roomy, "conv1").workspace_bytes, int64_t{512} << 20);
  // An algorithm the heuristics do not rank comes after those they do, by number.
  EXPECT_EQ(choose_algorithm(found, {}, Options{}, "conv1").algo, 0);

  parity_status status = PARITY_OK;
  const std::string e =
      error_of([&] { choose_algorithm({found[0], found[1], found[6]}, heuristic, Options{}, "node 'conv2'"); }, &status);
  EXPECT_EQ(status, PARITY_STATUS_UNSUPPORTED);
  EXPECT_NE(e.find("no cuDNN algorithm for node 'conv2'"), std::string::npos) << e;
  EXPECT_NE(e.find("algo 6: nondeterministic"), std::string::npos) << e;
  EXPECT_NE(e.find("algo 5: may convert to half precision"), std::string::npos) << e;
  EXPECT_NE(e.find("algo 2: failed or unsupported"), std::string::npos) << e;
  EXPECT_NE(error_of([] { choose_algorithm({}, {}, Options{}, "x"); }).find("cuDNN returned no candidate"),
            std::string::npos);
}

// cuBLAS's column-major SGEMM / SGEMV, as its documentation defines them (alpha = 1).
struct Buffers {
  std::map<Operand, std::vector<float>> data;
  float at(Operand o, int row, int col, int ld) { return data.at(o).at(static_cast<size_t>(col) * ld + row); }
};
void reference_sgemm(Buffers& m, const GemmCall& g) {
  std::vector<float>& c = m.data.at(g.c);
  for (int j = 0; j < g.n; ++j)
    for (int i = 0; i < g.m; ++i) {
      float sum = 0;
      for (int p = 0; p < g.k; ++p) {
        const float a = g.transpose_a ? m.at(g.a, p, i, g.lda) : m.at(g.a, i, p, g.lda);
        const float b = g.transpose_b ? m.at(g.b, j, p, g.ldb) : m.at(g.b, p, j, g.ldb);
        sum += a * b;
      }
      float& out = c.at(static_cast<size_t>(j) * g.ldc + i);
      out = sum + g.beta * out;
    }
}
void reference_sgemv(Buffers& m, const GemvCall& g) {
  std::vector<float>& y = m.data.at(g.y);
  const int rows = g.transpose_a ? g.n : g.m, cols = g.transpose_a ? g.m : g.n;
  for (int i = 0; i < rows; ++i) {
    float sum = 0;
    for (int p = 0; p < cols; ++p)
      sum += (g.transpose_a ? m.at(g.a, p, i, g.lda) : m.at(g.a, i, p, g.lda)) * m.data.at(g.x).at(static_cast<size_t>(p));
    y.at(static_cast<size_t>(i)) = sum + g.beta * y.at(static_cast<size_t>(i));
  }
}
void run(Buffers& m, const LinearCalls& calls) {
  for (const GemmCall& g : calls.gemms) reference_sgemm(m, g);
  for (const GemvCall& g : calls.gemvs) reference_sgemv(m, g);
}

// Small integers: every product and sum is exact in float32, so the comparison is equality.
std::vector<float> integers(size_t count, std::mt19937& rng) {
  std::uniform_int_distribution<int> d(-4, 4);
  std::vector<float> v(count);
  for (float& x : v) x = static_cast<float>(d(rng));
  return v;
}

TEST(CudaDecisions, LinearOpsAsColumnMajorGemmsComputeTheRowMajorDefinitions) {
  const int n = 3, in = 5, out = 4;
  std::mt19937 rng(7);
  Buffers m;
  m.data[Operand::x] = integers(n * in, rng);    // [N, I]
  m.data[Operand::w] = integers(out * in, rng);  // [O, I]
  m.data[Operand::bias] = integers(out, rng);    // [O]
  m.data[Operand::dy] = integers(n * out, rng);  // [N, O]
  m.data[Operand::ones] = std::vector<float>(n, 1.0f);
  for (Operand o : {Operand::y, Operand::dx, Operand::dw, Operand::db})
    m.data[o] = std::vector<float>(o == Operand::y ? n * out : o == Operand::dx ? n * in : o == Operand::dw ? out * in : out,
                                   99.0f);  // garbage the calls must overwrite
  run(m, linear_forward_calls(n, in, out));
  run(m, linear_backward_data_calls(n, in, out));
  run(m, linear_backward_weight_calls(n, in, out));
  const auto& x = m.data[Operand::x];
  const auto& w = m.data[Operand::w];
  const auto& dy = m.data[Operand::dy];
  for (int r = 0; r < n; ++r)
    for (int o = 0; o < out; ++o) {
      float y = m.data[Operand::bias][o];
      for (int i = 0; i < in; ++i) y += x[r * in + i] * w[o * in + i];
      EXPECT_EQ(m.data[Operand::y][r * out + o], y) << "y[" << r << "," << o << "]";
    }
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < in; ++i) {
      float dx = 0;
      for (int o = 0; o < out; ++o) dx += dy[r * out + o] * w[o * in + i];
      EXPECT_EQ(m.data[Operand::dx][r * in + i], dx) << "dx[" << r << "," << i << "]";
    }
  for (int o = 0; o < out; ++o) {
    float db = 0;
    for (int r = 0; r < n; ++r) db += dy[r * out + o];
    EXPECT_EQ(m.data[Operand::db][o], db) << "db[" << o << "]";
    for (int i = 0; i < in; ++i) {
      float dw = 0;
      for (int r = 0; r < n; ++r) dw += dy[r * out + o] * x[r * in + i];
      EXPECT_EQ(m.data[Operand::dw][o * in + i], dw) << "dw[" << o << "," << i << "]";
    }
  }
  EXPECT_NE(error_of([] { linear_forward_calls(0, 5, 4); }), "");
}

TEST(CudaDecisions, ArenaRegionsAreAlignedAndDisjoint) {
  ArenaRequest r{1000, {200, 4, 256}, 3000, 64, 32 << 20, 64, 2 * sizeof(parity_op_params), 64 * 128 * 4};
  const ArenaLayout l = layout_arena(r);
  EXPECT_EQ(l.gemm_staging_bytes, 64 * 128 * 4);
  ASSERT_EQ(l.input_offsets.size(), 3u);
  EXPECT_EQ(l.input_offsets[0], 0);
  EXPECT_EQ(l.input_offsets[1], 256);
  EXPECT_EQ(l.input_offsets[2], 512);
  EXPECT_EQ(l.slot_bytes, 768);
  EXPECT_EQ(l.cublas_workspace_bytes, 32 << 20);
  struct Region {
    int64_t start, bytes;
  };
  const std::vector<Region> regions = {{l.plan_offset, 1000},          {l.slot_offset[0], l.slot_bytes},
                                       {l.slot_offset[1], l.slot_bytes}, {l.conv_workspace_offset, 3000},
                                       {l.native_workspace_offset, 64},  {l.cublas_workspace_offset, 32 << 20},
                                       {l.ones_offset, 64 * 4},          {l.hyperparameter_offset, r.hyperparameter_bytes},
                                       {l.gemm_staging_offset, l.gemm_staging_bytes}};
  for (size_t i = 0; i < regions.size(); ++i) {
    EXPECT_EQ(regions[i].start % kArenaAlignment, 0) << "region " << i;
    EXPECT_LE(regions[i].start + regions[i].bytes, l.total_bytes) << "region " << i;
    for (size_t j = i + 1; j < regions.size(); ++j)
      EXPECT_TRUE(regions[i].start + regions[i].bytes <= regions[j].start ||
                  regions[j].start + regions[j].bytes <= regions[i].start)
          << "regions " << i << " and " << j << " overlap";
  }
  r.conv_workspace_bytes = -1;
  EXPECT_NE(error_of([&] { layout_arena(r); }), "");
  r.conv_workspace_bytes = 0;
  r.gemm_staging_bytes = -4;
  EXPECT_NE(error_of([&] { layout_arena(r); }), "");
}

TEST(CudaDecisions, CaptureIsTheDefaultAndEachExceptionSaysWhy) {
  Options o;
  const CaptureDecision on = decide_capture(o, false, 30);
  EXPECT_TRUE(on.capture);
  EXPECT_NE(on.why.find("not while node hooks are set"), std::string::npos) << on.why;
  const CaptureDecision legacy = decide_capture(o, true, 30);
  EXPECT_FALSE(legacy.capture);
  EXPECT_NE(legacy.why.find("legacy default stream"), std::string::npos);
  EXPECT_FALSE(decide_capture(o, false, 0).capture);
  o.graphs = false;
  const CaptureDecision off = decide_capture(o, false, 30);
  EXPECT_FALSE(off.capture);
  EXPECT_NE(off.why.find("PARITY_CUDA_GRAPHS=0"), std::string::npos);
}

ProbeFacts healthy() {
  ProbeFacts f;
  f.libcuda_loadable = true;
  f.count_status = DeviceCountStatus::ok;
  f.count_error_name = "cudaSuccess";
  f.device_count = 1;
  f.driver_version = 13000;
  f.runtime_version = 13000;
  f.devices = {{"NVIDIA H100 80GB HBM3", 9, 0}};
  f.built_architectures = parse_architectures("80,90");
  f.cudnn_version = "9.19.0";
  return f;
}

TEST(CudaDecisions, ProbeSaysWhichOfTheFourReasonsApplies) {
  ProbeFacts f = healthy();
  ProbeOutcome o = classify_probe(f);
  EXPECT_EQ(o.reason, PARITY_AVAILABLE);
  EXPECT_EQ(o.usable_devices, 1);
  EXPECT_EQ(o.detail, "NVIDIA H100 80GB HBM3 (sm_90), driver CUDA 13.0, CUDA runtime 13.0, cuDNN 9.19.0");

  f = healthy();  // what this project's machines report: no libcuda, and the runtime says so its way
  f.libcuda_loadable = false;
  f.libcuda_error = "libcuda.so.1: cannot open shared object file: No such file or directory";
  f.count_status = DeviceCountStatus::insufficient_driver;
  f.count_error_name = "cudaErrorInsufficientDriver";
  o = classify_probe(f);
  EXPECT_EQ(o.reason, PARITY_UNAVAILABLE_NO_DRIVER);
  EXPECT_EQ(o.detail, "the NVIDIA driver library libcuda.so.1 cannot be loaded (libcuda.so.1: cannot open shared object "
                      "file: No such file or directory); the CUDA runtime 13.0 reports cudaErrorInsufficientDriver");

  f = healthy();  // a driver older than the runtime
  f.count_status = DeviceCountStatus::insufficient_driver;
  f.count_error_name = "cudaErrorInsufficientDriver";
  f.driver_version = 12020;
  o = classify_probe(f);
  EXPECT_EQ(o.reason, PARITY_UNAVAILABLE_DRIVER_TOO_OLD);
  EXPECT_EQ(o.detail, "the NVIDIA driver (CUDA 12.2) is older than this plugin's CUDA runtime 13.0 "
                      "(cudaErrorInsufficientDriver); update the driver");

  f = healthy();
  f.count_status = DeviceCountStatus::no_device;
  f.count_error_name = "cudaErrorNoDevice";
  o = classify_probe(f);
  EXPECT_EQ(o.reason, PARITY_UNAVAILABLE_NO_DEVICE);
  EXPECT_EQ(o.detail, "the NVIDIA driver reports no CUDA device (cudaErrorNoDevice)");

  f = healthy();  // a Turing card: below sm_80
  f.devices = {{"Tesla T4", 7, 5}};
  o = classify_probe(f);
  EXPECT_EQ(o.reason, PARITY_UNAVAILABLE_DEVICE_TOO_OLD);
  EXPECT_EQ(o.usable_devices, 0);
  EXPECT_EQ(o.detail, "CUDA devices are Tesla T4 (sm_75); this plugin was built for sm_80, sm_90 (rebuild with "
                      "-DCMAKE_CUDA_ARCHITECTURES=<your sm>)");

  f = healthy();  // only the usable devices count
  f.device_count = 2;
  f.devices = {{"Tesla T4", 7, 5}, {"NVIDIA A100-SXM4-40GB", 8, 0}};
  o = classify_probe(f);
  EXPECT_EQ(o.reason, PARITY_AVAILABLE);
  EXPECT_EQ(o.usable_devices, 1);
}

TEST(CudaDecisions, DevicesRunTheCodeBuiltForThem) {
  const auto built = parse_architectures("80,90");
  ASSERT_EQ(built.size(), 2u);
  EXPECT_TRUE(built[0].sass && built[0].ptx);
  EXPECT_FALSE(device_can_run(7, 5, built));
  EXPECT_TRUE(device_can_run(8, 0, built));
  EXPECT_TRUE(device_can_run(8, 6, built));   // sm_80 code runs on sm_86
  EXPECT_TRUE(device_can_run(10, 0, built));  // compute_90 PTX is compiled for newer devices
  EXPECT_FALSE(device_can_run(9, 0, {}));
  const auto real_only = parse_architectures("80-real,90-real");
  EXPECT_TRUE(device_can_run(8, 9, real_only));
  EXPECT_TRUE(device_can_run(9, 0, real_only));
  EXPECT_FALSE(device_can_run(10, 0, real_only));  // no PTX to compile for it
  const auto ptx_only = parse_architectures("90-virtual");
  EXPECT_FALSE(ptx_only[0].sass);
  EXPECT_TRUE(device_can_run(12, 0, ptx_only));
  EXPECT_FALSE(device_can_run(8, 6, ptx_only));
  EXPECT_EQ(cuda_version_string(12040), "12.4");
  EXPECT_EQ(cuda_version_string(0), "unknown");
}

// ---- half precision (bf16, f16) ------------------------------------------------------------------

Plan autocast_training_plan(const std::string& model, int64_t batch, Precision p) {
  const Graph forward = autocast(build_forward(model_spec(model), batch), p);
  OptimizerConfig adam;
  return Plan(differentiate(forward, forward.find("loss"), &adam));
}

// v rounded to the element type (ops/kernels/half.h: round to nearest even), as the device rounds.
float round_to(ElementType t, float v) {
  if (t == ElementType::bf16) return kernels::bf16_bits_to_float(kernels::float_to_bf16_bits(v));
  if (t == ElementType::f16) return kernels::f16_bits_to_float(kernels::float_to_f16_bits(v));
  return v;
}
bool is_half(parity_dtype d) { return d == PARITY_BF16 || d == PARITY_F16; }
bool touches_half(const parity_node_desc& n, const std::vector<parity_value_desc>& values) {
  for (int32_t k = 0; k < n.num_inputs; ++k)
    if (is_half(values[static_cast<size_t>(n.inputs[k])].dtype)) return true;
  for (int32_t k = 0; k < n.num_outputs; ++k)
    if (is_half(values[static_cast<size_t>(n.outputs[k])].dtype)) return true;
  return false;
}

TEST(CudaDecisions, HalfElementTypesMathAndComputeTypes) {
  EXPECT_EQ(element_type_of(PARITY_F32, "x"), ElementType::f32);
  EXPECT_EQ(element_type_of(PARITY_BF16, "x"), ElementType::bf16);
  EXPECT_EQ(element_type_of(PARITY_F16, "x"), ElementType::f16);
  parity_status status = PARITY_OK;
  EXPECT_NE(error_of([] { element_type_of(PARITY_I32, "node 'n': value 'labels'"); }, &status).find("value 'labels'"),
            std::string::npos);
  EXPECT_EQ(status, PARITY_STATUS_UNSUPPORTED);
  // Three distinct vendor types per library, f32 the libraries' FLOAT / CUDA_R_32F (0); the
  // values themselves are static_asserted against cudnn.h and library_types.h in cuda_library.cpp.
  for (auto type_of : {&cudnn_data_type, &cuda_data_type}) {
    EXPECT_EQ(type_of(ElementType::f32), 0);
    EXPECT_NE(type_of(ElementType::bf16), type_of(ElementType::f16));
    EXPECT_NE(type_of(ElementType::bf16), 0);
    EXPECT_NE(type_of(ElementType::f16), 0);
  }
  // cuDNN's math before the search: f32 FMA unless TF32 is allowed; half tensor-op either way;
  // never ALLOW_CONVERSION.
  Options o, tf32;
  tf32.tf32 = true;
  EXPECT_EQ(search_math_type(ElementType::f32, o), ConvMath::fma);
  EXPECT_EQ(search_math_type(ElementType::f32, tf32), ConvMath::default_math);
  for (ElementType h : {ElementType::bf16, ElementType::f16}) {
    EXPECT_EQ(search_math_type(h, o), ConvMath::tensor_op);
    EXPECT_EQ(search_math_type(h, tf32), ConvMath::tensor_op);
  }
  // cuBLAS: reductions in the compute type always (a half C must not collect split-K partials in
  // half), TF32 only when allowed.
  constexpr int kDisallowReducedPrecisionReduction = 16, kTf32 = 3;
  EXPECT_EQ(cublas_math_mode(o) & kDisallowReducedPrecisionReduction, kDisallowReducedPrecisionReduction);
  EXPECT_EQ(cublas_math_mode(tf32) & kDisallowReducedPrecisionReduction, kDisallowReducedPrecisionReduction);
  EXPECT_EQ(cublas_math_mode(o) & ~kDisallowReducedPrecisionReduction, 0);
  EXPECT_EQ(cublas_math_mode(tf32) & ~kDisallowReducedPrecisionReduction, kTf32);
}

// The autocast training step of seed-cnn (conv and linear on half copies, bias f32): which node
// runs where, and the descriptors of those on cuDNN.
void expect_half_training_step_routes(Precision p, ElementType element) {
  const Plan plan = autocast_training_plan("seed-cnn", 8, p);
  const std::vector<parity_value_desc>& values = plan.values();
  int conv_native = 0, conv_bwd_data = 0, conv_bwd_weight = 0, half_elementwise = 0, linears = 0;
  for (const parity_node_desc& node : plan.nodes()) {
    const Route by_op = route_of(node), by_values = route_of(node, values);
    if (!touches_half(node, values)) {  // f32 nodes (casts aside) route as before
      if (node.op != PARITY_OP_CAST) {
        EXPECT_EQ(by_values.library, by_op.library) << node.name;
        EXPECT_EQ(by_values.kind, by_op.kind) << node.name;
      }
      continue;
    }
    switch (node.op) {
      case PARITY_OP_CONV2D: {
        ++conv_native;  // seed-cnn's convolutions have biases: native, saying why
        EXPECT_EQ(by_op.kind, RouteKind::convolution);
        EXPECT_EQ(by_values.kind, RouteKind::native) << node.name;
        EXPECT_NE(std::string(by_values.why).find("PSEUDO_HALF/PSEUDO_BFLOAT16_CONFIG"), std::string::npos);
        parity_status status = PARITY_OK;
        EXPECT_NE(error_of([&] { conv_descriptors(node, values); }, &status).find("f32 bias"), std::string::npos);
        EXPECT_EQ(status, PARITY_STATUS_INTERNAL);
        break;
      }
      case PARITY_OP_CONV2D_BWD_DATA:
      case PARITY_OP_CONV2D_BWD_WEIGHT: {
        EXPECT_EQ(by_values.kind, RouteKind::convolution) << node.name;
        const ConvDescriptors d = conv_descriptors(node, values);
        EXPECT_EQ(d.element, element) << node.name;
        if (node.op == PARITY_OP_CONV2D_BWD_DATA) {
          ++conv_bwd_data;
          EXPECT_FALSE(d.db_by_channel_sum);
        } else {
          ++conv_bwd_weight;
          EXPECT_TRUE(d.has_bias) << node.name;
          EXPECT_TRUE(d.db_by_channel_sum) << node.name;  // db f32 from half dy, not cuDNN's backward bias
          EXPECT_EQ(values[static_cast<size_t>(node.outputs[1])].dtype, PARITY_F32);
        }
        break;
      }
      case PARITY_OP_LINEAR:
      case PARITY_OP_LINEAR_BWD_DATA:
      case PARITY_OP_LINEAR_BWD_WEIGHT: {
        ++linears;
        EXPECT_EQ(by_values.kind, RouteKind::gemm) << node.name;
        const LinearCalls calls = linear_calls(node, values);
        EXPECT_EQ(calls.element, element) << node.name;
        ASSERT_EQ(calls.gemms.size(), 1u) << node.name;
        EXPECT_TRUE(calls.gemvs.empty()) << node.name;
        const GemmCall& g = calls.gemms[0];
        EXPECT_TRUE(uses_gemm_ex(g));
        EXPECT_EQ(g.a_type, element);
        EXPECT_EQ(g.b_type, element);
        EXPECT_EQ(g.beta, 0.0f);
        if (node.op == PARITY_OP_LINEAR) {  // the product in f32 staging, then bias and one rounding
          EXPECT_EQ(g.c, Operand::staging);
          EXPECT_EQ(g.c_type, ElementType::f32);
          ASSERT_EQ(calls.rounds.size(), 1u);
          EXPECT_TRUE(calls.rounds[0].has_bias);
          EXPECT_EQ(calls.rounds[0].y, Operand::y);
          EXPECT_EQ(calls.staging_bytes, int64_t{g.m} * g.n * 4);
          EXPECT_EQ(calls.rounds[0].channels * calls.rounds[0].outer * 4, calls.staging_bytes);
        } else {
          EXPECT_EQ(g.c_type, element) << node.name;  // dx, dw written in the half dtype by cuBLAS
          EXPECT_EQ(calls.staging_bytes, 0);
          EXPECT_TRUE(calls.rounds.empty());
          EXPECT_EQ(calls.sums.size(), node.op == PARITY_OP_LINEAR_BWD_WEIGHT ? 1u : 0u);
        }
        break;
      }
      case PARITY_OP_RELU:
        ++half_elementwise;
        EXPECT_EQ(by_op.library, Library::cudnn);      // by op alone: cuDNN's f32 activation ...
        EXPECT_EQ(by_values.library, Library::native);  // ... which half values must not take
        EXPECT_NE(std::string(by_values.why).find("half values"), std::string::npos);
        break;
      default:
        if (by_op.library != Library::native) {
          EXPECT_EQ(by_values.library, Library::native) << node.name;
        }
        break;
    }
  }
  EXPECT_EQ(conv_native, 2);       // conv1, conv2 forward
  EXPECT_EQ(conv_bwd_data, 1);     // conv2 (conv1's input needs no gradient)
  EXPECT_EQ(conv_bwd_weight, 2);
  EXPECT_GE(half_elementwise, 2);  // relu1, relu2 at least
  EXPECT_EQ(linears, 6);           // fc1, fc2: forward, backward-data, backward-weight
}
TEST(CudaDecisions, Bf16TrainingStepRoutesAndDescriptors) { expect_half_training_step_routes(Precision::bf16, ElementType::bf16); }
TEST(CudaDecisions, Fp16TrainingStepRoutesAndDescriptors) { expect_half_training_step_routes(Precision::f16, ElementType::f16); }

// The executor's route (backends/gpu/gpu_compile.cpp): on CUDA and the emulated device
// (half_on_library) exactly route_of(node, values); on HIP (every route native) every node with a
// half value native, so HIP's library code never sees half descriptors or half LinearCalls; f32
// nodes the same on both.
TEST(CudaDecisions, ExecutorRoutesHalfNodesToTheLibraryOnlyWhereTheTargetTakesThem) {
  for (Precision p : {Precision::bf16, Precision::f16}) {
    const Plan plan = autocast_training_plan("seed-cnn", 8, p);
    const std::vector<parity_value_desc>& values = plan.values();
    int half_nodes = 0, half_on_library = 0;
    for (const parity_node_desc& node : plan.nodes()) {
      const Route cuda = executor_route(node, values, true), hip = executor_route(node, values, false);
      const Route by_values = route_of(node, values);
      EXPECT_EQ(cuda.kind, by_values.kind) << node.name;
      EXPECT_EQ(cuda.library, by_values.library) << node.name;
      if (touches_half(node, values)) {
        ++half_nodes;
        half_on_library += cuda.library != Library::native;
        EXPECT_EQ(hip.kind, RouteKind::native) << node.name;
        EXPECT_EQ(hip.library, Library::native) << node.name;
      } else {
        EXPECT_EQ(hip.kind, route_of(node).kind) << node.name;
        EXPECT_EQ(hip.library, route_of(node).library) << node.name;
      }
    }
    EXPECT_GT(half_nodes, 10);
    // conv1/conv2 backward filter, conv2 backward data, fc1/logits forward, backward data, backward weight
    EXPECT_EQ(half_on_library, 9);
  }
}

// Why route_of(node, values) keeps a half convolution with a bias off cuDNN: cuDNN rounds y to
// the half dtype, so the f32 bias would be added to a rounded value and rounded again. Measured
// here on conv-like outputs (standard normal) and biases (uniform +-0.3): the second rounding
// moves a large fraction of the elements by one ulp, far above the op's half tolerance, which
// ref's one rounding is held to (ops/op_rule.cpp, kHalfRoundedSupport).
TEST(CudaDecisions, AddingTheBiasAfterCuDnnsRoundingWouldExceedTheHalfTolerance) {
  std::mt19937 rng(3);
  std::normal_distribution<float> product(0.0f, 1.0f);
  std::uniform_real_distribution<float> bias(-0.3f, 0.3f);
  std::vector<std::pair<float, float>> cases(100000);
  for (auto& c : cases) c = {product(rng), bias(rng)};
  for (ElementType h : {ElementType::bf16, ElementType::f16}) {
    double error = 0, norm = 0;
    int moved = 0;
    for (const auto& [a, b] : cases) {
      const float once = round_to(h, a + b), twice = round_to(h, round_to(h, a) + b);
      error += (double{twice} - once) * (double{twice} - once);
      norm += double{once} * once;
      moved += twice != once;
    }
    const ops::Tolerance& t = h == ElementType::bf16 ? ops::kHalfRoundedSupport.bf16 : ops::kHalfRoundedSupport.f16;
    EXPECT_GT(error / norm, t.op_nmse) << element_type_name(h) << ": NMSE " << error / norm;
    EXPECT_GT(moved, static_cast<int>(cases.size()) / 10) << element_type_name(h);
    std::printf("%s: adding the bias after a first rounding moves %.1f%% of the outputs, NMSE %.2g (op tolerance %.2g)\n",
                element_type_name(h), 100.0 * moved / cases.size(), error / norm, t.op_nmse);
  }
}

TEST(CudaDecisions, HalfConvolutionsTakeOneElementTypeAndAnF32Bias) {
  const Plan plan = autocast_training_plan("seed-cnn", 4, Precision::bf16);
  std::vector<parity_value_desc> values = plan.values();
  const parity_node_desc* bwd_weight = nullptr;
  for (const parity_node_desc& n : plan.nodes())
    if (n.op == PARITY_OP_CONV2D_BWD_WEIGHT && !bwd_weight) bwd_weight = &n;
  ASSERT_NE(bwd_weight, nullptr);
  const ConvDescriptors bf16 = conv_descriptors(*bwd_weight, values);
  // The same shape in f16 and f32 is another search: the key names the element type.
  std::vector<parity_value_desc> f16_values = values, f32_values = values;
  for (int32_t v : {bwd_weight->inputs[0], bwd_weight->inputs[1], bwd_weight->outputs[0]}) {
    f16_values[static_cast<size_t>(v)].dtype = PARITY_F16;
    f32_values[static_cast<size_t>(v)].dtype = PARITY_F32;
  }
  const ConvDescriptors f16 = conv_descriptors(*bwd_weight, f16_values), f32 = conv_descriptors(*bwd_weight, f32_values);
  EXPECT_EQ(f16.element, ElementType::f16);
  EXPECT_EQ(f32.element, ElementType::f32);
  EXPECT_FALSE(f32.db_by_channel_sum);  // f32: cuDNN's backward bias, as before
  const std::string key = conv_cache_key(ConvDirection::backward_filter, bf16, Options{}, 256);
  EXPECT_NE(key.find(" bf16"), std::string::npos) << key;
  EXPECT_NE(key, conv_cache_key(ConvDirection::backward_filter, f16, Options{}, 256));
  EXPECT_NE(key, conv_cache_key(ConvDirection::backward_filter, f32, Options{}, 256));

  parity_status status = PARITY_OK;
  std::vector<parity_value_desc> mixed = values;  // an f16 dw under bf16 x and dy
  mixed[static_cast<size_t>(bwd_weight->outputs[0])].dtype = PARITY_F16;
  std::string e = error_of([&] { conv_descriptors(*bwd_weight, mixed); }, &status);
  EXPECT_EQ(status, PARITY_STATUS_UNSUPPORTED);
  EXPECT_NE(e.find("is f16 but"), std::string::npos) << e;
  EXPECT_NE(e.find("is bf16"), std::string::npos) << e;
  std::vector<parity_value_desc> half_db = values;  // db must stay f32
  half_db[static_cast<size_t>(bwd_weight->outputs[1])].dtype = PARITY_BF16;
  e = error_of([&] { conv_descriptors(*bwd_weight, half_db); }, &status);
  EXPECT_EQ(status, PARITY_STATUS_UNSUPPORTED);
  EXPECT_NE(e.find("must be f32"), std::string::npos) << e;
}

TEST(CudaDecisions, HalfAlgorithmRuleAllowsTensorOpAndFmaNeverConversion) {
  const std::vector<AlgoCandidate> found = {
      {6, true, 0.05f, 0, false, true, false, 1},  // fastest: tensor-op, nondeterministic
      {5, true, 0.08f, 0, true, true, true, 2},    // ALLOW_CONVERSION
      {7, true, 0.10f, 1024, true, true, false, 1},  // deterministic tensor-op
      {1, true, 0.30f, 0, true, false, false, 3}};   // deterministic FMA
  Options o;  // TF32 off: f32 operands refuse algo 7's tensor-op math, half operands take it
  EXPECT_EQ(choose_algorithm(found, {5, 7, 1}, o, ElementType::f32, "c").algo, 1);
  for (ElementType h : {ElementType::bf16, ElementType::f16}) {
    const AlgoChoice c = choose_algorithm(found, {5, 7, 1}, o, h, "c");
    EXPECT_EQ(c.algo, 7);  // the first in heuristic order after the converting one
    EXPECT_EQ(c.math_type, 1);
    EXPECT_TRUE(c.tensor_op_math);
    EXPECT_EQ(choose_algorithm(found, {1, 7}, o, h, "c").algo, 1);  // FMA is fine for half operands
    Options fastest;
    fastest.deterministic = false;
    EXPECT_EQ(choose_algorithm(found, {5, 7, 1}, fastest, h, "c").algo, 6);
    parity_status status = PARITY_OK;
    const std::string e = error_of([&] { choose_algorithm({found[1]}, {5}, o, h, "node 'conv2'"); }, &status);
    EXPECT_EQ(status, PARITY_STATUS_UNSUPPORTED);
    EXPECT_NE(e.find("node 'conv2' (" + std::string(element_type_name(h)) + ")"), std::string::npos) << e;
    EXPECT_NE(e.find("algo 5: may convert its operands to another type"), std::string::npos) << e;
  }
}

// ---- half products run with their operands' types -----------------------------------------------
// Buffers hold floats; a half operand holds values its dtype represents, and every write to a
// half operand rounds (ops/kernels/half.h: round to nearest even), as the device does.
void run_typed(Buffers& m, const LinearCalls& calls) {
  for (const GemmCall& g : calls.gemms) {
    reference_sgemm(m, g);  // f32 accumulation; then C stored in its type
    for (float& v : m.data.at(g.c)) v = round_to(g.c_type, v);
  }
  for (const GemvCall& g : calls.gemvs) reference_sgemv(m, g);
  for (const RoundCall& r : calls.rounds) {
    const std::vector<float>& acc = m.data.at(r.acc);
    std::vector<float>& y = m.data.at(r.y);
    for (int64_t e = 0; e < r.outer * r.channels * r.inner; ++e)
      y.at(static_cast<size_t>(e)) = round_to(
          calls.element, acc.at(static_cast<size_t>(e)) +
                             (r.has_bias ? m.data.at(r.bias).at(static_cast<size_t>(e / r.inner % r.channels)) : 0.0f));
  }
  for (const ChannelSumCall& c : calls.sums)
    for (int64_t ch = 0; ch < c.channels; ++ch) {
      float sum = 0;
      for (int64_t o = 0; o < c.outer; ++o)
        for (int64_t i = 0; i < c.inner; ++i)
          sum += m.data.at(c.dy).at(static_cast<size_t>((o * c.channels + ch) * c.inner + i));
      m.data.at(c.db).at(static_cast<size_t>(ch)) = sum;
    }
}

parity_value_desc value_desc(const char* name, parity_dtype dtype, std::vector<int64_t> dims) {
  parity_value_desc v{};
  std::snprintf(v.name, sizeof v.name, "%s", name);
  v.dtype = dtype;
  v.kind = PARITY_VALUE_TEMP;
  v.rank = static_cast<int32_t>(dims.size());
  int64_t count = 1;
  for (size_t i = 0; i < dims.size(); ++i) count *= v.dims[i] = dims[i];
  v.bytes = count * (dtype == PARITY_F32 ? 4 : 2);
  return v;
}
parity_node_desc node_desc(const char* name, parity_op op, std::vector<int32_t> in, std::vector<int32_t> out) {
  parity_node_desc n{};
  std::snprintf(n.name, sizeof n.name, "%s", name);
  n.op = op;
  n.num_inputs = static_cast<int32_t>(in.size());
  n.num_outputs = static_cast<int32_t>(out.size());
  for (size_t i = 0; i < in.size(); ++i) n.inputs[i] = in[i];
  for (size_t i = 0; i < out.size(); ++i) n.outputs[i] = out[i];
  return n;
}

// The linear ops of one layer on half values: x [N,I], w [O,I], dy [N,O] half; b f32; y, dx, dw half; db f32.
struct HalfLinear {
  std::vector<parity_value_desc> values;
  parity_node_desc forward, bwd_data, bwd_weight;
  HalfLinear(parity_dtype h, int n, int in, int out) {
    values = {value_desc("x", h, {n, in}),   value_desc("w", h, {out, in}),  value_desc("b", PARITY_F32, {out}),
              value_desc("y", h, {n, out}),  value_desc("dy", h, {n, out}), value_desc("dx", h, {n, in}),
              value_desc("dw", h, {out, in}), value_desc("db", PARITY_F32, {out})};
    forward = node_desc("fc", PARITY_OP_LINEAR, {0, 1, 2}, {3});
    bwd_data = node_desc("fc.bwd_data", PARITY_OP_LINEAR_BWD_DATA, {4, 1}, {5});
    bwd_weight = node_desc("fc.bwd_weight", PARITY_OP_LINEAR_BWD_WEIGHT, {0, 4}, {6, 7});
  }
};

// y = round(x w^T + b) with the bias added in f32 before the one rounding (ref: the exact sum,
// rounded once). Chosen so that rounding the product first would give another answer:
//   bf16: 16*16 + 1*1 = 257 (between bf16's 256 and 258); + 0.75 -> 258, where round(257) = 256
//         (tie to even) + 0.75 -> 256;
//   f16:  64*32 + 1*1 = 2049 (between 2048 and 2050); + 0.75 -> 2050, where twice-rounded gives 2048.
TEST(CudaDecisions, HalfLinearForwardAddsTheF32BiasBeforeItsOneRounding) {
  struct Case {
    parity_dtype dtype;
    ElementType element;
    float x0, w0, expected, twice_rounded;
  };
  for (const Case& c : {Case{PARITY_BF16, ElementType::bf16, 16, 16, 258, 256}, Case{PARITY_F16, ElementType::f16, 64, 32, 2050, 2048}}) {
    const HalfLinear l(c.dtype, 1, 2, 1);
    const LinearCalls calls = linear_calls(l.forward, l.values);
    Buffers m;
    m.data[Operand::x] = {c.x0, 1};
    m.data[Operand::w] = {c.w0, 1};
    m.data[Operand::bias] = {0.75f};
    m.data[Operand::y] = {99};
    m.data[Operand::staging] = std::vector<float>(static_cast<size_t>(calls.staging_bytes / 4), -1.0f);
    run_typed(m, calls);
    EXPECT_EQ(m.data[Operand::y][0], c.expected) << element_type_name(c.element);
    EXPECT_EQ(round_to(c.element, round_to(c.element, c.x0 * c.w0 + 1) + 0.75f), c.twice_rounded);  // the case discriminates
  }
}

// Random half values: every call sequence against the row-major definitions computed in double
// and rounded once, as ref does. Small integers and quarters keep every f32 sum exact, so equality.
TEST(CudaDecisions, HalfLinearCallsComputeRefsDefinitionsRoundedOnce) {
  for (parity_dtype dtype : {PARITY_BF16, PARITY_F16}) {
    const ElementType h = element_type_of(dtype, "");
    const int n = 3, in = 7, out = 5;
    const HalfLinear l(dtype, n, in, out);
    std::mt19937 rng(11);
    std::uniform_int_distribution<int> big(-40, 40);  // products up to 1600 * 7: above bf16's exact integers
    Buffers m;
    auto fill = [&](Operand o, size_t count, float scale) {
      std::vector<float>& v = m.data[o];
      v.resize(count);
      for (float& e : v) e = round_to(h, static_cast<float>(big(rng)) * scale);
    };
    fill(Operand::x, n * in, 1.0f);
    fill(Operand::w, out * in, 1.0f);
    fill(Operand::dy, n * out, 1.0f);
    m.data[Operand::bias].resize(out);
    for (float& b : m.data[Operand::bias]) b = static_cast<float>(big(rng)) * 0.25f;  // f32 quarters
    for (Operand o : {Operand::y, Operand::dx, Operand::dw, Operand::db})
      m.data[o] = std::vector<float>(o == Operand::y ? n * out : o == Operand::dx ? n * in : o == Operand::dw ? out * in : out,
                                     99.0f);
    const LinearCalls fwd = linear_calls(l.forward, l.values), bwd_data = linear_calls(l.bwd_data, l.values),
                      bwd_weight = linear_calls(l.bwd_weight, l.values);
    m.data[Operand::staging] = std::vector<float>(static_cast<size_t>(fwd.staging_bytes / 4), -1.0f);
    run_typed(m, fwd);
    run_typed(m, bwd_data);
    run_typed(m, bwd_weight);
    const auto& x = m.data[Operand::x];
    const auto& w = m.data[Operand::w];
    const auto& dy = m.data[Operand::dy];
    int rounded = 0;  // elements where the one rounding changed the exact value
    for (int r = 0; r < n; ++r)
      for (int o = 0; o < out; ++o) {
        double y = m.data[Operand::bias][o];
        for (int i = 0; i < in; ++i) y += double{x[r * in + i]} * w[o * in + i];
        rounded += round_to(h, static_cast<float>(y)) != static_cast<float>(y);
        EXPECT_EQ(m.data[Operand::y][r * out + o], round_to(h, static_cast<float>(y))) << "y[" << r << "," << o << "]";
      }
    for (int r = 0; r < n; ++r)
      for (int i = 0; i < in; ++i) {
        double dx = 0;
        for (int o = 0; o < out; ++o) dx += double{dy[r * out + o]} * w[o * in + i];
        EXPECT_EQ(m.data[Operand::dx][r * in + i], round_to(h, static_cast<float>(dx))) << "dx[" << r << "," << i << "]";
      }
    for (int o = 0; o < out; ++o) {
      double db = 0;
      for (int r = 0; r < n; ++r) db += dy[r * out + o];
      EXPECT_EQ(m.data[Operand::db][o], static_cast<float>(db)) << "db[" << o << "] stays f32";
      for (int i = 0; i < in; ++i) {
        double dw = 0;
        for (int r = 0; r < n; ++r) dw += double{dy[r * out + o]} * x[r * in + i];
        EXPECT_EQ(m.data[Operand::dw][o * in + i], round_to(h, static_cast<float>(dw))) << "dw[" << o << "," << i << "]";
      }
    }
    if (dtype == PARITY_BF16) {
      EXPECT_GT(rounded, 0);  // the values exercise the rounding, not only exact integers
    }
  }
}

TEST(CudaDecisions, HalfLinearCallsRefuseMixedTypesAndHalfBiases) {
  const HalfLinear l(PARITY_BF16, 2, 3, 4);
  // f32 values: the f32 calls, unchanged.
  HalfLinear f32(PARITY_F32, 2, 3, 4);
  const LinearCalls f = linear_calls(f32.forward, f32.values), reference = linear_forward_calls(2, 3, 4);
  EXPECT_EQ(f.element, ElementType::f32);
  ASSERT_EQ(f.gemms.size(), reference.gemms.size());
  for (size_t i = 0; i < f.gemms.size(); ++i) {
    EXPECT_FALSE(uses_gemm_ex(f.gemms[i]));
    EXPECT_EQ(f.gemms[i].m, reference.gemms[i].m);
    EXPECT_EQ(f.gemms[i].c, reference.gemms[i].c);
  }
  EXPECT_EQ(f.ones_count, 2);
  EXPECT_EQ(f.staging_bytes, 0);
  EXPECT_EQ(linear_calls(f32.bwd_weight, f32.values).gemvs.size(), 1u);  // f32 db: the GEMV with ones

  parity_status status = PARITY_OK;
  std::vector<parity_value_desc> mixed = l.values;
  mixed[1].dtype = PARITY_F16;  // w f16 under a bf16 x
  std::string e = error_of([&] { linear_calls(l.forward, mixed); }, &status);
  EXPECT_EQ(status, PARITY_STATUS_UNSUPPORTED);
  EXPECT_NE(e.find("value 'w' is f16 but 'x' is bf16"), std::string::npos) << e;
  std::vector<parity_value_desc> half_bias = l.values;
  half_bias[2].dtype = PARITY_BF16;
  e = error_of([&] { linear_calls(l.forward, half_bias); }, &status);
  EXPECT_NE(e.find("bias 'b'"), std::string::npos) << e;
  EXPECT_NE(e.find("must be f32"), std::string::npos) << e;
  std::vector<parity_value_desc> half_db = l.values;
  half_db[7].dtype = PARITY_F16;
  EXPECT_NE(error_of([&] { linear_calls(l.bwd_weight, half_db); }).find("bias gradient 'db'"), std::string::npos);
  std::vector<parity_value_desc> bad_rows = l.values;
  bad_rows[3].dims[1] = 5;  // y [2,5] for a [4,3] weight
  EXPECT_NE(error_of([&] { linear_calls(l.forward, bad_rows); }, &status).find("are not [N, in] and [N, out]"),
            std::string::npos);
  EXPECT_EQ(status, PARITY_STATUS_SHAPE);
}

TEST(CudaDecisions, HalfPoolingTakesTheNativeKernels) {
  parity_node_desc pool = node_desc("pool", PARITY_OP_GLOBAL_AVGPOOL, {0}, {1});
  std::vector<parity_value_desc> v = {value_desc("x", PARITY_BF16, {2, 3, 4, 4}), value_desc("y", PARITY_BF16, {2, 3, 1, 1})};
  const PoolingPlan half = pooling_plan(pool, v);
  EXPECT_FALSE(half.on_cudnn);
  EXPECT_NE(half.why.find("half values"), std::string::npos) << half.why;
  v[0].dtype = v[1].dtype = PARITY_F32;
  EXPECT_TRUE(pooling_plan(pool, v).on_cudnn);
  EXPECT_EQ(route_of(pool, v).kind, RouteKind::pooling);
}

}  // namespace
}  // namespace cuda_decisions
}  // namespace parity
