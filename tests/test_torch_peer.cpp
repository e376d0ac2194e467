// tests/test_torch_peer.cpp — the LibTorch peer builds its model from parity's description file:
// it runs a model it was never compiled with, and a bad file fails naming the file, the layer
// and the field.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "model/model_description.h"
#include "tests/test_helpers.h"

namespace parity::testing {
namespace {

class TorchPeer : public ::testing::Test {
 protected:
  void SetUp() override {
    // One folder per test: CTest runs them in parallel.
    dir_ = ::testing::TempDir() + "/parity-test-torch-peer-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes `spec`'s description (edited by `edit`) and its seeded weights; returns the peer's
  // `--mode infer` run on them.
  CommandRun run_infer(const ModelSpec& spec, const std::function<void(nlohmann::json&)>& edit = {},
                       const std::string& extra = "") {
    nlohmann::json d = nlohmann::json::parse(model_description_json(spec));
    if (edit) edit(d);
    std::ofstream(dir_ + "/model.json") << d.dump();
    TensorFile w;
    w.tensors = init_weights(spec, 1);
    write_safetensors(dir_ + "/w.safetensors", w);
    return run_command(std::string(PARITY_TEST_TORCH_PEER) + " --model-file " + dir_ + "/model.json --mode infer " +
                       "--batch 2 --threads 1 --min-time 0 --warmup 0 --weights " + dir_ + "/w.safetensors " + extra);
  }
  void expect_failure(const CommandRun& r, const std::string& fragment) {
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.status, -1) << "did not exit normally (crash?)\n" << r.output;
    EXPECT_NE(r.output.find(fragment), std::string::npos) << r.output;
  }
  std::string dir_;
};

// A model that is in no zoo: the peer has no network of its own, only the description.
TEST_F(TorchPeer, RunsAModelItKnowsOnlyFromTheDescription) {
  ModelSpec spec = model_spec("seed-cnn");
  spec.name = "not-in-the-zoo";
  spec.layers.erase(spec.layers.begin() + 3, spec.layers.begin() + 6);  // conv1 → relu → pool → fc1 → fc2
  spec.params = layer_params(spec);
  const CommandRun r = run_infer(spec);
  ASSERT_EQ(r.status, 0) << r.output;
  const nlohmann::json out = nlohmann::json::parse(r.output.substr(r.output.rfind('{')));
  EXPECT_EQ(out.at("model"), "not-in-the-zoo");
  EXPECT_TRUE(std::isfinite(out.at("loss0").get<double>())) << r.output;
}

TEST_F(TorchPeer, ABadDescriptionFailsNamingTheFileLayerAndField) {
  const ModelSpec& spec = model_spec("seed-cnn");
  expect_failure(run_infer(spec, [](nlohmann::json& d) { d["layers"][0].erase("kernel"); }),
                 "model.json: layer 0 ('conv1'): 'kernel' is missing");
  expect_failure(run_infer(spec, [](nlohmann::json& d) { d["layers"][2]["stride"] = "two"; }),
                 "layer 2 ('pool1'): 'stride' must be an integer >= 1, got \"two\"");
  expect_failure(run_infer(spec, [](nlohmann::json& d) { d["layers"][1]["op"] = "gelu"; }),
                 "layer 1 ('relu1'): 'op' 'gelu' is not a layer this peer knows");
  expect_failure(run_infer(spec, [](nlohmann::json& d) { d["format"] = "parity-model-0"; }), "'format' is 'parity-model-0'");
  expect_failure(run_infer(spec, [](nlohmann::json& d) { d.erase("input"); }), "model.json: 'input' is missing");
  expect_failure(run_infer(spec, {}, "--model seed-cnn-112"), "describes seed-cnn");
  // Weights that do not fit the described layers.
  expect_failure(run_infer(spec, [](nlohmann::json& d) { d["layers"][0]["out_channels"] = 8; }),
                 "wrong shape for conv1.weight");
}

TEST_F(TorchPeer, AFileThatIsNotADescriptionFailsClearly) {
  std::ofstream(dir_ + "/model.json") << "{ not json";
  expect_failure(run_command(std::string(PARITY_TEST_TORCH_PEER) + " --model-file " + dir_ +
                             "/model.json --mode infer --weights x.safetensors"),
                 "model.json: not a JSON model description");
  expect_failure(run_command(std::string(PARITY_TEST_TORCH_PEER) + " --model-file " + dir_ +
                             "/absent.json --mode infer --weights x.safetensors"),
                 "cannot open model file");
  expect_failure(run_command(std::string(PARITY_TEST_TORCH_PEER) + " --mode infer --weights x.safetensors"),
                 "--model-file is required");
}

}  // namespace
}  // namespace parity::testing
