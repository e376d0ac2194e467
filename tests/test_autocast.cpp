// tests/test_autocast.cpp — mixed precision: the autocast pass's graph structure (CAST placement,
// one half copy per parameter, f32 gradients), and fp16's dynamic loss scaling in the Trainer
// (a skipped step is bit-exact, the scale halves and grows, checkpoints keep it).
#include <unistd.h>

#include <algorithm>
#include <cfloat>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <utility>

#include "check/half_model_bound.h"
#include "graph/loss_scale.h"
#include "model/autocast.h"
#include "parity/check.h"
#include "tests/test_helpers.h"

namespace parity::testing {
namespace {

// --- the pass --------------------------------------------------------------------------------

TEST(Autocast, PrecisionNamesParseAndRefuseOthers) {
  EXPECT_EQ(parse_precision("f32"), Precision::f32);
  EXPECT_EQ(parse_precision("bf16"), Precision::bf16);
  EXPECT_EQ(parse_precision("fp16"), Precision::f16);
  EXPECT_EQ(parse_precision("f16"), Precision::f16);
  EXPECT_STREQ(precision_name(Precision::f16), "fp16");
  EXPECT_EQ(compute_dtype(Precision::bf16), DType::bf16);
  try {
    parse_precision("fp8");
    FAIL() << "fp8 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("f32, bf16 or fp16, got 'fp8'"), std::string::npos) << e.what();
  }
}

TEST(Autocast, F32ReturnsTheGraphUnchanged) {
  const ModelSpec spec = load_model("seed-cnn");
  const Graph forward = build_forward(spec, 4);
  EXPECT_EQ(autocast(forward, Precision::f32).dump(), forward.dump());
}

TEST(Autocast, OpClassesFollowTheDesign) {
  EXPECT_EQ(autocast_class(PARITY_OP_CONV2D), AutocastClass::half_compute);
  EXPECT_EQ(autocast_class(PARITY_OP_LINEAR), AutocastClass::half_compute);
  for (parity_op op : {PARITY_OP_RELU, PARITY_OP_MAXPOOL2D, PARITY_OP_RESHAPE, PARITY_OP_ADD, PARITY_OP_MUL,
                       PARITY_OP_CONCAT, PARITY_OP_DROPOUT, PARITY_OP_AVGPOOL2D})
    EXPECT_EQ(autocast_class(op), AutocastClass::follow_the_input) << parity_op_name(op);
  for (parity_op op : {PARITY_OP_SOFTMAX_XENT, PARITY_OP_SOFTMAX, PARITY_OP_BATCHNORM2D_TRAIN, PARITY_OP_GLOBAL_AVGPOOL,
                       PARITY_OP_SIGMOID, PARITY_OP_TANH, PARITY_OP_GELU, PARITY_OP_REDUCE_SUM, PARITY_OP_ADAM_STEP,
                       PARITY_OP_ARGMAX, PARITY_OP_ACCURACY})
    EXPECT_EQ(autocast_class(op), AutocastClass::f32_only) << parity_op_name(op);
}

// The nodes of `g` that read value `name`.
std::vector<const Node*> readers(const Graph& g, const std::string& name) {
  const int32_t id = g.find(name).id;
  std::vector<const Node*> out;
  for (const Node& n : g.nodes())
    for (int32_t in : n.inputs)
      if (in == id) {
        out.push_back(&n);
        break;
      }
  return out;
}

void expect_seed_cnn_structure(Precision p) {
  const DType half = compute_dtype(p);
  const ModelSpec spec = load_model("seed-cnn");
  const Graph g = autocast(build_forward(spec, 4), p);
  for (const ParamSpec& param : spec.params) {
    const bool weight = param.name.size() > 7 && param.name.compare(param.name.size() - 7, 7, ".weight") == 0;
    const ValueInfo& master = g.value(g.find(param.name));
    EXPECT_EQ(master.dtype, DType::f32) << param.name << ": the master weight stays f32";
    EXPECT_EQ(master.kind, PARITY_VALUE_PARAM) << param.name;
    const std::vector<const Node*> r = readers(g, param.name);
    ASSERT_EQ(r.size(), 1u) << param.name;
    if (weight) {
      // One CAST, named <param>.half, is the weight's only reader and feeds the conv/linear.
      EXPECT_EQ(r[0]->op, PARITY_OP_CAST) << param.name;
      EXPECT_EQ(r[0]->name, param.name + ".half");
      EXPECT_EQ(g.value(g.find(param.name + ".half")).dtype, half);
    } else {
      EXPECT_TRUE(r[0]->op == PARITY_OP_CONV2D || r[0]->op == PARITY_OP_LINEAR) << param.name << ": bias read as f32";
    }
  }
  // Every conv/linear reads half x and w, an f32 bias, and writes the half dtype.
  int half_compute = 0;
  for (const Node& n : g.nodes()) {
    if (autocast_class(n.op) == AutocastClass::half_compute) {
      ++half_compute;
      EXPECT_EQ(g.values()[static_cast<size_t>(n.inputs[0])].dtype, half) << n.name;
      EXPECT_EQ(g.values()[static_cast<size_t>(n.inputs[1])].dtype, half) << n.name;
      EXPECT_EQ(g.values()[static_cast<size_t>(n.inputs[2])].dtype, DType::f32) << n.name;
      EXPECT_EQ(g.values()[static_cast<size_t>(n.outputs[0])].dtype, half) << n.name;
    }
    if (n.op == PARITY_OP_RELU || n.op == PARITY_OP_MAXPOOL2D || n.op == PARITY_OP_RESHAPE) {
      EXPECT_EQ(g.values()[static_cast<size_t>(n.outputs[0])].dtype, half) << n.name << " follows its input";
    }
    if (autocast_class(n.op) == AutocastClass::f32_only && n.op != PARITY_OP_CAST) {
      for (int32_t in : n.inputs) EXPECT_NE(g.values()[static_cast<size_t>(in)].dtype, half) << n.name;
    }
  }
  EXPECT_EQ(half_compute, 4);
  // The input is cast once; the logits are widened once, for the loss and the accuracy alike.
  EXPECT_EQ(g.value(g.find("x.half")).dtype, half);
  EXPECT_EQ(readers(g, "logits").size(), 1u);
  EXPECT_EQ(g.value(g.find("logits.f32")).dtype, DType::f32);
  EXPECT_EQ(readers(g, "logits.f32").size(), 2u);
  EXPECT_EQ(g.value(g.find("loss")).dtype, DType::f32);
  int casts = 0;
  for (const Node& n : g.nodes()) casts += n.op == PARITY_OP_CAST;
  EXPECT_EQ(casts, 2 + 4) << "x, the four weights and the logits: one cast each";

  // After autodiff every parameter's gradient, and every optimizer input, is f32.
  OptimizerConfig opt;
  const Graph trained = differentiate(g, g.find("loss"), &opt);
  for (const ParamSpec& param : spec.params)
    EXPECT_EQ(trained.value(trained.find(grad_name(param.name))).dtype, DType::f32) << param.name;
  for (const Node& n : trained.nodes())
    if (n.op == PARITY_OP_ADAM_STEP) {
      for (int32_t in : n.inputs) EXPECT_NE(trained.values()[static_cast<size_t>(in)].dtype, half) << n.name;
    }
}

TEST(Autocast, Bf16SeedCnnStructure) { expect_seed_cnn_structure(Precision::bf16); }
TEST(Autocast, Fp16SeedCnnStructure) { expect_seed_cnn_structure(Precision::f16); }

// A weight read by two half-compute ops is cast once, and a follow-the-input op meeting f32 and
// half widens the half operand.
TEST(Autocast, SharedWeightCastOnceAndMixedAddWidens) {
  GraphBuilder b;
  const Value x = b.input("x", Shape{2, 3});
  const Value w = b.parameter("w", Shape{3, 3});
  const Value bias = b.parameter("b", Shape{3});
  const Value h1 = b.linear(x, w, bias, "l1");
  const Value h2 = b.linear(h1, w, bias, "l2");
  b.add(h2, x, "sum");
  const Graph g = autocast(b.take(), Precision::bf16);
  ASSERT_EQ(readers(g, "w").size(), 1u);
  EXPECT_EQ(readers(g, "w.half").size(), 2u);
  EXPECT_EQ(readers(g, "b").size(), 2u) << "the bias stays f32, read directly";
  const Node* add = readers(g, "x")[0]->op == PARITY_OP_ADD ? readers(g, "x")[0] : readers(g, "x")[1];
  EXPECT_EQ(add->op, PARITY_OP_ADD);
  EXPECT_EQ(g.values()[static_cast<size_t>(add->inputs[0])].name, "l2.f32");
  EXPECT_EQ(g.value(g.find("sum")).dtype, DType::f32);
}

// --- loss scaling ----------------------------------------------------------------------------

TEST(LossScale, GraphsSplitGradientsFromTheUpdate) {
  const ModelSpec spec = load_model("seed-cnn");
  const Graph forward = build_forward(spec, 4);
  OptimizerConfig opt;
  const LossScaledTraining t = differentiate_loss_scaled(forward, forward.find("loss"), opt);
  EXPECT_EQ(t.params.size(), spec.params.size());
  for (const Node& n : t.gradients.nodes()) EXPECT_NE(n.op, PARITY_OP_ADAM_STEP) << n.name;
  int updates = 0;
  for (const Node& n : t.update.nodes()) updates += n.op == PARITY_OP_ADAM_STEP;
  EXPECT_EQ(updates, static_cast<int>(spec.params.size()));
  EXPECT_EQ(t.gradients.value(t.gradients.find(found_inf_name())).shape, Shape{1});
  EXPECT_EQ(t.gradients.value(t.gradients.find(loss_scale_name())).kind, PARITY_VALUE_INPUT);
  for (const std::string& p : t.params) {
    EXPECT_EQ(t.update.value(t.update.find(grad_name(p))).kind, PARITY_VALUE_INPUT) << p;
    EXPECT_EQ(t.gradients.value(t.gradients.find(unscaled_grad_name(p))).dtype, DType::f32) << p;
  }
}

struct ScaledTrainer {
  ModelSpec spec = load_model("seed-cnn");
  Trainer trainer;
  explicit ScaledTrainer(const LossScaling& s, Precision p = Precision::f32, const std::string& backend = "cpu")
      : trainer(spec, create_backend(backend), OptimizerConfig{}, 8, 0, {}, p, s) {
    trainer.load_weights(init_weights(spec, 3));
  }
  // `gain` scales the pixels: 1e6 makes activations near 1e7, so that a scale near FLT_MAX
  // overflows the gradients of the last linear layer (activations times dL/dlogits ~ scale / 8).
  StepResult step(uint32_t seed, float gain = 1.0f) {
    auto [x, y] = random_batch(spec, 8, seed);
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] *= gain;
    return trainer.train_step(x, y);
  }
};

LossScaling scaling(float initial, int64_t interval = 2000) {
  LossScaling s;
  s.initial_scale = initial;
  s.growth_interval = interval;
  s.in_every_precision = true;
  return s;
}

std::map<std::string, Tensor> persistent_values(const Trainer& t) {
  std::map<std::string, Tensor> out = t.checkpoint().tensors;
  for (auto it = out.begin(); it != out.end();) it = it->first.rfind("grad_scaler.", 0) == 0 ? out.erase(it) : ++it;
  return out;
}

TEST(LossScale, AnInfGradientSkipsTheStepBitExactlyAndHalvesTheScale) {
  ScaledTrainer s(scaling(FLT_MAX));
  EXPECT_FALSE(s.step(1).skipped) << "ordinary pixels do not overflow at FLT_MAX";
  const std::map<std::string, Tensor> before = persistent_values(s.trainer);
  const LossScaleState state = s.trainer.loss_scale();
  const int64_t steps = s.trainer.step();
  const StepResult r = s.step(2, 1e6f);
  ASSERT_TRUE(r.skipped) << "the scale " << r.loss_scale << " did not overflow any gradient";
  EXPECT_EQ(r.loss_scale, state.scale);
  EXPECT_EQ(s.trainer.loss_scale().scale, state.scale * 0.5f);
  EXPECT_EQ(s.trainer.loss_scale().skipped_steps, state.skipped_steps + 1);
  EXPECT_EQ(s.trainer.loss_scale().consecutive_skipped, state.consecutive_skipped + 1);
  EXPECT_EQ(s.trainer.loss_scale().growth_tracker, 0);
  EXPECT_EQ(s.trainer.step(), steps) << "a skipped step is not an optimizer step";
  const std::map<std::string, Tensor> after = persistent_values(s.trainer);
  ASSERT_EQ(before.size(), after.size());
  for (const auto& [name, t] : before) EXPECT_TRUE(bitwise_equal(t, after.at(name))) << name << " changed";
  EXPECT_TRUE(std::isfinite(r.loss)) << "the loss itself is f32 and unscaled";
}

TEST(LossScale, ScaleGrowsAfterTheIntervalOfGoodSteps) {
  ScaledTrainer s(scaling(1024.0f, 3));
  for (uint32_t i = 0; i < 2; ++i) EXPECT_FALSE(s.step(i).skipped);
  EXPECT_EQ(s.trainer.loss_scale().scale, 1024.0f);
  EXPECT_EQ(s.trainer.loss_scale().growth_tracker, 2);
  EXPECT_FALSE(s.step(2).skipped);
  EXPECT_EQ(s.trainer.loss_scale().scale, 2048.0f);
  EXPECT_EQ(s.trainer.loss_scale().growth_tracker, 0);
  EXPECT_EQ(s.trainer.step(), 3);
  const StepResult r = s.step(3);
  EXPECT_EQ(r.loss_scale, 2048.0f);
  EXPECT_EQ(s.trainer.loss_scale().skipped_steps, 0);
}

TEST(LossScale, DefaultsAreGradScalers) {
  const LossScaling d;
  EXPECT_EQ(d.initial_scale, 65536.0f);
  EXPECT_EQ(d.growth_interval, 2000);
  EXPECT_EQ(d.growth_factor, 2.0f);
  EXPECT_EQ(d.backoff_factor, 0.5f);
}

// Scaling by a power of two and unscaling in f32 is exact, so with f32 values the split step
// (gradients, then the update) trains bit-identically to the ordinary fused one.
TEST(LossScale, PowerOfTwoScaleInF32TrainsBitIdenticallyToNoScaling) {
  ScaledTrainer scaled(scaling(1024.0f));
  const ModelSpec spec = load_model("seed-cnn");
  Trainer plain(spec, create_backend("cpu"), OptimizerConfig{}, 8);
  plain.load_weights(init_weights(spec, 3));
  for (uint32_t i = 0; i < 4; ++i) {
    auto [x, y] = random_batch(spec, 8, i);
    const StepResult a = scaled.trainer.train_step(x, y), b = plain.train_step(x, y);
    EXPECT_EQ(a.loss, b.loss) << "step " << i;
  }
  const auto w = plain.weights(), v = scaled.trainer.weights();
  for (const auto& [name, t] : w) EXPECT_TRUE(bitwise_equal(t, v.at(name))) << name;
}

TEST(LossScale, CheckpointRoundTripsTheScaleAndCounters) {
  ScaledTrainer a(scaling(FLT_MAX, 3));
  for (uint32_t i = 0; i < 6; ++i) a.step(i, i < 2 ? 1e6f : 1.0f);  // two skipped, then good ones
  const LossScaleState sa = a.trainer.loss_scale();
  EXPECT_GT(sa.skipped_steps, 0);
  EXPECT_EQ(sa.scale, FLT_MAX / 2);  // halved twice, doubled once
  EXPECT_EQ(sa.growth_tracker, 1);
  const TensorFile file = a.trainer.checkpoint();
  EXPECT_EQ(file.tensors.at("grad_scaler.scale").f32()[0], sa.scale);
  EXPECT_EQ(file.tensors.at("grad_scaler.skipped_steps").i64()[0], sa.skipped_steps);

  ScaledTrainer b(scaling(FLT_MAX, 3));
  b.trainer.restore(file, "checkpoint");
  const LossScaleState sb = b.trainer.loss_scale();
  EXPECT_EQ(sb.scale, sa.scale);
  EXPECT_EQ(sb.growth_tracker, sa.growth_tracker);
  EXPECT_EQ(sb.skipped_steps, sa.skipped_steps);
  EXPECT_EQ(sb.consecutive_skipped, sa.consecutive_skipped);
  EXPECT_EQ(b.trainer.step(), a.trainer.step());
  const StepResult ra = a.step(10), rb = b.step(10);
  EXPECT_EQ(ra.skipped, rb.skipped);
  EXPECT_EQ(ra.loss, rb.loss);
  const auto wa = a.trainer.weights(), wb = b.trainer.weights();
  for (const auto& [name, t] : wa) EXPECT_TRUE(bitwise_equal(t, wb.at(name))) << name;

  // A checkpoint without the scaler's tensors is refused, naming the one missing.
  TensorFile plain = file;
  plain.tensors.erase("grad_scaler.scale");
  try {
    b.trainer.restore(plain, "old.safetensors");
    FAIL() << "restored without grad_scaler.scale";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("grad_scaler.scale"), std::string::npos) << e.what();
  }
}

TEST(LossScale, BadScalingIsRefused) {
  const ModelSpec spec = load_model("seed-cnn");
  LossScaling s = scaling(0.0f);
  try {
    Trainer t(spec, create_backend("cpu"), OptimizerConfig{}, 4, 0, {}, Precision::f32, s);
    FAIL() << "scale 0 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("initial_scale > 0"), std::string::npos) << e.what();
  }
}

// --- the training run --------------------------------------------------------------------------

bool have_dataset() { return std::filesystem::exists(default_data_folder() + "/train-images-idx3-ubyte.gz"); }

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("parity-autocast-" + name + "-" + std::to_string(::getpid()))).string();
}

TEST(LossScaleRun, MetricsGainTheScaleColumnsAndCheckpointsKeepTheScaler) {
  ASSERT_TRUE(have_dataset()) << "install the Debian package dataset-fashion-mnist";
  TrainOptions o;
  o.backend = "cpu";
  o.limit = 256;
  o.scaling = scaling(1024.0f, 2);
  o.metrics = temp_path("metrics.csv");
  o.save = temp_path("ckpt.safetensors");
  run_training(o);
  std::ifstream in(o.metrics);
  std::string header, row;
  std::getline(in, header);
  std::getline(in, row);
  EXPECT_EQ(header, "split,epoch,step,loss,accuracy,images_per_s,loss_scale,skipped_steps");
  EXPECT_EQ(std::count(row.begin(), row.end(), ','), 7) << row;
  EXPECT_NE(row.find(",1024,0"), std::string::npos) << row;
  const TensorFile ckpt = read_safetensors(o.save);
  EXPECT_EQ(ckpt.tensors.at("grad_scaler.scale").f32()[0], 4096.0f) << "4 good steps, doubled every 2";
  EXPECT_EQ(ckpt.tensors.at("grad_scaler.skipped_steps").i64()[0], 0);
  std::filesystem::remove(o.metrics);
  std::filesystem::remove(o.save);
}

// A loss that stays non-finite skips step after step (the weights never change); past
// max_consecutive_skipped the run stops, naming the count and the scale.
TEST(LossScaleRun, TooManySkippedStepsInARowStopTheRun) {
  ASSERT_TRUE(have_dataset());
  TrainOptions o;
  o.backend = "cpu";
  o.limit = 640;
  o.lr = 1e30f;  // the first step blows the weights up: every later loss is inf or NaN
  o.scaling = scaling(65536.0f);
  o.max_consecutive_skipped = 3;
  try {
    run_training(o);
    FAIL() << "the run did not stop";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::numeric);
    EXPECT_NE(std::string(e.what()).find("4 steps in a row skipped"), std::string::npos) << e.what();
  }
}

// --- end to end (the half ops of ref and cpu) ---------------------------------------------------

// A short run per precision on cpu: the loss falls from its start near ln(10) and the test
// accuracy leaves chance far behind; the fp16 CSV has the scaling columns.
TEST(AutocastRun, Bf16AndFp16TrainSeedCnnOnCpu) {
  ASSERT_TRUE(have_dataset());
  for (Precision p : {Precision::bf16, Precision::f16}) {
    SCOPED_TRACE(precision_name(p));
    TrainOptions o;
    o.backend = "cpu";
    o.precision = p;
    o.limit = 1280;
    o.seed = 1;
    std::vector<double> losses;
    TrainCallbacks cb;
    cb.on_step = [&](const TrainProgress& t) { losses.push_back(t.running_loss); };
    o.metrics = temp_path(fmt::format("{}.csv", precision_name(p)));
    const TrainSummary s = run_training(o, cb);
    ASSERT_EQ(s.epochs.size(), 1u);
    ASSERT_EQ(losses.size(), 20u) << "no step skipped";
    EXPECT_LT(s.epochs[0].train_loss, losses[0] * 0.95);
    EXPECT_LT(s.epochs[0].test.loss, 1.6);
    EXPECT_GT(s.epochs[0].test.accuracy, 0.45);
    std::ifstream in(o.metrics);
    std::string header;
    std::getline(in, header);
    EXPECT_EQ(header.find("loss_scale") != std::string::npos, p == Precision::f16) << header;
    std::filesystem::remove(o.metrics);
  }
}

// ref (float64 from the half operands) trains too: one batch repeated, its loss falls as the
// f32 run's does (within 0.02 after 10 steps), and no fp16 step is skipped.
TEST(AutocastRun, Bf16AndFp16TrainOnRefAlongsideF32) {
  const ModelSpec spec = load_model("seed-cnn");
  auto [x, y] = random_batch(spec, 16, 5);
  auto run = [&, x = x, y = y](Precision p) {
    Trainer t(spec, create_backend("ref"), OptimizerConfig{}, 16, 0, {}, p);
    t.load_weights(init_weights(spec, 2));
    std::vector<float> losses;
    for (int i = 0; i < 10; ++i) {
      const StepResult r = t.train_step(x, y);
      EXPECT_FALSE(r.skipped) << precision_name(p);
      losses.push_back(r.loss);
    }
    EXPECT_EQ(t.step(), 10);
    return losses;
  };
  const std::vector<float> f32 = run(Precision::f32);
  for (Precision p : {Precision::bf16, Precision::f16}) {
    const std::vector<float> half = run(p);
    EXPECT_LT(half.back(), 0.95f * half.front()) << precision_name(p);
    EXPECT_NEAR(half.back(), f32.back(), 0.02f) << precision_name(p);
  }
}

// parity check model --precision: every value of a seed-cnn step on cpu within its threshold of
// ref's (a half value's, or one downstream of half values, judged by the half tolerances).
TEST(AutocastRun, HalfStepsOnCpuAgreeWithRefNodeByNode) {
  for (Precision p : {Precision::bf16, Precision::f16}) {
    ModelCheckOptions o;
    o.precision = p;
    const ModelCheckReport r = check_model(o);
    EXPECT_EQ(r.values.size(), 93u) << precision_name(p) << ": the f32 graph's values plus the casts";
    EXPECT_TRUE(r.pass()) << precision_name(p) << ": first divergence "
                          << (r.first_failure >= 0 ? r.values[static_cast<size_t>(r.first_failure)].name : "");
  }
  ModelCheckOptions torch;
  torch.precision = Precision::bf16;
  torch.against = "torch";
  try {
    check_model(torch);
    FAIL() << "bf16 against torch was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("runs f32 only"), std::string::npos) << e.what();
  }
}

// The half model bound (check/half_model_bound.h): a value over its op threshold passes when it
// is within 4x half precision's effect on the other side (NMSE against ref's f32 run), and only
// then; the limit and the note say so. Noise of NMSE e0 on the "f32" side makes e = e0.
TEST(HalfModelBound, PassesWithinFourTimesTheHalfEffectAndNoFurther) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  const int64_t n = 4096;
  Tensor want(Shape{n}, DType::f32), f32(Shape{n}, DType::f32);
  for (int64_t i = 0; i < n; ++i) want.f32()[i] = normal(rng);
  auto near = [&](float rms) {  // want plus noise of relative rms `rms`
    Tensor t(Shape{n}, DType::f32);
    for (int64_t i = 0; i < n; ++i) t.f32()[i] = want.f32()[i] + rms * normal(rng);
    return t;
  };
  f32 = near(1e-2f);  // e ~ 1e-4
  const double e = compare_tensors(want, f32, 0).nmse;
  for (double factor : {1.5, 3.0, 6.0, 12.0}) {
    const Tensor got = near(float(1e-2 * std::sqrt(factor)));
    TensorDiff d = compare_tensors(got, want, 1e-6);
    ASSERT_FALSE(d.pass);
    const double nmse = d.nmse;
    apply_half_model_bound(d, got, want, &f32);
    EXPECT_EQ(d.pass, nmse <= 4 * e) << "NMSE " << nmse << " against 4 e = " << 4 * e;
    if (d.pass) {
      EXPECT_DOUBLE_EQ(d.threshold, 4 * e);
      EXPECT_NE(d.note.find("half model bound"), std::string::npos) << d.note;
    }
    if (factor <= 3.0) {
      EXPECT_TRUE(d.pass) << factor;  // well inside 4 e: the noise cannot push it out
    }
    if (factor >= 6.0) {
      EXPECT_FALSE(d.pass) << factor;
    }
  }
  // Nothing to measure against, a non-finite mismatch, or an effect of 0: the op threshold stands.
  const Tensor got = near(1e-2f);
  TensorDiff d = compare_tensors(got, want, 1e-6);
  apply_half_model_bound(d, got, want, nullptr);
  EXPECT_FALSE(d.pass);
  apply_half_model_bound(d, got, want, &want);
  EXPECT_FALSE(d.pass);
  Tensor inf = got;
  inf.f32()[0] = INFINITY;
  d = compare_tensors(inf, want, 1e-6);
  apply_half_model_bound(d, inf, want, &f32);
  EXPECT_FALSE(d.pass);
}

// seed-cnn-4conv at fp16: max-pool ties broken differently after one-ulp differences send a few
// gradients elsewhere, over the per-op thresholds; the half model bound holds every such value.
// resnet8 at bf16: errors compound over eight half convolutions and the batch norms' backwards,
// and a bias gradient within half noise of zero gives Adam's first step either sign.
TEST(AutocastRun, DeeperHalfStepsPassWithinTheHalfModelBound) {
  for (const auto& [model, precision] : {std::pair{"seed-cnn-4conv", Precision::f16}, {"resnet8", Precision::bf16}}) {
    SCOPED_TRACE(model);
    ModelCheckOptions o;
    o.model = model;
    o.precision = precision;
    const ModelCheckReport r = check_model(o);
    EXPECT_TRUE(r.pass()) << "first divergence "
                          << (r.first_failure >= 0 ? r.values[static_cast<size_t>(r.first_failure)].name : "");
    int by_bound = 0;
    for (const TensorDiff& d : r.values) by_bound += d.note.find("half model bound") != std::string::npos;
    EXPECT_GT(by_bound, 0) << "every value passed its op threshold: this test no longer exercises the bound";
  }
}

// simt stores half values (the native kernels, backends/native/cast.cuh): the bf16 and fp16
// training steps compile there, and one step's loss is cpu's within the bf16 step tolerance
// check model uses for the loss (both widen the same half operands and accumulate in f32; they
// differ only in summation order). The refusal of a backend without half values, naming the
// precision and the backend, is tests/test_cli.cpp's (a test plugin that stores f32 only).
TEST(AutocastRun, SimtRunsTheHalfPolicies) {
  bool simt = false;
  for (const BackendInfo& info : list_backends()) simt = simt || (info.name == "simt" && info.available);
  if (!simt) GTEST_SKIP() << "simt is not built";
  for (const Precision p : {Precision::bf16, Precision::f16}) {
    ModelCheckOptions o;
    o.model = "seed-cnn";
    o.backend = "simt";
    o.against = "cpu";
    o.batch = 4;
    o.precision = p;
    const ModelCheckReport r = check_model(o);
    EXPECT_EQ(r.first_failure, -1) << precision_name(p);
    EXPECT_GT(r.values.size(), 50u);
  }
}

// An fp16 run stopped in its second epoch and resumed ends with the weights, optimizer state and
// scaler of the run never interrupted, bit for bit (the first steps at 2^16 are skipped, so the
// checkpoint holds a scale and counters that moved).
TEST(AutocastRun, Fp16ResumedRunEndsAsTheUninterruptedOne) {
  ASSERT_TRUE(have_dataset());
  TrainOptions o;
  o.backend = "cpu";
  o.precision = Precision::f16;
  o.limit = 600;
  o.epochs = 2;
  o.seed = 4;
  o.scaling.initial_scale = 16777216.0f;  // 2^24: the half gradients overflow until it comes down
  o.scaling.growth_interval = 4;
  o.save = temp_path("fp16-whole.safetensors");
  run_training(o);
  TrainOptions part = o;
  part.save = temp_path("fp16-part.safetensors");
  part.max_steps = 12;
  EXPECT_TRUE(run_training(part).stopped_early);
  TrainOptions rest = o;
  rest.resume = part.save;
  rest.save = temp_path("fp16-resumed.safetensors");
  run_training(rest);
  const auto whole = read_safetensors(o.save).tensors, resumed = read_safetensors(rest.save).tensors;
  ASSERT_EQ(whole.size(), resumed.size());
  EXPECT_GT(whole.at("grad_scaler.skipped_steps").i64()[0], 0) << "no step was skipped: the scaler is untested here";
  for (const auto& [name, t] : whole) EXPECT_TRUE(bitwise_equal(t, resumed.at(name))) << name;
  for (const std::string& f : {o.save, part.save, rest.save}) std::filesystem::remove(f);
}

TEST(AutocastRun, ResumeRefusesACheckpointOfAnotherPrecision) {
  ASSERT_TRUE(have_dataset());
  TrainOptions o;
  o.backend = "cpu";
  o.limit = 128;
  o.save = temp_path("f32.safetensors");
  run_training(o);
  TrainOptions again = o;
  again.precision = Precision::bf16;
  again.resume = o.save;
  again.save.clear();
  try {
    run_training(again);
    FAIL() << "resumed an f32 checkpoint at bf16";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("precision f32, this run asks for bf16"), std::string::npos) << e.what();
  }
  std::filesystem::remove(o.save);
}

}  // namespace
}  // namespace parity::testing
