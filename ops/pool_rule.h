// ops/pool_rule.h — what the pooling rules (maxpool2d.cpp, avgpool2d.cpp) check alike: a
// window's params (kernel, stride, padding, dilation) and that its dilated kernel fits the
// padded input, with messages naming the op, the node, the parameter and the rule; and the
// pooled output shape.
#pragma once

#include <fmt/format.h>

#include "ops/kernels/pool.h"
#include "ops/op_rule.h"

namespace parity::ops {

// The params as the pooling window they describe; refuses kernel or stride < 1, negative
// padding and dilation < 1 (after maxpool's "0 reads as 1").
inline kernels::PoolWindow checked_pool_window(const OpCall& c, const char* op, const kernels::PoolWindow& win,
                                               int32_t raw_dilation_h, int32_t raw_dilation_w) {
  if (win.h.kernel <= 0 || win.w.kernel <= 0)
    fail(c, op, fmt::format("kernel must be > 0, got {}x{}", win.h.kernel, win.w.kernel));
  if (win.h.stride <= 0 || win.w.stride <= 0)
    fail(c, op, fmt::format("stride must be > 0, got {}x{}", win.h.stride, win.w.stride));
  if (win.h.pad < 0 || win.w.pad < 0)
    fail(c, op, fmt::format("padding must be >= 0, got {}x{}", win.h.pad, win.w.pad));
  if (win.h.dilation < 1 || win.w.dilation < 1)
    fail(c, op, fmt::format("dilation must be >= 1 (0 reads as 1), got {}x{}", raw_dilation_h, raw_dilation_w));
  return win;
}

// [N,C,P,Q] pooled from [N,C,H,W]; refuses a dilated kernel larger than the padded input.
inline Shape pooled_shape(const OpCall& c, const char* op, int64_t n, int64_t channels, int64_t h, int64_t w,
                          const kernels::PoolWindow& win) {
  const int64_t span_h = kernels::pool_span(win.h), span_w = kernels::pool_span(win.w);
  if (span_h > h + 2 * win.h.pad || span_w > w + 2 * win.w.pad) {
    const std::string span = span_h == win.h.kernel && span_w == win.w.kernel
                                 ? ""
                                 : fmt::format(" (dilated to {}x{})", span_h, span_w);
    fail(c, op, fmt::format("kernel {}x{}{} is larger than the input {}x{} padded by {}x{} on each side", win.h.kernel,
                            win.w.kernel, span, h, w, win.h.pad, win.w.pad));
  }
  return Shape{n, channels, kernels::pool_output_size(h, win.h), kernels::pool_output_size(w, win.w)};
}

}  // namespace parity::ops
