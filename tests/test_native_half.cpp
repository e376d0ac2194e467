// tests/test_native_half.cpp — bf16 and f16 values on the native kernels (backends/native/cast.cuh,
// half_storage.h) as simt and gpu_emu run them: CAST bit for bit against ops/kernels/half.h (every
// half pattern, the special f32 values and random f32 patterns; the identity a copy of the bits),
// and the ops whose half result is one f32 operation on exactly widened operands, rounded once
// (relu, leaky_relu, hardtanh, add, mul, max-pool, reshape, concat), bit for bit against cpu:
// IEEE fixes those bits, so any difference is a wrong widening, kernel or rounding. Conv, linear and
// the sums are compared with ref by `check ops` (tests/test_conformance.cpp, test_gpu_emu.cpp) and
// whole autocast steps with cpu by test_gpu_emu.cpp and test_autocast.cpp; here, simt's autocast
// training steps bitwise repeatable.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "graph/compiled_step.h"
#include "ops/kernels/half.h"
#include "parity/parity.h"
#include "tests/test_helpers.h"

namespace parity {
namespace {

using kernels::bf16_bits_to_f32_bits;
using kernels::f16_bits_to_f32_bits;
using kernels::f32_bits_to_bf16_bits;
using kernels::f32_bits_to_f16_bits;

// The backends running the native kernels in this build: simt always (it is built in), gpu_emu
// where its plugin is built.
std::vector<std::string> native_backends() {
  std::vector<std::string> names;
  for (const BackendInfo& info : list_backends())
    if (info.available && (info.name == "simt" || info.name == "gpu_emu")) names.push_back(info.name);
  EXPECT_NE(std::find(names.begin(), names.end(), "simt"), names.end());
  return names;
}

// Zeros, infinities, NaNs with signs and payloads (signalling too), subnormals, ties to even in
// both formats, f16's overflow and underflow boundaries; then random patterns of every exponent.
std::vector<uint32_t> f32_patterns() {
  std::vector<uint32_t> v = {
      0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7FA00000u,
      0x7FFFFFFFu, 0xFFE01234u, 0xFF800001u, 0x00000001u, 0x80000001u, 0x00008000u, 0x00008001u, 0x00018000u,
      0x007FFFFFu, 0x7F7FFFFFu, 0x7F7F7FFFu, 0x477FE000u, 0x477FEFFFu, 0x477FF000u, 0xC77FF000u, 0x38800000u,
      0x387FE000u, 0x387FC000u, 0x33800000u, 0x33000000u, 0x33000001u, 0xB3000001u, 0x33C00000u, 0x32FFFFFFu,
      0x3F800000u, 0x3F808000u, 0x3F818000u, 0x3F801000u, 0x3F803000u, 0xBF818000u};
  std::mt19937 rng(14);
  for (int i = 0; i < 20000; ++i) v.push_back(static_cast<uint32_t>(rng()));
  return v;
}

template <class Bits>
Tensor tensor_of_bits(const std::vector<Bits>& bits, DType dtype) {
  Tensor t(Shape{static_cast<int64_t>(bits.size())}, dtype);
  std::memcpy(t.data(), bits.data(), t.nbytes());
  return t;
}

template <class Bits>
std::vector<Bits> bits_of(const Tensor& t) {
  std::vector<Bits> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data(), t.nbytes());
  return v;
}

Tensor run_cast(const std::string& backend_name, const Tensor& x, DType to) {
  GraphBuilder b;
  const Value y = b.cast(b.input("x", x.shape(), x.dtype()), to, "y");
  const Graph g = b.take();
  auto backend = create_backend(backend_name);
  CompiledStepOptions poisoned;
  poisoned.poison_outputs = true;
  CompiledStep step(*backend, g, {g.value(y).name}, poisoned);
  step.write("x", x);
  step.execute();
  return step.read(g.value(y).name);
}

TEST(NativeHalf, F32ToHalfIsHalfHsRoundingOnEveryPattern) {
  const std::vector<uint32_t> x = f32_patterns();
  for (const std::string& backend : native_backends())
    for (DType to : {DType::bf16, DType::f16}) {
      const std::vector<uint16_t> got = bits_of<uint16_t>(run_cast(backend, tensor_of_bits(x, DType::f32), to));
      ASSERT_EQ(got.size(), x.size());
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_EQ(got[i], to == DType::bf16 ? f32_bits_to_bf16_bits(x[i]) : f32_bits_to_f16_bits(x[i]))
            << backend << " to " << to_string(to) << std::hex << ", f32 0x" << x[i];
    }
}

TEST(NativeHalf, HalfToF32IsExactOnEveryHalfPattern) {
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<uint16_t>(h);
  for (const std::string& backend : native_backends())
    for (DType from : {DType::bf16, DType::f16}) {
      const std::vector<uint32_t> got = bits_of<uint32_t>(run_cast(backend, tensor_of_bits(all, from), DType::f32));
      for (uint32_t h = 0; h < 65536; ++h)
        ASSERT_EQ(got[h], from == DType::bf16 ? bf16_bits_to_f32_bits(static_cast<uint16_t>(h))
                                               : f16_bits_to_f32_bits(static_cast<uint16_t>(h)))
            << backend << " from " << to_string(from) << std::hex << " 0x" << h;
    }
}

TEST(NativeHalf, BetweenHalfDtypesOneRoundingAndTheIdentityACopy) {
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<uint16_t>(h);
  for (const std::string& backend : native_backends())
    for (DType from : {DType::bf16, DType::f16})
      for (DType to : {DType::bf16, DType::f16}) {
        const std::vector<uint16_t> got = bits_of<uint16_t>(run_cast(backend, tensor_of_bits(all, from), to));
        for (uint32_t h = 0; h < 65536; ++h) {
          const uint32_t wide = from == DType::bf16 ? bf16_bits_to_f32_bits(static_cast<uint16_t>(h))
                                                    : f16_bits_to_f32_bits(static_cast<uint16_t>(h));
          const uint16_t want = from == to            ? static_cast<uint16_t>(h)  // NaN payloads and all
                                : to == DType::bf16 ? f32_bits_to_bf16_bits(wide)
                                                    : f32_bits_to_f16_bits(wide);
          ASSERT_EQ(got[h], want) << backend << " " << to_string(from) << "->" << to_string(to) << std::hex << " 0x"
                                  << h;
        }
      }
}

// Values with many ties and both signs: multiples of 1/64 in [-4, 4) times a random sign-free
// scale, so sums and products land between half values.
Tensor half_input(const Shape& shape, DType dtype, uint32_t seed) {
  Tensor t(shape, DType::f32);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> step(-256, 255);
  std::uniform_real_distribution<float> scale(0.5f, 2.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = static_cast<float>(step(rng)) / 64.0f * scale(rng);
  return cast_tensor(t, dtype);
}

TEST(NativeHalf, OneOperationOpsMatchCpuBitForBit) {
  for (DType dtype : {DType::bf16, DType::f16}) {
    GraphBuilder b;
    const Shape shape{2, 3, 8, 8};
    const Value a = b.input("a", shape, dtype), c = b.input("c", shape, dtype);
    const std::vector<Value> outs = {b.relu(a, "relu"),
                                     b.leaky_relu(a, 0.1f, "leaky_relu"),
                                     b.hardtanh(a, -0.5f, 1.5f, "hardtanh"),
                                     b.add(a, c, "add"),
                                     b.mul(a, c, "mul"),
                                     b.maxpool2d(a, 2, 2, "maxpool"),
                                     b.reshape(a, Shape{6, 64}, "reshape"),
                                     b.concat({a, c}, "concat")};
    const Graph g = b.take();
    std::vector<std::string> keep;
    for (Value v : outs) keep.push_back(g.value(v).name);
    const Tensor ta = half_input(shape, dtype, 1), tc = half_input(shape, dtype, 2);
    auto run = [&](const std::string& name) {
      auto backend = create_backend(name);
      CompiledStepOptions poisoned;
      poisoned.poison_outputs = true;
      CompiledStep step(*backend, g, keep, poisoned);
      step.write("a", ta);
      step.write("c", tc);
      step.execute();
      std::vector<std::vector<uint16_t>> bits;
      for (const std::string& k : keep) {
        const Tensor t = step.read(k);
        EXPECT_EQ(t.dtype(), dtype) << name << " " << k;
        bits.push_back(bits_of<uint16_t>(t));
      }
      return bits;
    };
    const auto want = run("cpu");
    for (const std::string& backend : native_backends()) {
      const auto got = run(backend);
      for (size_t k = 0; k < keep.size(); ++k) {
        ASSERT_EQ(got[k].size(), want[k].size()) << keep[k];
        for (size_t i = 0; i < want[k].size(); ++i)
          ASSERT_EQ(got[k][i], want[k][i]) << backend << " " << to_string(dtype) << " " << keep[k] << " [" << i << "]";
      }
    }
  }
}

// Autocast training on simt is bitwise repeatable (DESIGN: simt gives the same bits for the same
// step at a fixed thread count): the staging, the templated kernels and the conversions add no
// order that varies. Two bf16 and two fp16 runs of two steps, weights and optimizer state compared.
TEST(NativeHalf, SimtAutocastStepsAreBitwiseRepeatable) {
  const ModelSpec& spec = model_spec("seed-cnn");
  for (const Precision p : {Precision::bf16, Precision::f16}) {
    auto run = [&] {
      BackendOptions bo;
      bo.threads = 2;
      Trainer t(spec, create_backend("simt", bo), OptimizerConfig{}, 4, 0, {}, p);
      t.load_weights(init_weights(spec, 3));
      std::vector<float> losses;
      for (uint32_t s = 0; s < 2; ++s) {
        auto [x, y] = testing::random_batch(spec, 4, 40 + s);
        losses.push_back(t.train_step(x, y).loss);
      }
      return std::make_pair(losses, t.checkpoint());
    };
    const auto a = run(), b = run();
    EXPECT_EQ(a.first, b.first) << precision_name(p);
    ASSERT_EQ(a.second.tensors.size(), b.second.tensors.size());
    for (const auto& [name, t] : a.second.tensors)
      EXPECT_TRUE(testing::bitwise_equal(t, b.second.tensors.at(name))) << precision_name(p) << " " << name;
  }
}

TEST(NativeHalf, TheNativeBackendsAreListed) {
  std::string names;
  for (const std::string& n : native_backends()) names += n + " ";
  std::printf("native backends checked: %s\n", names.c_str());
  RecordProperty("native_backends", names);
}

}  // namespace
}  // namespace parity
