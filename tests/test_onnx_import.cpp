// tests/test_onnx_import.cpp — the ONNX importer on models built here: values it computes, the
// errors hostile files get (garbage, truncation, cycles, bad dims and sizes, external data outside
// the folder, a 2 GB claim in a tiny file), and models read through load_model and run_inference.
#include <onnx/onnx_pb.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "onnx/onnx_model.h"
#include "parity/inference.h"
#include "parity/model.h"
#include "parity/trainer.h"
#include "tests/test_helpers.h"

namespace parity {
namespace {

namespace fs = std::filesystem;

onnx::TensorProto f32_tensor(const std::string& name, std::vector<int64_t> dims, const std::vector<float>& values) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t.add_dims(d);
  t.set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  return t;
}

void add_port(onnx::ValueInfoProto* port, const std::string& name, const std::vector<int64_t>& dims, bool symbolic_batch) {
  port->set_name(name);
  auto* type = port->mutable_type()->mutable_tensor_type();
  type->set_elem_type(onnx::TensorProto::FLOAT);
  for (size_t i = 0; i < dims.size(); ++i) {
    auto* dim = type->mutable_shape()->add_dim();
    if (i == 0 && symbolic_batch) dim->set_dim_param("batch");
    else dim->set_dim_value(dims[i]);
  }
}

onnx::NodeProto* add_node(onnx::GraphProto* g, const std::string& op, std::vector<std::string> in, std::vector<std::string> out) {
  onnx::NodeProto* n = g->add_node();
  n->set_op_type(op);
  n->set_name(out.at(0) + "_node");
  for (auto& s : in) n->add_input(s);
  for (auto& s : out) n->add_output(s);
  return n;
}

// x [N, 2] -> MatMul(W [2, 3]) -> Add(b [3]) -> Relu -> y [N, 3], opset 13.
onnx::ModelProto matmul_model(bool symbolic_batch = true, int64_t batch = 4) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  auto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("matmul");
  add_port(g->add_input(), "x", {batch, 2}, symbolic_batch);
  add_port(g->add_output(), "y", {batch, 3}, symbolic_batch);
  *g->add_initializer() = f32_tensor("fc.weight", {2, 3}, {1, 2, 3, -4, -5, -6});
  *g->add_initializer() = f32_tensor("fc.bias", {3}, {0.5f, 0.25f, -1});
  add_node(g, "MatMul", {"x", "fc.weight"}, {"mm"});
  add_node(g, "Add", {"mm", "fc.bias"}, {"pre"});
  add_node(g, "Relu", {"pre"}, {"y"});
  return m;
}

std::string bytes_of(const onnx::ModelProto& m) {
  std::string s;
  EXPECT_TRUE(m.SerializeToString(&s));
  return s;
}

OnnxModel parse(const onnx::ModelProto& m, const std::string& folder = "") {
  const std::string s = bytes_of(m);
  return OnnxModel::parse(s.data(), s.size(), folder, "test.onnx");
}

// The message of the Error that `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(OnnxImport, MatMulAddReluComputesTheProductWithTheWeightHeldTransposed) {
  const OnnxModel model = parse(matmul_model());
  ASSERT_EQ(model.inputs().size(), 1u);
  EXPECT_TRUE(model.inputs()[0].batch_symbolic);
  // parity's LINEAR reads [out, in]: the [2, 3] initializer is held as [3, 2].
  EXPECT_EQ(model.initializers().at("fc.weight").shape(), (Shape{3, 2}));
  EXPECT_EQ(model.initializers().at("fc.weight").f32()[1], -4.0f);

  const fs::path dir = fs::temp_directory_path() / "parity_test_onnx_matmul";
  fs::create_directories(dir);
  std::ofstream(dir / "m.onnx", std::ios::binary) << bytes_of(matmul_model());
  InferenceOptions o;
  o.model = (dir / "m.onnx").string();
  o.backend = "ref";
  Tensor x = Tensor::from_f32(Shape{2, 2}, {1, 1, 2, -1});
  const auto out = run_inference(o, {{"x", x}});
  const Tensor& y = out.at("y");
  ASSERT_EQ(y.shape(), (Shape{2, 3}));
  // Row 0: [1,1]·W = [-3,-3,-3] + b = [-2.5,-2.75,-4] -> relu 0; row 1: [2,-1]·W = [6,9,12] + b.
  const std::vector<float> want = {0, 0, 0, 6.5f, 9.25f, 11};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(y.f32()[i], want[static_cast<size_t>(i)]) << i;
  fs::remove_all(dir);
}

TEST(OnnxImport, AFixedBatchThatDiffersFromTheGivenOneIsRefusedNamingBoth) {
  const OnnxModel model = parse(matmul_model(false, 4));
  GraphBuilder b;
  OnnxBuildOptions o;
  o.batch = 8;
  const std::string message = error_of([&] { model.build(b, o); });
  EXPECT_NE(message.find("fixed batch dimension 4"), std::string::npos) << message;
  EXPECT_NE(message.find("the batch is 8"), std::string::npos) << message;
}

TEST(OnnxImport, GarbageAndTruncatedFilesAreRefused) {
  const std::string garbage = "\xff\xfe this is not a protobuf \x01\x02";
  EXPECT_NE(error_of([&] { OnnxModel::parse(garbage.data(), garbage.size(), "", "g.onnx"); }).find("g.onnx"),
            std::string::npos);
  const std::string whole = bytes_of(matmul_model());
  for (size_t cut : {whole.size() / 2, whole.size() - 3, size_t{5}}) {
    const std::string message = error_of([&] { OnnxModel::parse(whole.data(), cut, "", "t.onnx"); });
    EXPECT_NE(message, "") << "a model cut at " << cut << " of " << whole.size() << " bytes was accepted";
  }
}

TEST(OnnxImport, ACycleAndAValueNobodyProducesAreRefusedNamingTheNode) {
  onnx::ModelProto cyc = matmul_model();
  auto* g = cyc.mutable_graph();
  g->mutable_node(0)->set_input(0, "y");  // MatMul reads the Relu's output: a cycle
  std::string message = error_of([&] { parse(cyc); });
  EXPECT_NE(message.find("cycle"), std::string::npos) << message;
  EXPECT_NE(message.find("MatMul"), std::string::npos) << message;

  onnx::ModelProto dangling = matmul_model();
  dangling.mutable_graph()->mutable_node(1)->set_input(1, "nowhere");
  message = error_of([&] { parse(dangling); });
  EXPECT_NE(message.find("'nowhere'"), std::string::npos) << message;
  EXPECT_NE(message.find("no node, initializer or graph input"), std::string::npos) << message;
}

TEST(OnnxImport, NegativeZeroSizedAndOverflowingDimsAreRefused) {
  onnx::ModelProto neg = matmul_model();
  neg.mutable_graph()->mutable_initializer(1)->set_dims(0, -3);
  EXPECT_NE(error_of([&] { parse(neg); }).find("dims must be in [0, 2^31)"), std::string::npos);

  onnx::ModelProto overflow = matmul_model();
  auto* t = overflow.mutable_graph()->mutable_initializer(1);
  t->set_dims(0, int64_t{1} << 30);
  t->add_dims(int64_t{1} << 30);
  EXPECT_NE(error_of([&] { parse(overflow); }).find("more than 2^31 elements"), std::string::npos);

  onnx::ModelProto input_dim = matmul_model();
  input_dim.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim(1)->set_dim_value(-2);
  EXPECT_NE(error_of([&] { parse(input_dim); }).find("dims must be in [0, 2^31)"), std::string::npos);

  // A zero-sized weight reads as a shape error of the op that takes it, naming the node.
  onnx::ModelProto zero = matmul_model();
  zero.mutable_graph()->mutable_initializer(1)->set_dims(0, 0);
  zero.mutable_graph()->mutable_initializer(1)->clear_raw_data();
  const OnnxModel model = parse(zero);
  GraphBuilder b;
  OnnxBuildOptions o;
  o.batch = 2;
  EXPECT_NE(error_of([&] { model.build(b, o); }), "");
}

// Two fuzz findings: a Reshape target whose product overflows int64, and a node with no output.
TEST(OnnxImport, AReshapeTargetPastTheInputsSizeAndANodeWithoutOutputsAreRefused) {
  const auto build = [](const onnx::ModelProto& m) {
    const OnnxModel model = parse(m);
    GraphBuilder b;
    OnnxBuildOptions o;
    o.batch = 2;
    model.build(b, o);
  };
  onnx::ModelProto huge = matmul_model();
  auto* g = huge.mutable_graph();
  onnx::TensorProto target;
  target.set_name("target");
  target.set_data_type(onnx::TensorProto::INT64);
  target.add_dims(2);
  target.add_int64_data(2);
  target.add_int64_data(4616025564262694911);  // 2 times this overflows int64
  *g->add_initializer() = target;
  g->mutable_node(2)->set_output(0, "relu");
  add_node(g, "Reshape", {"relu", "target"}, {"y"});
  std::string message = error_of([&] { build(huge); });
  EXPECT_NE(message.find("holds more elements than the input"), std::string::npos) << message;
  EXPECT_NE(message.find("Reshape"), std::string::npos) << message;

  onnx::ModelProto silent = matmul_model();
  add_node(silent.mutable_graph(), "Relu", {"mm"}, {"unused"})->clear_output();  // a Relu that writes nothing
  message = error_of([&] { build(silent); });
  EXPECT_NE(message.find("no output 0"), std::string::npos) << message;
  EXPECT_NE(message.find("Relu"), std::string::npos) << message;
}

TEST(OnnxImport, AnInitializerWhoseBytesDoNotMatchItsDimsIsRefused) {
  onnx::ModelProto m = matmul_model();
  m.mutable_graph()->mutable_initializer(0)->set_raw_data(std::string(20, '\0'));  // 5 floats for [2, 3]
  const std::string message = error_of([&] { parse(m); });
  EXPECT_NE(message.find("raw_data holds 20 bytes"), std::string::npos) << message;
  EXPECT_NE(message.find("fc.weight"), std::string::npos) << message;
}

TEST(OnnxImport, ATwoGigabyteClaimInATinyFileIsRefusedBeforeAllocating) {
  onnx::ModelProto m = matmul_model();
  auto* t = m.mutable_graph()->mutable_initializer(1);
  t->set_dims(0, int64_t{1} << 29);  // 2^29 floats: 2 GB, with 12 bytes of data
  const std::string message = error_of([&] { parse(m); });
  EXPECT_NE(message.find("raw_data holds 12 bytes"), std::string::npos) << message;
}

// matmul_model with its bias held as external data at `location`.
onnx::ModelProto with_external_bias(const std::string& location) {
  onnx::ModelProto m = matmul_model();
  auto* t = m.mutable_graph()->mutable_initializer(1);
  t->clear_raw_data();
  t->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* entry = t->add_external_data();
  entry->set_key("location");
  entry->set_value(location);
  return m;
}

TEST(OnnxImport, ExternalDataOutsideTheModelsFolderIsRefused) {
  const fs::path dir = fs::temp_directory_path() / "parity_test_onnx_external";
  fs::create_directories(dir / "model");
  std::ofstream(dir / "secret.bin", std::ios::binary) << std::string(12, '\0');
  for (const std::string& location : std::vector<std::string>{"../secret.bin", (dir / "secret.bin").string()}) {
    const onnx::ModelProto m = with_external_bias(location);
    const std::string message = error_of([&] { parse(m, (dir / "model").string()); });
    EXPECT_NE(message.find("outside the model's folder"), std::string::npos) << location << ": " << message;
  }
  // Inside the folder it is read, its length checked.
  std::ofstream(dir / "model" / "bias.bin", std::ios::binary) << std::string(8, '\0');
  const onnx::ModelProto m = with_external_bias("bias.bin");
  EXPECT_NE(error_of([&] { parse(m, (dir / "model").string()); }).find("external data holds 8 bytes"), std::string::npos);
  fs::remove_all(dir);
}

TEST(OnnxImport, AnUnsupportedOpOrAttributeNamesNodeOpTypeOpsetAndAttribute) {
  onnx::ModelProto op = matmul_model();
  op.mutable_graph()->mutable_node(2)->set_op_type("Elu");
  const OnnxModel model = parse(op);
  GraphBuilder b;
  OnnxBuildOptions o;
  o.batch = 2;
  std::string message;
  try {
    model.build(b, o);
  } catch (const OnnxUnsupported& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("'y_node' (Elu)"), std::string::npos) << message;
  EXPECT_NE(message.find("opset 13"), std::string::npos) << message;

  onnx::ModelProto attr = matmul_model();
  auto* a = attr.mutable_graph()->mutable_node(2)->add_attribute();
  a->set_name("mystery");
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(1);
  const OnnxModel with_attr = parse(attr);
  GraphBuilder b2;
  message = error_of([&] { with_attr.build(b2, o); });
  EXPECT_NE(message.find("attribute 'mystery'"), std::string::npos) << message;

  onnx::ModelProto newer = matmul_model();
  newer.mutable_opset_import(0)->set_version(18);
  EXPECT_NE(error_of([&] { parse(newer); }).find("opset 18"), std::string::npos);
}

// x [N, 1, 6, 6] -> Conv(2, 3x3, pad 1) -> Relu -> MaxPool 2 -> Flatten -> Gemm(transB 1) -> z [N, 3],
// then `head`: "LogSoftmax" (output "logp"), or "SoftmaxCrossEntropyLoss" of z and an INT64 input
// "labels" [N] with the given reduction and ignore_index 2 (output "loss", a scalar unless
// reduction is "none").
onnx::ModelProto small_cnn(const std::string& head, const std::string& reduction = "sum") {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  add_port(g->add_input(), "image", {1, 1, 6, 6}, true);
  std::vector<float> w(18), fw(3 * 18);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(float(i)) * 0.3f;
  for (size_t i = 0; i < fw.size(); ++i) fw[i] = std::cos(float(i)) * 0.2f;
  *g->add_initializer() = f32_tensor("conv.weight", {2, 1, 3, 3}, w);
  *g->add_initializer() = f32_tensor("conv.bias", {2}, {0.1f, -0.1f});
  *g->add_initializer() = f32_tensor("fc.weight", {3, 18}, fw);
  *g->add_initializer() = f32_tensor("fc.bias", {3}, {0, 0, 0});
  auto* conv = add_node(g, "Conv", {"image", "conv.weight", "conv.bias"}, {"c"});
  auto* pads = conv->add_attribute();
  pads->set_name("pads");
  pads->set_type(onnx::AttributeProto::INTS);
  for (int i = 0; i < 4; ++i) pads->add_ints(1);
  add_node(g, "Relu", {"c"}, {"r"});
  auto* pool = add_node(g, "MaxPool", {"r"}, {"p"});
  auto* k = pool->add_attribute();
  k->set_name("kernel_shape");
  k->set_type(onnx::AttributeProto::INTS);
  k->add_ints(2);
  k->add_ints(2);
  auto* s = pool->add_attribute();
  s->set_name("strides");
  s->set_type(onnx::AttributeProto::INTS);
  s->add_ints(2);
  s->add_ints(2);
  add_node(g, "Flatten", {"p"}, {"f"});
  auto* gemm = add_node(g, "Gemm", {"f", "fc.weight", "fc.bias"}, {"z"});
  auto* tb = gemm->add_attribute();
  tb->set_name("transB");
  tb->set_type(onnx::AttributeProto::INT);
  tb->set_i(1);
  if (head == "LogSoftmax") {
    add_port(g->add_output(), "logp", {1, 3}, true);
    add_node(g, "LogSoftmax", {"z"}, {"logp"});
    return m;
  }
  add_port(g->add_input(), "labels", {1}, true);
  g->mutable_input(1)->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::INT64);
  add_port(g->add_output(), "loss", reduction == "none" ? std::vector<int64_t>{1} : std::vector<int64_t>{}, reduction == "none");
  auto* loss = add_node(g, "SoftmaxCrossEntropyLoss", {"z", "labels"}, {"loss"});
  auto* r = loss->add_attribute();
  r->set_name("reduction");
  r->set_type(onnx::AttributeProto::STRING);
  r->set_s(reduction);
  auto* ignore = loss->add_attribute();
  ignore->set_name("ignore_index");
  ignore->set_type(onnx::AttributeProto::INT);
  ignore->set_i(2);
  return m;
}

// Writes `m` as <temp>/parity_test_onnx_model/<file>; returns the path.
std::string write_model(const onnx::ModelProto& m, const std::string& file) {
  const fs::path dir = fs::temp_directory_path() / "parity_test_onnx_model";
  fs::create_directories(dir);
  const std::string path = (dir / file).string();
  std::ofstream(path, std::ios::binary) << bytes_of(m);
  return path;
}

TEST(OnnxImport, AnOnnxFileIsAModelWhoseFinalLogSoftmaxIsTheLossOwn) {
  const std::string path = write_model(small_cnn("LogSoftmax"), "net.onnx");
  const ModelSpec spec = load_model(path);
  EXPECT_EQ(spec.channels, 1);
  EXPECT_EQ(spec.height, 6);
  EXPECT_EQ(spec.num_classes, 3);
  EXPECT_NE(spec.description.find("LogSoftmax taken into the loss"), std::string::npos) << spec.description;
  ASSERT_EQ(spec.params.size(), 4u);
  EXPECT_EQ(spec.loss.reduction, PARITY_REDUCTION_MEAN);
  EXPECT_FALSE(spec.loss.ignore_index);
  // The forward graph's logits are the LogSoftmax's input: no second softmax before the loss.
  const Graph forward = build_forward(spec, 5);
  EXPECT_EQ(forward.value(forward.find("logits")).shape, (Shape{5, 3}));
  for (const Node& n : forward.nodes()) EXPECT_NE(n.op, PARITY_OP_LOG_SOFTMAX) << n.name;
  EXPECT_EQ(init_weights(spec, 7).at("conv.bias").f32()[1], -0.1f);  // the file's weights, not the seed's
  fs::remove(path);
}

TEST(OnnxImport, AGraphsOwnLossIsTheTrainingLossWithItsReductionAndIgnoreIndex) {
  const std::string path = write_model(small_cnn("SoftmaxCrossEntropyLoss", "sum"), "own_loss.onnx");
  const ModelSpec spec = load_model(path);
  EXPECT_EQ(spec.num_classes, 3);
  EXPECT_EQ(spec.loss.reduction, PARITY_REDUCTION_SUM);
  ASSERT_TRUE(spec.loss.ignore_index);
  EXPECT_EQ(*spec.loss.ignore_index, 2);
  EXPECT_NE(spec.description.find("trained with its own loss 'loss_node' (sum, ignore_index 2)"), std::string::npos)
      << spec.description;
  // The logits are the loss's scores; the loss reads "y", and the file's labels input is no value.
  const Graph forward = build_forward(spec, 5);
  EXPECT_EQ(forward.value(forward.find("logits")).shape, (Shape{5, 3}));
  EXPECT_THROW(forward.find("labels"), Error);
  int losses = 0;
  for (const Node& n : forward.nodes()) {
    if (n.op != PARITY_OP_SOFTMAX_XENT) continue;
    ++losses;
    EXPECT_EQ(n.params.softmax_xent.reduction, PARITY_REDUCTION_SUM);
    EXPECT_EQ(n.params.softmax_xent.has_ignore_index, 1);
    EXPECT_EQ(n.params.softmax_xent.ignore_index, 2);
  }
  EXPECT_EQ(losses, 1);

  // Training's loss (per image: the sum over the rows not ignored, divided by the batch) against
  // the file's own graph run whole: the same kernels, so equal up to the division's rounding.
  // Labels 2 are ignored: counting them would add about 1 per row, far beyond the tolerance.
  std::mt19937 rng(3);
  const Tensor x = testing::random_tensor(rng, Shape{5, 1, 6, 6}, 0.0f, 1.0f);
  Tensor y(Shape{5}, DType::i32), labels(Shape{5}, DType::i64);
  const int32_t classes[5] = {0, 2, 1, 2, 0};
  for (int i = 0; i < 5; ++i) {
    y.i32()[i] = classes[i];
    labels.i64()[i] = classes[i];
  }
  InferenceOptions io;
  io.model = path;
  io.backend = "cpu";
  const float file_loss = run_inference(io, {{"image", x}, {"labels", labels}}).at("loss").f32()[0];
  Trainer trainer(spec, create_backend("cpu"), OptimizerConfig{}, 5);
  trainer.load_weights(init_weights(spec, 0));  // the file's weights
  const StepResult step = trainer.train_step(x, y);
  EXPECT_GT(file_loss, 0.5f);
  EXPECT_NEAR(step.loss * 5, file_loss, 1e-6 * file_loss);
  fs::remove(path);
}

TEST(OnnxImport, AGraphsOwnLossOfReductionNoneOrASecondInputThatIsNotItsLabelsIsRefused) {
  const std::string none = write_model(small_cnn("SoftmaxCrossEntropyLoss", "none"), "loss_none.onnx");
  EXPECT_NE(error_of([&] { load_model(none); }).find("reduction 'none'"), std::string::npos) << error_of([&] { load_model(none); });
  fs::remove(none);
  // A second input that the graph adds to its logits instead of a loss reading it.
  onnx::ModelProto m = small_cnn("LogSoftmax");
  add_port(m.mutable_graph()->add_input(), "offset", {1}, true);
  m.mutable_graph()->mutable_input(1)->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::INT64);
  const std::string other = write_model(m, "two_inputs.onnx");
  const std::string message = error_of([&] { load_model(other); });
  EXPECT_NE(message.find("second input 'offset' is not the labels"), std::string::npos) << message;
  fs::remove(other);
}

}  // namespace
}  // namespace parity
