// backends/cpu/bf16_gemm_ops.cpp — LINEAR and CONV2D (forward, backward-data, backward-weight)
// on bf16 values (issue #14) as gemm_bf16 products (gemm_bf16.h: VDPBF16PS or the f32-conversion
// route, chosen at run time): bf16 operands (conv: the column matrix built in bf16), f32
// accumulation, the f32 bias added before the one rounding to bf16 (half.h); db summed in f32.
//
//   linear    y[N,O] = x w^T + b, dx = dy w, dw = dy^T x: split along a dimension of w (O for y,
//             I for dx and dw), so no reduction is split
//   conv2d    per image and group, col[CgRS, PQ] (conv_geometry.h's im2col, in bf16):
//             y_n = w_g col_n + b (and relu when the backend fused the next node, cpu_fusion.cpp);
//             dcol = w_g^T dy_n, then col2im in f32; dw^T = sum_n col_n dy_n^T (col packed as
//             stored, dy transposed: the smaller of the two)
//             with one partial per fixed chunk of images, summed in chunk order; db per image
//             and channel in sum_bf16's fixed lane order; with pool_source (cpu_fusion.cpp) each
//             image's dy made from the 2x2 max-pool backward (and relu backward) in the slot
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
      if (at < n) acc[v] = _mm512_add_ps(acc[v], widen_bf16x16(x + at, lanes16(n - at)));  // +0 past n: no change
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

// Per-slot bytes of each direction (see the prepare below).
int64_t forward_slot_bytes(const ConvDims& d) {
  return col_bytes(d) + align64(d.K * d.PQ() * 4) + align64(gemm_bf16_scratch_bytes(d.Kg(), d.PQ(), d.CgRS()));
}
int64_t bwd_data_slot_bytes(const ConvDims& d) {
  return align64(d.C * d.R * d.S * d.PQ() * 4) + align64(d.C * d.H * d.W * 4) +
         align64(gemm_bf16_scratch_bytes(d.CgRS(), d.PQ(), d.Kg()));
}
// With pool_source, a slot also holds image n's dy (made from the pool) and an f32 plane.
int64_t bwd_weight_slot_bytes(const ConvDims& d, bool pooled) {
  return col_bytes(d) + align64(gemm_bf16_scratch_bytes(d.CgRS(), d.Kg(), d.PQ())) +
         (pooled ? align64(d.K * d.PQ() * 2) + align64(d.PQ() * 4) : 0);
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

}  // namespace

int64_t pooled_dy_conv2d_bf16_bytes(const BoundNode& node) {
  const ConvDims d = node_dims(node);
  return node.num_chunks * partial_floats(d) * 4 + node.slots * bwd_weight_slot_bytes(d, true);
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
      return node.slots * forward_slot_bytes(d);
    }
    case PARITY_OP_CONV2D_BWD_DATA: {  // dy[N,K,P,Q], w -> dx[N,C,H,W]
      expect_arity(node, 2, 2, 1, 1);
      for (const BoundValue* v : {&node.in[0], &node.in[1], &node.out[0]})
        expect_value(node, *v, v->name, PARITY_BF16, 4);
      const ConvDims d = check_conv(node, node.out[0], node.in[1], node.in[0]);
      node.chunk = 1;
      node.num_chunks = d.N;
      return node.slots * bwd_data_slot_bytes(d);
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
      return node.num_chunks * partial_floats(d) * 4 + node.slots * bwd_weight_slot_bytes(d, false);
    }
  }
}

void run_conv2d_bf16(const BoundNode& node) {
  const ConvDims d = node_dims(node);
  const int64_t Kg = d.Kg(), CgRS = d.CgRS(), PQ = d.PQ();
  switch (node.op) {
    case PARITY_OP_CONV2D: {
      const uint16_t *x = bits(node.in[0]), *w = bits(node.in[1]);
      const float* b = node.num_inputs == 3 ? node.in[2].f32() : nullptr;
      uint16_t* y = bits(node.out[0]);
      const int64_t slot = forward_slot_bytes(d);
      parallel_chunks(d.N, 1, [&](int64_t, int64_t n, int64_t) {
        unsigned char* base = slot_base(node, slot);
        auto* col = reinterpret_cast<uint16_t*>(base);
        float* c = reinterpret_cast<float*>(base + col_bytes(d));
        unsigned char* scratch = base + col_bytes(d) + align64(d.K * PQ * 4);
        im2col_bf16(x + n * d.C * d.H * d.W, d, col);
        for (int64_t g = 0; g < d.G; ++g)
          gemm_bf16(Kg, PQ, CgRS, {w + g * Kg * CgRS, CgRS, false}, {col + g * CgRS * PQ, PQ, false}, c + g * Kg * PQ,
                    PQ, false, scratch);
        uint16_t* y_n = y + n * d.K * PQ;
        for (int64_t k = 0; k < d.K; ++k) round_row_bf16(c + k * PQ, PQ, b ? b[k] : 0.0f, node.fusion.relu, y_n + k * PQ);
      });
      return;
    }
    case PARITY_OP_CONV2D_BWD_DATA: {
      const uint16_t *dy = bits(node.in[0]), *w = bits(node.in[1]);
      uint16_t* dx = bits(node.out[0]);
      const int64_t slot = bwd_data_slot_bytes(d);
      const int64_t dcol_bytes = align64(d.C * d.R * d.S * PQ * 4), plane = d.H * d.W;
      parallel_chunks(d.N, 1, [&](int64_t, int64_t n, int64_t) {
        unsigned char* base = slot_base(node, slot);
        float* dcol = reinterpret_cast<float*>(base);
        float* dx_f = reinterpret_cast<float*>(base + dcol_bytes);
        unsigned char* scratch = base + dcol_bytes + align64(d.C * plane * 4);
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
      const int64_t slots_offset = node.num_chunks * partial * 4, slot = bwd_weight_slot_bytes(d, pool != nullptr);
      // Every read (x, and dy or the pool's inputs) happens here, before dw and db are written
      // below: with pool_source, dw and db may lie on bytes of the pool's inputs.
      parallel_chunks(d.N, node.chunk, [&](int64_t chunk, int64_t n0, int64_t n1) {
        unsigned char* base = slot_base(node, slot, slots_offset);
        auto* col = reinterpret_cast<uint16_t*>(base);
        unsigned char* scratch = base + col_bytes(d);
        unsigned char* pooled = scratch + align64(gemm_bf16_scratch_bytes(CgRS, Kg, PQ));
        float* dw_part = partials + chunk * partial;
        float* db_part = dw_part + weights;
        std::fill_n(db_part, d.K, 0.0f);
        for (int64_t n = n0; n < n1; ++n) {
          const uint16_t* dy_n = dy + n * d.K * PQ;
          if (pool) {  // image n's dy, as the skipped MAXPOOL2D_BWD (and RELU_BWD) would write it
            auto* made = reinterpret_cast<uint16_t*>(pooled);
            maxpool2d_bwd_planes_bf16(*pool, mask, n * d.K, (n + 1) * d.K, made,
                                      reinterpret_cast<float*>(pooled + align64(d.K * PQ * 2)));
            dy_n = made;
          }
          im2col_bf16(x + n * d.C * d.H * d.W, d, col);
          // dw_g^T[CgRS, Kg] (+)= col_g[CgRS, PQ] dy_n,g^T: col is gemm_bf16's A, packed as
          // stored, and the smaller dy its transposed B
          for (int64_t g = 0; g < d.G; ++g)
            gemm_bf16(CgRS, Kg, PQ, {col + g * CgRS * PQ, PQ, false}, {dy_n + g * Kg * PQ, PQ, true},
                      dw_part + g * Kg * CgRS, Kg, n != n0, scratch);
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
