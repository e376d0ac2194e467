// tests/test_batchnorm.cpp — batchnorm2d against numbers from outside parity: the ONNX backend
// test case of BatchNormalization in training mode (the ONNX convention) and PyTorch 1.13's
// torch.nn.functional.batch_norm forward, backward and running statistics (the PyTorch
// convention), on every in-tree backend; the cpu backend's bitwise determinism across thread
// counts; and a training step with batchnorm that allocates nothing in steady state is in
// test_alloc.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "graph/compiled_step.h"
#include "parity/parity.h"

namespace parity {
namespace {

// The ONNX backend test case test_batchnorm_example_training_mode (onnx 1.12's node tests,
// Debian's libonnx-testdata: data/node/test_batchnorm_example_training_mode/test_data_set_0),
// read with onnx.numpy_helper and printed to 9 significant digits (float32 round-trips).
// BatchNormalization(training_mode=1), epsilon 1e-5 and momentum 0.9 (ONNX's defaults).
namespace onnx_example {
const std::vector<float> x = {
    1.76405239f, 0.400157213f, 0.97873801f, 2.24089313f, 1.867558f, -0.977277875f, 0.950088441f, -0.151357204f,
    -0.103218853f, 0.410598516f, 0.144043565f, 1.45427346f, 0.761037707f, 0.121675014f, 0.443863243f,
    0.333674341f, 1.49407911f, -0.205158263f, 0.313067704f, -0.854095757f, -2.55298972f, 0.653618574f,
    0.864436209f, -0.742165029f, 2.26975465f, -1.45436573f, 0.0457585156f, -0.187183857f, 1.53277922f,
    1.4693588f, 0.15494743f, 0.378162533f, -0.887785733f, -1.98079646f, -0.347912163f, 0.156348974f,
    1.23029065f, 1.20237982f, -0.387326807f, -0.302302748f, -1.04855299f, -1.42001796f, -1.70627022f,
    1.95077538f, -0.509652197f, -0.438074291f, -1.25279534f, 0.777490377f, -1.6138978f, -0.212740287f,
    -0.895466566f, 0.386902511f, -0.51080513f, -1.18063223f, -0.028182229f, 0.428331882f, 0.0665172189f,
    0.302471906f, -0.634322107f, -0.362741172f, -0.672460437f, -0.359553158f, -0.813146293f, -1.7262826f,
    0.177426144f, -0.401780933f, -1.63019836f, 0.462782264f, -0.907298386f, 0.0519453958f, 0.729090571f,
    0.128982916f, 1.13940072f, -1.23482585f, 0.402341634f, -0.684810102f, -0.870797157f, -0.578849673f,
    -0.311552525f, 0.0561653413f, -1.16514981f, 0.900826514f, 0.46566245f, -1.53624368f, 1.48825216f,
    1.89588916f, 1.1787796f, -0.179924831f, -1.07075262f, 1.0544517f, -0.403176934f, 1.22244501f, 0.208274975f,
    0.976639032f, 0.356366396f, 0.706573188f, 0.0105000203f, 1.78587055f, 0.126912087f, 0.401989371f,
    1.8831507f, -1.34775901f, -1.27048504f, 0.96939671f, -1.17312336f, 1.94362116f, -0.413618982f,
    -0.747454822f, 1.92294204f, 1.48051476f, 1.86755896f, 0.906044662f, -0.861225665f, 1.91006494f,
    -0.268003374f, 0.802456379f, 0.947251976f, -0.155010089f, 0.614079356f, 0.9222067f};
const std::vector<float> scale = {
    0.376425534f, -1.09940076f, 0.298238188f};
const std::vector<float> bias = {
    1.32638586f, -0.694567859f, -0.14963454f};
const std::vector<float> mean = {
    -0.435153544f, 1.84926379f, 0.672294736f};
const std::vector<float> var = {
    0.975521505f, 0.85580337f, 0.0117140841f};
const std::vector<float> y = {
    2.00452924f, 1.44582617f, 1.68283474f, 2.19986129f, 2.04692912f, 0.881576657f, 1.67109883f, 1.21990502f,
    1.23962426f, 1.45010328f, 1.34091234f, 1.87763214f, 1.59365654f, 1.33174932f, 1.46372986f, 1.41859233f,
    1.89393806f, 1.19786608f, 1.410151f, 0.932036638f, 2.13997626f, -1.11611259f, -1.33018327f, 0.301209092f,
    -2.75718689f, 1.02439952f, -0.498872757f, -0.262335896f, -2.00883937f, -1.94444036f, -0.609746516f,
    -0.836406052f, 0.449076831f, 1.55895352f, -0.0991274714f, -0.611169696f, -1.70168304f, -1.67334163f,
    -0.0591045618f, -0.145440638f, -0.443827301f, -0.54323566f, -0.619840145f, 0.358828247f, -0.299611092f,
    -0.280456007f, -0.498484939f, 0.0448433906f, -0.595120192f, -0.220153987f, -0.402859569f, -0.0596825182f,
    -0.299919635f, -0.479173243f, -0.170764074f, -0.0485955328f, -0.145421386f, -0.0822771341f, -0.332974225f,
    -0.260295987f, 1.00644135f, 1.13462007f, 0.948811173f, 0.574755967f, 1.35458708f, 1.11732197f,
    0.614115715f, 1.47147977f, 0.910242856f, 1.30318546f, 1.58056974f, 1.3347429f, 1.74864829f, 0.776075184f,
    1.44672096f, 1.00138247f, 0.925195158f, 1.04478788f, 1.15428293f, 1.30491412f, 0.730720818f, -1.36713505f,
    -0.925256133f, 1.10754108f, -1.96362519f, -2.37755251f, -1.64937711f, -0.269706935f, 0.634866893f,
    -1.52313089f, -0.0430099368f, -1.69371641f, -0.663896978f, -1.44411755f, -0.814273536f, -1.16988432f,
    -0.463070154f, -2.26583624f, -0.581278563f, -0.860600531f, 0.340731055f, -0.523898363f, -0.503218889f,
    0.0961997658f, -0.477163792f, 0.356913686f, -0.273911476f, -0.363249868f, 0.351379693f, 0.232980967f,
    0.336558521f, 0.0792460293f, -0.393696308f, 0.34793365f, -0.234943032f, 0.0515245944f, 0.090273574f,
    -0.204704702f, 0.00111268461f, 0.0835711807f};
const std::vector<float> running_mean = {
    -0.380780011f, 1.68818533f, 0.610142589f};
const std::vector<float> running_var = {
    0.962410212f, 0.887444615f, 0.134740114f};
}  // namespace onnx_example

// PyTorch 1.13 (Debian's python3-torch), float32 on the CPU:
//   x[i] = ((i * 37) % 23) / 7 - 1.5 over x[2,3,2,3], dy[i] = ((i * 11) % 13) / 6 - 1,
//   gamma (0.5, -1.25, 2), beta (0.25, 0, -0.75), running mean (0.1, -0.2, 0.3), var (1, 0.5, 2);
//   y = F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=0.1, eps=1e-5);
//   y.backward(dy); and F.batch_norm(..., training=False) with the updated running statistics.
namespace torch_example {
const std::vector<float> gamma = {0.5f, -1.25f, 2.0f}, beta = {0.25f, 0.0f, -0.75f};
const std::vector<float> running_mean0 = {0.1f, -0.2f, 0.3f}, running_var0 = {1.0f, 0.5f, 2.0f};
const std::vector<float> y = {
    -0.398607939f, 0.548923612f, -0.0602037944f, 0.88732779f, 0.278200328f, -0.330927074f, -0.779302359f, 1.05036402f,
    -1.79578364f, 0.0338827036f, 1.86354911f, -0.982598603f, -1.99688375f, 2.55695248f, -0.370513618f, -3.29797983f,
    1.25585639f, -1.67160976f, 1.0903703f, 0.481242806f, -0.127884611f, 0.819646955f, 0.210519508f, -0.398607939f,
    -0.576006114f, 1.25366032f, -1.59248745f, 0.237178981f, 2.06684542f, -0.779302359f, -2.32215786f, 2.23167849f,
    -0.695787668f, -3.62325382f, 0.930582404f, -1.99688375f};
const std::vector<float> running_mean = {0.0769047588f, -0.170476183f, 0.274761915f};
const std::vector<float> running_var = {1.02150583f, 0.534168184f, 1.88416815f};
const std::vector<float> dx = {
    -0.441223353f, 0.350969076f, 0.242147401f, 0.00784732215f, -0.100974374f, -0.209796071f, 1.05441189f, -1.15304828f,
    -1.30325937f, -0.427392781f, 0.448473841f, 0.298262775f, -1.92740119f, -1.30646634f, 1.98080015f, 0.334744364f,
    0.955678761f, -0.690377116f, -0.324363291f, -0.433184981f, 0.484485865f, 0.250185817f, 0.141364127f, 0.0325424224f,
    0.387486875f, 1.26335359f, 1.11314249f, -1.09431756f, -0.218451038f, -0.368662119f, -0.887506723f, -0.266572326f,
    -1.91262817f, 1.37463856f, 1.99557304f, 0.349517226f};
const std::vector<float> dgamma = {1.02085257f, -2.31305957f, -3.19401002f};
const std::vector<float> dbeta = {0.50000006f, 0.333333313f, 0.166666567f};
const std::vector<float> y_eval = {
    -0.530104756f, 0.459307879f, -0.176743075f, 0.812669516f, 0.176618561f, -0.459432364f, -1.39102674f, 0.807903171f,
    -2.61265445f, -0.413724601f, 1.78520536f, -1.63535237f, -1.87885273f, 1.03521073f, -0.838115752f, -2.71144223f,
    0.202621132f, -1.67070532f, 1.02468657f, 0.388635546f, -0.247415394f, 0.741997182f, 0.105946235f, -0.530104756f,
    -1.14670122f, 1.05222869f, -2.36832905f, -0.169399023f, 2.02953076f, -1.39102674f, -2.08700013f, 0.827063262f,
    -1.04626322f, -2.91958976f, -0.00552624371f, -1.87885273f};
}  // namespace torch_example

Tensor tensor_of(const Shape& shape, const std::vector<float>& values) {
  Tensor t(shape, DType::f32);
  EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = values[static_cast<size_t>(i)];
  return t;
}

// Each element within `tolerance` of the expected float32 value (which was rounded once by its
// source, and may differ from a correct float32 backend by a few ulps of the summation order).
void expect_near(const Tensor& got, const std::vector<float>& want, float tolerance, const std::string& what) {
  ASSERT_EQ(static_cast<size_t>(got.numel()), want.size()) << what;
  for (int64_t i = 0; i < got.numel(); ++i)
    EXPECT_NEAR(got.f32()[i], want[static_cast<size_t>(i)], tolerance) << what << " element " << i;
}

const char* const kBackends[] = {"ref", "cpu", "simt", "gpu_emu"};

// One training forward (the running statistics as state, then read back), and its backward when
// `dy` is given.
struct TrainingRun {
  Tensor y, running_mean, running_var, dx, dgamma, dbeta;
};
TrainingRun run_training(const std::string& backend_name, const Shape& shape, const std::vector<float>& x,
                         const std::vector<float>& gamma, const std::vector<float>& beta,
                         const std::vector<float>& running_mean, const std::vector<float>& running_var, float momentum,
                         parity_batchnorm_convention convention, const std::vector<float>* dy) {
  const Shape channels{shape[1]};
  GraphBuilder b;
  Value xv = b.input("x", shape);
  Value g = b.input("gamma", channels), be = b.input("beta", channels);
  Value rm = b.state("running_mean", channels), rv = b.state("running_var", channels);
  Value y = b.batchnorm2d_train(xv, g, be, rm, rv, 1e-5f, momentum, convention, "bn");
  std::vector<std::string> keep = {"bn"};
  if (dy) {
    Value dyv = b.input("dy", shape);
    const Node node = b.graph().nodes().back();
    parity_op_params p = node.params;
    p.batchnorm2d.training = 1;
    b.node(PARITY_OP_BATCHNORM2D_BWD, p, {xv, dyv, g, Value{node.outputs[1]}, Value{node.outputs[2]}}, "bn.bwd");
    keep.insert(keep.end(), {"bn.bwd:0", "bn.bwd:1", "bn.bwd:2"});
  }
  (void)y;
  const Graph graph = b.take();
  BackendOptions bo;
  bo.threads = 2;
  auto backend = create_backend(backend_name, bo);
  CompiledStep step(*backend, graph, keep);
  step.write("x", tensor_of(shape, x));
  step.write("gamma", tensor_of(channels, gamma));
  step.write("beta", tensor_of(channels, beta));
  step.write("running_mean", tensor_of(channels, running_mean));
  step.write("running_var", tensor_of(channels, running_var));
  if (dy) step.write("dy", tensor_of(shape, *dy));
  step.execute();
  TrainingRun r{step.read("bn"), step.read("running_mean"), step.read("running_var"), {}, {}, {}};
  if (dy) {
    r.dx = step.read("bn.bwd:0");
    r.dgamma = step.read("bn.bwd:1");
    r.dbeta = step.read("bn.bwd:2");
  }
  return r;
}

TEST(Batchnorm, OnnxTrainingModeExampleOnEveryBackend) {
  using namespace onnx_example;
  for (const char* name : kBackends) {
    SCOPED_TRACE(name);
    const TrainingRun r = run_training(name, Shape{2, 3, 4, 5}, x, scale, bias, mean, var, 0.9f,
                                       PARITY_BATCHNORM_ONNX, nullptr);
    // ONNX's numbers are numpy's float32; ours differ from them by ~1 ulp (2.4e-7 at 2).
    expect_near(r.y, y, 1e-6f, "y");
    expect_near(r.running_mean, running_mean, 2e-7f, "running_mean");
    expect_near(r.running_var, running_var, 2e-7f, "running_var");
  }
}

TEST(Batchnorm, PyTorchForwardBackwardAndRunningStatisticsOnEveryBackend) {
  const Shape shape{2, 3, 2, 3};
  std::vector<float> x(36), dy(36);
  for (int i = 0; i < 36; ++i) {
    x[static_cast<size_t>(i)] = static_cast<float>((i * 37) % 23) / 7.0f - 1.5f;
    dy[static_cast<size_t>(i)] = static_cast<float>((i * 11) % 13) / 6.0f - 1.0f;
  }
  using namespace torch_example;
  for (const char* name : kBackends) {
    SCOPED_TRACE(name);
    const TrainingRun r =
        run_training(name, shape, x, gamma, beta, running_mean0, running_var0, 0.1f, PARITY_BATCHNORM_PYTORCH, &dy);
    expect_near(r.y, y, 2e-6f, "y");
    expect_near(r.running_mean, running_mean, 2e-7f, "running_mean");
    expect_near(r.running_var, running_var, 4e-7f, "running_var (unbiased)");
    expect_near(r.dx, dx, 2e-6f, "dx");
    expect_near(r.dgamma, dgamma, 2e-6f, "dgamma");
    expect_near(r.dbeta, dbeta, 1e-6f, "dbeta");

    GraphBuilder b;
    const Shape channels{3};
    Value out = b.batchnorm2d_eval(b.input("x", shape), b.input("gamma", channels), b.input("beta", channels),
                                   b.input("running_mean", channels), b.input("running_var", channels), 1e-5f, "bn");
    (void)out;
    const Graph graph = b.take();
    BackendOptions bo;
    auto backend = create_backend(name, bo);
    CompiledStep step(*backend, graph, {"bn"});
    step.write("x", tensor_of(shape, x));
    step.write("gamma", tensor_of(channels, gamma));
    step.write("beta", tensor_of(channels, beta));
    step.write("running_mean", tensor_of(channels, running_mean));
    step.write("running_var", tensor_of(channels, running_var));
    step.execute();
    expect_near(step.read("bn"), y_eval, 2e-6f, "evaluation y");
  }
}

// A constant channel has variance 0: x - mean is exactly 0 and y is beta, finite (1/sqrt(eps)
// multiplies a zero). ONNX's convention with one value per channel is the same case.
TEST(Batchnorm, ConstantChannelGivesBeta) {
  for (const char* name : kBackends) {
    SCOPED_TRACE(name);
    const std::vector<float> x = {0.75f, 0.75f, -1.0f, 2.0f, 0.75f, 0.75f, 0.5f, 3.0f};  // [2,2,1,2]: channel 0 constant
    const TrainingRun r = run_training(name, Shape{2, 2, 1, 2}, x, {2.0f, 1.0f}, {0.5f, -0.25f}, {0.0f, 0.0f},
                                       {1.0f, 1.0f}, 0.1f, PARITY_BATCHNORM_PYTORCH, nullptr);
    for (int i : {0, 1, 4, 5}) EXPECT_EQ(r.y.f32()[i], 0.5f) << i;
    EXPECT_FLOAT_EQ(r.running_mean.f32()[0], 0.075f);
    EXPECT_FLOAT_EQ(r.running_var.f32()[0], 0.9f);  // 0.9 * 1 + 0.1 * 0
    const TrainingRun one = run_training(name, Shape{1, 2, 1, 1}, {3.0f, -2.0f}, {2.0f, 1.0f}, {0.5f, -0.25f},
                                         {0.0f, 0.0f}, {1.0f, 1.0f}, 0.9f, PARITY_BATCHNORM_ONNX, nullptr);
    EXPECT_EQ(one.y.f32()[0], 0.5f);
    EXPECT_EQ(one.y.f32()[1], -0.25f);
    EXPECT_FLOAT_EQ(one.running_mean.f32()[0], 0.3f);
    EXPECT_FLOAT_EQ(one.running_var.f32()[1], 0.9f);
  }
}

// The cpu backend's per-channel sums are fixed trees: the same bits for 1 and 4 threads.
TEST(Batchnorm, CpuIsBitwiseDeterministicAcrossThreadCounts) {
  const Shape shape{16, 5, 13, 11};
  std::vector<float> x(static_cast<size_t>(shape.numel())), dy(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<float>((i * 7919) % 1009) / 97.0f + 3.0f;
    dy[i] = static_cast<float>((i * 104729) % 997) / 499.0f - 1.0f;
  }
  const std::vector<float> c1 = {1.0f, 0.5f, -0.5f, 2.0f, 1.5f}, c0 = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f};
  std::vector<std::vector<uint32_t>> runs;
  for (int threads : {1, 4}) {
    GraphBuilder b;
    const Shape channels{5};
    Value xv = b.input("x", shape), dyv = b.input("dy", shape);
    Value g = b.input("gamma", channels), be = b.input("beta", channels);
    b.batchnorm2d_train(xv, g, be, b.state("rm", channels), b.state("rv", channels), 1e-5f, 0.1f,
                        PARITY_BATCHNORM_PYTORCH, "bn");
    const Node node = b.graph().nodes().back();
    parity_op_params p = node.params;
    b.node(PARITY_OP_BATCHNORM2D_BWD, p, {xv, dyv, g, Value{node.outputs[1]}, Value{node.outputs[2]}}, "bwd");
    const Graph graph = b.take();
    BackendOptions bo;
    bo.threads = threads;
    auto cpu = create_backend("cpu", bo);
    const std::vector<std::string> keep = {"bn", "bn.saved_mean", "bn.saved_invstd", "bwd:0", "bwd:1", "bwd:2"};
    CompiledStep step(*cpu, graph, keep);
    step.write("x", tensor_of(shape, x));
    step.write("dy", tensor_of(shape, dy));
    step.write("gamma", tensor_of(channels, c1));
    step.write("beta", tensor_of(channels, c0));
    step.write("rm", tensor_of(channels, c0));
    step.write("rv", tensor_of(channels, c1));
    step.execute();
    std::vector<uint32_t> bits;
    for (const std::string& name : std::vector<std::string>{"bn", "bn.saved_mean", "bn.saved_invstd", "bwd:0", "bwd:1", "bwd:2", "rm", "rv"}) {
      const Tensor t = step.read(name);
      const auto* w = reinterpret_cast<const uint32_t*>(t.data());
      bits.insert(bits.end(), w, w + t.numel());
    }
    runs.push_back(std::move(bits));
  }
  EXPECT_TRUE(runs[0] == runs[1]);
}

}  // namespace
}  // namespace parity
