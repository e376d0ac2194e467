// model/init.cpp — seeded initial weights with PyTorch's default distributions, drawn on the
// host from a counter-based RNG so every backend starts from bit-identical weights, and the
// buffers' initial values.
#include <algorithm>
#include <cmath>

#include "util/counter_rng.h"
#include "parity/model.h"

namespace parity {

std::map<std::string, Tensor> init_weights(const ModelSpec& spec, uint64_t seed) {
  if (spec.layer_graph) return spec.layer_graph->initial_values();  // a file's own weights
  std::map<std::string, Tensor> weights;
  for (const ParamSpec& p : spec.params) {
    Tensor t(p.shape, DType::f32);
    float* v = t.f32();
    if (p.init == ParamSpec::Init::uniform) {
      // kaiming_uniform_(a=sqrt(5)): gain sqrt(2/(1+5)), bound gain*sqrt(3/fan_in) = 1/sqrt(fan_in);
      // biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Both are the same bound.
      const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.fan_in)));
      const uint64_t stream = stream_id(p.name);
      for (int64_t i = 0; i < t.numel(); ++i) v[i] = uniform_float(seed, stream, static_cast<uint64_t>(i), -bound, bound);
    } else {
      std::fill_n(v, t.numel(), p.init == ParamSpec::Init::ones ? 1.0f : 0.0f);
    }
    weights.emplace(p.name, std::move(t));
  }
  for (const BufferSpec& b : spec.buffers) {
    if (b.step_count) continue;  // not a graph value: the Trainer saves its own count
    Tensor t(b.shape, DType::f32);
    std::fill_n(t.f32(), t.numel(), b.initial);
    weights.emplace(b.name, std::move(t));
  }
  return weights;
}

}  // namespace parity
