// backends/cpu/conv2d_bwd_weight_batch_lanes.cpp — conv2d's f32 backward-weight with the 16 lanes
// along the images of a batch chunk: dw[k, c, r, s] = sum over (n, p, q) of dy[n, k, p, q] *
// x_pad[n, c, p+r, q+s].
//
// On small images lanes along the output row idle: LeNet-5's conv2 (10 outputs a row) uses 10
// of 16. Here a chunk of 16 images is first interleaved, xt[C, Hp, Wp][16] with its zero padding
// and dyt[K, P, Q][16] (the lanes of missing images are 0 in both, so they add exact zeros). A
// register block of KB output channels x the S taps of one kernel row keeps KB * S accumulators
// (8 x 3 or 4 x 5); per output position KB + S aligned loads feed KB * S FMAs, every lane busy,
// no mask. Each lane sums its image's outputs in (p, q) order; at the block's end the 16 lanes
// are added in one fixed pairwise order. Fixed order throughout: reproducible at any thread count.
#include "backends/cpu/conv2d_bwd_weight_batch_lanes.h"

#include <immintrin.h>

#include <cstring>

#include "backends/cpu/cpu_ops.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kLanes = kBatchLanesChunk;
// The lane-interleaved padded image of a chunk, at most: it and dy stay in L2.
constexpr int64_t kMaxImageFloats = (1 << 20) / 4;

int64_t padded_h(const DirectRowsShape& s) { return s.H + 2 * s.pad_h; }
int64_t padded_w(const DirectRowsShape& s) { return s.W + 2 * s.pad_w; }
int64_t image_floats(const DirectRowsShape& s) { return s.C * padded_h(s) * padded_w(s) * kLanes; }
int64_t dy_floats(const DirectRowsShape& s) { return s.K * s.P * s.Q * kLanes; }
[[maybe_unused]] int64_t channel_block(const DirectRowsShape& s) { return s.S == 3 ? 8 : s.S == 5 ? 4 : 0; }

}  // namespace

bool conv2d_bwd_weight_batch_lanes_applies(const DirectRowsShape& s) {
#if defined(__AVX512F__)
  const int64_t kb = channel_block(s);
  return kb > 0 && s.K % kb == 0 && s.Q < kLanes && image_floats(s) <= kMaxImageFloats &&
         s.P == s.H + 2 * s.pad_h - s.R + 1 && s.Q == s.W + 2 * s.pad_w - s.S + 1;
#else
  (void)s;
  return false;
#endif
}

int64_t conv2d_bwd_weight_batch_lanes_slot_floats(const DirectRowsShape& s) {
  return align64(image_floats(s) * 4) / 4 + align64(dy_floats(s) * 4) / 4;
}

#if defined(__AVX512F__)
namespace {

// The 16 lanes of v summed pairwise, in a fixed order (through memory: GCC 12's 512-bit extract
// intrinsics warn of their own undefined idiom).
float sum_lanes(__m512 v) {
  alignas(64) float lanes[kLanes];
  _mm512_store_ps(lanes, v);
  const __m256 h8 = _mm256_add_ps(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

// dw_part[k0 .. k0+KB, c, r, 0 .. S] from the interleaved chunk.
template <int S, int KB>
void bwd_weight_block_f32(const float* xt, const float* dyt, int64_t k0, int64_t c, int64_t r,
                          const DirectRowsShape& s, float* dw_part) {
  const int64_t Wp = padded_w(s), pq = s.P * s.Q;
  __m512 acc[KB][S];
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k)
#pragma GCC unroll 5
    for (int t = 0; t < S; ++t) acc[k][t] = _mm512_setzero_ps();
  const float* x_c = xt + (c * padded_h(s) + r) * Wp * kLanes;
  const float* d0 = dyt + k0 * pq * kLanes;
  for (int64_t p = 0; p < s.P; ++p) {
    const float* xrow = x_c + p * Wp * kLanes;
    const float* drow = d0 + p * s.Q * kLanes;
    for (int64_t q = 0; q < s.Q; ++q) {
      __m512 xv[S];
#pragma GCC unroll 5
      for (int t = 0; t < S; ++t) xv[t] = _mm512_load_ps(xrow + (q + t) * kLanes);
#pragma GCC unroll 8
      for (int k = 0; k < KB; ++k) {
        const __m512 d = _mm512_load_ps(drow + (k * pq + q) * kLanes);
#pragma GCC unroll 5
        for (int t = 0; t < S; ++t) acc[k][t] = _mm512_fmadd_ps(d, xv[t], acc[k][t]);
      }
    }
  }
  const int64_t crs = s.C * s.R * S;
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k)
#pragma GCC unroll 5
    for (int t = 0; t < S; ++t) dw_part[(k0 + k) * crs + (c * s.R + r) * S + t] = sum_lanes(acc[k][t]);
}

template <int S, int KB>
void bwd_weight_blocks_f32(const float* xt, const float* dyt, const DirectRowsShape& s, float* dw_part) {
  for (int64_t k0 = 0; k0 < s.K; k0 += KB)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t r = 0; r < s.R; ++r) bwd_weight_block_f32<S, KB>(xt, dyt, k0, c, r, s, dw_part);
}

}  // namespace
#endif

void conv2d_bwd_weight_batch_lanes_chunk_f32(const float* x, const float* dy, int64_t begin, int64_t end,
                                             const DirectRowsShape& s, float* slot, float* dw_part, float* db_part) {
#if defined(__AVX512F__)
  const int64_t Wp = padded_w(s), chw = s.C * s.H * s.W, pq = s.P * s.Q, kpq = s.K * pq;
  float* xt = slot;
  float* dyt = slot + align64(image_floats(s) * 4) / 4;
  // Padding and the lanes of missing images stay 0; every image writes its own lane.
  std::memset(xt, 0, sizeof(float) * image_floats(s));
  if (end - begin < kLanes) std::memset(dyt, 0, sizeof(float) * dy_floats(s));
  for (int64_t n = begin; n < end; ++n) {
    const int64_t lane = n - begin;
    const float* x_n = x + n * chw;
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t h = 0; h < s.H; ++h) {
        float* row = xt + ((c * padded_h(s) + h + s.pad_h) * Wp + s.pad_w) * kLanes + lane;
        const float* src = x_n + (c * s.H + h) * s.W;
        for (int64_t w = 0; w < s.W; ++w) row[w * kLanes] = src[w];
      }
    const float* dy_n = dy + n * kpq;
    for (int64_t i = 0; i < kpq; ++i) dyt[i * kLanes + lane] = dy_n[i];
  }
  if (s.S == 3) bwd_weight_blocks_f32<3, 8>(xt, dyt, s, dw_part);
  else bwd_weight_blocks_f32<5, 4>(xt, dyt, s, dw_part);
  if (db_part)
    for (int64_t k = 0; k < s.K; ++k) {
      __m512 acc = _mm512_setzero_ps();
      for (int64_t i = 0; i < pq; ++i) acc = _mm512_add_ps(acc, _mm512_load_ps(dyt + (k * pq + i) * kLanes));
      db_part[k] = sum_lanes(acc);
    }
#else
  (void)x, (void)dy, (void)begin, (void)end, (void)s, (void)slot, (void)dw_part, (void)db_part;
#endif
}

}  // namespace cpu
}  // namespace parity
