// model/pruning.cpp — magnitude pruning (elements by |w|, output channels by L2 norm; global or
// per layer) and the checks of a mask file against a model.
#include "model/pruning.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "parity/error.h"
#include "parity/graph.h"

namespace parity {
namespace {

// What is ranked: an element or an output channel of the weight `tensor` (an index into the
// prunable weights, in parameter order), with its magnitude.
struct Unit {
  double magnitude;
  uint32_t tensor;
  int64_t index;  // flat element index, or channel
};

// The ranking's total order: magnitude, then position (parameter order, then index). No two units
// compare equal, so the k smallest are one set whatever the sort's algorithm.
bool prune_before(const Unit& a, const Unit& b) {
  if (a.magnitude != b.magnitude) return a.magnitude < b.magnitude;
  if (a.tensor != b.tensor) return a.tensor < b.tensor;
  return a.index < b.index;
}

// The `count` first units of the ranking, moved to the front of `units`.
void rank_smallest(std::vector<Unit>& units, int64_t count) {
  if (count <= 0 || units.empty()) return;
  if (count < static_cast<int64_t>(units.size())) std::nth_element(units.begin(), units.begin() + count, units.end(), prune_before);
}

int64_t units_to_prune(double sparsity, size_t units) { return std::llround(sparsity * static_cast<double>(units)); }

}  // namespace

std::vector<std::string> prunable_weights(const ModelSpec& spec) {
  std::vector<std::string> names;
  if (!spec.layers.empty()) {
    std::set<std::string> weighted;
    for (const LayerSpec& l : spec.layers)
      if (l.op == LayerOp::conv2d || l.op == LayerOp::linear) weighted.insert(l.module + ".weight");
    for (const ParamSpec& p : spec.params)
      if (weighted.count(p.name)) names.push_back(p.name);
    return names;
  }
  for (const ParamSpec& p : spec.params)
    if (p.shape.rank() >= 2) names.push_back(p.name);
  return names;
}

PruneResult magnitude_prune(const ModelSpec& spec, std::map<std::string, Tensor>& weights, const PruneOptions& options) {
  if (!(options.sparsity >= 0.0 && options.sparsity < 1.0))
    throw Error(ErrorKind::invalid_argument,
                fmt::format("prune: sparsity must be in [0, 1) (the fraction of weights zeroed), got {}", options.sparsity));
  const std::vector<std::string> names = prunable_weights(spec);
  if (names.empty())
    throw Error(ErrorKind::invalid_argument, fmt::format("prune: model {} has no conv or linear weight", spec.name));
  std::vector<Tensor*> tensors;
  for (const std::string& name : names) {
    auto it = weights.find(name);
    const Shape& want = std::find_if(spec.params.begin(), spec.params.end(), [&](const ParamSpec& p) { return p.name == name; })->shape;
    if (it == weights.end())
      throw Error(ErrorKind::data, fmt::format("prune: the weights lack '{}' (f32 {})", name, want.str()));
    if (it->second.dtype() != DType::f32 || it->second.shape() != want)
      throw Error(ErrorKind::data, fmt::format("prune: weight '{}' is {} {}, model {} needs f32 {}", name,
                                               to_string(it->second.dtype()), it->second.shape().str(), spec.name, want.str()));
    const float* w = it->second.f32();
    for (int64_t i = 0; i < it->second.numel(); ++i)
      if (!std::isfinite(w[i]))
        throw Error(ErrorKind::data, fmt::format("prune: weight '{}' holds {} at element {}: its magnitude ranks nowhere",
                                                 name, w[i], i));
    tensors.push_back(&it->second);
  }

  // One unit per element or per output channel, of each weight.
  auto units_of = [&](uint32_t t) {
    const Tensor& w = *tensors[t];
    std::vector<Unit> units;
    if (!options.structured_channels) {
      units.reserve(static_cast<size_t>(w.numel()));
      for (int64_t i = 0; i < w.numel(); ++i) units.push_back({std::fabs(double{w.f32()[i]}), t, i});
      return units;
    }
    const int64_t channels = w.shape()[0], size = w.numel() / std::max<int64_t>(channels, 1);
    for (int64_t c = 0; c < channels; ++c) {
      double squares = 0;
      for (int64_t i = 0; i < size; ++i) squares += double{w.f32()[c * size + i]} * double{w.f32()[c * size + i]};
      units.push_back({std::sqrt(squares), t, c});
    }
    return units;
  };
  std::vector<std::vector<bool>> pruned_units(tensors.size());
  auto mark = [&](const std::vector<Unit>& ranked, int64_t count) {
    for (int64_t i = 0; i < count; ++i) pruned_units[ranked[static_cast<size_t>(i)].tensor][static_cast<size_t>(ranked[static_cast<size_t>(i)].index)] = true;
  };
  std::vector<Unit> all;
  for (uint32_t t = 0; t < tensors.size(); ++t) {
    std::vector<Unit> units = units_of(t);
    pruned_units[t].assign(units.size(), false);
    if (options.scope == PruneOptions::Scope::layer) {
      const int64_t count = units_to_prune(options.sparsity, units.size());
      rank_smallest(units, count);
      mark(units, count);
    } else {
      all.insert(all.end(), units.begin(), units.end());
    }
  }
  if (options.scope == PruneOptions::Scope::global) {
    const int64_t count = units_to_prune(options.sparsity, all.size());
    rank_smallest(all, count);
    mark(all, count);
  }

  PruneResult result;
  for (uint32_t t = 0; t < tensors.size(); ++t) {
    Tensor& w = *tensors[t];
    Tensor mask(w.shape(), DType::u8);
    const int64_t unit_size = options.structured_channels ? w.numel() / std::max<int64_t>(w.shape()[0], 1) : 1;
    PrunedTensor report{names[t], 0, w.numel()};
    for (int64_t i = 0; i < w.numel(); ++i) {
      const bool pruned = pruned_units[t][static_cast<size_t>(i / unit_size)];
      mask.u8()[i] = pruned ? 0 : 1;
      if (pruned) {
        w.f32()[i] = 0.0f;
        ++report.pruned;
      }
    }
    result.pruned += report.pruned;
    result.total += report.total;
    result.tensors.push_back(report);
    result.masks.emplace(gradient_mask_name(names[t]), std::move(mask));
  }
  return result;
}

std::map<std::string, Tensor> read_gradient_masks(const ModelSpec& spec, const TensorFile& file, const std::string& source) {
  static const std::string kSuffix = ".mask";
  const std::vector<std::string> names = prunable_weights(spec);
  std::map<std::string, Tensor> masks;
  for (const auto& [key, mask] : file.tensors) {
    if (key.size() <= kSuffix.size() || key.compare(key.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) continue;
    const std::string weight = key.substr(0, key.size() - kSuffix.size());
    if (std::find(names.begin(), names.end(), weight) == names.end())
      throw Error(ErrorKind::data, fmt::format("{}: mask '{}' names '{}', which is not a conv or linear weight of model {} "
                                               "(those are: {})",
                                               source, key, weight, spec.name, fmt::join(names, ", ")));
    const Shape& want = std::find_if(spec.params.begin(), spec.params.end(), [&](const ParamSpec& p) { return p.name == weight; })->shape;
    if (mask.shape() != want)
      throw Error(ErrorKind::data, fmt::format("{}: mask '{}' has shape {}, but weight '{}' of model {} has shape {}", source,
                                               key, mask.shape().str(), weight, spec.name, want.str()));
    if (mask.dtype() != DType::u8)
      throw Error(ErrorKind::data, fmt::format("{}: mask '{}' is {}; a mask is u8 (1 kept, 0 pruned)", source, key,
                                               to_string(mask.dtype())));
    Tensor f32(want, DType::f32);
    for (int64_t i = 0; i < mask.numel(); ++i) {
      const uint8_t m = mask.u8()[i];
      if (m > 1)
        throw Error(ErrorKind::data, fmt::format("{}: mask '{}' holds {} at element {}; a mask holds 1 (kept) or 0 (pruned)",
                                                 source, key, int{m}, i));
      f32.f32()[i] = m;
    }
    masks.emplace(weight, std::move(f32));
  }
  if (masks.empty())
    throw Error(ErrorKind::data, fmt::format("{}: no '<weight>.mask' tensor: not a mask file (parity prune --save writes "
                                             "one u8 mask per pruned weight)",
                                             source));
  return masks;
}

}  // namespace parity
