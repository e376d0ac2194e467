// check/half_model_bound.cpp — check model's half model bound and the map from a half graph's
// values to ref's f32 run (check/half_model_bound.h says why each is what it is).
#include "check/half_model_bound.h"

#include <fmt/format.h>

namespace parity {

F32Counterparts::F32Counterparts(const Graph& half, const Graph& f32) : half_(half), f32_(f32) {
  for (size_t i = 0; i < f32.nodes().size(); ++i) f32_nodes_.emplace(f32.nodes()[i].name, i);
}

const Tensor* F32Counterparts::find(const std::map<std::string, Tensor>& run, const std::string& name) const {
  if (!half_.has(name)) return by_name(run, name);
  return find(run, half_.find(name).id);
}

const Tensor* F32Counterparts::find(const std::map<std::string, Tensor>& run, int32_t value) const {
  const ValueInfo& info = half_.values()[static_cast<size_t>(value)];
  if (info.producer >= 0) {
    const Node& node = half_.nodes()[static_cast<size_t>(info.producer)];
    auto twin = f32_nodes_.find(node.name);
    if (twin == f32_nodes_.end() && node.op == PARITY_OP_CAST) return find(run, node.inputs[0]);
    if (twin != f32_nodes_.end()) {
      const Node& other = f32_.nodes()[twin->second];
      for (size_t k = 0; k < node.outputs.size() && k < other.outputs.size(); ++k)
        if (node.outputs[k] == value) {
          auto it = run.find(f32_.values()[static_cast<size_t>(other.outputs[k])].name);
          return it == run.end() ? nullptr : &it->second;
        }
    }
  }
  return by_name(run, info.name);
}

const Tensor* F32Counterparts::by_name(const std::map<std::string, Tensor>& run, const std::string& name) {
  std::string base = name;
  for (const std::string token : {".half", ".f32"})
    for (size_t at = base.find(token); at != std::string::npos; at = base.find(token, at)) {
      const size_t end = at + token.size();
      if (end == base.size() || base[end] == '.')
        base.erase(at, token.size());
      else
        at = end;
    }
  if (auto it = run.find(base); it != run.end()) return &it->second;
  if (base.rfind("grad/", 0) != 0) return nullptr;
  const Tensor* total = nullptr;
  for (int k = 1; k < 64; ++k)
    if (auto it = run.find(fmt::format("{}.sum{}", base, k)); it != run.end()) total = &it->second;
  return total;
}

void apply_half_model_bound(TensorDiff& d, const Tensor& got, const Tensor& want, const Tensor* f32_want) {
  if (d.pass || !f32_want || d.nonfinite_mismatch > 0) return;
  const auto floating = [](DType t) { return t == DType::f32 || t == DType::bf16 || t == DType::f16; };
  if (!floating(want.dtype()) || !floating(got.dtype()) || f32_want->dtype() != DType::f32 ||
      f32_want->shape() != want.shape() || got.shape() != want.shape())
    return;
  const auto widened = [](const Tensor& t) { return t.dtype() == DType::f32 ? t : cast_tensor(t, DType::f32); };
  const Tensor w = widened(want);
  const double effect = compare_tensors(w, *f32_want, 0).nmse;
  const double plain = compare_tensors(widened(got), w, 0).nmse;
  if (!(effect > 0) || !(plain <= 4 * effect)) return;
  d.pass = true;
  d.threshold = 4 * effect;
  d.nmse = plain;
  d.note = fmt::format("over its op threshold, within the half model bound: half precision moves this value by NMSE "
                       "{:.3g} from ref's f32 run, and two faithful sides differ by at most 4x that",
                       effect);
}

}  // namespace parity
