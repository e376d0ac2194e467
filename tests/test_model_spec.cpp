// tests/test_model_spec.cpp — a model as data: the forward graphs walked from the layer lists are
// exactly those of the hand-written seed-cnn before (names, order, shapes, op parameters), the
// parameter list derived from the layers is the one PyTorch has, bad layer lists fail naming the
// layer, and the description file the LibTorch peer reads spells every layer out.
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "model/model_description.h"
#include "tests/test_helpers.h"

namespace parity::testing {
namespace {

// Graph::dump() of build_forward before the zoo became data (model/models.cpp wrote seed-cnn's
// layers as builder calls), for batch {n}, {c} input channels, side {s} (then {s2}, {s4}) and
// {flat} features into fc1.
const char* const kSeedCnnDump = R"(%0 input x f32 [{n},{c},{s},{s}]
%1 input y i32 [{n}]
%2 param conv1.weight f32 [16,{c},3,3]
%3 param conv1.bias f32 [16]
%4 param conv2.weight f32 [32,16,3,3]
%5 param conv2.bias f32 [32]
%6 param fc1.weight f32 [128,{flat}]
%7 param fc1.bias f32 [128]
%8 param fc2.weight f32 [10,128]
%9 param fc2.bias f32 [10]
%10 conv1 f32 [{n},16,{s},{s}] = CONV2D(%0, %2, %3) 'conv1' stride=1x1 pad=1x1
%11 relu1 f32 [{n},16,{s},{s}] = RELU(%10) 'relu1'
%12 pool1 f32 [{n},16,{s2},{s2}], %13 pool1.indices i32 [{n},16,{s2},{s2}] = MAXPOOL2D(%11) 'pool1' kernel=2x2 stride=2x2
%14 conv2 f32 [{n},32,{s2},{s2}] = CONV2D(%12, %4, %5) 'conv2' stride=1x1 pad=1x1
%15 relu2 f32 [{n},32,{s2},{s2}] = RELU(%14) 'relu2'
%16 pool2 f32 [{n},32,{s4},{s4}], %17 pool2.indices i32 [{n},32,{s4},{s4}] = MAXPOOL2D(%15) 'pool2' kernel=2x2 stride=2x2
%18 flatten f32 [{n},{flat}] = RESHAPE(%16) 'flatten'
%19 fc1 f32 [{n},128] = LINEAR(%18, %6, %7) 'fc1'
%20 relu3 f32 [{n},128] = RELU(%19) 'relu3'
%21 logits f32 [{n},10] = LINEAR(%20, %8, %9) 'logits'
%22 loss f32 [1] = SOFTMAX_XENT(%21, %1) 'loss'
%23 correct f32 [1] = ACCURACY(%21, %1) 'correct'
)";

TEST(ModelSpec, ForwardGraphsAreThoseOfTheHandWrittenModels) {
  struct Geometry {
    const char* model;
    int c, s, flat;
  };
  for (const Geometry& m : {Geometry{"seed-cnn", 1, 28, 1568}, Geometry{"seed-cnn-112", 3, 112, 25088}})
    for (int64_t batch : {1, 2, 8, 64})
      EXPECT_EQ(build_forward(model_spec(m.model), batch).dump(),
                fmt::format(kSeedCnnDump, fmt::arg("n", batch), fmt::arg("c", m.c), fmt::arg("s", m.s),
                            fmt::arg("s2", m.s / 2), fmt::arg("s4", m.s / 4), fmt::arg("flat", m.flat)))
          << m.model << " batch " << batch;
}

TEST(ModelSpec, ParametersAreDerivedFromTheLayersWithPyTorchNamesAndFanIn) {
  struct Expected {
    const char* name;
    Shape shape;
    int64_t fan_in;
  };
  for (const auto& [model, channels, flat] : {std::tuple{"seed-cnn", 1, 1568}, std::tuple{"seed-cnn-112", 3, 25088}}) {
    const ModelSpec& spec = model_spec(model);
    const std::vector<Expected> want = {
        {"conv1.weight", Shape{16, channels, 3, 3}, channels * 9}, {"conv1.bias", Shape{16}, channels * 9},
        {"conv2.weight", Shape{32, 16, 3, 3}, 144},                {"conv2.bias", Shape{32}, 144},
        {"fc1.weight", Shape{128, flat}, flat},                    {"fc1.bias", Shape{128}, flat},
        {"fc2.weight", Shape{10, 128}, 128},                       {"fc2.bias", Shape{10}, 128},
    };
    ASSERT_EQ(spec.params.size(), want.size()) << model;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(spec.params[i].name, want[i].name) << model;
      EXPECT_EQ(spec.params[i].shape, want[i].shape) << model << " " << want[i].name;
      EXPECT_EQ(spec.params[i].fan_in, want[i].fan_in) << model << " " << want[i].name;
    }
    const std::vector<ParamSpec> again = layer_params(spec);
    ASSERT_EQ(again.size(), spec.params.size());
    for (size_t i = 0; i < again.size(); ++i) EXPECT_EQ(again[i].name, spec.params[i].name);
  }
}

void expect_error(const std::function<void()>& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one naming " << fragment;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(ModelSpec, ALayerListThatDoesNotFitFailsNamingTheLayer) {
  ModelSpec spec = model_spec("seed-cnn");
  spec.layers.erase(spec.layers.begin() + 6);  // no flatten: fc1 meets a rank-4 input
  expect_error([&] { layer_params(spec); }, "layer 'fc1'");

  ModelSpec renamed = model_spec("seed-cnn");
  renamed.layers.back().module = "head";  // params still say fc2.*
  expect_error([&] { build_forward(renamed, 2); }, "'head.weight'");

  ModelSpec headless = model_spec("seed-cnn");
  headless.layers.back().name = "scores";
  expect_error([&] { build_forward(headless, 2); }, "'logits'");
}

TEST(ModelDescription, SpellsOutEveryLayerWithItsInputSize) {
  const ModelSpec& spec = model_spec("seed-cnn-112");
  const nlohmann::json d = nlohmann::json::parse(model_description_json(spec));
  EXPECT_EQ(d.at("format"), model_description_format());
  EXPECT_EQ(d.at("name"), "seed-cnn-112");
  EXPECT_EQ(d.at("input"), (nlohmann::json{{"channels", 3}, {"height", 112}, {"width", 112}}));
  EXPECT_EQ(d.at("num_classes"), 10);
  const nlohmann::json& layers = d.at("layers");
  ASSERT_EQ(layers.size(), spec.layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_EQ(layers[i].at("name"), spec.layers[i].name);
    EXPECT_EQ(layers[i].at("op"), layer_op_name(spec.layers[i].op));
  }
  EXPECT_EQ(layers[0], (nlohmann::json{{"op", "conv2d"}, {"name", "conv1"}, {"module", "conv1"}, {"in_channels", 3},
                                       {"out_channels", 16}, {"kernel", 3}, {"stride", 1}, {"padding", 1},
                                       {"groups", 1}, {"bias", true}}));
  EXPECT_EQ(layers[2], (nlohmann::json{{"op", "maxpool2d"}, {"name", "pool1"}, {"kernel", 2}, {"stride", 2}}));
  EXPECT_EQ(layers[6], (nlohmann::json{{"op", "flatten"}, {"name", "flatten"}}));
  EXPECT_EQ(layers[9], (nlohmann::json{{"op", "linear"}, {"name", "logits"}, {"module", "fc2"}, {"in_features", 128},
                                       {"out_features", 10}}));
  EXPECT_EQ(layers[7].at("in_features"), 25088);
}

TEST(ModelDescription, IsWrittenToAFile) {
  const std::string path = ::testing::TempDir() + "/parity-test-model.json";
  write_model_description(model_spec("seed-cnn"), path);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), model_description_json(model_spec("seed-cnn")));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace parity::testing
