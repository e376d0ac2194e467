// backends/cpu/pool.cpp — max-pooling on the cpu backend, NCHW float32: forward (value and
// int32 index of the first maximum, h*W+w in its plane; -1 and 0 for a window holding no input
// element) and backward (scatter-add of dy to that index, in output order; for 2x2 stride-2
// windows, each dx element written once, 16 windows at a time) side by side. Windows inside the
// input with no dilation (ABI 4's) take the unrolled and vector forms; padded, dilated and
// ceil_mode windows the general one. Planes are independent, so they are split freely into
// fixed chunks.
// bf16 values (issue #14) in 2x2 stride-2 windows on a CPU with AVX-512BW (runs_bf16_pool) take
// the 2x2 vector forms below with bf16 loads and stores (bf16_simd.h): each value widened
// exactly, the f32 code's comparisons and sums, stored back exactly (every result is an input
// or zero; a NaN quieted, as rounding does), so the bits are those of the widened f32 kernel
// (half_nodes.h), which every other bf16 and f16 window takes.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "backends/cpu/bf16_simd.h"
#include "backends/cpu/cast.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half_nodes.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/half.h"
#include "ops/kernels/pool.h"
#include "parity/error.h"

namespace parity {
namespace cpu {
namespace {

// Input elements per task, at least: keeps small planes from becoming one task each.
constexpr int64_t kMinElementsPerChunk = 8192;
constexpr int64_t kMaxChunks = 1024;

struct PoolGeometry {
  int64_t planes, H, W, P, Q;  // planes = N*C
  kernels::PoolWindow window;
  bool plain;  // every window inside the input, no dilation (kernels::pool_is_plain)
};

PoolGeometry geometry(const BoundValue& x, const parity_maxpool2d_params& pp) {
  const kernels::PoolWindow win = kernels::pool_window(pp);
  PoolGeometry g{x.dims[0] * x.dims[1], x.dims[2], x.dims[3], kernels::pool_output_size(x.dims[2], win.h),
                 kernels::pool_output_size(x.dims[3], win.w), win, false};
  g.plain = kernels::pool_is_plain(g.H, g.W, win, g.P, g.Q);
  return g;
}

// Checks x (or dx) against the params and y, idx (or dy, idx) against the shape they give.
PoolGeometry check_pool(BoundNode& node, const BoundValue& x, const char* x_role, const BoundValue& y,
                        const char* y_role, const BoundValue& idx) {
  const parity_maxpool2d_params& pp = node.params.maxpool2d;
  const kernels::PoolWindow win = kernels::pool_window(pp);
  if (pp.kernel_h <= 0 || pp.kernel_w <= 0)
    fail(node, "kernel must be > 0, got " + std::to_string(pp.kernel_h) + "x" + std::to_string(pp.kernel_w));
  if (pp.stride_h <= 0 || pp.stride_w <= 0)
    fail(node, "stride must be > 0, got " + std::to_string(pp.stride_h) + "x" + std::to_string(pp.stride_w));
  if (pp.pad_h < 0 || pp.pad_w < 0)
    fail(node, "padding must be >= 0, got " + std::to_string(pp.pad_h) + "x" + std::to_string(pp.pad_w));
  if (win.h.dilation < 1 || win.w.dilation < 1)
    fail(node, "dilation must be >= 1 (0 reads as 1), got " + std::to_string(pp.dilation_h) + "x" +
                   std::to_string(pp.dilation_w));
  const parity_dtype dtype = runs_bf16_pool(node) ? PARITY_BF16 : PARITY_F32;
  expect_value(node, x, x_role, dtype, 4);
  if (x.dims[2] + 2 * win.h.pad < kernels::pool_span(win.h) || x.dims[3] + 2 * win.w.pad < kernels::pool_span(win.w))
    fail(node, std::string(x_role) + " " + x.shape_str() + " padded by " + std::to_string(pp.pad_h) + "x" +
                   std::to_string(pp.pad_w) + " is smaller than the (dilated) window " +
                   std::to_string(kernels::pool_span(win.h)) + "x" + std::to_string(kernels::pool_span(win.w)));
  if (x.dims[2] * x.dims[3] > std::numeric_limits<int32_t>::max())
    fail(node, "a plane of " + std::string(x_role) + " " + x.shape_str() + " has more than 2^31-1 elements, " +
                   "which an int32 index cannot address");
  const PoolGeometry g = geometry(x, pp);
  const int64_t dims[4] = {x.dims[0], x.dims[1], g.P, g.Q};
  expect_value(node, y, y_role, dtype, 4);
  expect_dims(node, y, y_role, dims, 4, "[N,C,P,Q], P and Q pooled from H and W (parity/plugin.h)");
  expect_value(node, idx, "idx", PARITY_I32, 4);
  expect_dims(node, idx, "idx", dims, 4, "[N,C,P,Q], the shape of the pooled output");
  node.chunk = fixed_chunk_size(g.planes, (kMinElementsPerChunk + g.H * g.W - 1) / (g.H * g.W), kMaxChunks);
  node.num_chunks = chunk_count(g.planes, node.chunk);
  return g;
}

}  // namespace

bool runs_bf16_pool(const BoundNode& node) {
  if (node.op != PARITY_OP_MAXPOOL2D && node.op != PARITY_OP_MAXPOOL2D_BWD) return false;
  if (node.num_inputs < 1 || node.num_outputs < 1 || node.in[0].dtype != PARITY_BF16 ||
      node.out[0].dtype != PARITY_BF16 || cast_route() != CastRoute::f16c_avx512)
    return false;
  const parity_maxpool2d_params& pp = node.params.maxpool2d;
  return pp.kernel_h == 2 && pp.kernel_w == 2 && pp.stride_h == 2 && pp.stride_w == 2 && pp.pad_h == 0 &&
         pp.pad_w == 0 && pp.dilation_h <= 1 && pp.dilation_w <= 1 && !pp.ceil_mode;
}

int64_t prepare_maxpool2d(BoundNode& node) {
  expect_arity(node, 1, 1, 2, 2);
  check_pool(node, node.in[0], "x", node.out[0], "y", node.out[1]);
  return 0;
}

namespace {

// Planes [begin, end) of the forward, plain windows. KH, KW > 0 fix the window at compile time, so the window
// scan unrolls (5x faster for the 2x2 windows of the seed CNN); 0 reads it from the params.
// Planes [begin, end) in the general form: padding, dilation, ceil_mode's clipped windows.
void maxpool2d_padded_planes_nchw_f32(const float* x, float* y, int32_t* idx, int64_t begin, int64_t end,
                                      PoolGeometry g) {
  for (int64_t plane = begin; plane < end; ++plane)
    for (int64_t p = 0; p < g.P; ++p)
      for (int64_t q = 0; q < g.Q; ++q)
        kernels::maxpool2d_padded_window_nchw_f32(x + plane * g.H * g.W, g.H, g.W, p, q, g.window,
                                                  &y[(plane * g.P + p) * g.Q + q], &idx[(plane * g.P + p) * g.Q + q]);
}

template <int64_t KH, int64_t KW>
void maxpool2d_planes_nchw_f32(const float* x, float* y, int32_t* idx, int64_t begin, int64_t end, PoolGeometry g,
                               parity_maxpool2d_params pp) {
  const int64_t kh = KH > 0 ? KH : pp.kernel_h, kw = KW > 0 ? KW : pp.kernel_w;
  const int64_t sh = pp.stride_h, sw = pp.stride_w;
  for (int64_t plane = begin; plane < end; ++plane) {
    const float* x_plane = x + plane * g.H * g.W;
    float* y_plane = y + plane * g.P * g.Q;
    int32_t* idx_plane = idx + plane * g.P * g.Q;
    for (int64_t p = 0; p < g.P; ++p)
      for (int64_t q = 0; q < g.Q; ++q)
        kernels::maxpool2d_window_nchw_f32(x_plane, g.W, p * sh, q * sw, kh, kw, &y_plane[p * g.Q + q],
                                           &idx_plane[p * g.Q + q]);
  }
}

#if defined(__AVX512F__)
// The 2x2, stride-2 window (both seed CNN pools) 16 outputs at a time, output rows
// [p_begin, p_end) of planes [begin, end): the two input rows are split into even and odd
// columns, and the window's four values are taken in row-major order with the rule of
// kernels::maxpool2d_replaces (greater, or NaN), so values and indices equal the scalar
// kernel's. Whole vectors use plain loads: masked ones stall on the AMD Zen cores measured.
void maxpool2x2_planes_nchw_f32(const float* x, float* y, int32_t* idx, int64_t begin, int64_t end, int64_t p_begin,
                                int64_t p_end, PoolGeometry g) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i lane2 = _mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 1);
  auto load = [](const float* at, __mmask16 mask) {
    return mask == 0xFFFF ? _mm512_loadu_ps(at) : _mm512_maskz_loadu_ps(mask, at);
  };
  for (int64_t plane = begin; plane < end; ++plane) {
    const float* x_plane = x + plane * g.H * g.W;
    float* y_plane = y + plane * g.P * g.Q;
    int32_t* idx_plane = idx + plane * g.P * g.Q;
    for (int64_t p = p_begin; p < p_end; ++p) {
      const float* r0 = x_plane + 2 * p * g.W;
      const float* r1 = r0 + g.W;
      for (int64_t q0 = 0; q0 < g.Q; q0 += 16) {
        const int64_t n = std::min<int64_t>(16, g.Q - q0);
        const __mmask16 out_mask = n == 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
        // 2n input columns starting at 2*q0, in two halves of 16
        const __mmask16 lo_mask = 2 * n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (2 * n)) - 1u);
        const __mmask16 hi_mask = 2 * n >= 32 ? __mmask16(0xFFFF) : 2 * n > 16 ? __mmask16((1u << (2 * n - 16)) - 1u) : __mmask16(0);
        const __m512 a_lo = load(r0 + 2 * q0, lo_mask), a_hi = load(r0 + 2 * q0 + 16, hi_mask);
        const __m512 b_lo = load(r1 + 2 * q0, lo_mask), b_hi = load(r1 + 2 * q0 + 16, hi_mask);
        const __m512 v00 = _mm512_permutex2var_ps(a_lo, even, a_hi), v01 = _mm512_permutex2var_ps(a_lo, odd, a_hi);
        const __m512 v10 = _mm512_permutex2var_ps(b_lo, even, b_hi), v11 = _mm512_permutex2var_ps(b_lo, odd, b_hi);
        const __m512i base = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(2 * p * g.W + 2 * q0)), lane2);
        __m512 best = v00;
        __m512i at = base;
        auto take = [&](__m512 v, int32_t offset) {
          const __mmask16 m = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
          best = _mm512_mask_mov_ps(best, m, v);
          at = _mm512_mask_add_epi32(at, m, base, _mm512_set1_epi32(offset));
        };
        take(v01, 1);
        take(v10, static_cast<int32_t>(g.W));
        take(v11, static_cast<int32_t>(g.W + 1));
        if (n == 16) {
          _mm512_storeu_ps(y_plane + p * g.Q + q0, best);
          _mm512_storeu_si512(idx_plane + p * g.Q + q0, at);
        } else {
          _mm512_mask_storeu_ps(y_plane + p * g.Q + q0, out_mask, best);
          _mm512_mask_storeu_epi32(idx_plane + p * g.Q + q0, out_mask, at);
        }
      }
    }
  }
}
#endif

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own AVX-512 intrinsics here too (cast.cpp); silenced for these kernels.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// maxpool2x2_planes_nchw_f32 on bf16 x and y: the same lanes, comparisons and indices.
// (Output rows [p_begin, p_end) of each plane.)
PARITY_BF16_SIMD_TARGET void maxpool2x2_planes_nchw_bf16(const uint16_t* x, uint16_t* y, int32_t* idx, int64_t begin,
                                                         int64_t end, int64_t p_begin, int64_t p_end, PoolGeometry g) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i lane2 = _mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 1);
  for (int64_t plane = begin; plane < end; ++plane) {
    const uint16_t* x_plane = x + plane * g.H * g.W;
    uint16_t* y_plane = y + plane * g.P * g.Q;
    int32_t* idx_plane = idx + plane * g.P * g.Q;
    for (int64_t p = p_begin; p < p_end; ++p) {
      const uint16_t* r0 = x_plane + 2 * p * g.W;
      const uint16_t* r1 = r0 + g.W;
      for (int64_t q0 = 0; q0 < g.Q; q0 += 16) {
        const int64_t n = std::min<int64_t>(16, g.Q - q0);
        const __mmask16 out_mask = lanes16(n), lo_mask = lanes16(2 * n), hi_mask = lanes16(std::max<int64_t>(0, 2 * n - 16));
        const __m512 a_lo = widen_bf16x16_fast(r0 + 2 * q0, lo_mask), a_hi = widen_bf16x16_fast(r0 + 2 * q0 + 16, hi_mask);
        const __m512 b_lo = widen_bf16x16_fast(r1 + 2 * q0, lo_mask), b_hi = widen_bf16x16_fast(r1 + 2 * q0 + 16, hi_mask);
        const __m512 v00 = _mm512_permutex2var_ps(a_lo, even, a_hi), v01 = _mm512_permutex2var_ps(a_lo, odd, a_hi);
        const __m512 v10 = _mm512_permutex2var_ps(b_lo, even, b_hi), v11 = _mm512_permutex2var_ps(b_lo, odd, b_hi);
        const __m512i base = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(2 * p * g.W + 2 * q0)), lane2);
        __m512 best = v00;
        __m512i at = base;
        auto take = [&](__m512 v, int32_t offset) {
          const __mmask16 m = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
          best = _mm512_mask_mov_ps(best, m, v);
          at = _mm512_mask_add_epi32(at, m, base, _mm512_set1_epi32(offset));
        };
        take(v01, 1);
        take(v10, static_cast<int32_t>(g.W));
        take(v11, static_cast<int32_t>(g.W + 1));
        store_exact_bf16x16(y_plane + p * g.Q + q0, out_mask, best);
        _mm512_mask_storeu_epi32(idx_plane + p * g.Q + q0, out_mask, at);
      }
    }
  }
}

// maxpool2x2_bwd_plane_f32 on bf16 dy, mask and dx (0 + dy, masked, rounded once); false when
// some idx lies outside its window, as there. With pooled_mask (the forward pool's output, when
// mask is that pool's input: the mask's value at each window's argmax) dy is masked by it
// instead, at a quarter of the reads: the same bits, since only the argmax passes a nonzero.
PARITY_BF16_SIMD_TARGET bool maxpool2x2_bwd_plane_bf16(const uint16_t* dy, const int32_t* idx, const uint16_t* mask,
                                                       const uint16_t* pooled_mask, uint16_t* dx, PoolGeometry g) {
  const __m512i lane2 = _mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 1);
  const __m512i lo_pick = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_pick = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512 zero = _mm512_setzero_ps();
  const __m512i w = _mm512_set1_epi32(static_cast<int32_t>(g.W));
  const __m512i one = _mm512_set1_epi32(1);
  __mmask16 missed = 0;
  for (int64_t p = 0; p < g.P; ++p) {
    uint16_t* r0 = dx + 2 * p * g.W;
    uint16_t* r1 = r0 + g.W;
    for (int64_t q0 = 0; q0 < g.Q; q0 += 16) {
      const int64_t n = std::min<int64_t>(16, g.Q - q0);
      const __mmask16 m = lanes16(n), lo_mask = lanes16(2 * n), hi_mask = lanes16(std::max<int64_t>(0, 2 * n - 16));
      const __m512i iv = n == 16 ? _mm512_loadu_si512(idx + p * g.Q + q0) : _mm512_maskz_loadu_epi32(m, idx + p * g.Q + q0);
      __m512 dv = widen_bf16x16_fast(dy + p * g.Q + q0, m);
      if (pooled_mask)  // relu_bwd_f32(y, dx) = y > 0 ? dx : 0, y at the argmax
        dv = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(widen_bf16x16_fast(pooled_mask + p * g.Q + q0, m), zero, _CMP_GT_OQ), dv);
      const __m512i base = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(2 * p * g.W + 2 * q0)), lane2);
      const __m512i below = _mm512_add_epi32(base, w);
      const __mmask16 h00 = _mm512_cmpeq_epi32_mask(iv, base), h01 = _mm512_cmpeq_epi32_mask(iv, _mm512_add_epi32(base, one));
      const __mmask16 h10 = _mm512_cmpeq_epi32_mask(iv, below), h11 = _mm512_cmpeq_epi32_mask(iv, _mm512_add_epi32(below, one));
      missed |= m & ~(h00 | h01 | h10 | h11);
      const __m512 d00 = _mm512_add_ps(zero, _mm512_maskz_mov_ps(h00, dv));
      const __m512 d01 = _mm512_add_ps(zero, _mm512_maskz_mov_ps(h01, dv));
      const __m512 d10 = _mm512_add_ps(zero, _mm512_maskz_mov_ps(h10, dv));
      const __m512 d11 = _mm512_add_ps(zero, _mm512_maskz_mov_ps(h11, dv));
      __m512 a_lo = _mm512_permutex2var_ps(d00, lo_pick, d01), a_hi = _mm512_permutex2var_ps(d00, hi_pick, d01);
      __m512 b_lo = _mm512_permutex2var_ps(d10, lo_pick, d11), b_hi = _mm512_permutex2var_ps(d10, hi_pick, d11);
      if (mask && !pooled_mask) {  // relu_bwd_f32(y, dx) = y > 0 ? dx : 0
        const uint16_t* y0 = mask + 2 * p * g.W + 2 * q0;
        const uint16_t* y1 = y0 + g.W;
        a_lo = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(widen_bf16x16_fast(y0, lo_mask), zero, _CMP_GT_OQ), a_lo);
        a_hi = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(widen_bf16x16_fast(y0 + 16, hi_mask), zero, _CMP_GT_OQ), a_hi);
        b_lo = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(widen_bf16x16_fast(y1, lo_mask), zero, _CMP_GT_OQ), b_lo);
        b_hi = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(widen_bf16x16_fast(y1 + 16, hi_mask), zero, _CMP_GT_OQ), b_hi);
      }
      store_exact_bf16x16_fast(r0 + 2 * q0, lo_mask, a_lo);
      store_exact_bf16x16_fast(r0 + 2 * q0 + 16, hi_mask, a_hi);
      store_exact_bf16x16_fast(r1 + 2 * q0, lo_mask, b_lo);
      store_exact_bf16x16_fast(r1 + 2 * q0 + 16, hi_mask, b_hi);
    }
    if (g.W > 2 * g.Q) r0[g.W - 1] = r1[g.W - 1] = 0;  // an odd width's last column: no window (+0)
  }
  if (g.H > 2 * g.P) std::memset(dx + (g.H - 1) * g.W, 0, sizeof(uint16_t) * g.W);
  return missed == 0;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// The general backward plane on bf16 values (a plane whose idx left its window): dy widened and
// scattered into f32 scratch in output order, masked, rounded once — the widened kernel's sums.
void maxpool2d_bwd_plane_bf16(const BoundNode& node, const uint16_t* dy, const int32_t* idx, const uint16_t* mask,
                              uint16_t* dx, float* scratch, int64_t plane_size, int64_t outputs) {
  std::fill_n(scratch, plane_size, 0.0f);
  for (int64_t i = 0; i < outputs; ++i) {
    const int32_t at = idx[i];
    if (at == -1) continue;
    if (at < 0 || at >= plane_size)
      throw Error(ErrorKind::data, "cpu: maxpool2d_bwd '" + node.name + "': idx " + std::to_string(at) +
                                       " is outside its plane of " + std::to_string(plane_size) +
                                       " elements and not -1 (it must come from the forward maxpool2d)");
    scratch[at] += kernels::bf16_bits_to_float(dy[i]);
  }
  for (int64_t i = 0; i < plane_size; ++i) {
    const float v = mask ? kernels::relu_bwd_f32(kernels::bf16_bits_to_float(mask[i]), scratch[i]) : scratch[i];
    dx[i] = kernels::float_to_bf16_bits(v);
  }
}

}  // namespace

void maxpool2d_planes_bf16(const BoundNode& pool, int64_t begin, int64_t end, int64_t rows_begin, int64_t rows_end) {
  const PoolGeometry g = geometry(pool.in[0], pool.params.maxpool2d);
  maxpool2x2_planes_nchw_bf16(static_cast<const uint16_t*>(pool.in[0].data), static_cast<uint16_t*>(pool.out[0].data),
                              pool.out[1].i32(), begin, end, std::min(rows_begin, g.P), std::min(rows_end, g.P), g);
}

bool runs_maxpool2x2_f32(const BoundNode& node) {
#if defined(__AVX512F__)
  if (node.op != PARITY_OP_MAXPOOL2D || node.num_inputs != 1 || node.num_outputs != 2 ||
      node.in[0].dtype != PARITY_F32 || node.out[0].dtype != PARITY_F32)
    return false;
  const parity_maxpool2d_params& pp = node.params.maxpool2d;
  return geometry(node.in[0], pp).plain && pp.kernel_h == 2 && pp.kernel_w == 2 && pp.stride_h == 2 &&
         pp.stride_w == 2;
#else
  (void)node;
  return false;
#endif
}

void maxpool2x2_rows_f32(const BoundNode& pool, int64_t begin, int64_t end, int64_t rows_begin, int64_t rows_end) {
#if defined(__AVX512F__)
  const PoolGeometry g = geometry(pool.in[0], pool.params.maxpool2d);
  maxpool2x2_planes_nchw_f32(pool.in[0].f32(), pool.out[0].f32(), pool.out[1].i32(), begin, end,
                             std::min(rows_begin, g.P), std::min(rows_end, g.P), g);
#else
  (void)pool, (void)begin, (void)end, (void)rows_begin, (void)rows_end;
#endif
}

void run_maxpool2d(const BoundNode& node) {
  const parity_maxpool2d_params pp = node.params.maxpool2d;
  const PoolGeometry g = geometry(node.in[0], pp);
  if (runs_bf16_pool(node)) {
    parallel_chunks(g.planes, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
      maxpool2d_planes_bf16(node, begin, end, 0, g.P);
    });
    return;
  }
  const float* x = node.in[0].f32();
  float* y = node.out[0].f32();
  int32_t* idx = node.out[1].i32();
  parallel_chunks(g.planes, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    if (!g.plain)
      maxpool2d_padded_planes_nchw_f32(x, y, idx, begin, end, g);
    else
#if defined(__AVX512F__)
    if (pp.kernel_h == 2 && pp.kernel_w == 2 && pp.stride_h == 2 && pp.stride_w == 2)
      maxpool2x2_planes_nchw_f32(x, y, idx, begin, end, 0, g.P, g);
    else
#endif
    if (pp.kernel_h == 2 && pp.kernel_w == 2)
      maxpool2d_planes_nchw_f32<2, 2>(x, y, idx, begin, end, g, pp);
    else if (pp.kernel_h == 3 && pp.kernel_w == 3)
      maxpool2d_planes_nchw_f32<3, 3>(x, y, idx, begin, end, g, pp);
    else
      maxpool2d_planes_nchw_f32<0, 0>(x, y, idx, begin, end, g, pp);
  });
}

int64_t prepare_maxpool2d_bwd(BoundNode& node) {
  expect_arity(node, 2, 2, 1, 1);
  const PoolGeometry g = check_pool(node, node.out[0], "dx", node.in[0], "dy", node.in[1]);
  // bf16: per worker slot an f32 plane for the general form
  return runs_bf16_pool(node) ? node.slots * align64(g.H * g.W * int64_t{sizeof(float)}) : 0;
}

namespace {

// One plane of the backward, any window: dx = 0, then dy scattered to idx; then the fused
// RELU_BWD (NodeFusion::relu_mask) dx = y > 0 ? dx : 0 while the plane is in cache.
void maxpool2d_bwd_plane_f32(const BoundNode& node, const float* dy, const int32_t* idx, const float* mask,
                             float* dx, int64_t plane_size, int64_t outputs) {
  std::memset(dx, 0, sizeof(float) * plane_size);
  // Overlapping windows add into one element in output order: a fixed order.
  for (int64_t i = 0; i < outputs; ++i) {
    const int32_t at = idx[i];
    if (at == -1) continue;  // a window with no input element: its gradient goes nowhere
    if (at < 0 || at >= plane_size)
      throw Error(ErrorKind::data, "cpu: maxpool2d_bwd '" + node.name + "': idx " + std::to_string(at) +
                                       " is outside its plane of " + std::to_string(plane_size) +
                                       " elements and not -1 (it must come from the forward maxpool2d)");
    dx[at] += dy[i];
  }
  if (mask)
    for (int64_t i = 0; i < plane_size; ++i) dx[i] = kernels::relu_bwd_f32(mask[i], dx[i]);
}

#if defined(__AVX512F__)
// The 2x2, stride-2 window 16 outputs at a time, writing every dx element once: each of the
// window's four positions takes dy where idx points at it (0 + dy, as the scatter's 0 += dy),
// else 0; even and odd columns are interleaved back into the two rows, then relu-masked.
// Returns false if some idx lies outside its window: the general plane routine then rewrites
// the whole plane (or reports the idx).
bool maxpool2x2_bwd_plane_f32(const float* dy, const int32_t* idx, const float* mask, float* dx, PoolGeometry g) {
  const __m512i lane2 = _mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 1);
  const __m512i lo_pick = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_pick = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512 zero = _mm512_setzero_ps();
  const __m512i w = _mm512_set1_epi32(static_cast<int32_t>(g.W));
  const __m512i one = _mm512_set1_epi32(1);
  __mmask16 missed = 0;  // lanes whose idx hit none of its window's four positions
  for (int64_t p = 0; p < g.P; ++p) {
    float* r0 = dx + 2 * p * g.W;
    float* r1 = r0 + g.W;
    for (int64_t q0 = 0; q0 < g.Q; q0 += 16) {
      const int64_t n = std::min<int64_t>(16, g.Q - q0);
      const __mmask16 m = n == 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
      const __mmask16 lo_mask = 2 * n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (2 * n)) - 1u);
      const __mmask16 hi_mask = 2 * n > 16 ? __mmask16((1u << (2 * n - 16)) - 1u) : __mmask16(0);
      const __m512i iv = _mm512_maskz_loadu_epi32(m, idx + p * g.Q + q0);
      const __m512 dv = _mm512_maskz_loadu_ps(m, dy + p * g.Q + q0);
      const __m512i base = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(2 * p * g.W + 2 * q0)), lane2);
      const __m512i below = _mm512_add_epi32(base, w);
      const __mmask16 h00 = _mm512_cmpeq_epi32_mask(iv, base), h01 = _mm512_cmpeq_epi32_mask(iv, _mm512_add_epi32(base, one));
      const __mmask16 h10 = _mm512_cmpeq_epi32_mask(iv, below), h11 = _mm512_cmpeq_epi32_mask(iv, _mm512_add_epi32(below, one));
      missed |= m & ~(h00 | h01 | h10 | h11);
      const __m512 d00 = _mm512_add_ps(zero, _mm512_maskz_mov_ps(h00, dv));
      const __m512 d01 = _mm512_add_ps(zero, _mm512_maskz_mov_ps(h01, dv));
      const __m512 d10 = _mm512_add_ps(zero, _mm512_maskz_mov_ps(h10, dv));
      const __m512 d11 = _mm512_add_ps(zero, _mm512_maskz_mov_ps(h11, dv));
      __m512 a_lo = _mm512_permutex2var_ps(d00, lo_pick, d01), a_hi = _mm512_permutex2var_ps(d00, hi_pick, d01);
      __m512 b_lo = _mm512_permutex2var_ps(d10, lo_pick, d11), b_hi = _mm512_permutex2var_ps(d10, hi_pick, d11);
      if (mask) {
        // relu_bwd_f32(y, dx) = y > 0 ? dx : 0
        const float* y0 = mask + 2 * p * g.W + 2 * q0;
        const float* y1 = y0 + g.W;
        a_lo = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(lo_mask, y0), zero, _CMP_GT_OQ), a_lo);
        a_hi = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(hi_mask, y0 + 16), zero, _CMP_GT_OQ), a_hi);
        b_lo = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(lo_mask, y1), zero, _CMP_GT_OQ), b_lo);
        b_hi = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(hi_mask, y1 + 16), zero, _CMP_GT_OQ), b_hi);
      }
      _mm512_mask_storeu_ps(r0 + 2 * q0, lo_mask, a_lo);
      _mm512_mask_storeu_ps(r0 + 2 * q0 + 16, hi_mask, a_hi);
      _mm512_mask_storeu_ps(r1 + 2 * q0, lo_mask, b_lo);
      _mm512_mask_storeu_ps(r1 + 2 * q0 + 16, hi_mask, b_hi);
    }
    if (g.W > 2 * g.Q) r0[g.W - 1] = r1[g.W - 1] = 0.0f;  // an odd width's last column: no window
  }
  if (g.H > 2 * g.P) std::memset(dx + (g.H - 1) * g.W, 0, sizeof(float) * g.W);  // likewise an odd height's last row
  return missed == 0;
}
#endif

}  // namespace

void maxpool2d_bwd_planes_bf16(const BoundNode& pool, const uint16_t* mask, const uint16_t* pooled_mask, int64_t begin,
                               int64_t end, uint16_t* dx, float* scratch) {
  const PoolGeometry g = geometry(pool.out[0], pool.params.maxpool2d);
  const auto* dy = static_cast<const uint16_t*>(pool.in[0].data);
  const int32_t* idx = pool.in[1].i32();
  const int64_t plane_size = g.H * g.W, outputs = g.P * g.Q;
  for (int64_t plane = begin; plane < end; ++plane) {
    const uint16_t* mask_plane = mask ? mask + plane * plane_size : nullptr;
    uint16_t* dx_plane = dx + (plane - begin) * plane_size;
    const uint16_t* pooled_plane = mask && pooled_mask ? pooled_mask + plane * outputs : nullptr;
    if (maxpool2x2_bwd_plane_bf16(dy + plane * outputs, idx + plane * outputs, mask_plane, pooled_plane, dx_plane, g))
      continue;
    maxpool2d_bwd_plane_bf16(pool, dy + plane * outputs, idx + plane * outputs, mask_plane, dx_plane, scratch,
                             plane_size, outputs);
  }
}

void run_maxpool2d_bwd(const BoundNode& node) {
  const parity_maxpool2d_params pp = node.params.maxpool2d;
  const PoolGeometry g = geometry(node.out[0], pp);
  if (runs_bf16_pool(node)) {
    auto* dx = static_cast<uint16_t*>(node.out[0].data);
    const auto* mask = static_cast<const uint16_t*>(node.fusion.relu_mask.data);
    const int64_t plane_size = g.H * g.W;
    parallel_chunks(g.planes, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
      auto* scratch = reinterpret_cast<float*>(node.workspace + worker_slot(node.slots) * align64(plane_size * 4));
      maxpool2d_bwd_planes_bf16(node, mask, nullptr, begin, end, dx + begin * plane_size, scratch);
    });
    return;
  }
  const float* dy = node.in[0].f32();
  const int32_t* idx = node.in[1].i32();
  float* dx = node.out[0].f32();
  const float* mask = node.fusion.relu_mask.data ? node.fusion.relu_mask.f32() : nullptr;
  const int64_t plane_size = g.H * g.W, outputs = g.P * g.Q;
#if defined(__AVX512F__)
  const bool window2x2 = g.plain && pp.kernel_h == 2 && pp.kernel_w == 2 && pp.stride_h == 2 && pp.stride_w == 2;
#endif
  parallel_chunks(g.planes, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* dy_plane = dy + plane * outputs;
      const int32_t* idx_plane = idx + plane * outputs;
      const float* mask_plane = mask ? mask + plane * plane_size : nullptr;
      float* dx_plane = dx + plane * plane_size;
#if defined(__AVX512F__)
      if (window2x2 && maxpool2x2_bwd_plane_f32(dy_plane, idx_plane, mask_plane, dx_plane, g)) continue;
#endif
      maxpool2d_bwd_plane_f32(node, dy_plane, idx_plane, mask_plane, dx_plane, plane_size, outputs);
    }
  });
}

}  // namespace cpu
}  // namespace parity
