// backends/cpu/conv2d_depthwise.cpp — depthwise conv2d, NCHW float32, over channel planes (a
// per-channel im2col + GEMM would be a GEMM of depth R*S and one row): AVX-512 vector paths for
// stride_w 1 and 2, and generic loops for everything else.
//
// Vector paths (AVX-512F and VL builds; filters up to 16 wide; lanes along an output row, 16 of
// them, or 8 where the row is at most 8 wide, in blocks of 4 or 8 rows):
//   forward        one task per run of output planes (n, k). Each input plane is first copied
//                  into the worker's scratch with its padding written out as zeros (stride_w 2:
//                  its columns split into even and odd runs), so every tap is one unmasked load
//                  of consecutive outputs; y = sum over taps in (r, s) order, padding taps
//                  adding w * 0, then + bias, then relu.
//   backward-data  stride 1 and M = 1 (padding at most the filter's reach): the forward above
//                  on dy with the flipped filter, sum in flipped (r, s) order. Otherwise (stride_w
//                  2, M > 1, stride_h up to 4) a gather per dx plane (n, c): dx column j *
//                  stride_w + phase takes the taps s of its phase from dy columns read by masked
//                  loads (0 outside dy), sum in (m, r, s) order; rows of one residue mod
//                  stride_h share their taps r.
//   backward-wt    3x3 and 5x5 filters: one task per filter k, R*S vector accumulators, lane l
//                  summing dy * x (x from the padded copy) over (n, p, vectors of q) in that
//                  order, lanes past Q reading nothing; then each accumulator's 16 lanes added in
//                  a fixed tree (lane_sum). db[k] the same way.
// Generic loops (the rest, and builds without AVX-512): each tap (r, s) adds w[k, r, s] times a
// shifted input row segment, the segment being the outputs whose input lies inside the image
// (kernels::conv2d_valid_outputs), so padding is never read.
//   forward        one task per run of output planes (n, k): taps in (r, s) order, then bias and relu;
//   backward-data  one task per input plane (n, c): zeroed, then its M filters' taps scattered
//                  in (m, r, s) order (no two tasks write one element);
//   backward-wt    one task per filter k: dw[k, r, s] and db[k] summed over n, then p (one
//                  partial per output row, added in row order).
// Every sum has a fixed order that depends on the shape alone, and tasks split by shape alone:
// results are bitwise reproducible at any thread count. Scratch: per worker slot one padded
// plane (depthwise_scratch_floats), nothing allocated here.
#include "backends/cpu/conv2d_depthwise.h"

#include <immintrin.h>

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

void forward_generic_f32(const float* x, const float* w, const float* b, bool relu, float* y, const DepthwiseShape& d) {
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

void backward_data_generic_f32(const float* dy, const float* w, float* dx, const DepthwiseShape& d) {
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

void backward_weight_generic_f32(const float* x, const float* dy, float* dw, float* db, const DepthwiseShape& d) {
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

}  // namespace

#if defined(__AVX512F__) && defined(__AVX512VL__)
#define PARITY_DEPTHWISE_VECTORS 1
#else
#define PARITY_DEPTHWISE_VECTORS 0
#endif

#if PARITY_DEPTHWISE_VECTORS
namespace {

constexpr int64_t kLanes = 16;
constexpr int64_t kMaxS = 16;  // the vector paths' widest filter

int64_t round_up_lanes(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// Lanes [lo, hi) of 16, clamped.
__mmask16 lane_range(int64_t lo, int64_t hi) {
  lo = std::max<int64_t>(lo, 0);
  hi = std::min<int64_t>(hi, kLanes);
  if (hi <= lo) return 0;
  return __mmask16(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

// The 16 lanes' sum as a fixed tree: lanes i and i + 8, then i and i + 4, i + 2, i + 1.
float lane_sum(__m512 v) {
  alignas(64) float l[kLanes];
  _mm512_store_ps(l, v);
  for (int half = kLanes / 2; half > 0; half /= 2)
    for (int i = 0; i < half; ++i) l[i] += l[i + half];
  return l[0];
}

// The forward and backward-data kernels in two widths: 16 lanes, or 8 where an output row (a dx
// row's phase) is at most 8 wide, so that a 7-wide row does not leave 9 of 16 lanes idle (on
// Zen 4 a 16-lane op costs two 8-lane ones). kRows: the rows in flight, independent FMA chains
// enough to cover the FMA latency at either width.
struct Zmm {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int64_t kWidth = 16;
  static constexpr int kRows = 4;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float f) { return _mm512_set1_ps(f); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static V maskz_loadu(Mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static void mask_storeu(float* p, Mask m, V v) { _mm512_mask_storeu_ps(p, m, v); }
  // relu as kernels::relu_f32: x <= 0 ? 0 : x (NaN kept).
  static V relu(V v) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero(), _CMP_NLE_UQ), v); }
  static Mask lanes(int64_t lo, int64_t hi) { return lane_range(lo, hi); }
};

struct Ymm {
  using V = __m256;
  using Mask = __mmask8;
  static constexpr int64_t kWidth = 8;
  static constexpr int kRows = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float f) { return _mm256_set1_ps(f); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static V maskz_loadu(Mask m, const float* p) { return _mm256_maskz_loadu_ps(m, p); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static void mask_storeu(float* p, Mask m, V v) { _mm256_mask_storeu_ps(p, m, v); }
  static V relu(V v) { return _mm256_maskz_mov_ps(_mm256_cmp_ps_mask(v, zero(), _CMP_NLE_UQ), v); }
  static Mask lanes(int64_t lo, int64_t hi) { return Mask(lane_range(lo, std::min<int64_t>(hi, kWidth))); }
};

// One input plane copied with its padding written out, for stride_w SW (1 or 2): row b is input
// row b - pad_top and holds SW runs of J floats, element j of run ph being input column
// j * SW + ph - pad_left (0 outside the image). Tap (r, s) of output (p, q) is then element
// q + t / SW of run t % SW (t = s * dilation_w) of row p * stride_h + r * dilation_h: 16
// consecutive outputs are one unmasked load, whatever the padding. kLanes floats of slack after
// the last row take the last vector's lanes past Q.
struct PaddedPlane {
  int64_t rows, J;
  int64_t row_floats(int64_t sw) const { return sw * J; }
};

PaddedPlane padded_plane(const DepthwiseShape& d) {
  const int64_t sw = d.cw.stride_w;
  return PaddedPlane{(d.P - 1) * d.cw.stride_h + (d.R - 1) * d.cw.dilation_h + 1,
                     round_up_lanes(d.Q + (d.S - 1) * d.cw.dilation_w / sw)};
}

int64_t padded_plane_floats(const DepthwiseShape& d) {
  const PaddedPlane pp = padded_plane(d);
  return round_up_lanes(pp.rows * pp.row_floats(d.cw.stride_w) + kLanes);
}

// Where tap s starts in a padded row.
int64_t tap_offset(const DepthwiseShape& d, const PaddedPlane& pp, int64_t s) {
  const int64_t t = s * d.cw.dilation_w, sw = d.cw.stride_w;
  return (t % sw) * pp.J + t / sw;
}

// `next` (or null): the plane the caller pads next, prefetched meanwhile (planes are a few KiB).
template <int SW>
void pad_plane_f32(const float* x_c, const DepthwiseShape& d, const PaddedPlane& pp, float* out, const float* next) {
  if (next)
    for (int64_t i = 0; i < d.H * d.W; i += kLanes) _mm_prefetch(reinterpret_cast<const char*>(next + i), _MM_HINT_T0);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const int64_t rf = pp.row_floats(SW);
  for (int64_t b = 0; b < pp.rows; ++b) {
    const int64_t h = b - d.cw.pad_top;
    float* o = out + b * rf;
    if (h < 0 || h >= d.H) {
      for (int64_t i = 0; i < rf; i += kLanes) _mm512_storeu_ps(o + i, _mm512_setzero_ps());  // rf: whole vectors
      continue;
    }
    const float* row = x_c + h * d.W;
    for (int64_t j0 = 0; j0 < pp.J; j0 += kLanes) {
      const int64_t base = j0 * SW - d.cw.pad_left;  // the input column of the first element
      const __m512 a = _mm512_maskz_loadu_ps(lane_range(-base, d.W - base), row + base);
      if constexpr (SW == 1) {
        _mm512_storeu_ps(o + j0, a);
      } else {
        const __m512 b2 = _mm512_maskz_loadu_ps(lane_range(-base - kLanes, d.W - base - kLanes), row + base + kLanes);
        _mm512_storeu_ps(o + j0, _mm512_permutex2var_ps(a, even, b2));
        _mm512_storeu_ps(o + pp.J + j0, _mm512_permutex2var_ps(a, odd, b2));
      }
    }
  }
  _mm512_storeu_ps(out + pp.rows * rf, _mm512_setzero_ps());
}

// One output plane from its padded input: vectors of Vec::kWidth outputs of Vec::kRows rows,
// all taps summed in registers in (r, s) order (padding adds w * 0), then bias and relu, one store.
template <int SW, class Vec>
void forward_plane_f32(const float* xp, const PaddedPlane& pp, const float* w_k, const float* bias, bool relu,
                       float* y_p, const DepthwiseShape& d) {
  constexpr int kRows = Vec::kRows;
  const int64_t rf = pp.row_floats(SW);
  int64_t offset[kMaxS];
  for (int64_t s = 0; s < d.S; ++s) offset[s] = tap_offset(d, pp, s);
  for (int64_t q0 = 0; q0 < d.Q; q0 += Vec::kWidth) {
    const typename Vec::Mask store = Vec::lanes(0, d.Q - q0);
    for (int64_t p0 = 0; p0 < d.P; p0 += kRows) {
      typename Vec::V acc[kRows];
#pragma GCC unroll 8
      for (int j = 0; j < kRows; ++j) acc[j] = Vec::zero();
      for (int64_t r = 0; r < d.R; ++r) {
        const float* rows[kRows];  // rows past P repeat the last one, unstored
#pragma GCC unroll 8
        for (int j = 0; j < kRows; ++j)
          rows[j] = xp + (std::min(p0 + j, d.P - 1) * d.cw.stride_h + r * d.cw.dilation_h) * rf + q0;
        for (int64_t s = 0; s < d.S; ++s) {
          const typename Vec::V wv = Vec::set1(w_k[r * d.S + s]);
#pragma GCC unroll 8
          for (int j = 0; j < kRows; ++j) acc[j] = Vec::fmadd(Vec::loadu(rows[j] + offset[s]), wv, acc[j]);
        }
      }
#pragma GCC unroll 8
      for (int j = 0; j < kRows; ++j) {
        if (p0 + j >= d.P) break;
        typename Vec::V v = bias ? Vec::add(acc[j], Vec::set1(*bias)) : acc[j];
        if (relu) v = Vec::relu(v);
        Vec::mask_storeu(y_p + (p0 + j) * d.Q + q0, store, v);
      }
    }
  }
}

// The forward of one plane: pads it into xp, then the width that suits Q.
template <int SW>
void forward_plane_f32(const float* x_c, const PaddedPlane& pp, const float* w_k, const float* bias, bool relu,
                       float* y_p, const DepthwiseShape& d, float* xp, const float* next) {
  pad_plane_f32<SW>(x_c, d, pp, xp, next);
  if (d.Q <= Ymm::kWidth)
    forward_plane_f32<SW, Ymm>(xp, pp, w_k, bias, relu, y_p, d);
  else
    forward_plane_f32<SW, Zmm>(xp, pp, w_k, bias, relu, y_p, d);
}

// The gather's dx rows by residue rho = h mod stride_h: the taps r they take (those with
// h + pad_top - r * dilation_h a multiple of stride_h) and, for each, the dy row that the
// residue's first dx row reads (its t-th row reads t rows further). Made once per node run, so
// the planes divide nothing.
constexpr int64_t kMaxStrideH = 4;
struct GatherRows {
  int64_t count[kMaxStrideH];
  int64_t r[kMaxStrideH][kMaxS], p[kMaxStrideH][kMaxS];
};

GatherRows gather_rows(const DepthwiseShape& d) {
  GatherRows gr{};
  const int64_t sh = d.cw.stride_h;
  for (int64_t rho = 0; rho < sh; ++rho)
    for (int64_t r = 0; r < d.R; ++r) {
      const int64_t num = rho + d.cw.pad_top - r * d.cw.dilation_h;
      if (num % sh != 0) continue;
      gr.r[rho][gr.count[rho]] = r;
      gr.p[rho][gr.count[rho]++] = num / sh;  // exact, also below 0
    }
  return gr;
}

// One dx plane (n, c) gathered from dy, unpadded: dx column j * SW + ph (phase ph) takes tap s
// from dy column j + (ph + pad_left - s * dilation_w) / SW where that divides, row h tap r from
// dy row (h + pad_top - r * dilation_h) / stride_h likewise; masked loads read dy columns outside
// [0, Q) as 0. Rows go in blocks of Vec::kRows of one residue mod stride_h, which share their
// taps r; vectors of Vec::kWidth j per phase; sums in (m, r, s) order. SW 2 interleaves its two
// phases at the store.
template <int SW, class Vec>
void backward_data_plane_f32(const float* dy_n, const float* w, float* dx_p, int64_t c, const DepthwiseShape& d,
                             const GatherRows& gr) {
  using V = typename Vec::V;
  using Mask = typename Vec::Mask;
  constexpr int kRows = Vec::kRows;
  constexpr int64_t kWidth = Vec::kWidth;
  const kernels::Conv2dWindow& cw = d.cw;
  const int64_t pq = d.P * d.Q, rs = d.R * d.S, sh = cw.stride_h;
  for (int64_t j0 = 0; j0 * SW < d.W; j0 += kWidth) {
    // Per phase: its taps s, and the dy columns each reads.
    int64_t taps[SW][kMaxS], column[SW][kMaxS], ntaps[SW];
    Mask mask[SW][kMaxS];
    for (int ph = 0; ph < SW; ++ph) {
      const int64_t lanes = (d.W - ph + SW - 1) / SW - j0;  // j with j * SW + ph < W
      ntaps[ph] = 0;
      for (int64_t s = 0; s < d.S; ++s) {
        const int64_t num = ph + cw.pad_left - s * cw.dilation_w;
        if (num % SW != 0) continue;
        const int64_t q0 = j0 + num / SW;  // the dy column of lane 0
        taps[ph][ntaps[ph]] = s;
        column[ph][ntaps[ph]] = q0;
        mask[ph][ntaps[ph]++] = Vec::lanes(-q0, std::min(d.Q - q0, lanes));
      }
    }
    for (int64_t rho = 0; rho < sh && rho < d.H; ++rho)
      for (int64_t t0 = 0; rho + t0 * sh < d.H; t0 += kRows) {
        const int64_t h0 = rho + t0 * sh;
        V acc[kRows][SW];
#pragma GCC unroll 8
        for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 2
          for (int ph = 0; ph < SW; ++ph) acc[i][ph] = Vec::zero();
        for (int64_t m = 0; m < d.M; ++m) {
          const int64_t k = c * d.M + m;
          const float* dy_p = dy_n + k * pq;
          const float* w_k = w + k * rs;
          for (int64_t e = 0; e < gr.count[rho]; ++e) {
            const int64_t r = gr.r[rho][e], p0 = gr.p[rho][e] + t0;
            const float* rows[kRows];
            Mask row_mask[kRows];
#pragma GCC unroll 8
            for (int i = 0; i < kRows; ++i) {
              const bool inside = p0 + i >= 0 && p0 + i < d.P && h0 + i * sh < d.H;
              rows[i] = dy_p + std::clamp<int64_t>(p0 + i, 0, d.P - 1) * d.Q;
              row_mask[i] = inside ? Mask(~0u) : Mask(0);
            }
#pragma GCC unroll 2
            for (int ph = 0; ph < SW; ++ph)
              for (int64_t t = 0; t < ntaps[ph]; ++t) {
                const V wv = Vec::set1(w_k[r * d.S + taps[ph][t]]);
#pragma GCC unroll 8
                for (int i = 0; i < kRows; ++i)
                  acc[i][ph] = Vec::fmadd(Vec::maskz_loadu(Mask(mask[ph][t] & row_mask[i]), rows[i] + column[ph][t]),
                                          wv, acc[i][ph]);
              }
          }
        }
#pragma GCC unroll 8
        for (int i = 0; i < kRows; ++i) {
          const int64_t h = h0 + i * sh;
          if (h >= d.H) break;
          float* dx_row = dx_p + h * d.W + j0 * SW;
          const int64_t left = d.W - j0 * SW;
          if constexpr (SW == 1) {
            Vec::mask_storeu(dx_row, Vec::lanes(0, left), acc[i][0]);
          } else if constexpr (kWidth == 8) {  // the two phases' 8 lanes interleaved: 16 columns
            const __m256 lo = _mm256_unpacklo_ps(acc[i][0], acc[i][1]);  // e0 o0 e1 o1 | e4 o4 e5 o5
            const __m256 hi = _mm256_unpackhi_ps(acc[i][0], acc[i][1]);  // e2 o2 e3 o3 | e6 o6 e7 o7
            Vec::mask_storeu(dx_row, Vec::lanes(0, left), _mm256_permute2f128_ps(lo, hi, 0x20));
            Vec::mask_storeu(dx_row + kWidth, Vec::lanes(0, left - kWidth), _mm256_permute2f128_ps(lo, hi, 0x31));
          } else {
            const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            _mm512_mask_storeu_ps(dx_row, lane_range(0, left), _mm512_permutex2var_ps(acc[i][0], lo, acc[i][1]));
            _mm512_mask_storeu_ps(dx_row + kLanes, lane_range(0, left - kLanes),
                                  _mm512_permutex2var_ps(acc[i][0], hi, acc[i][1]));
          }
        }
      }
  }
}

template <int SW>
void backward_data_plane_f32(const float* dy_n, const float* w, float* dx_p, int64_t c, const DepthwiseShape& d,
                             const GatherRows& gr) {
  if ((d.W + SW - 1) / SW <= Ymm::kWidth)
    backward_data_plane_f32<SW, Ymm>(dy_n, w, dx_p, c, d, gr);
  else
    backward_data_plane_f32<SW, Zmm>(dy_n, w, dx_p, c, d, gr);
}

// One filter k: R * S vector accumulators (and one for db), each lane summing dy * x over
// (n, p, vector of 16 outputs) in that order, x from each image's padded plane; then each
// accumulator's 16 lanes added by lane_sum. Lanes past Q read neither dy nor x (an infinite x
// there would make 0 * inf).
template <int SW, int R, int S>
void backward_weight_filter_f32(const float* x, const float* dy, float* dw, float* db, int64_t k,
                                const DepthwiseShape& d, float* xp) {
  const PaddedPlane pp = padded_plane(d);
  const int64_t c = k / d.M, pq = d.P * d.Q, rf = pp.row_floats(SW);
  int64_t offset[S];
  for (int s = 0; s < S; ++s) offset[s] = tap_offset(d, pp, s);
  __m512 acc[R * S], acc_b = _mm512_setzero_ps();
#pragma GCC unroll 25
  for (int t = 0; t < R * S; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t n = 0; n < d.N; ++n) {
    const float* next = n + 1 < d.N ? x + ((n + 1) * d.C + c) * d.H * d.W : nullptr;
    pad_plane_f32<SW>(x + (n * d.C + c) * d.H * d.W, d, pp, xp, next);
    const float* dy_p = dy + (n * d.K() + k) * pq;
    for (int64_t p = 0; p < d.P; ++p) {
      const float* rows[R];
#pragma GCC unroll 5
      for (int r = 0; r < R; ++r) rows[r] = xp + (p * d.cw.stride_h + r * d.cw.dilation_h) * rf;
      for (int64_t q0 = 0; q0 < d.Q; q0 += kLanes) {
        const __mmask16 lanes = lane_range(0, d.Q - q0);
        const __m512 dyv = _mm512_maskz_loadu_ps(lanes, dy_p + p * d.Q + q0);
        acc_b = _mm512_add_ps(acc_b, dyv);
#pragma GCC unroll 5
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 5
          for (int s = 0; s < S; ++s)
            acc[r * S + s] =
                _mm512_fmadd_ps(dyv, _mm512_maskz_loadu_ps(lanes, rows[r] + q0 + offset[s]), acc[r * S + s]);
      }
    }
  }
#pragma GCC unroll 25
  for (int t = 0; t < R * S; ++t) dw[k * R * S + t] = lane_sum(acc[t]);
  if (db) db[k] = lane_sum(acc_b);
}

bool vector_stride(const DepthwiseShape& d) {
  return (d.cw.stride_w == 1 || d.cw.stride_w == 2) && d.S <= kMaxS && d.P > 0 && d.Q > 0;
}

// Stride 1, one filter per channel, padding at most the filter's reach: dx is the forward conv of
// dy with the flipped filter and padding reach - pad (dx[h, w] = sum w[R-1-r', S-1-s'] *
// dy[h + r' dilation_h - (reach_h - pad_top), ...]), on the forward's vector path.
bool backward_data_as_forward(const DepthwiseShape& d) {
  const kernels::Conv2dWindow& cw = d.cw;
  return cw.stride_h == 1 && cw.stride_w == 1 && d.M == 1 && d.R <= kMaxS && d.S <= kMaxS &&
         cw.pad_top <= (d.R - 1) * cw.dilation_h && cw.pad_left <= (d.S - 1) * cw.dilation_w;
}

// That forward's shape: input dy [P, Q], output dx [H, W].
DepthwiseShape flipped_shape(const DepthwiseShape& d) {
  DepthwiseShape f = d;
  f.H = d.P, f.W = d.Q, f.P = d.H, f.Q = d.W;
  f.cw.pad_top = (d.R - 1) * d.cw.dilation_h - d.cw.pad_top;
  f.cw.pad_left = (d.S - 1) * d.cw.dilation_w - d.cw.pad_left;
  f.cw.pad_bottom = (d.R - 1) * d.cw.dilation_h - d.cw.pad_bottom;
  f.cw.pad_right = (d.S - 1) * d.cw.dilation_w - d.cw.pad_right;
  return f;
}

bool vector_weight_filter(const DepthwiseShape& d) {
  return vector_stride(d) && ((d.R == 3 && d.S == 3) || (d.R == 5 && d.S == 5));
}

}  // namespace
#endif

int64_t depthwise_scratch_floats(const DepthwiseShape& d) {
#if PARITY_DEPTHWISE_VECTORS
  if (backward_data_as_forward(d)) return std::max(padded_plane_floats(d), padded_plane_floats(flipped_shape(d)));
  if (vector_stride(d)) return padded_plane_floats(d);
#endif
  (void)d;
  return 0;
}

void depthwise_forward_f32(const float* x, const float* w, const float* b, bool relu, float* y,
                           const DepthwiseShape& d, float* scratch, int32_t slots) {
#if PARITY_DEPTHWISE_VECTORS
  if (vector_stride(d)) {
    const int64_t pq = d.P * d.Q;
    const PaddedPlane pp = padded_plane(d);
    parallel_chunks(d.N * d.K(), planes_per_task(pq), [&](int64_t, int64_t begin, int64_t end) {
      float* xp = scratch + worker_slot(slots) * padded_plane_floats(d);
      for (int64_t plane = begin; plane < end; ++plane) {
        const int64_t n = plane / d.K(), k = plane % d.K(), nc = n * d.C + k / d.M;
        const float* w_k = w + k * d.R * d.S;
        const float* b_k = b ? b + k : nullptr;
        const float* next = nc + 1 < d.N * d.C ? x + (nc + 1) * d.H * d.W : nullptr;
        if (d.cw.stride_w == 1)
          forward_plane_f32<1>(x + nc * d.H * d.W, pp, w_k, b_k, relu, y + plane * pq, d, xp, next);
        else
          forward_plane_f32<2>(x + nc * d.H * d.W, pp, w_k, b_k, relu, y + plane * pq, d, xp, next);
      }
    });
    return;
  }
#endif
  (void)scratch, (void)slots;
  forward_generic_f32(x, w, b, relu, y, d);
}

void depthwise_backward_data_f32(const float* dy, const float* w, float* dx, const DepthwiseShape& d, float* scratch,
                                 int32_t slots) {
#if PARITY_DEPTHWISE_VECTORS
  if (backward_data_as_forward(d)) {
    const DepthwiseShape f = flipped_shape(d);
    const PaddedPlane pp = padded_plane(f);
    parallel_chunks(d.N * d.C, planes_per_task(d.H * d.W), [&](int64_t, int64_t begin, int64_t end) {
      float* dyp = scratch + worker_slot(slots) * padded_plane_floats(f);
      float w_flipped[kMaxS * kMaxS];
      for (int64_t plane = begin; plane < end; ++plane) {
        const int64_t k = plane % d.C, rs = d.R * d.S;
        for (int64_t i = 0; i < rs; ++i) w_flipped[i] = w[k * rs + rs - 1 - i];
        const float* next = plane + 1 < d.N * d.C ? dy + (plane + 1) * d.P * d.Q : nullptr;
        forward_plane_f32<1>(dy + plane * d.P * d.Q, pp, w_flipped, nullptr, false, dx + plane * d.H * d.W, f, dyp,
                             next);
      }
    });
    return;
  }
  if (vector_stride(d) && d.cw.stride_h <= kMaxStrideH && d.R <= kMaxS) {
    const int64_t hw = d.H * d.W;
    const GatherRows gr = gather_rows(d);
    parallel_chunks(d.N * d.C, planes_per_task(hw), [&](int64_t, int64_t begin, int64_t end) {
      for (int64_t plane = begin; plane < end; ++plane) {
        const int64_t n = plane / d.C, c = plane % d.C;
        const float* dy_n = dy + n * d.K() * d.P * d.Q;
        if (d.cw.stride_w == 1)
          backward_data_plane_f32<1>(dy_n, w, dx + plane * hw, c, d, gr);
        else
          backward_data_plane_f32<2>(dy_n, w, dx + plane * hw, c, d, gr);
      }
    });
    return;
  }
#endif
  (void)scratch, (void)slots;
  backward_data_generic_f32(dy, w, dx, d);
}

void depthwise_backward_weight_f32(const float* x, const float* dy, float* dw, float* db, const DepthwiseShape& d,
                                   float* scratch, int32_t slots) {
#if PARITY_DEPTHWISE_VECTORS
  if (vector_weight_filter(d)) {
    using Filter = void (*)(const float*, const float*, float*, float*, int64_t, const DepthwiseShape&, float*);
    const bool s1 = d.cw.stride_w == 1;
    const Filter filter = d.R == 3 ? (s1 ? backward_weight_filter_f32<1, 3, 3> : backward_weight_filter_f32<2, 3, 3>)
                                   : (s1 ? backward_weight_filter_f32<1, 5, 5> : backward_weight_filter_f32<2, 5, 5>);
    parallel_chunks(d.K(), 1, [&](int64_t, int64_t begin, int64_t end) {
      float* xp = scratch + worker_slot(slots) * padded_plane_floats(d);
      for (int64_t k = begin; k < end; ++k) filter(x, dy, dw, db, k, d, xp);
    });
    return;
  }
#endif
  (void)scratch, (void)slots;
  backward_weight_generic_f32(x, dy, dw, db, d);
}

}  // namespace cpu
}  // namespace parity
