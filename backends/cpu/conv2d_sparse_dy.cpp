// backends/cpu/conv2d_sparse_dy.cpp — conv2d backward (weights and data) on the cpu backend when
// its dy is mostly zeros: the gradient behind a max-pool (NodeFusion::sparse_dy), where a 2x2
// stride-2 window passes at most one of its four elements. Only dy's nonzeros are visited, and
// each one adds (or scatters) a whole R x S x 16-channel patch with 16 lanes along the input
// channels, read from (or written to) a channels-last copy of the image. A backward-weights
// fused with the max-pool backward that makes its dy (NodeFusion::pool_source) reads dy in
// pooled form instead: one gradient per window, at its argmax.
//
// Same sums as the dense kernels of conv2d.cpp without their 0 * x terms, which leaves the
// result unchanged as long as those terms are zeros: an image whose x holds an infinity or NaN
// (where 0 * x would be NaN) visits every position instead, and backward-data leaves non-finite
// weights to the dense kernel. Every sum has a fixed order (images, output channels, dy's
// positions in row-major order; chunks of images summed in chunk order), so results are
// bitwise reproducible at any thread count.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>

#include "backends/cpu/cpu_ops.h"
#include "ops/kernels/conv_geometry.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kLanes = 16;  // input channels per vector
constexpr int64_t kSumChunk = 1024;  // dw elements per task when summing the partials

struct SparseGeometry {
  int64_t N, C, H, W, K, R, S, P, Q, Hp, Wp, pad_h, pad_w;
  int64_t pq() const { return P * Q; }
  int64_t hw() const { return H * W; }
  // A channels-last image with its zero padding: [Hp][Wp][C].
  int64_t padded_floats() const { return align64(Hp * Wp * C * 4) / 4; }
  int64_t weight_floats() const { return align64(K * C * R * S * 4) / 4; }
  // One plane's positions: their dy values, then as many int32 offsets (gather_positions).
  // (16 floats of slack: the lists are written a whole vector at a time)
  int64_t list_floats() const { return align64((P * Q + kLanes) * 4) / 4; }
};

// x (or dx) [N,C,H,W], w (or dw) [K,C,R,S], dy [N,K,P,Q]; the prepare_* functions of conv2d.cpp
// have checked that they agree.
SparseGeometry sparse_geometry(const BoundValue& x, const BoundValue& w, const BoundValue& dy,
                               const parity_conv2d_params& cp) {
  SparseGeometry g{};
  g.N = x.dims[0], g.C = x.dims[1], g.H = x.dims[2], g.W = x.dims[3];
  g.K = w.dims[0], g.R = w.dims[2], g.S = w.dims[3];
  g.P = dy.dims[2], g.Q = dy.dims[3];
  g.pad_h = cp.pad_h, g.pad_w = cp.pad_w;
  g.Hp = g.H + 2 * g.pad_h, g.Wp = g.W + 2 * g.pad_w;
  return g;
}

// Offsets into an image (padded, channels last) and 16-channel gather strides are int32.
bool fits_int32(const SparseGeometry& g) {
  return g.Hp * g.Wp * g.C < INT32_MAX && kLanes * g.H * g.W < INT32_MAX && g.P * g.Q < INT32_MAX;
}

bool applies(const SparseGeometry& g, const parity_conv2d_params& cp) {
#if defined(__AVX512F__)
  return kernels::conv2d_window(cp).plain() && cp.stride_h == 1 && cp.stride_w == 1 && g.C % kLanes == 0 && g.R == 3 && g.S == 3 && fits_int32(g);
#else
  (void)g, (void)cp;
  return false;
#endif
}

const BoundValue& dy_of(const BoundNode& node) { return node.op == PARITY_OP_CONV2D_BWD_WEIGHT ? node.in[1] : node.in[0]; }
const BoundValue& x_of(const BoundNode& node) { return node.op == PARITY_OP_CONV2D_BWD_WEIGHT ? node.in[0] : node.out[0]; }
const BoundValue& w_of(const BoundNode& node) { return node.op == PARITY_OP_CONV2D_BWD_WEIGHT ? node.out[0] : node.in[1]; }

SparseGeometry node_geometry(const BoundNode& node) {
  return sparse_geometry(x_of(node), w_of(node), dy_of(node), node.params.conv2d);
}

// Backward-weight scratch: per slot a padded image, the lanes of dw as [K][R*S][C] and a
// position list; then one dw partial [K,C,R,S] and one db partial [K] per chunk of images.
int64_t bwd_weight_slot_floats(const SparseGeometry& g) { return g.padded_floats() + g.weight_floats() + 2 * g.list_floats(); }
// Backward-data scratch: the weights as [K][R*S][C], then per slot a padded image and a position list.
int64_t bwd_data_slot_floats(const SparseGeometry& g) { return g.padded_floats() + 2 * g.list_floats(); }

#if defined(__AVX512F__)
__mmask16 tail_mask(int64_t left) { return left >= kLanes ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u); }

// x_n [C,H,W] into xp [Hp][Wp][C] with zero borders; returns false if x_n holds a non-finite
// value. 16 channels at a time by gathers when C is a multiple of 16, else one at a time.
bool pad_channels_last(const float* x_n, const SparseGeometry& g, float* xp) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512i channel_stride =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(static_cast<int32_t>(g.hw())));
  auto zero_pixels = [&](int64_t row, int64_t col0, int64_t cols) {
    std::memset(xp + (row * g.Wp + col0) * g.C, 0, sizeof(float) * cols * g.C);
  };
  for (int64_t row = 0; row < g.pad_h; ++row) zero_pixels(row, 0, g.Wp);
  for (int64_t row = g.pad_h + g.H; row < g.Hp; ++row) zero_pixels(row, 0, g.Wp);
  // For C not a multiple of 16 (then C < 16): lane l of vector j of a 16-pixel group holds
  // pixel (16 j + l) / C, channel (16 j + l) % C, read from x_n at channel * H * W + pixel.
  alignas(64) int32_t pixel_of[kLanes][kLanes], source_of[kLanes][kLanes];
  if (g.C % kLanes != 0)
    for (int64_t j = 0; j < g.C; ++j)
      for (int64_t l = 0; l < kLanes; ++l) {
        pixel_of[j][l] = static_cast<int32_t>((kLanes * j + l) / g.C);
        source_of[j][l] = static_cast<int32_t>((kLanes * j + l) % g.C * g.hw() + pixel_of[j][l]);
      }
  __mmask16 bad = 0;
  for (int64_t h = 0; h < g.H; ++h) {
    const int64_t row = h + g.pad_h;
    zero_pixels(row, 0, g.pad_w);
    zero_pixels(row, g.pad_w + g.W, g.Wp - g.pad_w - g.W);
    float* dst_row = xp + (row * g.Wp + g.pad_w) * g.C;
    if (g.C % kLanes != 0) {
      // 16 pixels x C channels are C vectors; a last group of fewer pixels is masked.
      const float* src = x_n + h * g.W;
      for (int64_t w0 = 0; w0 < g.W; w0 += kLanes) {
        const __m512i left = _mm512_set1_epi32(static_cast<int32_t>(g.W - w0));
        for (int64_t j = 0; j < g.C; ++j) {
          const __mmask16 m = _mm512_cmplt_epi32_mask(_mm512_load_si512(pixel_of[j]), left);
          const __m512i at = _mm512_load_si512(source_of[j]);
          const __m512 v = _mm512_mask_i32gather_ps(zero, m, at, src + w0, 4);
          bad |= _mm512_mask_cmp_ps_mask(m, _mm512_sub_ps(v, v), zero, _CMP_NEQ_UQ);
          _mm512_mask_storeu_ps(dst_row + w0 * g.C + j * kLanes, m, v);
        }
      }
      continue;
    }
    for (int64_t c0 = 0; c0 < g.C; c0 += kLanes) {
      const float* src = x_n + c0 * g.hw() + h * g.W;
      for (int64_t w = 0; w < g.W; ++w) {
        const __m512 v = _mm512_mask_i32gather_ps(zero, __mmask16(0xFFFF), channel_stride, src + w, 4);
        bad |= _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), zero, _CMP_NEQ_UQ);
        _mm512_store_ps(dst_row + w * g.C + c0, v);
      }
    }
  }
  return bad == 0;
}

// The 16 lanes of v summed in a fixed order.
float lane_sum(__m512 v) {
  alignas(64) float lanes[kLanes];
  _mm512_store_ps(lanes, v);
  const __m256 h8 = _mm256_add_ps(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

// Appends the `keep` lanes of v and at to the lists: compressed in registers, then stored as a
// whole vector (the lists have a vector of slack), which later loads can forward from and which
// is fast on every AVX-512 core (a compressing store to memory is microcoded on some).
void append(__mmask16 keep, __m512 v, __m512i at, float* values, int32_t* offsets, int64_t& count) {
  _mm512_storeu_ps(values + count, _mm512_maskz_compress_ps(keep, v));
  _mm512_storeu_si512(offsets + count, _mm512_maskz_compress_epi32(keep, at));
  count += __builtin_popcount(keep);
}

// dy_nk's nonzeros (NaN included), or all of its positions when `every` is set, in row-major
// order: their values and their offsets (p * Wp + q) * C in a padded channels-last image.
// Compressed 16 positions at a time, so the loops over them have no data-dependent branch.
// `sum` gets the sum of dy_nk (its zeros add nothing), lane by lane, then across in a fixed order.
int64_t gather_positions(const float* dy_nk, const SparseGeometry& g, bool every, float* values, int32_t* offsets,
                         float* sum) {
  __m512 sums = _mm512_setzero_ps();
  const __m512 zero = _mm512_setzero_ps();
  const __m512i lane_offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                  _mm512_set1_epi32(static_cast<int32_t>(g.C)));
  int64_t count = 0;
  for (int64_t p = 0; p < g.P; ++p) {
    const float* row = dy_nk + p * g.Q;
    for (int64_t q0 = 0; q0 < g.Q; q0 += kLanes) {
      const __mmask16 tail = tail_mask(g.Q - q0);
      const __m512 v = _mm512_maskz_loadu_ps(tail, row + q0);
      const __mmask16 keep = every ? tail : _mm512_mask_cmp_ps_mask(tail, v, zero, _CMP_NEQ_UQ);
      const __m512i at = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>((p * g.Wp + q0) * g.C)), lane_offsets);
      sums = _mm512_add_ps(sums, v);
      append(keep, v, at, values, offsets, count);
    }
  }
  if (sum) *sum = lane_sum(sums);
  return count;
}

// One chunk of images: dw_part [K,C,R,S] and db_part [K].
void bwd_weight_chunk_f32(const float* x, const float* dy, int64_t begin, int64_t end, const SparseGeometry& g,
                          float* slot, float* dw_part, float* db_part) {
  constexpr int RS = 9;  // R = S = 3 (applies)
  float* xp = slot;
  float* lanes = slot + g.padded_floats();  // [K][RS][C]
  float* values = lanes + g.weight_floats();
  int32_t* offsets = reinterpret_cast<int32_t*>(values + g.list_floats());
  std::memset(lanes, 0, sizeof(float) * g.K * RS * g.C);
  std::fill(db_part, db_part + g.K, 0.0f);
  for (int64_t n = begin; n < end; ++n) {
    const bool finite = pad_channels_last(x + n * g.C * g.hw(), g, xp);
    for (int64_t k = 0; k < g.K; ++k) {
      float sum = 0.0f;
      const int64_t count = gather_positions(dy + (n * g.K + k) * g.pq(), g, !finite, values, offsets, &sum);
      for (int64_t c0 = 0; c0 < g.C; c0 += kLanes) {
        float* lane = lanes + k * RS * g.C + c0;
        __m512 acc[RS];
#pragma GCC unroll 9
        for (int t = 0; t < RS; ++t) acc[t] = _mm512_load_ps(lane + t * g.C);
        const float* xc = xp + c0;
        for (int64_t i = 0; i < count; ++i) {
          const __m512 d = _mm512_set1_ps(values[i]);
          const float* base = xc + offsets[i];
#pragma GCC unroll 3
          for (int r = 0; r < 3; ++r)
#pragma GCC unroll 3
            for (int s = 0; s < 3; ++s)
              acc[r * 3 + s] = _mm512_fmadd_ps(d, _mm512_load_ps(base + (r * g.Wp + s) * g.C), acc[r * 3 + s]);
        }
#pragma GCC unroll 9
        for (int t = 0; t < RS; ++t) _mm512_store_ps(lane + t * g.C, acc[t]);
      }
      db_part[k] += sum;  // db: the image's sum of dy_nk, into the chunk's partial
    }
  }
  // [K][R*S][C] -> [K][C][R*S]
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t c = 0; c < g.C; ++c)
      for (int t = 0; t < RS; ++t) dw_part[(k * g.C + c) * RS + t] = lanes[(k * RS + t) * g.C + c];
}

// dx_n [C,H,W] from dy_n's nonzeros; wt is w as [K][R*S][C]; dxp a padded channels-last image.
void bwd_data_image_f32(const float* dy_n, const float* wt, const SparseGeometry& g, float* dxp, float* dx_n) {
  constexpr int RS = 9;
  float* values = dxp + g.padded_floats();
  int32_t* offsets = reinterpret_cast<int32_t*>(values + g.list_floats());
  std::memset(dxp, 0, sizeof(float) * g.Hp * g.Wp * g.C);
  for (int64_t k = 0; k < g.K; ++k) {
    const int64_t count = gather_positions(dy_n + k * g.pq(), g, false, values, offsets, nullptr);
    for (int64_t c0 = 0; c0 < g.C; c0 += kLanes) {
      __m512 wv[RS];
#pragma GCC unroll 9
      for (int t = 0; t < RS; ++t) wv[t] = _mm512_load_ps(wt + (k * RS + t) * g.C + c0);
      float* dc = dxp + c0;
      for (int64_t i = 0; i < count; ++i) {
        const __m512 d = _mm512_set1_ps(values[i]);
        float* base = dc + offsets[i];
#pragma GCC unroll 3
        for (int r = 0; r < 3; ++r)
#pragma GCC unroll 3
          for (int s = 0; s < 3; ++s) {
            float* at = base + (r * g.Wp + s) * g.C;
            _mm512_store_ps(at, _mm512_fmadd_ps(d, wv[r * 3 + s], _mm512_load_ps(at)));
          }
      }
    }
  }
  // The interior of dxp back to [C,H,W].
  const __m512i channel_stride =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(static_cast<int32_t>(g.hw())));
  for (int64_t h = 0; h < g.H; ++h)
    for (int64_t c0 = 0; c0 < g.C; c0 += kLanes) {
      const float* src = dxp + ((h + g.pad_h) * g.Wp + g.pad_w) * g.C + c0;
      float* dst = dx_n + c0 * g.hw() + h * g.W;
      for (int64_t w = 0; w < g.W; ++w) _mm512_i32scatter_ps(dst + w, channel_stride, _mm512_load_ps(src + w * g.C), 4);
    }
}

// dw and db (when asked) from the chunks' partials, summed in chunk order. Reads only the
// partials, so dw and db may share bytes with values the chunks read.
void sum_partials(const BoundNode& node, const SparseGeometry& g, const float* dw_parts, const float* db_parts) {
  float* dw = node.out[0].f32();
  float* db = node.num_outputs == 2 ? node.out[1].f32() : nullptr;
  const int64_t dw_size = g.K * g.C * g.R * g.S;
  // Elements are independent: split them freely (as conv2d.cpp does).
  parallel_chunks(dw_size, kSumChunk, [&](int64_t, int64_t begin, int64_t end) {
    std::memcpy(dw + begin, dw_parts + begin, sizeof(float) * (end - begin));
    for (int64_t part = 1; part < node.num_chunks; ++part)
      for (int64_t i = begin; i < end; ++i) dw[i] += dw_parts[part * g.weight_floats() + i];
  });
  if (db) {
    std::memcpy(db, db_parts, sizeof(float) * g.K);
    for (int64_t part = 1; part < node.num_chunks; ++part)
      for (int64_t k = 0; k < g.K; ++k) db[k] += db_parts[part * g.K + k];
  }
}
#endif

// ---- dy in its pooled form (NodeFusion::pool_source): a CONV2D_BWD_WEIGHT whose dy is made by
// a 2x2, stride-2 MAXPOOL2D_BWD (and the RELU_BWD fused into it) for this node alone. dy is then
// never written: each pooled gradient goes to its window's argmax, kept where relu's output
// there is > 0, and adds that position's R x S x C patch (C <= 16: one row of the patch is S * C
// contiguous floats, at most 3 vectors) to dw[k].
struct PooledDy {
  const float* dyp;     // [N,K,P/2,Q/2]
  const int32_t* idx;   // the same shape: h * Q + w in dy's [P,Q] plane
  const float* mask;    // relu's output [N,K,P,Q], or null
  const float* pooled;  // or, equal to it at each argmax: the forward pool's output [N,K,P/2,Q/2]
  int64_t P2, Q2;
};

bool pooled_applies(const BoundNode& node, const SparseGeometry& g) {
#if defined(__AVX512F__)
  const BoundNode& pool = *node.fusion.pool_source;
  const parity_conv2d_params& cp = node.params.conv2d;
  const parity_maxpool2d_params& pp = pool.params.maxpool2d;
  return kernels::conv2d_window(cp).plain() && cp.stride_h == 1 && cp.stride_w == 1 && g.R == 3 && g.S == 3 &&
         g.C <= kLanes && fits_int32(g) && pp.kernel_h == 2 &&
         pp.kernel_w == 2 && pp.stride_h == 2 && pp.stride_w == 2 && pp.pad_h == 0 && pp.pad_w == 0 &&
         pp.dilation_h <= 1 && pp.dilation_w <= 1 && !pp.ceil_mode && pool.in[0].dims[2] == g.P / 2 &&
         pool.in[0].dims[3] == g.Q / 2;
#else
  (void)node, (void)g;
  return false;
#endif
}

// Backward-weight scratch of the pooled form: per slot a padded image, the lanes of dw as
// [K][R][vectors of a patch row][16] and a position list; then the partials as in the sparse form.
int64_t row_vectors(const SparseGeometry& g) { return (g.S * g.C + kLanes - 1) / kLanes; }
int64_t pooled_lane_floats(const SparseGeometry& g) { return align64(g.K * g.R * row_vectors(g) * kLanes * 4) / 4; }
int64_t pooled_list_floats(const SparseGeometry& g) { return align64(((g.P / 2) * (g.Q / 2) + kLanes) * 4) / 4; }
int64_t pooled_slot_floats(const SparseGeometry& g) {
  return g.padded_floats() + pooled_lane_floats(g) + 2 * pooled_list_floats(g);
}

#if defined(__AVX512F__)
constexpr int64_t kPrefetchRows = 2;

// Pooled rows [pp0, pp1) of plane (n, k) in the pooled form: the kept gradients and their
// offsets (p * Wp + q) * C in the padded image, row-major over the pooled grid (which is dy's
// row-major order: windows do not overlap). False if some index lies outside its window.
bool gather_pooled(const PooledDy& d, int64_t plane, int64_t pp0, int64_t pp1, const SparseGeometry& g,
                   float* values, int32_t* offsets, int64_t& count, float& sum) {
  __m512 sums = _mm512_setzero_ps();
  const __m512 zero = _mm512_setzero_ps();
  const __m512i lane2 = _mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 1);
  const __m512i Q = _mm512_set1_epi32(static_cast<int32_t>(g.Q)), one = _mm512_set1_epi32(1);
  const __m512i Q1 = _mm512_add_epi32(Q, one);
  const int32_t C = static_cast<int32_t>(g.C), Wp = static_cast<int32_t>(g.Wp);
  const float* dyp = d.dyp + plane * d.P2 * d.Q2;
  const int32_t* idx = d.idx + plane * d.P2 * d.Q2;
  const float* mask = d.mask ? d.mask + plane * g.pq() : nullptr;
  const float* pooled = d.pooled ? d.pooled + plane * d.P2 * d.Q2 : nullptr;
  count = 0;
  for (int64_t pp = pp0; pp < pp1; ++pp) {
    // The gathers from relu's output wait on memory (it is the size of dy): fetch the two rows
    // of a pooled row kPrefetchRows ahead.
    if (mask && !pooled && pp + kPrefetchRows < pp1)
      for (int64_t at = 2 * (pp + kPrefetchRows) * g.Q; at < 2 * (pp + kPrefetchRows + 1) * g.Q; at += kLanes)
        _mm_prefetch(reinterpret_cast<const char*>(mask + at), _MM_HINT_T0);
    for (int64_t qq0 = 0; qq0 < d.Q2; qq0 += kLanes) {
      const __mmask16 tail = tail_mask(d.Q2 - qq0);
      const __m512i at = _mm512_maskz_loadu_epi32(tail, idx + pp * d.Q2 + qq0);
      const __m512 v = _mm512_maskz_loadu_ps(tail, dyp + pp * d.Q2 + qq0);
      // the window's top-left element in dy's plane, and where the index lies from it
      const __m512i q_left = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(2 * qq0)), lane2);
      const __m512i origin = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(2 * pp * g.Q)), q_left);
      const __m512i dh = _mm512_sub_epi32(at, origin);
      const __mmask16 top = _mm512_cmpeq_epi32_mask(dh, _mm512_setzero_si512()) | _mm512_cmpeq_epi32_mask(dh, one);
      const __mmask16 below = _mm512_cmpeq_epi32_mask(dh, Q) | _mm512_cmpeq_epi32_mask(dh, Q1);
      if (tail & ~(top | below)) return false;
      __mmask16 keep = _mm512_mask_cmp_ps_mask(tail, v, zero, _CMP_NEQ_UQ);
      if (pooled) keep &= _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(tail, pooled + pp * d.Q2 + qq0), zero, _CMP_GT_OQ);
      else if (mask) keep &= _mm512_cmp_ps_mask(_mm512_mask_i32gather_ps(zero, keep, at, mask, 4), zero, _CMP_GT_OQ);
      // p = 2 pp + (below), q = q_left + (dh - (below) Q); offset = (p Wp + q) C
      const __m512i row = _mm512_mask_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(2 * pp)), below,
                                                _mm512_set1_epi32(static_cast<int32_t>(2 * pp)), one);
      const __m512i q = _mm512_add_epi32(q_left, _mm512_mask_sub_epi32(dh, below, dh, Q));
      const __m512i offset = _mm512_mullo_epi32(
          _mm512_add_epi32(_mm512_mullo_epi32(row, _mm512_set1_epi32(Wp)), q), _mm512_set1_epi32(C));
      sums = _mm512_add_ps(sums, _mm512_maskz_mov_ps(keep, v));
      append(keep, v, offset, values, offsets, count);
    }
  }
  sum = lane_sum(sums);
  return true;
}

// One chunk of images in the pooled form; false (with nothing of dw or db written) if it cannot
// be used.
template <int V>
bool pooled_chunk_f32(const float* x, const PooledDy& d, int64_t begin, int64_t end, const SparseGeometry& g,
                      float* slot, float* dw_part, float* db_part) {
  float* xp = slot;
  float* lanes = xp + g.padded_floats();  // [K][R][V][16]
  float* values = lanes + pooled_lane_floats(g);
  int32_t* offsets = reinterpret_cast<int32_t*>(values + pooled_list_floats(g));
  std::memset(lanes, 0, sizeof(float) * g.K * 3 * V * kLanes);
  std::fill(db_part, db_part + g.K, 0.0f);
  __mmask16 row_mask[V];
  for (int v = 0; v < V; ++v) row_mask[v] = tail_mask(g.S * g.C - v * kLanes);
  const int64_t row_stride = g.Wp * g.C;
  for (int64_t n = begin; n < end; ++n) {
    if (!pad_channels_last(x + n * g.C * g.hw(), g, xp)) return false;  // 0 * x may be NaN
    for (int64_t k = 0; k < g.K; ++k) {
      int64_t count = 0;
      float sum = 0.0f;
      if (!gather_pooled(d, n * g.K + k, 0, d.P2, g, values, offsets, count, sum)) return false;
      // Position i adds into accumulator set i % kSets (independent FMA chains: with V = 1 one
      // set would wait on FMA latency); the sets are then added in a fixed order.
      constexpr int kSets = V == 1 ? 4 : V == 2 ? 2 : 1;
      __m512 acc[kSets][3 * V];
#pragma GCC unroll 4
      for (int set = 0; set < kSets; ++set)
#pragma GCC unroll 9
        for (int t = 0; t < 3 * V; ++t) acc[set][t] = _mm512_setzero_ps();
      auto add = [&](int set, int64_t i) {
        const __m512 dv = _mm512_set1_ps(values[i]);
        const float* base = xp + offsets[i];
#pragma GCC unroll 3
        for (int r = 0; r < 3; ++r)
#pragma GCC unroll 3
          for (int v = 0; v < V; ++v)
            acc[set][r * V + v] = _mm512_fmadd_ps(
                dv, _mm512_maskz_loadu_ps(row_mask[v], base + r * row_stride + v * kLanes), acc[set][r * V + v]);
      };
      int64_t i = 0;
      for (; i + kSets <= count; i += kSets)
#pragma GCC unroll 4
        for (int set = 0; set < kSets; ++set) add(set, i + set);
      for (int set = 0; i < count; ++i, ++set) add(set, i);
      float* lane = lanes + k * 3 * V * kLanes;
#pragma GCC unroll 9
      for (int t = 0; t < 3 * V; ++t) {
        __m512 sum = acc[0][t];
#pragma GCC unroll 4
        for (int set = 1; set < kSets; ++set) sum = _mm512_add_ps(sum, acc[set][t]);
        _mm512_store_ps(lane + t * kLanes, _mm512_add_ps(_mm512_load_ps(lane + t * kLanes), sum));
      }
      db_part[k] += sum;
    }
  }
  // lanes [K][R][S*C] -> dw_part [K][C][R][S]
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t r = 0; r < 3; ++r)
        for (int64_t s = 0; s < 3; ++s)
          dw_part[((k * g.C + c) * 3 + r) * 3 + s] = lanes[(k * 3 + r) * V * kLanes + s * g.C + c];
  return true;
}
#endif

}  // namespace

bool pooled_dy_applies(const BoundNode& node) {
  return node.fusion.pool_source && pooled_applies(node, node_geometry(node));
}

int64_t prepare_pooled_dy_bwd_weight(const BoundNode& node) {
  const SparseGeometry g = node_geometry(node);
  return (node.slots * pooled_slot_floats(g) + node.num_chunks * g.weight_floats() +
          align64(node.num_chunks * g.K * 4) / 4) *
         4;
}

bool conv2d_bwd_weight_pooled_dy_f32(const BoundNode& node) {
#if defined(__AVX512F__)
  const SparseGeometry g = node_geometry(node);
  const BoundNode& pool = *node.fusion.pool_source;
  const PooledDy d{pool.in[0].f32(), pool.in[1].i32(), pool.fusion.relu_mask.data ? pool.fusion.relu_mask.f32() : nullptr,
                   node.fusion.pooled_relu.data ? node.fusion.pooled_relu.f32() : nullptr, pool.in[0].dims[2], pool.in[0].dims[3]};
  const float* x = node.in[0].f32();
  float* workspace = reinterpret_cast<float*>(node.workspace);
  float* dw_parts = workspace + node.slots * pooled_slot_floats(g);
  float* db_parts = dw_parts + node.num_chunks * g.weight_floats();
  std::atomic<bool> unusable{false};
  const int64_t V = row_vectors(g);
  parallel_chunks(g.N, node.chunk, [&](int64_t part, int64_t begin, int64_t end) {
    float* slot = workspace + worker_slot(node.slots) * pooled_slot_floats(g);
    float* dw_part = dw_parts + part * g.weight_floats();
    float* db_part = db_parts + part * g.K;
    const bool ok = V == 1   ? pooled_chunk_f32<1>(x, d, begin, end, g, slot, dw_part, db_part)
                    : V == 2 ? pooled_chunk_f32<2>(x, d, begin, end, g, slot, dw_part, db_part)
                             : pooled_chunk_f32<3>(x, d, begin, end, g, slot, dw_part, db_part);
    if (!ok) unusable = true;
  });
  if (unusable) return false;
  sum_partials(node, g, dw_parts, db_parts);
  return true;
#else
  (void)node;
  return false;
#endif
}

bool sparse_dy_applies(const BoundNode& node) {
  return node.fusion.sparse_dy && applies(node_geometry(node), node.params.conv2d);
}

int64_t prepare_sparse_dy_bwd_weight(const BoundNode& node) {
  const SparseGeometry g = node_geometry(node);
  return (node.slots * bwd_weight_slot_floats(g) + node.num_chunks * g.weight_floats() +
          align64(node.num_chunks * g.K * 4) / 4) *
         4;
}

int64_t prepare_sparse_dy_bwd_data(const BoundNode& node) {
  const SparseGeometry g = node_geometry(node);
  return (g.weight_floats() + node.slots * bwd_data_slot_floats(g)) * 4;
}

void conv2d_bwd_weight_sparse_dy_f32(const BoundNode& node) {
#if defined(__AVX512F__)
  const SparseGeometry g = node_geometry(node);
  const float* x = node.in[0].f32();
  const float* dy = node.in[1].f32();
  float* workspace = reinterpret_cast<float*>(node.workspace);
  float* dw_parts = workspace + node.slots * bwd_weight_slot_floats(g);
  float* db_parts = dw_parts + node.num_chunks * g.weight_floats();
  parallel_chunks(g.N, node.chunk, [&](int64_t part, int64_t begin, int64_t end) {
    float* slot = workspace + worker_slot(node.slots) * bwd_weight_slot_floats(g);
    bwd_weight_chunk_f32(x, dy, begin, end, g, slot, dw_parts + part * g.weight_floats(), db_parts + part * g.K);
  });
  sum_partials(node, g, dw_parts, db_parts);
#else
  (void)node;
#endif
}

bool conv2d_bwd_data_sparse_dy_f32(const BoundNode& node) {
#if defined(__AVX512F__)
  const SparseGeometry g = node_geometry(node);
  const float* dy = node.in[0].f32();
  const float* w = node.in[1].f32();
  float* dx = node.out[0].f32();
  const int64_t crs = g.C * g.R * g.S, rs = g.R * g.S;
  for (int64_t i = 0; i < g.K * crs; ++i)
    if (!std::isfinite(w[i])) return false;  // 0 * w is NaN: the dense kernel keeps those terms
  float* wt = reinterpret_cast<float*>(node.workspace);  // [K][R*S][C]
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t t = 0; t < rs; ++t) wt[(k * rs + t) * g.C + c] = w[k * crs + c * rs + t];
  parallel_chunks(g.N, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    float* dxp = wt + g.weight_floats() + worker_slot(node.slots) * bwd_data_slot_floats(g);
    for (int64_t n = begin; n < end; ++n)
      bwd_data_image_f32(dy + n * g.K * g.pq(), wt, g, dxp, dx + n * g.C * g.hw());
  });
  return true;
#else
  (void)node;
  return false;
#endif
}

}  // namespace cpu
}  // namespace parity
