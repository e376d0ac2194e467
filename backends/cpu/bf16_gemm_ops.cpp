// backends/cpu/bf16_gemm_ops.cpp — LINEAR and CONV2D (forward, backward-data, backward-weight)
// on bf16 values (issue #14) as gemm_bf16 products (gemm_bf16.h: VDPBF16PS or the f32-conversion
// route, chosen at run time): bf16 operands (conv: the column matrix built in bf16), f32
// accumulation, the f32 bias added before the one rounding to bf16 (half.h); db summed in f32.
//
//   linear    y[N,O] = x w^T + b, dx = dy w, dw = dy^T x: split along a dimension of w (O for y,
//             I for dx and dw), so no reduction is split
//   conv2d    per image and group, col[CgRS, PQ] (conv_geometry.h's im2col, in bf16):
//             y_n = w_g col_n + b (and relu when the backend fused the next node, cpu_fusion.cpp);
//             dcol = w_g^T dy_n, then col2im in f32; dw^T = sum_n col_n dy_n^T (col the A
//             operand, dy transposed: the smaller of the two)
//             with one partial per fixed chunk of images, summed in chunk order; db per image
//             and channel in sum_bf16's fixed lane order; with pool_source (cpu_fusion.cpp) each
//             image's dy made from the 2x2 max-pool backward (and relu backward) in the slot
//
// On the avx512_bf16 route the column matrix is never stored as such: it is written straight
// into gemm_bf16_packed's operand layouts. Forward, stride 1: over the padded width (row (c, r,
// s) is one contiguous span of the zero-padded image; the tile drops the padding columns as it
// rounds y), a block of output rows at a time, each block's max-pool rows run right after it
// when the backend fused the pool (NodeFusion::pool_after); other strides: a per-row route.
// Backward-data, stride 1 (and padding within the kernel's span): the forward route on dy with
// the kernel flipped and its channels swapped; otherwise dcol made and scattered a block of
// output rows at a time, in cache.
// Backward-weight: col's rows copied from the padded image (stride 1) or im2col'd.
// Work splits depend on the shapes only, and every sum has a fixed order: bitwise reproducible
// at any thread count. f16 operands take half_nodes.h's path (widened by F16C, f32 kernels).
#include <algorithm>
#include <cstring>

#include "backends/cpu/bf16_simd.h"
#include "backends/cpu/cast.h"
#include "backends/cpu/gemm_bf16.h"
#include "backends/cpu/half_nodes.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/conv_geometry.h"
#include "ops/kernels/half.h"

namespace parity {
namespace cpu {
namespace {

using kernels::bf16_bits_to_float;
using kernels::float_to_bf16_bits;

constexpr int64_t kMinColumnsPerChunk = 32;
constexpr int64_t kMaxChunks = 64;
constexpr int64_t kMaxWeightPartials = 16;  // conv backward-weight: partial dw buffers (image chunks)
constexpr int64_t kElementChunk = int64_t{1} << 14;

uint16_t* bits(const BoundValue& v) { return static_cast<uint16_t*>(v.data); }

// Lanes of sum_bf16's partial sums: element i is added into lane i % kSumLanes, the lanes are then
// added in order 0..kSumLanes-1. Both forms below keep exactly that order (so their bits agree),
// and the lanes break the one long dependency chain of a plain running sum.
constexpr int kSumLanes = 64;

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

PARITY_BF16_SIMD_TARGET float sum_bf16_avx512(const uint16_t* x, int64_t n) {
  __m512 acc[kSumLanes / 16];
  for (__m512& a : acc) a = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += kSumLanes)
    for (int v = 0; v < kSumLanes / 16; ++v) {
      const int64_t at = i + 16 * v;
      if (at < n) acc[v] = _mm512_add_ps(acc[v], widen_bf16x16_fast(x + at, lanes16(n - at)));  // +0 past n: no change
    }
  alignas(64) float lanes[kSumLanes];
  for (int v = 0; v < kSumLanes / 16; ++v) _mm512_store_ps(lanes + 16 * v, acc[v]);
  float sum = 0.0f;
  for (float l : lanes) sum += l;
  return sum;
}

// y[i] = bf16(relu?(c[i] + bias)) for i < n: the scalar epilogue's bits, 16 lanes at a time.
PARITY_BF16_SIMD_TARGET void round_row_bf16_avx512(const float* c, int64_t n, float bias, bool relu, uint16_t* y) {
  const __m512 b = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes16(n - i);
    __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, c + i), b);
    if (relu) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LE_OQ), zero);  // relu_f32
    store_bf16x16(y + i, m, v);
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// The sum of n bf16 values in sum_bf16_avx512's order, on any CPU.
float sum_bf16(const uint16_t* x, int64_t n) {
  if (cast_route() == CastRoute::f16c_avx512) return sum_bf16_avx512(x, n);
  float lanes[kSumLanes] = {};
  for (int64_t i = 0; i < n; ++i) lanes[i % kSumLanes] += bf16_bits_to_float(x[i]);
  float sum = 0.0f;
  for (float l : lanes) sum += l;
  return sum;
}

// y[i] = bf16(c[i] + bias), relu'd first when `relu` (round(relu(v)) = relu(round(v)): the
// unfused pair's bits).
void round_row_bf16(const float* c, int64_t n, float bias, bool relu, uint16_t* y) {
  if (cast_route() == CastRoute::f16c_avx512) return round_row_bf16_avx512(c, n, bias, relu, y);
  for (int64_t i = 0; i < n; ++i) y[i] = float_to_bf16_bits(relu ? kernels::relu_f32(c[i] + bias) : c[i] + bias);
}

// The slot's share of the workspace, `slot_bytes` each.
unsigned char* slot_base(const BoundNode& node, int64_t slot_bytes, int64_t offset = 0) {
  return node.workspace + offset + worker_slot(node.slots) * slot_bytes;
}

// ---------------------------------------------------------------- linear

struct LinearDims {
  int64_t N, I, O;
};

LinearDims check_linear(const BoundNode& node, const BoundValue& x, const char* x_role, const BoundValue& w,
                        const BoundValue& y, const char* y_role) {
  expect_value(node, x, x_role, PARITY_BF16, 2);
  expect_value(node, w, "w", PARITY_BF16, 2);
  const LinearDims d{x.dims[0], x.dims[1], w.dims[0]};
  if (w.dims[1] != d.I) fail(node, "w must be [O,I] with I = " + std::to_string(d.I) + ", got " + w.shape_str());
  const int64_t dims[2] = {d.N, d.O};
  expect_dims(node, y, y_role, dims, 2, "[N,O]");
  return d;
}

// The last chunk of `total` (possibly shorter than node.chunk).
int64_t last_chunk(const BoundNode& node, int64_t total) { return total - (node.num_chunks - 1) * node.chunk; }

// Slot bytes for products [m, chunk] (chunk columns of `total`) with inner size k: the f32 result
// and gemm_bf16's scratch, for a full chunk and the last (GEMM scratch need not grow with n).
int64_t linear_slot_bytes(const BoundNode& node, int64_t total, int64_t m, int64_t k) {
  return align64(m * node.chunk * 4) + align64(std::max(gemm_bf16_scratch_bytes(m, node.chunk, k),
                                                        gemm_bf16_scratch_bytes(m, last_chunk(node, total), k)));
}

void set_column_chunks(BoundNode& node, int64_t total) {
  node.chunk = fixed_chunk_size(total, kMinColumnsPerChunk, kMaxChunks);
  node.num_chunks = chunk_count(total, node.chunk);
}

}  // namespace

int64_t prepare_linear_bf16(BoundNode& node) {
  node.fusion = NodeFusion{};
  switch (node.op) {
    case PARITY_OP_LINEAR: {
      expect_arity(node, 2, 3, 1, 1);
      const LinearDims d = check_linear(node, node.in[0], "x", node.in[1], node.out[0], "y");
      expect_value(node, node.out[0], "y", PARITY_BF16, 2);
      if (node.num_inputs == 3) {
        expect_value(node, node.in[2], "b", PARITY_F32, 1);
        const int64_t dims[1] = {d.O};
        expect_dims(node, node.in[2], "b", dims, 1, "[O]");
      }
      set_column_chunks(node, d.O);
      return node.slots * linear_slot_bytes(node, d.O, d.N, d.I);
    }
    case PARITY_OP_LINEAR_BWD_DATA: {  // dy[N,O], w[O,I] -> dx[N,I]
      expect_arity(node, 2, 2, 1, 1);
      const BoundValue& w = node.in[1];
      expect_value(node, w, "w", PARITY_BF16, 2);
      const LinearDims d{node.in[0].dims[0], w.dims[1], w.dims[0]};
      const int64_t dy_dims[2] = {d.N, d.O}, dx_dims[2] = {d.N, d.I};
      expect_value(node, node.in[0], "dy", PARITY_BF16, 2);
      expect_dims(node, node.in[0], "dy", dy_dims, 2, "[N,O]");
      expect_value(node, node.out[0], "dx", PARITY_BF16, 2);
      expect_dims(node, node.out[0], "dx", dx_dims, 2, "[N,I]");
      set_column_chunks(node, d.I);
      return node.slots * linear_slot_bytes(node, d.I, d.N, d.O);
    }
    default: {  // LINEAR_BWD_WEIGHT: x[N,I], dy[N,O] -> dw[O,I] bf16, db[O] f32
      expect_arity(node, 2, 2, 1, 2);
      expect_value(node, node.in[0], "x", PARITY_BF16, 2);
      expect_value(node, node.in[1], "dy", PARITY_BF16, 2);
      const LinearDims d{node.in[0].dims[0], node.in[0].dims[1], node.in[1].dims[1]};
      if (node.in[1].dims[0] != d.N) fail(node, "x and dy must have the same batch");
      const int64_t dw_dims[2] = {d.O, d.I}, db_dims[1] = {d.O};
      expect_value(node, node.out[0], "dw", PARITY_BF16, 2);
      expect_dims(node, node.out[0], "dw", dw_dims, 2, "[O,I]");
      if (node.num_outputs == 2) {
        expect_value(node, node.out[1], "db", PARITY_F32, 1);
        expect_dims(node, node.out[1], "db", db_dims, 1, "[O]");
      }
      // chunks of dw's columns (I): the products [O, chunk] of inner size N, so each column of
      // x is packed once (dy^T, [O, N], is the small operand packed per chunk)
      set_column_chunks(node, d.I);
      return node.slots * linear_slot_bytes(node, d.I, d.O, d.N);
    }
  }
}

void run_linear_bf16(const BoundNode& node) {
  switch (node.op) {
    case PARITY_OP_LINEAR: {
      const LinearDims d{node.in[0].dims[0], node.in[0].dims[1], node.in[1].dims[0]};
      const uint16_t *x = bits(node.in[0]), *w = bits(node.in[1]);
      const float* b = node.num_inputs == 3 ? node.in[2].f32() : nullptr;
      uint16_t* y = bits(node.out[0]);
      const int64_t slot = linear_slot_bytes(node, d.O, d.N, d.I);
      parallel_chunks(d.O, node.chunk, [&](int64_t, int64_t o0, int64_t o1) {
        unsigned char* base = slot_base(node, slot);
        float* c = reinterpret_cast<float*>(base);
        const int64_t cols = o1 - o0;
        gemm_bf16(d.N, cols, d.I, {x, d.I, false}, {w + o0 * d.I, d.I, true}, c, cols, false,
                  base + align64(d.N * node.chunk * 4));
        for (int64_t n = 0; n < d.N; ++n)
          for (int64_t o = 0; o < cols; ++o)
            y[n * d.O + o0 + o] = float_to_bf16_bits(c[n * cols + o] + (b ? b[o0 + o] : 0.0f));
      });
      return;
    }
    case PARITY_OP_LINEAR_BWD_DATA: {
      const LinearDims d{node.in[0].dims[0], node.in[1].dims[1], node.in[1].dims[0]};
      const uint16_t *dy = bits(node.in[0]), *w = bits(node.in[1]);
      uint16_t* dx = bits(node.out[0]);
      const int64_t slot = linear_slot_bytes(node, d.I, d.N, d.O);
      parallel_chunks(d.I, node.chunk, [&](int64_t, int64_t i0, int64_t i1) {
        unsigned char* base = slot_base(node, slot);
        float* c = reinterpret_cast<float*>(base);
        const int64_t cols = i1 - i0;
        gemm_bf16(d.N, cols, d.O, {dy, d.O, false}, {w + i0, d.I, false}, c, cols, false,
                  base + align64(d.N * node.chunk * 4));
        for (int64_t n = 0; n < d.N; ++n)
          for (int64_t i = 0; i < cols; ++i) dx[n * d.I + i0 + i] = float_to_bf16_bits(c[n * cols + i]);
      });
      return;
    }
    default: {
      const LinearDims d{node.in[0].dims[0], node.in[0].dims[1], node.in[1].dims[1]};
      const uint16_t *x = bits(node.in[0]), *dy = bits(node.in[1]);
      uint16_t* dw = bits(node.out[0]);
      float* db = node.num_outputs == 2 ? node.out[1].f32() : nullptr;
      const int64_t slot = linear_slot_bytes(node, d.I, d.O, d.N);
      parallel_chunks(d.I, node.chunk, [&](int64_t chunk, int64_t i0, int64_t i1) {
        unsigned char* base = slot_base(node, slot);
        float* c = reinterpret_cast<float*>(base);
        const int64_t cols = i1 - i0;
        // op(A) = dy^T: A is [N, O] stored, transposed
        gemm_bf16(d.O, cols, d.N, {dy, d.O, true}, {x + i0, d.I, false}, c, cols, false,
                  base + align64(d.O * node.chunk * 4));
        for (int64_t o = 0; o < d.O; ++o)
          for (int64_t i = 0; i < cols; ++i) dw[o * d.I + i0 + i] = float_to_bf16_bits(c[o * cols + i]);
        if (db && chunk == 0)  // db by the first chunk, in n order: the same sums whoever runs it
          for (int64_t o = 0; o < d.O; ++o) {
            float sum = 0.0f;
            for (int64_t n = 0; n < d.N; ++n) sum += bf16_bits_to_float(dy[n * d.O + o]);
            db[o] = sum;
          }
      });
      return;
    }
  }
}

// ---------------------------------------------------------------- conv2d

namespace {

// x[N,C,H,W], w[K,Cg,R,S], y[N,K,P,Q]; G groups of Cg input and Kg output channels.
struct ConvDims {
  int64_t N, C, H, W, K, Cg, R, S, P, Q, G;
  kernels::Conv2dWindow cw;
  int64_t Kg() const { return K / G; }
  int64_t CgRS() const { return Cg * R * S; }
  int64_t PQ() const { return P * Q; }
};

ConvDims conv_dims(const parity_conv2d_params& p, const BoundValue& x, int64_t K, int64_t R, int64_t S) {
  ConvDims d{};
  d.cw = kernels::conv2d_window(p);
  d.N = x.dims[0], d.C = x.dims[1], d.H = x.dims[2], d.W = x.dims[3];
  d.K = K, d.R = R, d.S = S, d.G = d.cw.groups;
  d.Cg = d.C / d.G;
  d.P = kernels::conv2d_output_h(d.cw, d.H, R);
  d.Q = kernels::conv2d_output_w(d.cw, d.W, S);
  return d;
}

// The geometry of the node, checked: x (or dx) [N,C,H,W], w (or dw) [K,C/G,R,S], y (or dy) [N,K,P,Q].
ConvDims check_conv(const BoundNode& node, const BoundValue& x, const BoundValue& w, const BoundValue& y) {
  for (const BoundValue* v : {&x, &w, &y})
    if (v->rank != 4) fail(node, std::string("'") + v->name + "' must have rank 4, got " + v->shape_str());
  const ConvDims d = conv_dims(node.params.conv2d, x, w.dims[0], w.dims[2], w.dims[3]);
  if (d.G < 1 || d.C % d.G != 0 || d.K % d.G != 0 || w.dims[1] != d.Cg)
    fail(node, "w " + w.shape_str() + " does not fit x " + x.shape_str() + " with " + std::to_string(d.G) + " groups");
  const int64_t y_dims[4] = {d.N, d.K, d.P, d.Q};
  expect_dims(node, y, "y (dy)", y_dims, 4, "[N,K,P,Q]");
  return d;
}

// Image n's whole column matrix col[C*R*S, PQ] in bf16 bits (group g's rows are block g).
void im2col_bf16(const uint16_t* x_n, const ConvDims& d, uint16_t* col) {
  for (int64_t c = 0; c < d.C; ++c)
    for (int64_t r = 0; r < d.R; ++r)
      for (int64_t s = 0; s < d.S; ++s)
        kernels::im2col_row_nchw<uint16_t>(x_n + c * d.H * d.W, d.H, d.W, r, s, d.cw, d.P, d.Q,
                                           col + ((c * d.R + r) * d.S + s) * d.PQ());
}

int64_t col_bytes(const ConvDims& d) { return align64(d.C * d.R * d.S * d.PQ() * 2); }

// Whether the conv runs on gemm_bf16_packed, its operands written in the packed layouts
// (gemm_bf16.h) by the kernels below; otherwise (the f32-conversion route) on gemm_bf16 over a
// stored column matrix.
bool packs_operands() { return bf16_gemm_route() == Bf16GemmRoute::avx512_bf16; }

// conv2d backward-data on the packed route: the column-matrix gradient is made and scattered
// a block of output rows (about this many columns) at a time, so it stays in cache.
constexpr int64_t kBwdDataBlockColumns = 256;
int64_t bwd_data_block_rows(const ConvDims& d) { return std::min(d.P, std::max<int64_t>(1, kBwdDataBlockColumns / d.Q)); }

// A slot's regions, in order: their byte sizes, each 64-byte aligned.
struct SlotLayout {
  int64_t sizes[5] = {};
  int64_t offset(int i) const {
    int64_t at = 0;
    for (int j = 0; j < i; ++j) at += sizes[j];
    return at;
  }
  int64_t bytes() const { return offset(5); }
};

// The padded input's extent, and whether the packed forward computes over it: with stride 1,
// row (c, r, s) of the column matrix taken over every padded column (P rows of Wp() outputs,
// the last Wp() - Q of each dropped) is one contiguous span of the zero-padded image, so it is
// packed 16 columns at a time with no index math; about (Wp() - Q) / Q more columns.
int64_t padded_h(const ConvDims& d) { return d.H + d.cw.pad_top + d.cw.pad_bottom; }
int64_t padded_w(const ConvDims& d) { return d.W + d.cw.pad_left + d.cw.pad_right; }
bool forward_over_padded_rows(const ConvDims& d) {
  return d.cw.stride_h == 1 && d.cw.stride_w == 1 && padded_w(d) >= kBf16PanelColumns;
}
// The padded route runs a block of output rows (about this many product columns) at a time, so
// that its packed B stays in cache and y's planes are still there when the conv pools them
// (NodeFusion::pool_after).
constexpr int64_t kForwardBlockColumns = 1024;
int64_t forward_block_rows(const ConvDims& d) {  // even (a 2x2 pool's windows), unless 1
  const int64_t rows = std::max<int64_t>(1, kForwardBlockColumns / padded_w(d));
  return std::min(d.P, rows > 1 ? rows / 2 * 2 : rows);
}
// Product columns of one GEMM: a block of padded rows, or all of PQ on the per-row route.
int64_t forward_columns(const ConvDims& d) {
  return forward_over_padded_rows(d) ? forward_block_rows(d) * padded_w(d) : d.PQ();
}
// The zero-padded image, and past its end what the last span's last panel reads.
int64_t padded_image_elements(const ConvDims& d) {
  return d.C * padded_h(d) * padded_w(d) + (d.S - 1) * d.cw.dilation_w + kBf16PanelColumns;
}

// Forward. Packed: B (the group's column matrix), A (w_g), C (partial sums when k spans several
// blocks), the padded image (forward_over_padded_rows). Stored: col, C [K, PQ], gemm_bf16's
// scratch.
SlotLayout forward_layout(const ConvDims& d) {
  if (packs_operands()) {
    const int64_t n = forward_columns(d);
    return {{align64(packed_b_words(n, d.CgRS()) * 4), align64(packed_a_words(d.Kg(), d.CgRS()) * 4),
             align64(d.Kg() * n * 4), forward_over_padded_rows(d) ? align64(padded_image_elements(d) * 2) : 0}};
  }
  return {{col_bytes(d), align64(d.K * d.PQ() * 4), align64(gemm_bf16_scratch_bytes(d.Kg(), d.PQ(), d.CgRS()))}};
}
// Backward-data. Packed: A (w_g^T), B (a block of dy_g), the block's dcol, dx in f32. Stored:
// dcol [CRS, PQ] in f32, dx in f32, gemm_bf16's scratch.
SlotLayout bwd_data_layout(const ConvDims& d) {
  const int64_t dx_f = align64(d.C * d.H * d.W * 4);
  if (packs_operands()) {
    const int64_t columns = bwd_data_block_rows(d) * d.Q;
    return {{align64(packed_a_words(d.CgRS(), d.Kg()) * 4), align64(packed_b_words(columns, d.Kg()) * 4),
             align64(d.CgRS() * columns * 4), dx_f}};
  }
  return {{align64(d.C * d.R * d.S * d.PQ() * 4), dx_f, align64(gemm_bf16_scratch_bytes(d.CgRS(), d.PQ(), d.Kg()))}};
}
// Backward-weight. Packed: A (the group's column matrix), B (dy_g^T). Stored: col, gemm_bf16's
// scratch. With pool_source, then image n's dy (made from the pool) and an f32 plane.
SlotLayout bwd_weight_layout(const ConvDims& d, bool pooled) {
  SlotLayout l;
  if (packs_operands())
    l = {{align64(packed_a_words(d.CgRS(), d.PQ()) * 4), align64(packed_b_words(d.Kg(), d.PQ()) * 4)}};
  else
    l = {{col_bytes(d), align64(gemm_bf16_scratch_bytes(d.CgRS(), d.Kg(), d.PQ()))}};
  if (pooled) {
    l.sizes[2] = align64(d.K * d.PQ() * 2);
    l.sizes[3] = align64(d.PQ() * 4);
  }
  if (packs_operands() && d.cw.stride_h == 1 && d.cw.stride_w == 1) l.sizes[4] = align64(padded_image_elements(d) * 2);
  return l;
}

// One column-matrix row (c, r, s): its input plane (null: the missing row of an odd CgRS,
// zeros), its tap offsets, and the outputs [qb, qe) whose tap lies inside the row.
struct Im2colRow {
  const uint16_t* plane = nullptr;
  int64_t th = 0, ts = 0, qb = 0, qe = 0;
};

Im2colRow im2col_row_of(const uint16_t* x_g, const ConvDims& d, int64_t i) {
  Im2colRow row;
  if (i >= d.CgRS()) return row;
  const int64_t RS = d.R * d.S, c = i / RS, r = (i % RS) / d.S, s = i % d.S;
  row.plane = x_g + c * d.H * d.W;
  row.th = r * d.cw.dilation_h;
  row.ts = s * d.cw.dilation_w;
  kernels::conv2d_valid_outputs(d.W, d.Q, row.ts, d.cw.stride_w, d.cw.pad_left, &row.qb, &row.qe);
  return row;
}

// The input row that column-matrix row `row` reads at output row po (null: padding, zeros).
const uint16_t* im2col_source(const Im2colRow& row, const ConvDims& d, int64_t po) {
  if (!row.plane) return nullptr;
  const int64_t h = kernels::conv2d_input_coord(po, row.th, d.cw.stride_h, d.cw.pad_top);
  return h < 0 || h >= d.H ? nullptr : row.plane + h * d.W;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// Outputs [q, q + len) of a column-matrix row, reading input row src (null: zeros), as 16
// zero-extended lanes (zero past len and outside [qb, qe)).
PARITY_BF16_SIMD_TARGET __m512i im2col_lanes16(const Im2colRow& row, const uint16_t* src,
                                               const kernels::Conv2dWindow& cw, int64_t q, int64_t len) {
  if (!src) return _mm512_setzero_si512();
  const int64_t lo = std::max<int64_t>(row.qb - q, 0), hi = std::min<int64_t>(row.qe - q, len);
  if (hi <= lo) return _mm512_setzero_si512();
  if (cw.stride_w == 1) {  // masked-off lanes are not read (their addresses may lie outside x)
    const __mmask16 mask = static_cast<__mmask16>(lanes16(hi) & ~lanes16(lo));
    return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, src + (q + row.ts - cw.pad_left)));
  }
  alignas(32) uint16_t lanes[16] = {};
  for (int64_t l = lo; l < hi; ++l) lanes[l] = src[kernels::conv2d_input_coord(q + l, row.ts, cw.stride_w, cw.pad_left)];
  return _mm512_cvtepu16_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(lanes)));
}

// Group g's column matrix of image n (rows c R S + r S + s for c in the group, k = CgRS, n = PQ)
// written straight into gemm_bf16's packed B layout: for each pair of column-matrix rows and
// each output row, the two rows' inputs interleaved into words, split where the columns cross a
// 16-column panel. Columns past PQ in the last panel, and the missing row of an odd CgRS, are
// zero.
PARITY_BF16_SIMD_TARGET void im2col_packed_b_bf16(const uint16_t* x_n, const ConvDims& d, int64_t g, uint32_t* packed) {
  const int64_t pairs = bf16_pairs(d.CgRS()), PQ = d.PQ();
  const uint16_t* x_g = x_n + g * d.Cg * d.H * d.W;
  for (int64_t p = 0; p < pairs; ++p) {
    const Im2colRow row0 = im2col_row_of(x_g, d, 2 * p), row1 = im2col_row_of(x_g, d, 2 * p + 1);
    uint32_t* out = packed + p * kBf16PanelColumns;
    for (int64_t po = 0; po < d.P; ++po) {
      const uint16_t *src0 = im2col_source(row0, d, po), *src1 = im2col_source(row1, d, po);
      for (int64_t q = 0; q < d.Q;) {
        const int64_t column = po * d.Q + q, j = column % kBf16PanelColumns;
        const int64_t len = std::min(d.Q - q, kBf16PanelColumns - j);
        const __m512i words = _mm512_or_si512(im2col_lanes16(row0, src0, d.cw, q, len),
                                              _mm512_slli_epi32(im2col_lanes16(row1, src1, d.cw, q, len), 16));
        _mm512_mask_storeu_epi32(out + (column / kBf16PanelColumns) * pairs * kBf16PanelColumns + j, lanes16(len), words);
        q += len;
      }
    }
  }
  if (const int64_t tail = PQ % kBf16PanelColumns) {
    const __mmask16 past = static_cast<__mmask16>(~lanes16(tail));
    uint32_t* last = packed + (PQ / kBf16PanelColumns) * pairs * kBf16PanelColumns;
    for (int64_t p = 0; p < pairs; ++p) _mm512_mask_storeu_epi32(last + p * kBf16PanelColumns, past, _mm512_setzero_si512());
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// x_n zero-padded to [C, padded_h, padded_w], then zeros to padded_image_elements. Rows are
// copied 32 elements at a time (a call to memcpy per row of 56 cost more than the copy).
PARITY_BF16_SIMD_TARGET void pad_image_bf16(const uint16_t* x_n, const ConvDims& d, uint16_t* x_pad) {
  const int64_t Wp = padded_w(d);
  uint16_t* out = x_pad;
  for (int64_t c = 0; c < d.C; ++c) {
    const uint16_t* plane = x_n + c * d.H * d.W;
    std::fill_n(out, d.cw.pad_top * Wp, uint16_t{0});
    out += d.cw.pad_top * Wp;
    for (int64_t h = 0; h < d.H; ++h) {
      std::fill_n(out, d.cw.pad_left, uint16_t{0});
      const uint16_t* src = plane + h * d.W;
      uint16_t* dst = out + d.cw.pad_left;
      int64_t q = 0;
      for (; q + 32 <= d.W; q += 32) _mm512_storeu_si512(dst + q, _mm512_loadu_si512(src + q));
      if (q < d.W) {
        const __mmask32 mask = static_cast<__mmask32>((1u << (d.W - q)) - 1u);
        _mm512_mask_storeu_epi16(dst + q, mask, _mm512_maskz_loadu_epi16(mask, src + q));
      }
      std::fill_n(out + d.cw.pad_left + d.W, d.cw.pad_right, uint16_t{0});
      out += Wp;
    }
    std::fill_n(out, d.cw.pad_bottom * Wp, uint16_t{0});
    out += d.cw.pad_bottom * Wp;
  }
  std::fill(out, x_pad + padded_image_elements(d), uint16_t{0});
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// Output rows [row0, row0 + rows) of group g's column matrix over every padded column
// (forward_over_padded_rows; n = rows padded_w) from the padded image, in gemm_bf16's packed B
// layout: row (c, r, s) is the span of x_pad starting at plane c, row row0 + r dilation_h,
// column s dilation_w; each pair of rows interleaved 16 columns at a time. The dropped columns
// (and those past n in the last panel) hold whatever the spans read there: lanes are
// independent, so they only reach dropped outputs.
PARITY_BF16_SIMD_TARGET void im2col_padded_packed_b_bf16(const uint16_t* x_pad, const ConvDims& d, int64_t g,
                                                         int64_t row0, int64_t rows, uint32_t* packed) {
  const int64_t Hp = padded_h(d), Wp = padded_w(d), RS = d.R * d.S, k = d.CgRS();
  const int64_t pairs = bf16_pairs(k), panels = bf16_panels(rows * Wp), panel_words = pairs * kBf16PanelColumns;
  const uint16_t* x_g = x_pad + g * d.Cg * Hp * Wp + row0 * Wp;
  auto span = [&](int64_t i) {  // row i's span, null past k
    if (i >= k) return static_cast<const uint16_t*>(nullptr);
    const int64_t c = i / RS, r = (i % RS) / d.S, s = i % d.S;
    return x_g + (c * Hp + r * d.cw.dilation_h) * Wp + s * d.cw.dilation_w;
  };
  for (int64_t p = 0; p < pairs; ++p) {
    const uint16_t *s0 = span(2 * p), *s1 = span(2 * p + 1);
    uint32_t* out = packed + p * kBf16PanelColumns;
    if (s1) {
      for (int64_t panel = 0; panel < panels; ++panel) {
        const __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s0 + panel * 16)));
        const __m512i hi = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s1 + panel * 16)));
        _mm512_storeu_si512(out + panel * panel_words, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
      }
    } else {
      for (int64_t panel = 0; panel < panels; ++panel)
        _mm512_storeu_si512(out + panel * panel_words,
                            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s0 + panel * 16))));
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// As im2col_packed_a_bf16 below, from the zero-padded image (stride 1): row (c, r, s) at output
// row po is the Q elements of x_pad at plane c, row po + r dilation_h, column s dilation_w.
PARITY_BF16_SIMD_TARGET void im2col_padded_packed_a_bf16(const uint16_t* x_pad, const ConvDims& d, int64_t g,
                                                         uint32_t* packed) {
  const int64_t Hp = padded_h(d), Wp = padded_w(d), pairs = bf16_pairs(d.PQ());
  auto* rows = reinterpret_cast<uint16_t*>(packed);
  const uint16_t* x_g = x_pad + g * d.Cg * Hp * Wp;
  for (int64_t c = 0; c < d.Cg; ++c)
    for (int64_t r = 0; r < d.R; ++r)
      for (int64_t s = 0; s < d.S; ++s) {
        uint16_t* row = rows + ((c * d.R + r) * d.S + s) * 2 * pairs;
        const uint16_t* span = x_g + (c * Hp + r * d.cw.dilation_h) * Wp + s * d.cw.dilation_w;
        for (int64_t po = 0; po < d.P; ++po)
          for (int64_t q = 0; q < d.Q; q += 32) {
            const __mmask32 mask = d.Q - q >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << (d.Q - q)) - 1u);
            _mm512_mask_storeu_epi16(row + po * d.Q + q, mask, _mm512_maskz_loadu_epi16(mask, span + po * Wp + q));
          }
        if (d.PQ() % 2) row[d.PQ()] = 0;
      }
}

// Group g's column matrix of image n straight into gemm_bf16's packed A layout (rows CgRS, k =
// PQ): each row as im2col writes it, rows bf16_pairs(PQ) words apart, an odd PQ's last word
// zero-padded.
void im2col_packed_a_bf16(const uint16_t* x_n, const ConvDims& d, int64_t g, uint32_t* packed) {
  const int64_t pairs = bf16_pairs(d.PQ()), plane = d.H * d.W;
  auto* rows = reinterpret_cast<uint16_t*>(packed);
  for (int64_t c = 0; c < d.Cg; ++c)
    for (int64_t r = 0; r < d.R; ++r)
      for (int64_t s = 0; s < d.S; ++s) {
        uint16_t* row = rows + ((c * d.R + r) * d.S + s) * 2 * pairs;
        kernels::im2col_row_nchw<uint16_t>(x_n + (g * d.Cg + c) * plane, d.H, d.W, r, s, d.cw, d.P, d.Q, row);
        if (d.PQ() % 2) row[d.PQ()] = 0;
      }
}

// Output rows [p0, p1) of the column-matrix gradient of group g (dcol [CgRS, (p1 - p0) Q])
// added into dx_g's planes: col2im_row_add_nchw_f32 on those rows only.
void col2im_rows_add_f32(const float* dcol, const ConvDims& d, int64_t p0, int64_t p1, float* dx_g) {
  const kernels::Conv2dWindow& cw = d.cw;
  const int64_t columns = (p1 - p0) * d.Q, plane = d.H * d.W;
  for (int64_t c = 0; c < d.Cg; ++c)
    for (int64_t r = 0; r < d.R; ++r)
      for (int64_t s = 0; s < d.S; ++s) {
        const float* row = dcol + ((c * d.R + r) * d.S + s) * columns;
        const int64_t ts = s * cw.dilation_w;
        int64_t qb, qe;
        kernels::conv2d_valid_outputs(d.W, d.Q, ts, cw.stride_w, cw.pad_left, &qb, &qe);
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t h = kernels::conv2d_input_coord(p, r * cw.dilation_h, cw.stride_h, cw.pad_top);
          if (h < 0 || h >= d.H) continue;
          const float* src = row + (p - p0) * d.Q;
          float* dst = dx_g + c * plane + h * d.W;
          if (cw.stride_w == 1) {
            float* d0 = dst + (ts - cw.pad_left);
            for (int64_t q = qb; q < qe; ++q) d0[q] += src[q];
          } else {
            for (int64_t q = qb; q < qe; ++q) dst[kernels::conv2d_input_coord(q, ts, cw.stride_w, cw.pad_left)] += src[q];
          }
        }
      }
}

int64_t partial_floats(const ConvDims& d) { return align64((d.K * d.CgRS() + d.K) * 4) / 4; }

ConvDims node_dims(const BoundNode& node) {
  switch (node.op) {
    case PARITY_OP_CONV2D: return conv_dims(node.params.conv2d, node.in[0], node.in[1].dims[0], node.in[1].dims[2], node.in[1].dims[3]);
    case PARITY_OP_CONV2D_BWD_DATA:
      return conv_dims(node.params.conv2d, node.out[0], node.in[1].dims[0], node.in[1].dims[2], node.in[1].dims[3]);
    default: return conv_dims(node.params.conv2d, node.in[0], node.out[0].dims[0], node.out[0].dims[2], node.out[0].dims[3]);
  }
}

// Image n of the forward on the packed route into y_n: y_g = bf16(relu?(w_g col_g + b)) straight
// from the GEMM's tiles (forward_layout's slot at `base`), then, with `pool`, its pooled rows.
void forward_image_packed(const uint16_t* x_n, const uint16_t* w, const float* b, bool relu, const ConvDims& d,
                          const SlotLayout& layout, unsigned char* base, uint16_t* y_n, const BoundNode* pool,
                          int64_t n) {
  const int64_t Kg = d.Kg(), CgRS = d.CgRS(), PQ = d.PQ();
  auto* b_packed = reinterpret_cast<uint32_t*>(base);
  auto* a_packed = reinterpret_cast<uint32_t*>(base + layout.offset(1));
  auto* c = reinterpret_cast<float*>(base + layout.offset(2));
  auto* x_pad = reinterpret_cast<uint16_t*>(base + layout.offset(3));
  const int64_t columns = forward_columns(d);
  if (!forward_over_padded_rows(d)) {
    for (int64_t g = 0; g < d.G; ++g) {
      pack_a_bf16(Kg, CgRS, {w + g * Kg * CgRS, CgRS, false}, a_packed);
      im2col_packed_b_bf16(x_n, d, g, b_packed);
      gemm_bf16_packed(Kg, columns, CgRS, a_packed, b_packed,
                       {c, columns, false, y_n + g * Kg * PQ, PQ, b ? b + g * Kg : nullptr, relu});
    }
    if (pool) maxpool2d_planes_bf16(*pool, n * d.K, (n + 1) * d.K, 0, d.P);
    return;
  }
  pad_image_bf16(x_n, d, x_pad);
  // Blocks of (an even number of) output rows, every group, then their pooled rows.
  const int64_t block_rows = forward_block_rows(d);
  if (d.G == 1) pack_a_bf16(Kg, CgRS, {w, CgRS, false}, a_packed);
  for (int64_t row0 = 0; row0 < d.P; row0 += block_rows) {
    const int64_t rows = std::min(block_rows, d.P - row0), columns_here = rows * padded_w(d);
    for (int64_t g = 0; g < d.G; ++g) {
      if (d.G > 1) pack_a_bf16(Kg, CgRS, {w + g * Kg * CgRS, CgRS, false}, a_packed);
      im2col_padded_packed_b_bf16(x_pad, d, g, row0, rows, b_packed);
      GemmBf16Output out{c, columns_here, false, y_n + g * Kg * PQ + row0 * d.Q, PQ, b ? b + g * Kg : nullptr, relu};
      out.y_pitch = padded_w(d);
      out.y_width = d.Q;
      gemm_bf16_packed(Kg, columns_here, CgRS, a_packed, b_packed, out);
    }
    // pooled rows [row0 / 2, (row0 + rows) / 2): the last block's odd row has no window
    if (pool) maxpool2d_planes_bf16(*pool, n * d.K, (n + 1) * d.K, row0 / 2, (row0 + rows) / 2);
  }
}

// Backward-data of a stride-1 conv on the packed route, as a forward conv (forward_image_packed)
// of dy with each group's kernel flipped and its input and output channels swapped, padded by
// dilation (R - 1) - pad (when that is not negative): dx comes out of the GEMM's tiles rounded,
// with no column-matrix gradient and no scatter.
bool bwd_data_as_forward(const ConvDims& d) {
  const kernels::Conv2dWindow& cw = d.cw;
  const int64_t span_h = cw.dilation_h * (d.R - 1), span_w = cw.dilation_w * (d.S - 1);
  return packs_operands() && cw.stride_h == 1 && cw.stride_w == 1 && cw.pad_top <= span_h && cw.pad_bottom <= span_h &&
         cw.pad_left <= span_w && cw.pad_right <= span_w;
}

ConvDims flipped_dims(const ConvDims& d) {
  ConvDims f = d;
  f.C = d.K, f.H = d.P, f.W = d.Q, f.K = d.C, f.Cg = d.Kg(), f.P = d.H, f.Q = d.W;
  const int64_t span_h = d.cw.dilation_h * (d.R - 1), span_w = d.cw.dilation_w * (d.S - 1);
  f.cw.pad_top = span_h - d.cw.pad_top, f.cw.pad_bottom = span_h - d.cw.pad_bottom;
  f.cw.pad_left = span_w - d.cw.pad_left, f.cw.pad_right = span_w - d.cw.pad_right;
  return f;
}

int64_t flipped_weight_bytes(const ConvDims& d) { return align64(d.K * d.CgRS() * 2); }

// w[K, Cg, R, S] -> w'[C, Kg, R, S]: w'[g Cg + c][k][r][s] = w[g Kg + k][c][R-1-r][S-1-s].
void flip_weights_bf16(const uint16_t* w, const ConvDims& d, uint16_t* flipped) {
  const int64_t Kg = d.Kg(), RS = d.R * d.S;
  for (int64_t g = 0; g < d.G; ++g)
    for (int64_t c = 0; c < d.Cg; ++c)
      for (int64_t k = 0; k < Kg; ++k)
        for (int64_t rs = 0; rs < RS; ++rs)
          flipped[((g * d.Cg + c) * Kg + k) * RS + rs] = w[((g * Kg + k) * d.Cg + c) * RS + (RS - 1 - rs)];
}

}  // namespace

int64_t pooled_dy_conv2d_bf16_bytes(const BoundNode& node) {
  const ConvDims d = node_dims(node);
  return node.num_chunks * partial_floats(d) * 4 + node.slots * bwd_weight_layout(d, true).bytes();
}

int64_t prepare_conv2d_bf16(BoundNode& node) {
  node.fusion = NodeFusion{};
  switch (node.op) {
    case PARITY_OP_CONV2D: {
      expect_arity(node, 2, 3, 1, 1);
      for (const BoundValue* v : {&node.in[0], &node.in[1], &node.out[0]})
        expect_value(node, *v, v->name, PARITY_BF16, 4);
      const ConvDims d = check_conv(node, node.in[0], node.in[1], node.out[0]);
      if (node.num_inputs == 3) {
        expect_value(node, node.in[2], "b", PARITY_F32, 1);
        const int64_t dims[1] = {d.K};
        expect_dims(node, node.in[2], "b", dims, 1, "[K]");
      }
      node.chunk = 1;  // one image per task
      node.num_chunks = d.N;
      return node.slots * forward_layout(d).bytes();
    }
    case PARITY_OP_CONV2D_BWD_DATA: {  // dy[N,K,P,Q], w -> dx[N,C,H,W]
      expect_arity(node, 2, 2, 1, 1);
      for (const BoundValue* v : {&node.in[0], &node.in[1], &node.out[0]})
        expect_value(node, *v, v->name, PARITY_BF16, 4);
      const ConvDims d = check_conv(node, node.out[0], node.in[1], node.in[0]);
      node.chunk = 1;
      node.num_chunks = d.N;
      if (bwd_data_as_forward(d)) return flipped_weight_bytes(d) + node.slots * forward_layout(flipped_dims(d)).bytes();
      return node.slots * bwd_data_layout(d).bytes();
    }
    default: {  // CONV2D_BWD_WEIGHT: x, dy -> dw bf16, db f32
      expect_arity(node, 2, 2, 1, 2);
      for (const BoundValue* v : {&node.in[0], &node.in[1], &node.out[0]})
        expect_value(node, *v, v->name, PARITY_BF16, 4);
      const ConvDims d = check_conv(node, node.in[0], node.out[0], node.in[1]);
      if (node.num_outputs == 2) {
        expect_value(node, node.out[1], "db", PARITY_F32, 1);
        const int64_t dims[1] = {d.K};
        expect_dims(node, node.out[1], "db", dims, 1, "[K]");
      }
      node.chunk = fixed_chunk_size(d.N, 1, kMaxWeightPartials);
      node.num_chunks = chunk_count(d.N, node.chunk);
      return node.num_chunks * partial_floats(d) * 4 + node.slots * bwd_weight_layout(d, false).bytes();
    }
  }
}

void run_conv2d_bf16(const BoundNode& node) {
  const ConvDims d = node_dims(node);
  const int64_t Kg = d.Kg(), CgRS = d.CgRS(), PQ = d.PQ();
  const bool packed = packs_operands();
  switch (node.op) {
    case PARITY_OP_CONV2D: {
      const uint16_t *x = bits(node.in[0]), *w = bits(node.in[1]);
      const float* b = node.num_inputs == 3 ? node.in[2].f32() : nullptr;
      uint16_t* y = bits(node.out[0]);
      const SlotLayout layout = forward_layout(d);
      const BoundNode* pool = node.fusion.pool_after;
      parallel_chunks(d.N, 1, [&](int64_t, int64_t n, int64_t) {
        unsigned char* base = slot_base(node, layout.bytes());
        const uint16_t* x_n = x + n * d.C * d.H * d.W;
        uint16_t* y_n = y + n * d.K * PQ;
        if (packed) {  // y_g = bf16(relu?(w_g col_g + b)) straight from the GEMM's tiles
          forward_image_packed(x_n, w, b, node.fusion.relu, d, layout, base, y_n, pool, n);
          return;
        }
        auto* col = reinterpret_cast<uint16_t*>(base);
        float* c = reinterpret_cast<float*>(base + layout.offset(1));
        unsigned char* scratch = base + layout.offset(2);
        im2col_bf16(x_n, d, col);
        for (int64_t g = 0; g < d.G; ++g)
          gemm_bf16(Kg, PQ, CgRS, {w + g * Kg * CgRS, CgRS, false}, {col + g * CgRS * PQ, PQ, false}, c + g * Kg * PQ,
                    PQ, false, scratch);
        for (int64_t k = 0; k < d.K; ++k) round_row_bf16(c + k * PQ, PQ, b ? b[k] : 0.0f, node.fusion.relu, y_n + k * PQ);
        if (pool) maxpool2d_planes_bf16(*pool, n * d.K, (n + 1) * d.K, 0, d.P);
      });
      return;
    }
    case PARITY_OP_CONV2D_BWD_DATA: {
      const uint16_t *dy = bits(node.in[0]), *w = bits(node.in[1]);
      uint16_t* dx = bits(node.out[0]);
      if (bwd_data_as_forward(d)) {
        auto* flipped = reinterpret_cast<uint16_t*>(node.workspace);
        flip_weights_bf16(w, d, flipped);
        const ConvDims f = flipped_dims(d);
        const SlotLayout layout = forward_layout(f);
        parallel_chunks(d.N, 1, [&](int64_t, int64_t n, int64_t) {
          forward_image_packed(dy + n * d.K * PQ, flipped, nullptr, false, f, layout,
                               slot_base(node, layout.bytes(), flipped_weight_bytes(d)), dx + n * d.C * d.H * d.W, nullptr,
                               n);
        });
        return;
      }
      const SlotLayout layout = bwd_data_layout(d);
      const int64_t plane = d.H * d.W;
      parallel_chunks(d.N, 1, [&](int64_t, int64_t n, int64_t) {
        unsigned char* base = slot_base(node, layout.bytes());
        if (packed) {  // per block of output rows: dcol = w_g^T dy_g, scattered into dx while in cache
          auto* a_packed = reinterpret_cast<uint32_t*>(base);
          auto* b_packed = reinterpret_cast<uint32_t*>(base + layout.offset(1));
          auto* dcol = reinterpret_cast<float*>(base + layout.offset(2));
          auto* dx_f = reinterpret_cast<float*>(base + layout.offset(3));
          std::fill_n(dx_f, d.C * plane, 0.0f);
          const int64_t block_rows = bwd_data_block_rows(d);
          for (int64_t g = 0; g < d.G; ++g) {
            pack_a_bf16(CgRS, Kg, {w + g * Kg * CgRS, CgRS, true}, a_packed);
            const uint16_t* dy_g = dy + (n * d.K + g * Kg) * PQ;
            for (int64_t p0 = 0; p0 < d.P; p0 += block_rows) {
              const int64_t p1 = std::min(d.P, p0 + block_rows), columns = (p1 - p0) * d.Q;
              pack_b_bf16(columns, Kg, {dy_g + p0 * d.Q, PQ, false}, b_packed);
              gemm_bf16_packed(CgRS, columns, Kg, a_packed, b_packed, GemmBf16Output{dcol, columns, false});
              col2im_rows_add_f32(dcol, d, p0, p1, dx_f + g * d.Cg * plane);
            }
          }
          cast_elements(dx_f, PARITY_F32, dx + n * d.C * plane, PARITY_BF16, d.C * plane);
          return;
        }
        float* dcol = reinterpret_cast<float*>(base);
        float* dx_f = reinterpret_cast<float*>(base + layout.offset(1));
        unsigned char* scratch = base + layout.offset(2);
        for (int64_t g = 0; g < d.G; ++g)
          gemm_bf16(CgRS, PQ, Kg, {w + g * Kg * CgRS, CgRS, true}, {dy + (n * d.K + g * Kg) * PQ, PQ, false},
                    dcol + g * CgRS * PQ, PQ, false, scratch);
        std::fill_n(dx_f, d.C * plane, 0.0f);
        for (int64_t c = 0; c < d.C; ++c)
          for (int64_t r = 0; r < d.R; ++r)
            for (int64_t s = 0; s < d.S; ++s)
              kernels::col2im_row_add_nchw_f32(dcol + ((c * d.R + r) * d.S + s) * PQ, d.H, d.W, r, s, d.cw, d.P, d.Q,
                                               dx_f + c * plane);
        cast_elements(dx_f, PARITY_F32, dx + n * d.C * plane, PARITY_BF16, d.C * plane);
      });
      return;
    }
    default: {
      const uint16_t *x = bits(node.in[0]), *dy = bits(node.in[1]);
      uint16_t* dw = bits(node.out[0]);
      float* db = node.num_outputs == 2 ? node.out[1].f32() : nullptr;
      const int64_t partial = partial_floats(d), weights = d.K * CgRS;
      auto* partials = reinterpret_cast<float*>(node.workspace);
      const BoundNode* pool = node.fusion.pool_source;
      const auto* mask = static_cast<const uint16_t*>(node.fusion.relu_mask.data);
      const auto* pooled_mask = static_cast<const uint16_t*>(node.fusion.pooled_relu.data);
      const SlotLayout layout = bwd_weight_layout(d, pool != nullptr);
      const int64_t slots_offset = node.num_chunks * partial * 4;
      // Every read (x, and dy or the pool's inputs) happens here, before dw and db are written
      // below: with pool_source, dw and db may lie on bytes of the pool's inputs.
      parallel_chunks(d.N, node.chunk, [&](int64_t chunk, int64_t n0, int64_t n1) {
        unsigned char* base = slot_base(node, layout.bytes(), slots_offset);
        unsigned char* pooled = base + layout.offset(2);
        float* dw_part = partials + chunk * partial;
        float* db_part = dw_part + weights;
        std::fill_n(db_part, d.K, 0.0f);
        for (int64_t n = n0; n < n1; ++n) {
          const uint16_t* dy_n = dy + n * d.K * PQ;
          if (pool) {  // image n's dy, as the skipped MAXPOOL2D_BWD (and RELU_BWD) would write it
            auto* made = reinterpret_cast<uint16_t*>(pooled);
            maxpool2d_bwd_planes_bf16(*pool, mask, pooled_mask, n * d.K, (n + 1) * d.K, made,
                                      reinterpret_cast<float*>(base + layout.offset(3)));
            dy_n = made;
          }
          const uint16_t* x_n = x + n * d.C * d.H * d.W;
          // dw_g^T[CgRS, Kg] (+)= col_g[CgRS, PQ] dy_n,g^T: col is gemm_bf16's A (packed as
          // stored), and the smaller dy its transposed B
          if (packed) {
            auto* a_packed = reinterpret_cast<uint32_t*>(base);
            auto* b_packed = reinterpret_cast<uint32_t*>(base + layout.offset(1));
            auto* x_pad = reinterpret_cast<uint16_t*>(base + layout.offset(4));
            const bool padded = layout.sizes[4] > 0;  // stride 1: rows copied from the padded image
            if (padded) pad_image_bf16(x_n, d, x_pad);
            for (int64_t g = 0; g < d.G; ++g) {
              if (padded)
                im2col_padded_packed_a_bf16(x_pad, d, g, a_packed);
              else
                im2col_packed_a_bf16(x_n, d, g, a_packed);
              pack_b_bf16(Kg, PQ, {dy_n + g * Kg * PQ, PQ, true}, b_packed);
              gemm_bf16_packed(CgRS, Kg, PQ, a_packed, b_packed, GemmBf16Output{dw_part + g * Kg * CgRS, Kg, n != n0});
            }
          } else {
            auto* col = reinterpret_cast<uint16_t*>(base);
            im2col_bf16(x_n, d, col);
            for (int64_t g = 0; g < d.G; ++g)
              gemm_bf16(CgRS, Kg, PQ, {col + g * CgRS * PQ, PQ, false}, {dy_n + g * Kg * PQ, PQ, true},
                        dw_part + g * Kg * CgRS, Kg, n != n0, base + layout.offset(1));
          }
          for (int64_t k = 0; k < d.K; ++k) db_part[k] += sum_bf16(dy_n + k * PQ, PQ);
        }
      });
      // The partials in chunk order, then the one rounding of dw (element (k, j) of dw lies at
      // (j, k - g Kg) of its group's transposed block in a partial).
      parallel_chunks(weights + d.K, kElementChunk, [&](int64_t, int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t k = i / CgRS, g = k / Kg;
          const int64_t at = i < weights ? g * Kg * CgRS + (i % CgRS) * Kg + (k - g * Kg) : i;
          float sum = partials[at];
          for (int64_t c = 1; c < node.num_chunks; ++c) sum += partials[c * partial + at];
          if (i < weights) dw[i] = float_to_bf16_bits(sum);
          else if (db) db[i - weights] = sum;
        }
      });
      return;
    }
  }
}

}  // namespace cpu
}  // namespace parity
