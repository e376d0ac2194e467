// tests/test_pruning.cpp — magnitude pruning (model/pruning.h): which elements or channels each
// scope prunes, ties, biases and batch norms left alone, mask files and their refusals, and
// training with the mask held: pruned weights and their optimizer state exactly 0 after steps of
// adam, adamw and sgd, and still 0 in an ONNX export of the result.
#include <filesystem>
#include <functional>

#include "model/pruning.h"
#include "tests/test_helpers.h"
#ifdef PARITY_TEST_ONNX
#include "onnx/onnx_export.h"
#include "util/atomic_file.h"
#endif

namespace parity::testing {
namespace {

namespace fs = std::filesystem;

// conv1 [3,1,3,3] (+bias) -> bn1 -> relu -> flatten -> fc [4,48] (+bias) on 1x6x6: 27 + 192
// prunable elements, and a bias and batch-norm parameters that must never be pruned.
ModelSpec tiny_model() {
  ModelSpec s;
  s.name = "tiny";
  s.channels = 1, s.height = 6, s.width = 6, s.num_classes = 4;
  LayerSpec conv;
  conv.op = LayerOp::conv2d, conv.name = "conv1", conv.module = "conv1", conv.features = 3, conv.kernel = 3;
  LayerSpec bn;
  bn.op = LayerOp::batchnorm2d, bn.name = "bn1", bn.module = "bn1";
  LayerSpec relu;
  relu.op = LayerOp::relu, relu.name = "relu1";
  LayerSpec flat;
  flat.op = LayerOp::flatten, flat.name = "flatten";
  LayerSpec fc;
  fc.op = LayerOp::linear, fc.name = "logits", fc.module = "fc", fc.features = 4;
  s.layers = {conv, bn, relu, flat, fc};
  s.params = layer_params(s);
  s.buffers = layer_buffers(s);
  return s;
}

// Weights whose prunable elements are set by `value(name, flat index)`; the rest as initialised.
std::map<std::string, Tensor> weights_with(const ModelSpec& spec, const std::function<float(const std::string&, int64_t)>& value) {
  std::map<std::string, Tensor> w = init_weights(spec, 3);
  for (const std::string& name : prunable_weights(spec))
    for (int64_t i = 0; i < w.at(name).numel(); ++i) w.at(name).f32()[i] = value(name, i);
  return w;
}

// The flat indices the mask of `weight` prunes.
std::vector<int64_t> pruned_indices(const PruneResult& r, const std::string& weight) {
  const Tensor& mask = r.masks.at(gradient_mask_name(weight));
  std::vector<int64_t> out;
  for (int64_t i = 0; i < mask.numel(); ++i)
    if (mask.u8()[i] == 0) out.push_back(i);
  return out;
}

std::vector<int64_t> range(int64_t begin, int64_t end) {
  std::vector<int64_t> out;
  for (int64_t i = begin; i < end; ++i) out.push_back(i);
  return out;
}

void expect_error(const std::function<void()>& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << fragment;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Pruning, OnlyConvAndLinearWeightsArePrunable) {
  EXPECT_EQ(prunable_weights(tiny_model()), (std::vector<std::string>{"conv1.weight", "fc.weight"}));
  // resnet8: convs without bias, batch norms, one linear layer.
  for (const std::string& name : prunable_weights(model_spec("resnet8"))) {
    EXPECT_NE(name.find(".weight"), std::string::npos) << name;
    EXPECT_EQ(name.find("bn"), std::string::npos) << name;
    EXPECT_EQ(name.find("shortcut.1"), std::string::npos) << name;
  }
}

TEST(Pruning, GlobalScopeRanksEveryWeightTogetherAndLayerScopeEachAlone) {
  const ModelSpec spec = tiny_model();
  // Every conv element (0.01 .. 0.27, alternating signs: |w| ranks) below every fc element (1 + 0.001 i).
  auto value = [](const std::string& name, int64_t i) {
    return name == "conv1.weight" ? (i % 2 ? -0.01f : 0.01f) * static_cast<float>(i + 1) : 1.0f + 0.001f * static_cast<float>(i);
  };
  PruneOptions o;
  o.sparsity = 0.2;  // of 219: round(43.8) = 44 = all 27 conv + the 17 smallest fc
  std::map<std::string, Tensor> w = weights_with(spec, value);
  PruneResult global = magnitude_prune(spec, w, o);
  EXPECT_EQ(global.pruned, 44);
  EXPECT_EQ(global.total, 219);
  EXPECT_EQ(pruned_indices(global, "conv1.weight"), range(0, 27));
  EXPECT_EQ(pruned_indices(global, "fc.weight"), range(0, 17));
  ASSERT_EQ(global.tensors.size(), 2u);
  EXPECT_EQ(global.tensors[0].name, "conv1.weight");
  EXPECT_EQ(global.tensors[0].pruned, 27);
  EXPECT_EQ(global.tensors[1].pruned, 17);
  for (int64_t i = 0; i < 192; ++i) EXPECT_EQ(w.at("fc.weight").f32()[i] == 0.0f, i < 17) << i;

  o.scope = PruneOptions::Scope::layer;  // conv: round(5.4) = 5; fc: round(38.4) = 38
  w = weights_with(spec, value);
  PruneResult layer = magnitude_prune(spec, w, o);
  EXPECT_EQ(pruned_indices(layer, "conv1.weight"), range(0, 5));
  EXPECT_EQ(pruned_indices(layer, "fc.weight"), range(0, 38));
  EXPECT_EQ(layer.pruned, 43);
}

TEST(Pruning, TiesArePrunedInParameterThenIndexOrderToTheExactCount) {
  const ModelSpec spec = tiny_model();
  auto value = [](const std::string&, int64_t i) { return i % 2 ? -0.5f : 0.5f; };  // one magnitude everywhere
  PruneOptions o;
  o.sparsity = 0.5;  // round(109.5) = 110: conv1 (first in parameter order) whole, then fc 0..82
  std::map<std::string, Tensor> w = weights_with(spec, value);
  PruneResult global = magnitude_prune(spec, w, o);
  EXPECT_EQ(global.pruned, 110);
  EXPECT_EQ(pruned_indices(global, "conv1.weight"), range(0, 27));
  EXPECT_EQ(pruned_indices(global, "fc.weight"), range(0, 83));
  o.scope = PruneOptions::Scope::layer;  // conv: round(13.5) = 14; fc: 96
  w = weights_with(spec, value);
  PruneResult layer = magnitude_prune(spec, w, o);
  EXPECT_EQ(pruned_indices(layer, "conv1.weight"), range(0, 14));
  EXPECT_EQ(pruned_indices(layer, "fc.weight"), range(0, 96));
  // The same weights prune the same elements every time.
  w = weights_with(spec, value);
  EXPECT_TRUE(bitwise_equal(magnitude_prune(spec, w, o).masks.at("fc.weight.mask"), layer.masks.at("fc.weight.mask")));
}

TEST(Pruning, StructuredChannelsPruneWholeOutputChannelsByL2Norm) {
  const ModelSpec spec = tiny_model();
  // conv channel norms 3 * {0.3, 0.1, 0.2} = {0.9, 0.3, 0.6}; fc row norms sqrt(48) * 0.05 * (r + 1)
  // = {0.35, 0.69, 1.04, 1.39}.
  auto value = [](const std::string& name, int64_t i) {
    if (name == "conv1.weight") return std::vector<float>{0.3f, -0.1f, 0.2f}[static_cast<size_t>(i / 9)];
    return 0.05f * static_cast<float>(i / 48 + 1);
  };
  PruneOptions o;
  o.structured_channels = true;
  o.scope = PruneOptions::Scope::layer;
  o.sparsity = 0.5;  // conv: round(1.5) = 2 channels (1 and 2); fc: 2 rows (0 and 1)
  std::map<std::string, Tensor> w = weights_with(spec, value);
  PruneResult layer = magnitude_prune(spec, w, o);
  EXPECT_EQ(pruned_indices(layer, "conv1.weight"), range(9, 27));
  EXPECT_EQ(pruned_indices(layer, "fc.weight"), range(0, 96));
  EXPECT_EQ(layer.pruned, 18 + 96);
  o.scope = PruneOptions::Scope::global;  // 7 channels: round(3.5) = 4: conv 1 (0.3), fc 0 (0.35), conv 2 (0.6), fc 1 (0.69)
  w = weights_with(spec, value);
  PruneResult global = magnitude_prune(spec, w, o);
  EXPECT_EQ(pruned_indices(global, "conv1.weight"), range(9, 27));
  EXPECT_EQ(pruned_indices(global, "fc.weight"), range(0, 96));
  o.sparsity = 0.3;  // round(2.1) = 2: conv 1 and fc row 0
  w = weights_with(spec, value);
  global = magnitude_prune(spec, w, o);
  EXPECT_EQ(pruned_indices(global, "conv1.weight"), range(9, 18));
  EXPECT_EQ(pruned_indices(global, "fc.weight"), range(0, 48));
}

TEST(Pruning, BiasesAndBatchNormParametersAreNeverPruned) {
  const ModelSpec spec = tiny_model();
  std::map<std::string, Tensor> w = init_weights(spec, 5);
  // Biases and batch-norm parameters far smaller than any weight: a ranking that included them
  // would prune them first.
  for (const char* name : {"conv1.bias", "bn1.weight", "bn1.bias", "fc.bias"})
    for (int64_t i = 0; i < w.at(name).numel(); ++i) w.at(name).f32()[i] = 1e-9f;
  const std::map<std::string, Tensor> before = w;
  PruneOptions o;
  o.sparsity = 0.9;
  const PruneResult r = magnitude_prune(spec, w, o);
  EXPECT_EQ(r.masks.size(), 2u);
  for (const char* name : {"conv1.bias", "bn1.weight", "bn1.bias", "fc.bias", "bn1.running_mean", "bn1.running_var"}) {
    EXPECT_TRUE(bitwise_equal(w.at(name), before.at(name))) << name;
    EXPECT_EQ(r.masks.count(std::string(name) + ".mask"), 0u) << name;
  }
  EXPECT_EQ(r.pruned, std::llround(0.9 * 219));
}

TEST(Pruning, SparsityOutsideZeroToOneIsRefused) {
  const ModelSpec spec = tiny_model();
  std::map<std::string, Tensor> w = init_weights(spec, 0);
  for (double bad : {-0.1, 1.0, 1.5, std::nan("")}) {
    PruneOptions o;
    o.sparsity = bad;
    expect_error([&] { magnitude_prune(spec, w, o); }, "sparsity must be in [0, 1)");
  }
  PruneOptions none;
  none.sparsity = 0.0;
  EXPECT_EQ(magnitude_prune(spec, w, none).pruned, 0);
}

TEST(Pruning, MasksSurviveASafetensorsFileAsU8) {
  const ModelSpec spec = tiny_model();
  std::map<std::string, Tensor> w = init_weights(spec, 1);
  PruneResult r = magnitude_prune(spec, w, PruneOptions{});
  const fs::path path = fs::temp_directory_path() / ("parity-test-masks-" + std::to_string(::getpid()) + ".safetensors");
  TensorFile file;
  file.tensors = w;
  for (const auto& [name, mask] : r.masks) file.tensors.emplace(name, mask);
  write_safetensors(path.string(), file);
  const TensorFile back = read_safetensors(path.string());
  fs::remove(path);
  ASSERT_EQ(back.tensors.at("fc.weight.mask").dtype(), DType::u8);
  EXPECT_TRUE(bitwise_equal(back.tensors.at("fc.weight.mask"), r.masks.at("fc.weight.mask")));
  const std::map<std::string, Tensor> masks = read_gradient_masks(spec, back, "m.safetensors");
  ASSERT_EQ(masks.size(), 2u);
  for (int64_t i = 0; i < 192; ++i)
    EXPECT_EQ(masks.at("fc.weight").f32()[i], static_cast<float>(r.masks.at("fc.weight.mask").u8()[i]));
}

TEST(Pruning, BadMaskFilesAreRefusedNamingWhatIsWrong) {
  const ModelSpec spec = tiny_model();
  auto file_with = [](const std::string& name, const Tensor& t) {
    TensorFile f;
    f.tensors.emplace("fc.weight", Tensor(Shape{4, 48}, DType::f32));
    f.tensors.emplace(name, t);
    return f;
  };
  Tensor ones_conv(Shape{3, 1, 3, 3}, DType::u8);
  std::fill_n(ones_conv.u8(), ones_conv.numel(), uint8_t{1});
  expect_error([&] { read_gradient_masks(spec, file_with("fc.weight.mask", ones_conv), "m.st"); },
               "m.st: mask 'fc.weight.mask' has shape [3,1,3,3], but weight 'fc.weight' of model tiny has shape [4,48]");
  expect_error([&] { read_gradient_masks(spec, file_with("conv1.bias.mask", Tensor(Shape{3}, DType::u8)), "m.st"); },
               "mask 'conv1.bias.mask' names 'conv1.bias', which is not a conv or linear weight of model tiny (those are: "
               "conv1.weight, fc.weight)");
  expect_error([&] { read_gradient_masks(spec, file_with("nosuch.weight.mask", ones_conv), "m.st"); }, "'nosuch.weight'");
  expect_error([&] { read_gradient_masks(spec, file_with("other", ones_conv), "m.st"); },
               "m.st: no '<weight>.mask' tensor: not a mask file");
  expect_error([&] { read_gradient_masks(spec, file_with("conv1.weight.mask", Tensor(Shape{3, 1, 3, 3}, DType::f32)), "m.st"); },
               "mask 'conv1.weight.mask' is f32; a mask is u8");
  Tensor two = ones_conv;
  two.u8()[4] = 2;
  expect_error([&] { read_gradient_masks(spec, file_with("conv1.weight.mask", two), "m.st"); },
               "mask 'conv1.weight.mask' holds 2 at element 4");
  // The graph refuses a mask of another shape too (a library caller filling gradient_masks itself).
  OptimizerConfig opt;
  opt.gradient_masks.emplace("fc.weight", Tensor(Shape{3}, DType::f32));
  expect_error([&] { Trainer(spec, create_backend("cpu"), opt, 4); },
               "gradient mask of 'fc.weight' is f32 [3], the parameter is f32 [4,48]");
  OptimizerConfig stray;
  stray.gradient_masks.emplace("fc.bias.nosuch", Tensor(Shape{4}, DType::f32));
  expect_error([&] { Trainer(spec, create_backend("cpu"), stray, 4); }, "gradient mask 'fc.bias.nosuch' names no trained parameter");
}

struct MaskedCase {
  const char* name;
  OptimizerConfig::Kind kind;
  float momentum, weight_decay;
  bool nesterov;
  float clip;
};

// The optimizer state tensors of `param` in a checkpoint.
std::vector<std::string> state_of(const OptimizerConfig& opt, const std::string& param) {
  if (opt.kind == OptimizerConfig::Kind::sgd) return {sgd_velocity_name(param)};
  return {adam_m_name(param), adam_v_name(param)};
}

TEST(Pruning, MaskedTrainingKeepsPrunedWeightsAndTheirOptimizerStateExactlyZero) {
  const ModelSpec spec = tiny_model();
  const MaskedCase cases[] = {{"adam with L2 decay", OptimizerConfig::Kind::adam, 0, 0.1f, false, 0},
                              {"adamw", OptimizerConfig::Kind::adamw, 0, 0.1f, false, 0},
                              {"sgd momentum + decay", OptimizerConfig::Kind::sgd, 0.9f, 0.1f, false, 0},
                              {"sgd nesterov + decay, clipped", OptimizerConfig::Kind::sgd, 0.9f, 0.1f, true, 0.5f}};
  for (const char* backend : {"cpu", "ref"})
    for (const MaskedCase& c : cases) {
      SCOPED_TRACE(std::string(backend) + ", " + c.name);
      std::map<std::string, Tensor> weights = init_weights(spec, 7);
      const std::map<std::string, Tensor> dense = weights;
      PruneOptions po;
      po.sparsity = 0.6;
      const PruneResult pruned = magnitude_prune(spec, weights, po);
      TensorFile mask_file;
      for (const auto& [name, mask] : pruned.masks) mask_file.tensors.emplace(name, mask);
      OptimizerConfig opt;
      opt.kind = c.kind;
      opt.lr = 0.05f;
      opt.momentum = c.momentum;
      opt.weight_decay = c.weight_decay;
      opt.nesterov = c.nesterov;
      opt.clip_grad_norm = c.clip;
      opt.gradient_masks = read_gradient_masks(spec, mask_file, "masks");
      Trainer trainer(spec, create_backend(backend), opt, 8);
      // The dense weights: the Trainer zeroes the pruned ones as they load.
      trainer.load_weights(dense, "dense");
      for (uint32_t step = 0; step < 6; ++step) {
        auto [x, y] = random_batch(spec, step == 5 ? 5 : 8, 100 + step);  // the last batch partial: its own step
        trainer.train_step(x, y);
      }
      const TensorFile ckpt = trainer.checkpoint();
      for (const std::string& param : prunable_weights(spec)) {
        const Tensor& mask = pruned.masks.at(gradient_mask_name(param));
        const Tensor& w = ckpt.tensors.at(param);
        int64_t kept_moved = 0;
        for (int64_t i = 0; i < w.numel(); ++i) {
          if (mask.u8()[i] == 0) {
            ASSERT_EQ(w.f32()[i], 0.0f) << param << "[" << i << "]";
          } else {
            kept_moved += w.f32()[i] != dense.at(param).f32()[i];
          }
        }
        // The kept weights did train (the test would pass trivially with lr 0).
        EXPECT_GT(kept_moved, 0) << param;
        for (const std::string& state : state_of(opt, param)) {
          const Tensor& s = ckpt.tensors.at(state);
          int64_t kept_nonzero = 0;
          for (int64_t i = 0; i < s.numel(); ++i) {
            if (mask.u8()[i] == 0) {
              ASSERT_EQ(s.f32()[i], 0.0f) << state << "[" << i << "]";
            } else {
              kept_nonzero += s.f32()[i] != 0.0f;
            }
          }
          EXPECT_GT(kept_nonzero, 0) << state;
        }
      }
      // Biases and batch-norm parameters trained as usual.
      EXPECT_FALSE(bitwise_equal(ckpt.tensors.at("bn1.weight"), dense.at("bn1.weight")));
    }
}

TEST(Pruning, WithoutTheMaskZeroedWeightsGrowBack) {
  // The control of the test above: the same pruned start trained without gradient_masks leaves
  // pruned elements non-zero, so the zeros above are the mask's doing.
  const ModelSpec spec = tiny_model();
  std::map<std::string, Tensor> weights = init_weights(spec, 7);
  PruneOptions po;
  po.sparsity = 0.6;
  const PruneResult pruned = magnitude_prune(spec, weights, po);
  OptimizerConfig opt;
  opt.lr = 0.05f;
  Trainer trainer(spec, create_backend("cpu"), opt, 8);
  trainer.load_weights(weights, "pruned");
  for (uint32_t step = 0; step < 3; ++step) {
    auto [x, y] = random_batch(spec, 8, 100 + step);
    trainer.train_step(x, y);
  }
  const Tensor w = trainer.weights().at("fc.weight");
  const Tensor& mask = pruned.masks.at("fc.weight.mask");
  int64_t regrown = 0;
  for (int64_t i = 0; i < w.numel(); ++i) regrown += mask.u8()[i] == 0 && w.f32()[i] != 0.0f;
  EXPECT_GT(regrown, 0);
}

TEST(Pruning, ResumingWithTheMaskZeroesTheCheckpointsOptimizerStateToo) {
  // A dense checkpoint (its moments non-zero everywhere) restored under a mask: the pruned
  // elements' weights and moments start at 0, so they stay there.
  const ModelSpec spec = tiny_model();
  Trainer dense(spec, create_backend("cpu"), OptimizerConfig{}, 8);
  dense.load_weights(init_weights(spec, 2), "seed");
  auto [x, y] = random_batch(spec, 8, 9);
  dense.train_step(x, y);
  const TensorFile ckpt = dense.checkpoint();
  std::map<std::string, Tensor> weights = dense.weights();
  const PruneResult pruned = magnitude_prune(spec, weights, PruneOptions{});
  TensorFile mask_file;
  for (const auto& [name, mask] : pruned.masks) mask_file.tensors.emplace(name, mask);
  OptimizerConfig opt;
  opt.gradient_masks = read_gradient_masks(spec, mask_file, "masks");
  Trainer held(spec, create_backend("cpu"), opt, 8);
  held.restore(ckpt, "dense checkpoint");
  held.train_step(x, y);
  const TensorFile after = held.checkpoint();
  const Tensor& mask = pruned.masks.at("fc.weight.mask");
  for (const std::string& name : {std::string("fc.weight"), adam_m_name("fc.weight"), adam_v_name("fc.weight")})
    for (int64_t i = 0; i < mask.numel(); ++i)
      if (mask.u8()[i] == 0) {
        ASSERT_EQ(after.tensors.at(name).f32()[i], 0.0f) << name << "[" << i << "]";
      }
}

#ifdef PARITY_TEST_ONNX
TEST(Pruning, AnOnnxExportOfFineTunedWeightsKeepsTheZeros) {
  // seed-cnn pruned to 0.8, fine-tuned a few steps with the mask held, exported as `parity
  // export` does (build_forward for one sample, export_onnx), read back by the ONNX importer.
  const ModelSpec& spec = model_spec("seed-cnn");
  std::map<std::string, Tensor> weights = init_weights(spec, 4);
  PruneOptions po;
  po.sparsity = 0.8;
  const PruneResult pruned = magnitude_prune(spec, weights, po);
  TensorFile mask_file;
  for (const auto& [name, mask] : pruned.masks) mask_file.tensors.emplace(name, mask);
  OptimizerConfig opt;
  opt.kind = OptimizerConfig::Kind::adamw;
  opt.weight_decay = 0.01f;
  opt.gradient_masks = read_gradient_masks(spec, mask_file, "masks");
  Trainer trainer(spec, create_backend("cpu"), opt, 16);
  trainer.load_weights(weights, "pruned");
  for (uint32_t step = 0; step < 4; ++step) {
    auto [x, y] = random_batch(spec, 16, 40 + step);
    trainer.train_step(x, y);
  }
  const std::map<std::string, Tensor> tuned = trainer.weights();
  const OnnxExported exported = export_onnx(build_forward(spec, 1), tuned);
  const fs::path path = fs::temp_directory_path() / ("parity-test-pruned-" + std::to_string(::getpid()) + ".onnx");
  write_file_atomically(path.string(), exported.bytes);
  const ModelSpec imported = load_model(path.string());
  const std::map<std::string, Tensor> values = imported.layer_graph->initial_values();
  fs::remove(path);
  for (const std::string& param : prunable_weights(spec)) {
    const Tensor& mask = pruned.masks.at(gradient_mask_name(param));
    const Tensor& w = values.at(param);
    for (int64_t i = 0; i < w.numel(); ++i)
      if (mask.u8()[i] == 0) {
        ASSERT_EQ(w.f32()[i], 0.0f) << param << "[" << i << "]";
      }
    // The export carries the trained values, not the initial ones.
    EXPECT_TRUE(bitwise_equal(w, tuned.at(param))) << param;
  }
}
#endif

}  // namespace
}  // namespace parity::testing
