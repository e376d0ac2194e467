// check/half_model_bound.h — check model's bound for a value of a half-precision graph that is over
// its op threshold (half precision's own effect on the value, measured against ref's f32 run of
// the same model), and the map from the half graph's values to that run's.
#pragma once

#include <stdint.h>

#include <map>
#include <string>

#include "parity/check.h"
#include "parity/graph.h"
#include "parity/tensor.h"

namespace parity {

// Which value of ref's f32 run (the graph without autocast, same weights and batch) each value of
// the half graph is. By structure first: a CAST that autocast inserted (its node absent from the
// f32 graph, forward or backward) is its input's counterpart, and a node present in both graphs
// gives its same output. Then by name: autocast names a cast `<value>.half` or `<value>.f32`, so
// without those tokens a name is the f32 graph's (`grad/x.half.sum1` is `grad/x.sum1`), except a
// total gradient summed over other readers there: autodiff names it `grad/<value>` (one
// contribution) or `grad/<value>.sum<k>` (k+1).
class F32Counterparts {
 public:
  F32Counterparts(const Graph& half, const Graph& f32);
  // The f32 run's tensor for half-graph value `name` (any name `run` holds), or nullptr.
  const Tensor* find(const std::map<std::string, Tensor>& run, const std::string& name) const;

 private:
  const Tensor* find(const std::map<std::string, Tensor>& run, int32_t value) const;
  static const Tensor* by_name(const std::map<std::string, Tensor>& run, const std::string& name);

  const Graph& half_;
  const Graph& f32_;
  std::map<std::string, size_t> f32_nodes_;
};

// The model-level bound of a half-precision graph (check model --precision). The per-op half
// tolerances hold where a value's inputs agree to one rounding; over many half layers the two
// sides' one-ulp differences compound (a batch norm's backward cancels, a relu or max-pool
// backward sends a gradient elsewhere where its input flipped sign or a tie broke the other way),
// so a deep model's values may exceed them while both sides are faithful. What bounds such a value
// is half precision's own effect on it: e = NMSE(`want`, the other side at the half precision;
// `f32_want`, ref running the same model in f32 from the same weights and batch). If this side is
// no further from the f32 result than the other side is (each within sqrt(e) of it, in norm
// relative to the value), the triangle inequality puts the two sides within 2 sqrt(e) of each
// other: NMSE <= 4 e. So `d` (got against want), when it failed its op threshold, passes when its
// NMSE is at most 4 e and no element is finite on one side only; the limit becomes 4 e and the
// note names e. It catches a side that is wrong by more than half precision itself moves the value
// (a wrong kernel, a wrong cast, a lost rounding that compounds); a single op's rounding is held
// to the op threshold by `check ops`. Only the other side's effect is used: bounding by either
// side's (4 max(e_got, e_want)) would hold for any two tensors and check nothing.
void apply_half_model_bound(TensorDiff& d, const Tensor& got, const Tensor& want, const Tensor* f32_want);

}  // namespace parity
