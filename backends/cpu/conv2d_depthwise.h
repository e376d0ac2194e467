// backends/cpu/conv2d_depthwise.h — depthwise conv2d on the cpu backend (groups == C, one input
// channel per group, K = C * multiplier filters): direct kernels over channel planes, any stride,
// dilation and padding (vector paths for stride_w 1 and 2). conv2d.cpp routes such nodes here.
#pragma once

#include <cstdint>

#include "ops/kernels/conv_geometry.h"

namespace parity {
namespace cpu {

// x [N,C,H,W], w [C*M,1,R,S], y [N,C*M,P,Q]: filter k reads input channel k / M.
struct DepthwiseShape {
  int64_t N, C, H, W, M, R, S, P, Q;
  kernels::Conv2dWindow cw;
  int64_t K() const { return C * M; }
};

// Scratch floats per worker slot that the three below need (0 where they take the generic
// loops); their `scratch` holds `slots` of them.
int64_t depthwise_scratch_floats(const DepthwiseShape& d);

// y = conv(x, w) (+ b, relu'd when `relu`); b may be null.
void depthwise_forward_f32(const float* x, const float* w, const float* b, bool relu, float* y,
                           const DepthwiseShape& d, float* scratch, int32_t slots);
void depthwise_backward_data_f32(const float* dy, const float* w, float* dx, const DepthwiseShape& d, float* scratch,
                                 int32_t slots);
// db may be null.
void depthwise_backward_weight_f32(const float* x, const float* dy, float* dw, float* db, const DepthwiseShape& d,
                                   float* scratch, int32_t slots);

}  // namespace cpu
}  // namespace parity
