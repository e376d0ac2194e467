// backends/cpu/conv2d_depthwise.cpp — depthwise conv2d, NCHW float32, as direct loops over
// channel planes (a per-channel im2col + GEMM would be a GEMM of depth R*S and one row). Each
// tap (r, s) adds w[k, r, s] times a shifted input row segment, the segment being the outputs
// whose input lies inside the image (kernels::conv2d_valid_outputs), so padding is never read
// and the inner loop is a contiguous axpy when stride_w is 1.
//   forward        one task per output planes (n, k): taps in (r, s) order, then bias and relu;
//   backward-data  one task per input plane (n, c): zeroed, then its M filters' taps scattered
//                  in (m, r, s) order (no two tasks write one element);
//   backward-wt    one task per filter k: dw[k, r, s] and db[k] summed over n, then p (one
//                  partial per output row, added in row order).
// Every sum has a fixed order and no scratch is used: results are bitwise reproducible at any
// thread count, and nothing is allocated.
#include "backends/cpu/conv2d_depthwise.h"

#include <algorithm>
#include <cstring>

#include "backends/cpu/cpu_ops.h"
#include "ops/kernels/activation.h"

namespace parity {
namespace cpu {
namespace {

// Planes per task: about 4096 outputs each, a function of the shape alone.
int64_t planes_per_task(int64_t plane_elements) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(1, plane_elements)); }

// The rows [*pb, *pe) and columns [*qb, *qe) of the output that tap (r, s) reads inside the image.
struct TapRange {
  int64_t pb, pe, qb, qe, dh, dw;  // dh, dw: the tap's input offsets (r * dilation_h - pad_top, ...)
};
TapRange tap_range(const DepthwiseShape& d, int64_t r, int64_t s) {
  const kernels::Conv2dWindow& cw = d.cw;
  TapRange t{};
  kernels::conv2d_valid_outputs(d.H, d.P, r * cw.dilation_h, cw.stride_h, cw.pad_top, &t.pb, &t.pe);
  kernels::conv2d_valid_outputs(d.W, d.Q, s * cw.dilation_w, cw.stride_w, cw.pad_left, &t.qb, &t.qe);
  t.dh = r * cw.dilation_h - cw.pad_top;
  t.dw = s * cw.dilation_w - cw.pad_left;
  return t;
}

}  // namespace

void depthwise_forward_f32(const float* x, const float* w, const float* b, bool relu, float* y,
                           const DepthwiseShape& d) {
  const int64_t pq = d.P * d.Q, planes = d.N * d.K();
  const int64_t sh = d.cw.stride_h, sw = d.cw.stride_w;
  parallel_chunks(planes, planes_per_task(pq), [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / d.K(), k = plane % d.K();
      const float* x_c = x + (n * d.C + k / d.M) * d.H * d.W;
      const float* w_k = w + k * d.R * d.S;
      float* y_p = y + plane * pq;
      std::memset(y_p, 0, sizeof(float) * pq);
      for (int64_t r = 0; r < d.R; ++r)
        for (int64_t s = 0; s < d.S; ++s) {
          const TapRange t = tap_range(d, r, s);
          const float wv = w_k[r * d.S + s];
          for (int64_t p = t.pb; p < t.pe; ++p) {
            const float* x_row = x_c + (p * sh + t.dh) * d.W;
            float* y_row = y_p + p * d.Q;
            if (sw == 1) {
              const float* xs = x_row + t.dw;
              for (int64_t q = t.qb; q < t.qe; ++q) y_row[q] += wv * xs[q];
            } else {
              for (int64_t q = t.qb; q < t.qe; ++q) y_row[q] += wv * x_row[q * sw + t.dw];
            }
          }
        }
      if (b || relu) {
        const float bias = b ? b[k] : 0.0f;
        for (int64_t i = 0; i < pq; ++i) y_p[i] = relu ? kernels::relu_f32(y_p[i] + bias) : y_p[i] + bias;
      }
    }
  });
}

void depthwise_backward_data_f32(const float* dy, const float* w, float* dx, const DepthwiseShape& d) {
  const int64_t pq = d.P * d.Q, hw = d.H * d.W;
  const int64_t sh = d.cw.stride_h, sw = d.cw.stride_w;
  parallel_chunks(d.N * d.C, planes_per_task(hw), [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / d.C, c = plane % d.C;
      float* dx_p = dx + plane * hw;
      std::memset(dx_p, 0, sizeof(float) * hw);
      for (int64_t m = 0; m < d.M; ++m) {
        const int64_t k = c * d.M + m;
        const float* dy_p = dy + (n * d.K() + k) * pq;
        const float* w_k = w + k * d.R * d.S;
        for (int64_t r = 0; r < d.R; ++r)
          for (int64_t s = 0; s < d.S; ++s) {
            const TapRange t = tap_range(d, r, s);
            const float wv = w_k[r * d.S + s];
            for (int64_t p = t.pb; p < t.pe; ++p) {
              float* dx_row = dx_p + (p * sh + t.dh) * d.W;
              const float* dy_row = dy_p + p * d.Q;
              if (sw == 1) {
                float* ds = dx_row + t.dw;
                for (int64_t q = t.qb; q < t.qe; ++q) ds[q] += wv * dy_row[q];
              } else {
                for (int64_t q = t.qb; q < t.qe; ++q) dx_row[q * sw + t.dw] += wv * dy_row[q];
              }
            }
          }
      }
    }
  });
}

void depthwise_backward_weight_f32(const float* x, const float* dy, float* dw, float* db, const DepthwiseShape& d) {
  const int64_t pq = d.P * d.Q;
  const int64_t sh = d.cw.stride_h, sw = d.cw.stride_w;
  parallel_chunks(d.K(), 1, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t c = k / d.M;
      for (int64_t r = 0; r < d.R; ++r)
        for (int64_t s = 0; s < d.S; ++s) {
          const TapRange t = tap_range(d, r, s);
          float acc = 0.0f;
          for (int64_t n = 0; n < d.N; ++n) {
            const float* x_c = x + (n * d.C + c) * d.H * d.W;
            const float* dy_p = dy + (n * d.K() + k) * pq;
            for (int64_t p = t.pb; p < t.pe; ++p) {
              const float* x_row = x_c + (p * sh + t.dh) * d.W;
              const float* dy_row = dy_p + p * d.Q;
              float row = 0.0f;
              if (sw == 1) {
                const float* xs = x_row + t.dw;
                for (int64_t q = t.qb; q < t.qe; ++q) row += dy_row[q] * xs[q];
              } else {
                for (int64_t q = t.qb; q < t.qe; ++q) row += dy_row[q] * x_row[q * sw + t.dw];
              }
              acc += row;
            }
          }
          dw[k * d.R * d.S + r * d.S + s] = acc;
        }
      if (db) {
        float acc = 0.0f;
        for (int64_t n = 0; n < d.N; ++n) {
          const float* dy_p = dy + (n * d.K() + k) * pq;
          for (int64_t p = 0; p < d.P; ++p) {
            float row = 0.0f;
            for (int64_t q = 0; q < d.Q; ++q) row += dy_p[p * d.Q + q];
            acc += row;
          }
        }
        db[k] = acc;
      }
    }
  });
}

}  // namespace cpu
}  // namespace parity
