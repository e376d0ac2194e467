// tests/test_onnx_export.cpp — ONNX export (onnx/onnx_export.h): every built-in model exported,
// passed by onnx's checker with full shape inference, read back by the importer at another batch
// and run on cpu with logits bitwise equal to the model's own evaluation graph; every op of the
// mapping the same way; refusals naming the node, the tensor or the file; `parity export` as a
// user runs it.
#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "graph/compiled_step.h"
#include "onnx/onnx_export.h"
#include "onnx/onnx_model.h"
#include "tests/test_helpers.h"

namespace parity {
namespace {

using testing::bitwise_equal;
using testing::random_tensor;

// The seeded initial weights, with each batch norm's weight, bias, running mean and running
// variance drawn away from their initial 1, 0, 0, 1: with those, a batch norm whose operands
// were mapped in the wrong order could still compute the same numbers.
std::map<std::string, Tensor> test_weights(const ModelSpec& spec) {
  std::map<std::string, Tensor> weights = init_weights(spec, 7);
  std::mt19937 rng(11);
  auto redraw = [&](const std::string& name, const Shape& shape, float lo, float hi) {
    weights[name] = random_tensor(rng, shape, lo, hi);
  };
  for (const ParamSpec& p : spec.params)
    if (p.init != ParamSpec::Init::uniform) redraw(p.name, p.shape, 0.5f, 1.5f);
  for (const BufferSpec& b : spec.buffers) {
    if (b.step_count) continue;
    const bool variance = b.name.size() > 4 && b.name.compare(b.name.size() - 4, 4, "_var") == 0;
    redraw(b.name, b.shape, variance ? 0.5f : -0.5f, variance ? 2.0f : 0.5f);
  }
  return weights;
}

std::unique_ptr<Backend> cpu() { return create_backend("cpu"); }

// The logits of the model's own evaluation graph.
Tensor model_logits(const ModelSpec& spec, const std::map<std::string, Tensor>& weights, const Tensor& x, Backend& backend) {
  const Graph graph = build_forward(spec, x.shape()[0]);
  CompiledStep step(backend, graph, {"logits"});
  for (const ParamSpec& p : spec.params) step.write(p.name, weights.at(p.name));
  for (const BufferSpec& b : spec.buffers)
    if (!b.step_count) step.write(b.name, weights.at(b.name));
  step.write("x", x);
  step.write("y", Tensor(Shape{x.shape()[0]}, DType::i32));
  step.execute();
  return step.read("logits");
}

// The exported bytes read back by the importer, "x" fed `x` (its batch fills the symbolic one);
// the values of `outputs`, in order.
std::vector<Tensor> imported_outputs(const std::string& bytes, const Tensor& x, Backend& backend) {
  const OnnxModel model = OnnxModel::parse(bytes.data(), bytes.size(), "", "exported.onnx");
  GraphBuilder builder;
  const Value input = builder.input("x", x.shape());
  OnnxBuildOptions options;
  options.batch = x.shape()[0];
  options.inputs = {{"x", input}};
  const OnnxBuilt built = model.build(builder, options);
  const Graph graph = builder.take();
  std::vector<std::string> names;
  for (Value v : built.outputs) names.push_back(graph.value(v).name);
  CompiledStep step(backend, graph, names);
  for (const auto& [name, tensor] : built.values) step.write(name, tensor);
  step.write("x", x);
  step.execute();
  std::vector<Tensor> out;
  for (const std::string& name : names) out.push_back(step.read(name));
  return out;
}

std::string mismatch(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return fmt::format("shapes {} and {}", a.shape().str(), b.shape().str());
  for (int64_t i = 0; i < a.numel(); ++i)
    if (std::memcmp(&a.f32()[i], &b.f32()[i], sizeof(float)) != 0)
      return fmt::format("first difference at element {}: {:.9g} vs {:.9g}", i, a.f32()[i], b.f32()[i]);
  return "none";
}

class ExportModel : public ::testing::TestWithParam<std::string> {};

// Exported at batch 1, re-imported at batch 5: the batch is symbolic, the names are parity's,
// and the logits are the same bits as the model's evaluation graph on the same backend.
TEST_P(ExportModel, ReimportsWithBitIdenticalLogits) {
  const ModelSpec& spec = model_spec(GetParam());
  const std::map<std::string, Tensor> weights = test_weights(spec);
  OnnxExportOptions options;
  options.graph_name = spec.name;
  const OnnxExported exported = export_onnx(build_forward(spec, 1), weights, options);
  EXPECT_NO_THROW(check_onnx_model(exported.bytes, spec.name));

  const OnnxModel model = OnnxModel::parse(exported.bytes.data(), exported.bytes.size(), "", spec.name);
  EXPECT_EQ(model.opset(), 13);
  ASSERT_EQ(model.inputs().size(), 1u);
  EXPECT_EQ(model.inputs()[0].name, "x");
  EXPECT_TRUE(model.inputs()[0].batch_symbolic);
  EXPECT_EQ(model.inputs()[0].dims, (std::vector<int64_t>{-1, spec.channels, spec.height, spec.width}));
  ASSERT_EQ(model.outputs().size(), 1u);
  EXPECT_EQ(model.outputs()[0].name, "logits");
  EXPECT_EQ(model.outputs()[0].dims, (std::vector<int64_t>{-1, spec.num_classes}));
  std::set<std::string> expected, got;
  for (const ParamSpec& p : spec.params) expected.insert(p.name);
  for (const BufferSpec& b : spec.buffers)
    if (!b.step_count) expected.insert(b.name);
  for (const auto& [name, tensor] : model.initializers()) {
    got.insert(name);
    EXPECT_TRUE(bitwise_equal(tensor, weights.at(name))) << name;
  }
  EXPECT_EQ(got, expected);

  std::mt19937 rng(3);
  const Tensor x = random_tensor(rng, Shape{5, spec.channels, spec.height, spec.width}, 0.0f, 1.0f);
  auto backend = cpu();
  const Tensor original = model_logits(spec, weights, x, *backend);
  const Tensor reimported = imported_outputs(exported.bytes, x, *backend).at(0);
  EXPECT_TRUE(bitwise_equal(original, reimported)) << spec.name << ": " << mismatch(original, reimported);
  for (int64_t i = 0; i < original.numel(); ++i) ASSERT_TRUE(std::isfinite(original.f32()[i])) << i;
}

INSTANTIATE_TEST_SUITE_P(AllBuiltInModels, ExportModel, ::testing::ValuesIn(model_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

// Every op of the mapping that the built-in models do not use (asymmetric padding, dilation,
// groups, leaky_relu, sigmoid, concat, broadcasting mul and add, a hardtanh that is not relu6,
// padded and ceil-mode pooling, count_include_pad false, a rank-changing reshape, softmax and
// log_softmax) in one graph with two outputs, exported and read back bit-identically.
TEST(OnnxExport, EveryMappedOpRoundTripsBitIdentically) {
  std::mt19937 rng(5);
  std::map<std::string, Tensor> weights;
  GraphBuilder b;
  auto param = [&](const std::string& name, const Shape& shape) {
    weights[name] = random_tensor(rng, shape, -0.5f, 0.5f);
    return b.parameter(name, shape);
  };
  const Value x = b.input("x", Shape{2, 4, 11, 10});
  Conv2dOptions conv;
  conv.stride_h = 2;
  conv.pad_h = 1;
  conv.pad_w = 0;
  conv.pad_end = true;
  conv.pad_bottom = 2;
  conv.pad_right = 1;
  conv.dilation_h = 2;
  conv.groups = 2;
  Value h = b.conv2d(x, param("c.weight", Shape{6, 2, 3, 3}), param("c.bias", Shape{6}), conv, "c");
  h = b.leaky_relu(h, 0.1f, "leaky");
  const Value s = b.sigmoid(h, "sig"), t = b.tanh(h, "tanh");
  h = b.concat({s, t, h}, "cat");
  h = b.mul(h, param("scale", Shape{1, 18, 1, 1}), "scaled");
  h = b.add(h, param("shift", Shape{1, 18, 1, 1}), "shifted");
  h = b.hardtanh(h, -0.25f, 0.75f, "clip");
  h = b.maxpool2d(h, 3, 1, 1, false, 1, "maxpool_padded");
  h = b.maxpool2d(h, 2, 2, 0, /*ceil_mode=*/true, 1, "maxpool_ceil");  // 5x9 to 3x5 (floor: 2x4)
  h = b.avgpool2d(h, 3, 1, 1, false, /*count_include_pad=*/false, "avgpool");
  const Shape hs = b.graph().value(h).shape;
  h = b.reshape(h, Shape{hs[0], hs[1] * hs[2], hs[3], 1}, "regroup");
  h = b.relu(h, "relu");
  h = b.flatten(h, "flatten");
  const int64_t features = b.graph().value(h).shape[1];
  h = b.linear(h, param("fc.weight", Shape{7, features}), param("fc.bias", Shape{7}), "logits");
  b.softmax(h, 1, "probs");
  b.log_softmax(h, -1, "logp");
  const Graph graph = b.take();

  OnnxExportOptions options;
  options.outputs = {"probs", "logp"};
  const OnnxExported exported = export_onnx(graph, weights, options);
  EXPECT_NO_THROW(check_onnx_model(exported.bytes, "ops"));
  EXPECT_EQ(std::set<std::string>(exported.initializers.begin(), exported.initializers.end()),
            (std::set<std::string>{"c.weight", "c.bias", "scale", "shift", "fc.weight", "fc.bias"}));

  const Tensor input = random_tensor(rng, Shape{2, 4, 11, 10}, -2.0f, 2.0f);
  auto backend = cpu();
  CompiledStep step(*backend, graph, {"probs", "logp"});
  for (const auto& [name, tensor] : weights) step.write(name, tensor);
  step.write("x", input);
  step.execute();
  const std::vector<Tensor> reimported = imported_outputs(exported.bytes, input, *backend);
  ASSERT_EQ(reimported.size(), 2u);
  EXPECT_TRUE(bitwise_equal(step.read("probs"), reimported[0])) << mismatch(step.read("probs"), reimported[0]);
  EXPECT_TRUE(bitwise_equal(step.read("logp"), reimported[1])) << mismatch(step.read("logp"), reimported[1]);
}

// ceil_mode's last window: PyTorch (and parity) drop it when it would start in the padding,
// ONNX's MaxPool keeps it, so a 5x5 input pooled by 2 with stride 2 and padding 1 is 3x3 in
// parity and 4x4 in ONNX.
TEST(OnnxExport, RefusesACeilModePoolWhoseSizeOnnxComputesOtherwise) {
  GraphBuilder b;
  const Value x = b.input("x", Shape{1, 2, 5, 5});
  b.maxpool2d(x, 2, 2, 1, /*ceil_mode=*/true, 1, "pool");
  OnnxExportOptions options;
  options.outputs = {"pool"};
  std::string message;
  try {
    export_onnx(b.take(), {}, options);
  } catch (const OnnxUnsupported& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("node 'pool' (MAXPOOL2D): its output [1,2,3,3] has height 3 where ONNX's formula gives 4"),
            std::string::npos)
      << message;
}

// A max-pool padded as wide as its window has windows of padding only: 0 in parity, -inf in ONNX.
TEST(OnnxExport, RefusesAPoolWithWindowsOfPaddingOnly) {
  GraphBuilder b;
  const Value x = b.input("x", Shape{1, 2, 4, 4});
  b.maxpool2d(x, 2, 1, 2, false, 1, "pool");
  OnnxExportOptions options;
  options.outputs = {"pool"};
  std::string message;
  try {
    export_onnx(b.take(), {}, options);
  } catch (const OnnxUnsupported& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("node 'pool' (MAXPOOL2D): padding 2 as wide as its window 2"), std::string::npos) << message;
}

std::string export_error(const Graph& graph, const std::map<std::string, Tensor>& weights,
                         const OnnxExportOptions& options = {}) {
  try {
    export_onnx(graph, weights, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// CAST (ABI 9) is ONNX's Cast: a round trip through f16 passes the checker and its shape
// inference; the f16 value's type is FLOAT16. (parity's importer does not read half tensors yet.)
TEST(OnnxExport, CastIsOnnxCastWithItsTargetType) {
  GraphBuilder b;
  const Value x = b.input("x", Shape{2, 8});
  const Value h = b.cast(x, DType::f16, "to_half");
  const Value back = b.cast(h, DType::f32, "to_float");
  b.linear(back, b.parameter("w", Shape{3, 8}), b.parameter("b", Shape{3}), "logits");
  std::map<std::string, Tensor> weights{{"w", Tensor(Shape{3, 8}, DType::f32)}, {"b", Tensor(Shape{3}, DType::f32)}};
  OnnxExportOptions options;
  options.outputs = {"logits"};
  const OnnxExported exported = export_onnx(b.take(), weights, options);
  EXPECT_NO_THROW(check_onnx_model(exported.bytes, "cast"));
  onnx::ModelProto model;
  ASSERT_TRUE(model.ParseFromString(exported.bytes));
  std::vector<int64_t> targets;
  for (const onnx::NodeProto& n : model.graph().node())
    if (n.op_type() == "Cast")
      for (const onnx::AttributeProto& a : n.attribute())
        if (a.name() == "to") targets.push_back(a.i());
  EXPECT_EQ(targets, (std::vector<int64_t>{onnx::TensorProto::FLOAT16, onnx::TensorProto::FLOAT}));
}

TEST(OnnxExport, RefusesAnOpWithoutAnOnnxFormNamingTheNode) {
  GraphBuilder b;
  const Value x = b.input("x", Shape{2, 8});
  const Value act = b.gelu(x, "act");
  b.linear(act, b.parameter("w", Shape{3, 8}), b.parameter("b", Shape{3}), "logits");
  std::map<std::string, Tensor> weights{{"w", Tensor(Shape{3, 8}, DType::f32)}, {"b", Tensor(Shape{3}, DType::f32)}};
  const std::string message = export_error(b.take(), weights);
  EXPECT_NE(message.find("node 'act' (GELU)"), std::string::npos) << message;
  EXPECT_NE(message.find("opset 13"), std::string::npos) << message;
}

// MaxPool is written with its output Y only; a graph that reads parity's argmax indices is refused.
TEST(OnnxExport, RefusesAMaxPoolWhoseIndicesAreRead) {
  GraphBuilder b;
  const Value x = b.input("x", Shape{1, 2, 4, 4});
  parity_op_params p{};
  p.maxpool2d.kernel_h = p.maxpool2d.kernel_w = 2;
  p.maxpool2d.stride_h = p.maxpool2d.stride_w = 2;
  const std::vector<Value> pooled = b.node(PARITY_OP_MAXPOOL2D, p, {x}, "pool");
  p.maxpool2d.input_h = p.maxpool2d.input_w = 4;
  b.node(PARITY_OP_MAXPOOL2D_BWD, p, {pooled[0], pooled[1]}, "scatter");
  OnnxExportOptions options;
  options.outputs = {"scatter"};
  const std::string message = export_error(b.take(), {}, options);
  EXPECT_NE(message.find("node 'pool' (MAXPOOL2D): output 1 ('pool:1') is needed"), std::string::npos) << message;
}

TEST(OnnxExport, RefusesATrainingGraphNamingItsBatchNorm) {
  const ModelSpec& spec = model_spec("resnet8");
  ForwardOptions training;
  training.training = true;
  const std::string message = export_error(build_forward(spec, 2, training), init_weights(spec, 0));
  EXPECT_NE(message.find("node 'bn' (BATCHNORM2D_TRAIN)"), std::string::npos) << message;
}

TEST(OnnxExport, RefusesAReshapeThatMovesTheBatch) {
  GraphBuilder b;
  const Value x = b.input("x", Shape{2, 3, 4});
  b.reshape(x, Shape{6, 4}, "rows");
  OnnxExportOptions options;
  options.outputs = {"rows"};
  const std::string message = export_error(b.take(), {}, options);
  EXPECT_NE(message.find("node 'rows' (RESHAPE)"), std::string::npos) << message;
  EXPECT_NE(message.find("[2,3,4] to [6,4]"), std::string::npos) << message;
}

TEST(OnnxExport, RefusesAnOutputThatNeedsAnotherInput) {
  const ModelSpec& spec = model_spec("seed-cnn");
  OnnxExportOptions options;
  options.outputs = {"loss"};
  const std::string message = export_error(build_forward(spec, 2), init_weights(spec, 0), options);
  EXPECT_NE(message.find("INPUT 'y'"), std::string::npos) << message;
}

TEST(OnnxExport, NamesAMissingOrMisshapenWeight) {
  const ModelSpec& spec = model_spec("seed-cnn");
  OnnxExportOptions options;
  options.weights_source = "w.safetensors";
  std::map<std::string, Tensor> weights = init_weights(spec, 0);
  weights.erase("fc1.weight");
  std::string message = export_error(build_forward(spec, 1), weights, options);
  EXPECT_NE(message.find("w.safetensors: missing tensor 'fc1.weight' (expected f32 [128,1568])"), std::string::npos)
      << message;
  weights = init_weights(spec, 0);
  weights["conv2.bias"] = Tensor(Shape{31}, DType::f32);
  message = export_error(build_forward(spec, 1), weights, options);
  EXPECT_NE(message.find("tensor 'conv2.bias' is f32 [31], the graph needs f32 [32]"), std::string::npos) << message;
}

// The checker is run with shape inference: an output declared with a size the graph does not
// compute is refused, naming onnx's reason.
TEST(OnnxExport, CheckerRunsShapeInference) {
  const ModelSpec& spec = model_spec("lenet5");
  const OnnxExported exported = export_onnx(build_forward(spec, 1), init_weights(spec, 0));
  onnx::ModelProto model;
  ASSERT_TRUE(model.ParseFromString(exported.bytes));
  model.mutable_graph()->mutable_output(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim(1)->set_dim_value(11);
  std::string tampered;
  model.SerializeToString(&tampered);
  try {
    check_onnx_model(tampered, "tampered.onnx");
    FAIL() << "an output of 11 classes from a layer of 10 passed the checker";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data);
    const std::string message = e.what();
    EXPECT_NE(message.find("tampered.onnx: onnx's checker refuses it"), std::string::npos) << message;
    EXPECT_NE(message.find("11"), std::string::npos) << message;
  }
  try {
    check_onnx_model("not a model", "junk.onnx");
    FAIL() << "junk passed the checker";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("junk.onnx"), std::string::npos) << e.what();
  }
}

// ---- `parity export` ------------------------------------------------------------------------

testing::CommandRun run_cli(const std::string& args) {
  return testing::run_command(std::string(PARITY_CLI_PATH) + " " + args);
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class ExportCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "parity-export-" + std::to_string(::getpid()) + "/";
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void expect_failure(const std::string& args, const std::string& fragment) {
    const testing::CommandRun r = run_cli(args);
    EXPECT_NE(r.status, 0) << args << "\n" << r.output;
    EXPECT_NE(r.status, -1) << args << ": did not exit normally (crash?)\n" << r.output;
    EXPECT_NE(r.output.find(fragment), std::string::npos) << args << "\n" << r.output;
  }
  std::string dir_;
};

// Seeded weights saved with --save-weights and given back with --weights export the same bytes;
// the description is the one bench/torch_reference/export_onnx.py reads.
TEST_F(ExportCli, WritesTheModelAndWhatPyTorchNeeds) {
  testing::CommandRun r = run_cli(fmt::format("export --model lenet5 --seed 3 --onnx {0}a.onnx --description {0}a.json "
                                              "--save-weights {0}a.safetensors",
                                              dir_));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(fmt::format("wrote {}a.onnx: model lenet5 at opset 13", dir_)), std::string::npos) << r.output;
  const std::string bytes = read_bytes(dir_ + "a.onnx");
  EXPECT_NO_THROW(check_onnx_model(bytes, "a.onnx"));
  EXPECT_NE(read_bytes(dir_ + "a.json").find("\"format\": \"parity-model-2\""), std::string::npos);
  EXPECT_EQ(read_safetensors(dir_ + "a.safetensors").tensors.size(), model_spec("lenet5").params.size());

  r = run_cli(fmt::format("export --model lenet5 --weights {0}a.safetensors --onnx {0}b.onnx", dir_));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(read_bytes(dir_ + "b.onnx"), bytes);
  r = run_cli(fmt::format("export --model lenet5 --seed 4 --onnx {0}c.onnx", dir_));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(read_bytes(dir_ + "c.onnx"), bytes);
}

TEST_F(ExportCli, RefusesBadInputClearly) {
  expect_failure(fmt::format("export --model no-such-model --onnx {}x.onnx", dir_), "unknown model 'no-such-model'");
  expect_failure("export --model seed-cnn --onnx /nonexistent-folder/x.onnx", "/nonexistent-folder/x.onnx");
  expect_failure(fmt::format("export --model seed-cnn --weights {0}absent.safetensors --onnx {0}x.onnx", dir_),
                 "absent.safetensors");
  expect_failure(fmt::format("export --model seed-cnn --weights {0}w.safetensors --seed 2 --onnx {0}x.onnx", dir_),
                 "excludes");

  TensorFile file;
  file.tensors = init_weights(model_spec("seed-cnn"), 0);
  file.tensors.erase("conv1.bias");
  write_safetensors(dir_ + "missing.safetensors", file);
  expect_failure(fmt::format("export --model seed-cnn --weights {0}missing.safetensors --onnx {0}x.onnx", dir_),
                 "missing.safetensors: missing tensor 'conv1.bias' (expected f32 [16])");
  file.tensors = init_weights(model_spec("seed-cnn"), 0);
  file.tensors["fc2.weight"] = Tensor(Shape{10, 127}, DType::f32);
  write_safetensors(dir_ + "shape.safetensors", file);
  expect_failure(fmt::format("export --model seed-cnn --weights {0}shape.safetensors --onnx {0}x.onnx", dir_),
                 "tensor 'fc2.weight' is f32 [10,127], the graph needs f32 [10,128]");
  EXPECT_FALSE(std::filesystem::exists(dir_ + "x.onnx"));
}

}  // namespace
}  // namespace parity
