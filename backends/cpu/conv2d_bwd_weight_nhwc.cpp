// backends/cpu/conv2d_bwd_weight_nhwc.cpp — conv2d's f32 backward-weight with the 16 lanes along
// the input channels: dw[k, c, r, s] = sum over (n, p, q) of dy[n, k, p, q] * x_pad[n, c, p+r, q+s].
//
// Each image is first copied channels-last with its zero padding, xcl[Hp, Wp, C]; tap (r, s) of
// output (p, q) is then 16 consecutive floats per channel block. A register block of 8 output
// channels x the 3 taps of one kernel row keeps 24 accumulators; per output position 3 loads and
// 8 broadcast dy values feed 24 FMAs, and no lane is wasted on a row's tail (lanes along the
// output row waste 2 of 16 on a 14-wide image and must be summed across at the end). The
// accumulators are dw itself, kept in the slot as [K, R, S, C] between images and transposed
// into the chunk's partial at its end. Fixed order throughout: reproducible at any thread count.
#include "backends/cpu/conv2d_bwd_weight_nhwc.h"

#include <immintrin.h>

#include <cstring>

#include "backends/cpu/cpu_ops.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kLanes = 16;
constexpr int kChannelBlock = 8;  // output channels per register block
constexpr int kTaps = 3;          // S

int64_t padded_w(const DirectRowsShape& s) { return s.W + 2 * s.pad_w; }
int64_t image_floats(const DirectRowsShape& s) {
  return align64((s.H + 2 * s.pad_h) * padded_w(s) * s.C * 4) / 4;
}

}  // namespace

bool conv2d_bwd_weight_nhwc_applies(const DirectRowsShape& s) {
#if defined(__AVX512F__)
  return s.S == kTaps && s.C % kLanes == 0 && s.K % kChannelBlock == 0 && s.P == s.H + 2 * s.pad_h - s.R + 1 &&
         s.Q == s.W + 2 * s.pad_w - s.S + 1;
#else
  (void)s;
  return false;
#endif
}

int64_t conv2d_bwd_weight_nhwc_slot_floats(const DirectRowsShape& s) {
  return image_floats(s) + align64(s.K * s.R * s.S * s.C * 4) / 4;
}

#if defined(__AVX512F__)
namespace {

// dwt[k0 .. k0+8, r, 0 .. 3, cb .. cb+16] += sum over the image's outputs; `first` starts at 0.
void bwd_weight_block_nhwc_f32(const float* xcl, const float* dy_n, int64_t k0, int64_t r, int64_t cb,
                               const DirectRowsShape& s, float* dwt, bool first) {
  const int64_t Wp = padded_w(s), pq = s.P * s.Q;
  float* out = dwt + ((k0 * s.R + r) * kTaps) * s.C + cb;  // + ((k * R) * 3 + t) * C
  const int64_t k_stride = s.R * kTaps * s.C;
  __m512 acc[kChannelBlock][kTaps];
#pragma GCC unroll 8
  for (int k = 0; k < kChannelBlock; ++k)
#pragma GCC unroll 3
    for (int t = 0; t < kTaps; ++t)
      acc[k][t] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(out + k * k_stride + t * s.C);
  const float* d0 = dy_n + k0 * pq;
  for (int64_t p = 0; p < s.P; ++p) {
    const float* xrow = xcl + ((p + r) * Wp) * s.C + cb;
    const float* drow = d0 + p * s.Q;
    for (int64_t q = 0; q < s.Q; ++q) {
      __m512 xv[kTaps];
#pragma GCC unroll 3
      for (int t = 0; t < kTaps; ++t) xv[t] = _mm512_loadu_ps(xrow + (q + t) * s.C);
#pragma GCC unroll 8
      for (int k = 0; k < kChannelBlock; ++k) {
        const __m512 d = _mm512_set1_ps(drow[k * pq + q]);
#pragma GCC unroll 3
        for (int t = 0; t < kTaps; ++t) acc[k][t] = _mm512_fmadd_ps(d, xv[t], acc[k][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < kChannelBlock; ++k)
#pragma GCC unroll 3
    for (int t = 0; t < kTaps; ++t) _mm512_storeu_ps(out + k * k_stride + t * s.C, acc[k][t]);
}

}  // namespace
#endif

void conv2d_bwd_weight_nhwc_chunk_f32(const float* x, const float* dy, int64_t begin, int64_t end,
                                      const DirectRowsShape& s, float* slot, float* dw_part, float* db_part) {
#if defined(__AVX512F__)
  const int64_t Wp = padded_w(s), chw = s.C * s.H * s.W, kpq = s.K * s.P * s.Q, pq = s.P * s.Q;
  float* xcl = slot;
  float* dwt = slot + image_floats(s);
  // The padding stays 0: each image writes only its own values, at the same places.
  std::memset(xcl, 0, sizeof(float) * image_floats(s));
  for (int64_t n = begin; n < end; ++n) {
    const float* x_n = x + n * chw;
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t w = 0; w < s.W; ++w) {
        float* px = xcl + ((h + s.pad_h) * Wp + w + s.pad_w) * s.C;
        for (int64_t c = 0; c < s.C; ++c) px[c] = x_n[(c * s.H + h) * s.W + w];
      }
    const float* dy_n = dy + n * kpq;
    for (int64_t k0 = 0; k0 < s.K; k0 += kChannelBlock)
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t cb = 0; cb < s.C; cb += kLanes)
          bwd_weight_block_nhwc_f32(xcl, dy_n, k0, r, cb, s, dwt, n == begin);
    if (db_part)
      for (int64_t k = 0; k < s.K; ++k) {
        float sum = 0.0f;
        for (int64_t i = 0; i < pq; ++i) sum += dy_n[k * pq + i];
        db_part[k] = n == begin ? sum : db_part[k] + sum;
      }
  }
  // dw_part[k, c, r, t] = dwt[k, r, t, c]
  for (int64_t k = 0; k < s.K; ++k)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t t = 0; t < kTaps; ++t)
          dw_part[((k * s.C + c) * s.R + r) * kTaps + t] = dwt[((k * s.R + r) * kTaps + t) * s.C + c];
#else
  (void)x, (void)dy, (void)begin, (void)end, (void)s, (void)slot, (void)dw_part, (void)db_part;
#endif
}

}  // namespace cpu
}  // namespace parity
