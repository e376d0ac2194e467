// backends/cpu/conv2d_direct_rows.cpp — the f32 direct convolution over flattened padded rows:
// stride-1 conv2d forward (bias and relu in its store) and the flipped backward-data.
//
// The image is copied once per worker into planes whose rows are L = W + pad_w floats apart:
// pad_w zeros then the W values, so a row's right padding is the next row's left padding. An
// output (p, q) then reads tap (c, r, s) at plane c, flat index (p + r) L + q + s: for consecutive
// flat positions i = p L + q the reads are consecutive too, so a vector of 16 outputs is one
// unaligned load per tap even where it spans two rows. Positions with q >= Q (W + pad_w - Q of
// every L) are computed and dropped: the store compresses a vector's valid lanes, which are
// consecutive outputs of y. Against 16-output row vectors this wastes 1/15 of the lanes on a
// 14-wide image (not 1/8) and 1/57 on a 56-wide one (not 1/8).
//
// Register block: KB output channels x NV vectors (kChannelBlock x kVectors below) of 16 positions; per tap NV loads and KB
// broadcast weights feed KB * NV FMAs. Vectors outside, channel blocks inside, so the image rows
// a vector reads stay in L1 across the channel blocks; the weights (K*C*R*S floats) stay in L1/L2.
// When K is not a multiple of kChannelBlock, the last K % kChannelBlock channels form one
// narrower block (LeNet-5's 6-channel conv1 forward and the 6-channel output of conv2's flipped
// backward-data); each output's sum is the same (c, r, s) order in either block.
#include "backends/cpu/conv2d_direct_rows.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "backends/cpu/cpu_ops.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kLanes = 16;
// The register block, 24 accumulators: per tap 3 loads and 8 broadcasts feed 24 FMAs. Measured
// on 2 threads of an AMD EPYC (Zen 4) against 16 channels x 1 vector (17 loads per 16 FMAs):
// 0.30 against 0.40 ms on seed-cnn's conv2 forward, 9.0 against 13.2 ms on seed-cnn-112's (min
// of the timed runs; the machine was shared).
constexpr int kChannelBlock = 8;
constexpr int kVectors = 3;

int64_t row_floats(const DirectRowsShape& s) { return s.W + s.pad_w; }
// Rows H + 2 pad_h, plus one zero row: the last image row's right padding when pad_h = 0.
int64_t plane_floats(const DirectRowsShape& s) { return (s.H + 2 * s.pad_h + 1) * row_floats(s); }

}  // namespace

bool conv2d_direct_rows_applies(const DirectRowsShape& s) {
#if defined(__AVX512F__)
  return s.K >= 1 && s.pad_h < s.R && s.pad_w < s.S && s.P == s.H + 2 * s.pad_h - s.R + 1 &&
         s.Q == s.W + 2 * s.pad_w - s.S + 1;
#else
  (void)s;
  return false;
#endif
}

int64_t conv2d_direct_rows_image_floats(const DirectRowsShape& s) {
  // Slack past the last plane: the last vectors read up to kVectors * 16 + S floats beyond it.
  return align64((s.C * plane_floats(s) + kVectors * kLanes + s.S + kLanes) * 4) / 4;
}

#if defined(__AVX512F__)
namespace {

// Copies image x_n's rows into a padded image whose padding (everything else) is already 0.
void copy_image_rows_f32(const float* x_n, const DirectRowsShape& s, float* xpad) {
  const int64_t L = row_floats(s), plane = plane_floats(s);
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t h = 0; h < s.H; ++h)
      std::memcpy(xpad + c * plane + (h + s.pad_h) * L + s.pad_w, x_n + (c * s.H + h) * s.W, sizeof(float) * s.W);
}

// Where a vector of 16 flat positions lands in y: its valid lanes (q < Q), which are consecutive
// outputs, and the first one's index p Q + q.
struct VectorStore {
  __mmask16 valid;
  __mmask16 count;  // the low popcount(valid) lanes
  int64_t dest;
};

VectorStore vector_store(int64_t i0, const DirectRowsShape& s) {
  const int64_t L = row_floats(s), total = s.P * L;
  VectorStore v{0, 0, -1};
  int n = 0;
  int64_t p = i0 / L, q = i0 % L;  // one division per vector, then walk the lanes
  for (int64_t l = 0; l < kLanes && i0 + l < total; ++l) {
    if (q < s.Q) {
      if (v.dest < 0) v.dest = p * s.Q + q;
      v.valid = __mmask16(v.valid | (1u << l));
      ++n;
    }
    if (++q == L) q = 0, ++p;
  }
  v.count = __mmask16((1u << n) - 1u);
  if (v.dest < 0) v.dest = 0;
  return v;
}

// Output channels [k0, k1) (a multiple of KB of them) of the NV vectors of flat positions from i0.
template <int KB, int NV>
void conv_rows_vectors_f32(const float* xpad, const float* wt, const float* b, bool relu, float* y_n,
                           const DirectRowsShape& s, int64_t i0, int64_t k0, int64_t k1) {
  const int64_t L = row_floats(s), plane = plane_floats(s), pq = s.P * s.Q;
  const __m512 zero = _mm512_setzero_ps();
  {
    VectorStore st[NV];
    for (int j = 0; j < NV; ++j) st[j] = vector_store(i0 + j * kLanes, s);
    for (int64_t kb = k0; kb < k1; kb += KB) {
      __m512 acc[KB][NV];
#pragma GCC unroll 16
      for (int k = 0; k < KB; ++k)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[k][j] = zero;
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t r = 0; r < s.R; ++r) {
          const float* xr = xpad + c * plane + r * L + i0;
          const float* wr = wt + (c * s.R + r) * s.S * s.K + kb;
          for (int64_t t = 0; t < s.S; ++t) {
            __m512 xv[NV];
#pragma GCC unroll 4
            for (int j = 0; j < NV; ++j) xv[j] = _mm512_loadu_ps(xr + t + j * kLanes);
            const float* ws = wr + t * s.K;
#pragma GCC unroll 16
            for (int k = 0; k < KB; ++k) {
              const __m512 wk = _mm512_set1_ps(ws[k]);
#pragma GCC unroll 4
              for (int j = 0; j < NV; ++j) acc[k][j] = _mm512_fmadd_ps(xv[j], wk, acc[k][j]);
            }
          }
        }
#pragma GCC unroll 16
      for (int k = 0; k < KB; ++k) {
        const __m512 bias = b ? _mm512_set1_ps(b[kb + k]) : zero;
        float* yk = y_n + (kb + k) * pq;
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) {
          __m512 v = b ? _mm512_add_ps(acc[k][j], bias) : acc[k][j];
          // relu as kernels::relu_f32: x <= 0 ? 0 : x (NaN kept)
          if (relu) v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero, _CMP_NLE_UQ), v);
          _mm512_mask_storeu_ps(yk + st[j].dest, st[j].count, _mm512_maskz_compress_ps(st[j].valid, v));
        }
      }
    }
  }
}

// Every output channel of the NV vectors from i0: whole channel blocks, then the narrower last one.
template <int NV>
void conv_rows_channels_f32(const float* xpad, const float* wt, const float* b, bool relu, float* y_n,
                            const DirectRowsShape& s, int64_t i0) {
  const int64_t whole = s.K - s.K % kChannelBlock;
  if (whole > 0) conv_rows_vectors_f32<kChannelBlock, NV>(xpad, wt, b, relu, y_n, s, i0, 0, whole);
  static_assert(kChannelBlock == 8, "the switch below handles the last 1 to 7 channels");
  switch (s.K - whole) {
    case 1: return conv_rows_vectors_f32<1, NV>(xpad, wt, b, relu, y_n, s, i0, whole, s.K);
    case 2: return conv_rows_vectors_f32<2, NV>(xpad, wt, b, relu, y_n, s, i0, whole, s.K);
    case 3: return conv_rows_vectors_f32<3, NV>(xpad, wt, b, relu, y_n, s, i0, whole, s.K);
    case 4: return conv_rows_vectors_f32<4, NV>(xpad, wt, b, relu, y_n, s, i0, whole, s.K);
    case 5: return conv_rows_vectors_f32<5, NV>(xpad, wt, b, relu, y_n, s, i0, whole, s.K);
    case 6: return conv_rows_vectors_f32<6, NV>(xpad, wt, b, relu, y_n, s, i0, whole, s.K);
    case 7: return conv_rows_vectors_f32<7, NV>(xpad, wt, b, relu, y_n, s, i0, whole, s.K);
    default: return;
  }
}

// One image: blocks of kVectors vectors, then the last one or two vectors on their own (on a
// 14-wide image, 210 positions are 14 vectors, not 5 blocks of 3).
// With `pool` (NodeFusion::pool_after), image n's pool output rows are computed as the rows of
// y they read are completed: output row p of y holds flat positions [p * L, p * L + Q).
void conv_rows_image_f32(const float* xpad, const float* wt, const float* b, bool relu, float* y_n,
                         const DirectRowsShape& s, const BoundNode* pool, int64_t n) {
  const int64_t L = row_floats(s), total = s.P * L;
  int64_t pooled = 0;  // pool output rows done
  auto pool_rows_before = [&](int64_t flat_end) {
    if (!pool) return;
    const int64_t ready = std::min(s.P, flat_end / L) / 2;  // y rows complete, then pool rows
    if (ready > pooled) maxpool2x2_rows_f32(*pool, n * s.K, (n + 1) * s.K, pooled, ready);
    pooled = std::max(pooled, ready);
  };
  int64_t i0 = 0;
  for (; i0 + 2 * kLanes < total; i0 += kVectors * kLanes) {  // 3 vectors, the last maybe partial
    conv_rows_channels_f32<kVectors>(xpad, wt, b, relu, y_n, s, i0);
    pool_rows_before(i0 + kVectors * kLanes);
  }
  const int64_t left = i0 < total ? (total - i0 + kLanes - 1) / kLanes : 0;
  static_assert(kVectors == 3, "the tail below handles 1 or 2 vectors");
  if (left == 2) conv_rows_channels_f32<2>(xpad, wt, b, relu, y_n, s, i0);
  if (left == 1) conv_rows_channels_f32<1>(xpad, wt, b, relu, y_n, s, i0);
  pool_rows_before(total);
}

}  // namespace
#endif

void conv2d_direct_rows_f32(const float* x, const float* wt, const float* b, bool relu, float* y,
                            const DirectRowsShape& s, float* xpads, int32_t slots, const BoundNode* pool_after) {
#if defined(__AVX512F__)
  const int64_t image_floats = conv2d_direct_rows_image_floats(s);
  // The padding is zeroed once per run (the scratch may have held another node's data); each
  // image then writes only its own values, at the same places.
  std::memset(xpads, 0, sizeof(float) * image_floats * slots);
  parallel_chunks(s.N, 1, [&](int64_t, int64_t begin, int64_t end) {
    float* xpad = xpads + worker_slot(slots) * image_floats;
    for (int64_t n = begin; n < end; ++n) {
      copy_image_rows_f32(x + n * s.C * s.H * s.W, s, xpad);
      float* y_n = y + n * s.K * s.P * s.Q;
      conv_rows_image_f32(xpad, wt, b, relu, y_n, s, pool_after, n);
    }
  });
#else
  (void)x, (void)wt, (void)b, (void)relu, (void)y, (void)s, (void)xpads, (void)slots, (void)pool_after;
#endif
}

}  // namespace cpu
}  // namespace parity
