// graph/compare.cpp — the error metrics of DESIGN.md: normalised mean squared error, max
// absolute and relative error, NaN/Inf agreement, and the worst elements.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "ops/kernels/half.h"
#include "parity/check.h"
#include "parity/error.h"

namespace parity {

TensorDiff compare_tensors(const Tensor& got, const Tensor& want, double threshold, int worst_count) {
  if (got.shape() != want.shape() || got.dtype() != want.dtype())
    throw Error(ErrorKind::shape, fmt::format("compare: {} {} against {} {}", to_string(got.dtype()), got.shape().str(),
                                              to_string(want.dtype()), want.shape().str()));
  TensorDiff d;
  d.shape = want.shape();
  d.threshold = threshold;
  const int64_t n = want.numel();
  auto value = [](const Tensor& t, int64_t i) -> double {
    switch (t.dtype()) {
      case DType::f32: return t.f32()[i];
      case DType::i32: return t.i32()[i];
      case DType::i64: return static_cast<double>(t.i64()[i]);
      case DType::bf16: return kernels::bf16_bits_to_float(t.bf16()[i]);
      case DType::f16: return kernels::f16_bits_to_float(t.f16()[i]);
      case DType::u8: return t.u8()[i];
    }
    return 0;
  };
  std::vector<WorstElement> all;
  double err = 0, norm = 0;
  int64_t differing = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = value(got, i), b = value(want, i);
    const bool fa = std::isfinite(a), fb = std::isfinite(b);
    if (fa != fb || (!fa && !(std::isnan(a) && std::isnan(b)) && a != b)) {
      ++d.nonfinite_mismatch;
      all.push_back({i, a, b});
      continue;
    }
    if (!fa) continue;
    const double diff = std::fabs(a - b);
    if (diff > 0) {
      ++differing;
      all.push_back({i, a, b});
    }
    err += diff * diff;
    norm += b * b;
    d.max_abs = std::max(d.max_abs, diff);
    if (b != 0) d.max_rel = std::max(d.max_rel, diff / std::fabs(b));
  }
  const bool floating = want.dtype() == DType::f32 || want.dtype() == DType::bf16 || want.dtype() == DType::f16;
  if (floating) d.nmse = norm > 0 ? err / norm : err;
  else d.nmse = n ? double(differing) / double(n) : 0.0;  // integer outputs: fraction that differ

  const bool bitwise = std::memcmp(got.data(), want.data(), want.nbytes()) == 0;
  d.pass = d.nonfinite_mismatch == 0 && (threshold == 0 ? bitwise : d.nmse <= threshold);
  std::partial_sort(all.begin(), all.begin() + std::min<size_t>(all.size(), static_cast<size_t>(worst_count)), all.end(),
                    [](const WorstElement& x, const WorstElement& y) {
                      auto gap = [](const WorstElement& e) {
                        double g = std::fabs(e.got - e.want);
                        return std::isnan(g) ? INFINITY : g;
                      };
                      return gap(x) > gap(y);
                    });
  all.resize(std::min<size_t>(all.size(), static_cast<size_t>(worst_count)));
  d.worst = std::move(all);
  return d;
}

}  // namespace parity
