// backends/cpu/conv2d.cpp — conv2d on the cpu backend, NCHW float32: forward, backward-data and
// backward-weight side by side, images in parallel.
// (bf16 operands: bf16_gemm_ops.cpp; f16: half_nodes.h widens them into this file's f32 kernels.)
//
//   depthwise     (one input channel per group) conv2d_depthwise.cpp's direct kernels, any
//                 stride, dilation and padding (scratch: one padded plane per worker slot);
//   the fast paths below (direct kernels) take plain convolutions only: one group, no
//                 dilation, symmetric padding; the GEMM path takes everything, a GEMM per group
//                 over slices of the one column matrix (ops/kernels/conv_geometry.h).
//   forward       stride 1 (AVX-512 builds): a direct kernel, with bias and (when the backend
//                 fused a following relu, cpu_ops.h) relu in its epilogue:
//                 conv2d_direct_rows.cpp's (flattened padded rows, any K) where pad < kernel,
//                 else the one below when K is a multiple of 16; otherwise im2col + GEMM
//                 (gemm.h, Eigen's kernel) per image: y_n[K, PQ] = w[K, CRS] * col_n + b
//   backward-data for stride 1 and pad < kernel, a forward conv of dy with the flipped,
//                 transposed filter (the direct kernel again: any C on the flattened rows);
//                 otherwise dcol[CRS, PQ] = w^T * dy_n, then col2im adds dcol into dx_n
//   backward-wt   stride 1, 3 kernel columns and C a multiple of 16 (AVX-512 builds):
//                 conv2d_bwd_weight_nhwc.cpp, lanes along the input channels; else stride 1,
//                 3 or 5 kernel columns and rows of under 16 outputs:
//                 conv2d_bwd_weight_batch_lanes.cpp, lanes along a chunk's 16 images; else
//                 stride 1 and 3 or 5 kernel columns: a direct kernel with
//                 lanes along the output row, accumulating dy * x_pad in registers; otherwise
//                 dw[K, CRS] = sum_n dy_n * col_n^T in GEMM panels of about kPanelColumns
//                 columns (row tiles of a large image, or small images side by side) so col
//                 stays in cache;  db[k] = sum_n sum_pq dy_n[k, pq]
// The column matrix col[C*R*S, P*Q] is that of ops/kernels/conv_geometry.h; a 1x1, stride-1,
// unpadded convolution uses x_n itself. Scratch: per worker slot a col buffer (or padded
// images, and the direct backward-weight's lanes) and GEMM packing space; backward-weight adds
// one dw/db partial per batch chunk (chunk size from N alone: 16 images on the batch-lane
// kernel), summed afterwards in chunk order.
// Every sum has a fixed order, so results are bitwise reproducible at any thread count.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "backends/cpu/conv2d_bwd_weight_batch_lanes.h"
#include "backends/cpu/conv2d_bwd_weight_nhwc.h"
#include "backends/cpu/conv2d_depthwise.h"
#include "backends/cpu/conv2d_direct_rows.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half_nodes.h"
#include "backends/cpu/gemm.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/conv_geometry.h"

namespace parity {
namespace cpu {
namespace {

// Upper bound on the partial buffers of backward-weight: enough tasks for several cores, chunks
// of a few images (one GEMM panel for small images), and a bounded amount of memory
// (num_chunks * K*C*R*S floats).
constexpr int64_t kMaxBatchChunks = 16;
// Elements per task when summing the partials.
constexpr int64_t kSumChunk = 4096;

// `cw` is the window with its defaults applied; the direct kernels, which take plain
// convolutions only (cw.plain()), read their padding from parity_conv2d_params directly.
// The column matrix has C*R*S rows (crs), a weight row Cg*R*S (wcrs, Cg = C / groups).
struct ConvGeometry {
  int64_t N, C, H, W, K, R, S, P, Q;
  kernels::Conv2dWindow cw;
  int64_t G() const { return cw.groups; }
  int64_t Cg() const { return C / cw.groups; }
  int64_t Kg() const { return K / cw.groups; }
  int64_t crs() const { return C * R * S; }
  int64_t wcrs() const { return Cg() * R * S; }
  int64_t pq() const { return P * Q; }
  int64_t chw() const { return C * H * W; }
  int64_t kpq() const { return K * P * Q; }
};

// x[N,C,H,W] and w[K,C/groups,R,S] give the geometry; P and Q follow from the params.
ConvGeometry geometry(const BoundValue& x, const BoundValue& w, const parity_conv2d_params& cp) {
  ConvGeometry g{};
  g.N = x.dims[0], g.C = x.dims[1], g.H = x.dims[2], g.W = x.dims[3];
  g.K = w.dims[0], g.R = w.dims[2], g.S = w.dims[3];
  g.cw = kernels::conv2d_window(cp);
  g.P = kernels::conv2d_output_h(g.cw, g.H, g.R);
  g.Q = kernels::conv2d_output_w(g.cw, g.W, g.S);
  return g;
}

bool is_pointwise(const ConvGeometry& g, const parity_conv2d_params&) {
  const kernels::Conv2dWindow& cw = g.cw;
  return g.R == 1 && g.S == 1 && cw.stride_h == 1 && cw.stride_w == 1 && cw.pad_top == 0 && cw.pad_left == 0 &&
         cw.pad_bottom == 0 && cw.pad_right == 0;
}

// One input channel per group (groups == C, any channel multiplier K / C): conv2d_depthwise.cpp.
bool is_depthwise(const ConvGeometry& g) { return g.G() > 1 && g.Cg() == 1; }
DepthwiseShape depthwise_shape(const ConvGeometry& g) { return {g.N, g.C, g.H, g.W, g.K / g.C, g.R, g.S, g.P, g.Q, g.cw}; }

void check_params(const BoundNode& node) {
  const parity_conv2d_params& cp = node.params.conv2d;
  if (cp.stride_h <= 0 || cp.stride_w <= 0)
    fail(node, "stride must be > 0, got " + std::to_string(cp.stride_h) + "x" + std::to_string(cp.stride_w));
  if (cp.pad_h < 0 || cp.pad_w < 0)
    fail(node, "padding must be >= 0, got " + std::to_string(cp.pad_h) + "x" + std::to_string(cp.pad_w));
  if (cp.pad_end_given && (cp.pad_bottom < 0 || cp.pad_right < 0))
    fail(node, "end padding must be >= 0, got " + std::to_string(cp.pad_bottom) + "x" + std::to_string(cp.pad_right));
  if (cp.dilation_h < 0 || cp.dilation_w < 0 || cp.groups < 0)
    fail(node, "dilation and groups must be >= 1 (0 reads as 1), got dilation " + std::to_string(cp.dilation_h) + "x" +
                   std::to_string(cp.dilation_w) + ", groups " + std::to_string(cp.groups));
}

// Checks x (or dx) against w and the params, and y (or dy) against the geometry they give.
ConvGeometry check_conv(const BoundNode& node, const BoundValue& x, const char* x_role, const BoundValue& w,
                        const char* w_role, const BoundValue& y, const char* y_role) {
  check_params(node);
  expect_value(node, x, x_role, PARITY_F32, 4);
  expect_value(node, w, w_role, PARITY_F32, 4);
  const int64_t groups = parity_conv2d_groups(&node.params.conv2d);
  if (x.dims[1] % groups != 0 || w.dims[0] % groups != 0)
    fail(node, "groups " + std::to_string(groups) + " must divide the channels of " + x_role + " " + x.shape_str() +
                   " and the filters of " + w_role + " " + w.shape_str());
  if (w.dims[1] != x.dims[1] / groups)
    fail(node, std::string(w_role) + " must be [K,C/groups,R,S] with C/groups = " + std::to_string(x.dims[1] / groups) +
                   " (the channels of " + x_role + " in " + std::to_string(groups) + " groups), got " + w.shape_str());
  const ConvGeometry g = geometry(x, w, node.params.conv2d);
  if (g.P < 1 || g.Q < 1)
    fail(node, std::string("the padded input ") + x.shape_str() + " is smaller than the kernel " + w.shape_str());
  const int64_t dims[4] = {g.N, g.K, g.P, g.Q};
  expect_dims(node, y, y_role, dims, 4, "[N,K,P,Q] with P = (H + pad_top + pad_bottom - dilation (R - 1) - 1) / stride + 1, Q likewise");
  return g;
}

void check_bias(const BoundNode& node, const BoundValue& b, const char* role, int64_t K) {
  expect_value(node, b, role, PARITY_F32, 1);
  const int64_t dims[1] = {K};
  expect_dims(node, b, role, dims, 1, "[K], K = the output channels");
}

}  // namespace

// ---------------------------------------------------------------- shared pieces
namespace {

// Columns of col per backward-weight GEMM: 144 x 1024 floats (conv2's panel) is 576 KiB, in L2.
constexpr int64_t kPanelColumns = 1024;

// One GEMM covers `images` whole images side by side, or `rows` output rows of one image.
struct Panel {
  int64_t images, rows;
};
int64_t panel_columns(const ConvGeometry& g, const Panel& panel) { return panel.images * panel.rows * g.Q; }
int64_t panel_col_floats(const ConvGeometry& g, const parity_conv2d_params& cp, const Panel& panel) {
  return is_pointwise(g, cp) ? 0 : align64(g.crs() * panel_columns(g, panel) * 4) / 4;
}

// Rows [p0, p1) of image x_n's column matrix, into col (rows `ld` floats apart).
void im2col_rows_nchw_f32(const float* x_n, const ConvGeometry& g, const parity_conv2d_params&, int64_t p0,
                          int64_t p1, float* col, int64_t ld) {
  const kernels::Conv2dWindow& cw = g.cw;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        const float* plane = x_n + c * g.H * g.W;
        float* row = col + ((c * g.R + r) * g.S + s) * ld;
        const int64_t ts = s * cw.dilation_w;
        int64_t qb, qe;
        kernels::conv2d_valid_outputs(g.W, g.Q, ts, cw.stride_w, cw.pad_left, &qb, &qe);
        for (int64_t p = p0; p < p1; ++p) {
          float* dst = row + (p - p0) * g.Q;
          const int64_t h = kernels::conv2d_input_coord(p, r * cw.dilation_h, cw.stride_h, cw.pad_top);
          if (h < 0 || h >= g.H) {
            std::memset(dst, 0, sizeof(float) * g.Q);
            continue;
          }
          const float* src = plane + h * g.W;
          for (int64_t q = 0; q < qb; ++q) dst[q] = 0.0f;
          // Input column q * stride_w - pad_left + ts (kernels::conv2d_input_coord); the strides
          // the models use get loops the compiler vectorizes (a copy; even lanes of two vectors).
          const float* s0 = src + (ts - cw.pad_left);
          if (cw.stride_w == 1) {
            for (int64_t q = qb; q < qe; ++q) dst[q] = s0[q];
          } else if (cw.stride_w == 2) {
            for (int64_t q = qb; q < qe; ++q) dst[q] = s0[2 * q];
          } else {
            for (int64_t q = qb; q < qe; ++q) dst[q] = s0[q * cw.stride_w];
          }
          for (int64_t q = qe; q < g.Q; ++q) dst[q] = 0.0f;
        }
      }
}

// ---- the direct kernel: stride 1, K a multiple of 16, AVX-512 builds
//
// For 16 output channels and 16 consecutive outputs of a row, 16 accumulator registers take
// sum over (c, r, s) of x_pad[c, p + r, q + s .. +16] * w[k, c, r, s]: one load and 16 FMAs with
// a broadcast weight per tap, no column matrix. The image is first copied with its zero padding
// (and 16 floats of slack per row, so full-width loads stay inside the buffer); the weights are
// first reordered to wt[c, r, s, k] so that a tap's 16 weights are contiguous. Each output is
// summed in (c, r, s) order, then the bias added: reproducible at any thread count.
constexpr int64_t kDirectBlock = 16;
#if defined(__AVX512F__)
constexpr bool kHaveDirect = true;
#else
constexpr bool kHaveDirect = false;
#endif

// Where pad < kernel, conv2d_direct_rows.cpp's kernel (flattened padded rows) runs instead.
DirectRowsShape direct_rows_shape(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return {g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q, cp.pad_h, cp.pad_w};
}
// K a multiple of 16 for the kernel below; any K where conv2d_direct_rows.cpp's applies.
bool direct_applies(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return kHaveDirect && g.cw.plain() && cp.stride_h == 1 && cp.stride_w == 1 &&
         (g.K % kDirectBlock == 0 || conv2d_direct_rows_applies(direct_rows_shape(g, cp)));
}
int64_t direct_row_floats(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return g.W + 2 * cp.pad_w + kDirectBlock;
}
int64_t direct_image_floats(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return align64(g.C * (g.H + 2 * cp.pad_h) * direct_row_floats(g, cp) * 4) / 4;
}
int64_t direct_weight_floats(const ConvGeometry& g) { return align64(g.K * g.crs() * 4) / 4; }  // plain: crs == wcrs
// Scratch of a node using the direct kernel: the reordered weights, then one padded image per slot.
int64_t direct_scratch_floats(const ConvGeometry& g, const parity_conv2d_params& cp, int32_t slots) {
  const DirectRowsShape rows = direct_rows_shape(g, cp);
  return direct_weight_floats(g) +
         slots * (conv2d_direct_rows_applies(rows) ? conv2d_direct_rows_image_floats(rows) : direct_image_floats(g, cp));
}

#if defined(__AVX512F__)
void pad_image_nchw_f32(const float* x_n, const ConvGeometry& g, const parity_conv2d_params& cp, float* xpad) {
  const int64_t Hp = g.H + 2 * cp.pad_h, Wp = direct_row_floats(g, cp);
  for (int64_t c = 0; c < g.C; ++c) {
    float* plane = xpad + c * Hp * Wp;
    std::memset(plane, 0, sizeof(float) * cp.pad_h * Wp);
    for (int64_t h = 0; h < g.H; ++h) {
      float* row = plane + (h + cp.pad_h) * Wp;
      std::memset(row, 0, sizeof(float) * cp.pad_w);
      std::memcpy(row + cp.pad_w, x_n + (c * g.H + h) * g.W, sizeof(float) * g.W);
      std::memset(row + cp.pad_w + g.W, 0, sizeof(float) * (Wp - cp.pad_w - g.W));
    }
    std::memset(plane + (g.H + cp.pad_h) * Wp, 0, sizeof(float) * cp.pad_h * Wp);
  }
}

void conv_direct_image_f32(const float* xpad, const float* wt, const float* b, bool relu, float* y_n,
                           const ConvGeometry& g, const parity_conv2d_params& cp) {
  const int64_t Hp = g.H + 2 * cp.pad_h, Wp = direct_row_floats(g, cp);
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t kb = 0; kb < g.K; kb += kDirectBlock)
    for (int64_t p = 0; p < g.P; ++p)
      for (int64_t q0 = 0; q0 < g.Q; q0 += kDirectBlock) {
        const __mmask16 mask =
            g.Q - q0 >= kDirectBlock ? __mmask16(0xFFFF) : __mmask16((1u << (g.Q - q0)) - 1u);
        __m512 acc[kDirectBlock];
        for (int64_t k = 0; k < kDirectBlock; ++k) acc[k] = zero;
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t r = 0; r < g.R; ++r) {
            const float* xr = xpad + (c * Hp + p + r) * Wp + q0;
            const float* wr = wt + ((c * g.R + r) * g.S) * g.K + kb;
            for (int64_t s = 0; s < g.S; ++s) {
              const __m512 xv = _mm512_loadu_ps(xr + s);
              const float* ws = wr + s * g.K;
#pragma GCC unroll 16
              for (int64_t k = 0; k < kDirectBlock; ++k) acc[k] = _mm512_fmadd_ps(xv, _mm512_set1_ps(ws[k]), acc[k]);
            }
          }
        for (int64_t k = 0; k < kDirectBlock; ++k) {
          __m512 v = b ? _mm512_add_ps(acc[k], _mm512_set1_ps(b[kb + k])) : acc[k];
          // relu as kernels::relu_f32: x <= 0 ? 0 : x (NaN kept)
          if (relu) v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero, _CMP_NLE_UQ), v);
          _mm512_mask_storeu_ps(y_n + (kb + k) * g.pq() + p * g.Q + q0, mask, v);
        }
      }
}
#endif

// y = conv(x, w) + b, relu'd when asked, with the direct kernel over images in parallel.
// `wt` must already hold the weights as [C, R, S, K]; `xpads` is one padded image per slot.
// `pool_after`: only on the flattened-rows kernel (conv2d_runs_direct_rows_f32).
void conv_direct_f32(const float* x, const float* wt, const float* b, bool relu, float* y, const ConvGeometry& g,
                     const parity_conv2d_params& cp, float* xpads, int32_t slots, const BoundNode* pool_after) {
  const DirectRowsShape rows = direct_rows_shape(g, cp);
  if (conv2d_direct_rows_applies(rows))
    return conv2d_direct_rows_f32(x, wt, b, relu, y, rows, xpads, slots, pool_after);
#if defined(__AVX512F__)
  parallel_chunks(g.N, 1, [&](int64_t, int64_t begin, int64_t end) {
    float* xpad = xpads + worker_slot(slots) * direct_image_floats(g, cp);
    for (int64_t n = begin; n < end; ++n) {
      pad_image_nchw_f32(x + n * g.chw(), g, cp, xpad);
      conv_direct_image_f32(xpad, wt, b, relu, y + n * g.kpq(), g, cp);
    }
  });
#else
  (void)x, (void)wt, (void)b, (void)relu, (void)y, (void)g, (void)cp, (void)xpads, (void)slots;
#endif
}

// ---- the GEMM path: y_n[K, PQ] = w[K, CRS] * col_n per image, then bias and relu per row
int64_t gemm_path_slot_floats(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return (is_pointwise(g, cp) ? 0 : align64(g.crs() * g.pq() * 4) / 4) + gemm_scratch_floats(g.Kg(), g.pq(), g.wcrs());
}

void conv_gemm_f32(const float* x, const float* w, const float* b, bool relu, float* y, const ConvGeometry& g,
                   const parity_conv2d_params& cp, float* workspace, int32_t slots) {
  const int64_t slot_floats = gemm_path_slot_floats(g, cp);
  parallel_chunks(g.N, 1, [&](int64_t, int64_t begin, int64_t end) {
    float* col_buf = workspace + worker_slot(slots) * slot_floats;
    float* gemm_buf = col_buf + (is_pointwise(g, cp) ? 0 : align64(g.crs() * g.pq() * 4) / 4);
    for (int64_t n = begin; n < end; ++n) {
      const float* col = x + n * g.chw();
      if (!is_pointwise(g, cp)) {
        im2col_rows_nchw_f32(col, g, cp, 0, g.P, col_buf, g.pq());
        col = col_buf;
      }
      float* y_n = y + n * g.kpq();
      // Group gi: y_n[its Kg rows] = w[its Kg rows] * col[its Cg*R*S rows]
      for (int64_t gi = 0; gi < g.G(); ++gi)
        gemm_f32(g.Kg(), g.pq(), g.wcrs(), {w + gi * g.Kg() * g.wcrs(), g.wcrs(), false},
                 {col + gi * g.wcrs() * g.pq(), g.pq(), false}, y_n + gi * g.Kg() * g.pq(), g.pq(), false, gemm_buf);
      if (b || relu)
        for (int64_t k = 0; k < g.K; ++k) {
          float* row = y_n + k * g.pq();
          const float bias = b ? b[k] : 0.0f;
          for (int64_t i = 0; i < g.pq(); ++i) row[i] = relu ? kernels::relu_f32(row[i] + bias) : row[i] + bias;
        }
    }
  });
}

}  // namespace

// ---------------------------------------------------------------- forward
int64_t prepare_conv2d(BoundNode& node) {
  if (runs_on_gemm_bf16(node)) return prepare_conv2d_bf16(node);  // bf16_gemm_ops.cpp
  expect_arity(node, 2, 3, 1, 1);
  const ConvGeometry g = check_conv(node, node.in[0], "x", node.in[1], "w", node.out[0], "y");
  if (node.num_inputs == 3) check_bias(node, node.in[2], "b", g.K);
  node.chunk = 1;  // one image per task
  node.num_chunks = chunk_count(g.N, node.chunk);
  const parity_conv2d_params& cp = node.params.conv2d;
  if (is_depthwise(g)) return node.slots * depthwise_scratch_floats(depthwise_shape(g)) * 4;
  if (direct_applies(g, cp)) return direct_scratch_floats(g, cp, node.slots) * 4;
  return node.slots * gemm_path_slot_floats(g, cp) * 4;
}

bool conv2d_runs_direct_rows_f32(const BoundNode& node) {
  if (node.op != PARITY_OP_CONV2D || runs_on_gemm_bf16(node) || node.in[0].dtype != PARITY_F32 ||
      node.in[1].dtype != PARITY_F32 || node.out[0].dtype != PARITY_F32)
    return false;
  const parity_conv2d_params& cp = node.params.conv2d;
  const ConvGeometry g = geometry(node.in[0], node.in[1], cp);
  return !is_depthwise(g) && direct_applies(g, cp) && conv2d_direct_rows_applies(direct_rows_shape(g, cp));
}

void run_conv2d(const BoundNode& node) {
  if (runs_on_gemm_bf16(node)) return run_conv2d_bf16(node);
  const parity_conv2d_params& cp = node.params.conv2d;
  const ConvGeometry g = geometry(node.in[0], node.in[1], cp);
  const float* x = node.in[0].f32();
  const float* w = node.in[1].f32();
  const float* b = node.num_inputs == 3 ? node.in[2].f32() : nullptr;
  float* y = node.out[0].f32();
  float* workspace = reinterpret_cast<float*>(node.workspace);
  if (is_depthwise(g)) {
    depthwise_forward_f32(x, w, b, node.fusion.relu, y, depthwise_shape(g), workspace, node.slots);
    return;
  }
  if (direct_applies(g, cp)) {
    // wt[c, r, s, k] = w[k, c, r, s]
    for (int64_t k = 0; k < g.K; ++k)
      for (int64_t i = 0; i < g.crs(); ++i) workspace[i * g.K + k] = w[k * g.crs() + i];
    conv_direct_f32(x, workspace, b, node.fusion.relu, y, g, cp, workspace + direct_weight_floats(g), node.slots,
                    node.fusion.pool_after);
    return;
  }
  conv_gemm_f32(x, w, b, node.fusion.relu, y, g, cp, workspace, node.slots);
}

// ---------------------------------------------------------------- backward, data
namespace {

// For stride 1 and pad < kernel, dx is a forward conv of dy with the flipped, transposed filter
// w'[c, k, r, s] = w[k, c, R-1-r, S-1-s] and padding R-1-pad: the direct kernel runs it (its
// flattened-rows form for any C, its output channels). Otherwise dcol = w^T dy_n, then col2im.
ConvGeometry flipped_geometry(const ConvGeometry& g) {
  ConvGeometry f{g.N, g.K, g.P, g.Q, g.C, g.R, g.S, g.H, g.W, g.cw};
  f.cw.pad_top = f.cw.pad_bottom = g.R - 1 - g.cw.pad_top;
  f.cw.pad_left = f.cw.pad_right = g.S - 1 - g.cw.pad_left;
  return f;
}
parity_conv2d_params flipped_params(const ConvGeometry& g, const parity_conv2d_params& cp) {
  parity_conv2d_params f = cp;
  f.pad_h = static_cast<int32_t>(g.R - 1 - cp.pad_h);
  f.pad_w = static_cast<int32_t>(g.S - 1 - cp.pad_w);
  return f;
}
bool bwd_data_direct(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return g.cw.plain() && cp.pad_h < g.R && cp.pad_w < g.S && direct_applies(flipped_geometry(g), flipped_params(g, cp));
}

// Scratch of the col2im path per worker slot: the whole dcol[CRS, PQ] of one image, then GEMM
// packing space.
int64_t col2im_dcol_floats(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return is_pointwise(g, cp) ? 0 : align64(g.crs() * g.pq() * 4) / 4;
}
int64_t col2im_slot_floats(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return col2im_dcol_floats(g, cp) + gemm_scratch_floats(g.wcrs(), g.pq(), g.Kg());
}

}  // namespace

int64_t prepare_conv2d_bwd_data(BoundNode& node) {
  if (runs_on_gemm_bf16(node)) return prepare_conv2d_bf16(node);  // bf16_gemm_ops.cpp
  expect_arity(node, 2, 2, 1, 1);
  // dx plays the role of x: its shape and w's define the geometry dy must have.
  const ConvGeometry g = check_conv(node, node.out[0], "dx", node.in[1], "w", node.in[0], "dy");
  node.chunk = 1;
  node.num_chunks = chunk_count(g.N, node.chunk);
  const parity_conv2d_params& cp = node.params.conv2d;
  if (is_depthwise(g)) return node.slots * depthwise_scratch_floats(depthwise_shape(g)) * 4;
  const int64_t sparse = sparse_dy_applies(node) ? prepare_sparse_dy_bwd_data(node) : 0;
  if (bwd_data_direct(g, cp))
    return std::max(sparse, direct_scratch_floats(flipped_geometry(g), flipped_params(g, cp), node.slots) * 4);
  return std::max(sparse, node.slots * col2im_slot_floats(g, cp) * 4);
}

void run_conv2d_bwd_data(const BoundNode& node) {
  if (runs_on_gemm_bf16(node)) return run_conv2d_bf16(node);
  const parity_conv2d_params cp = node.params.conv2d;
  const ConvGeometry g = geometry(node.out[0], node.in[1], cp);
  const float* dy = node.in[0].f32();
  const float* w = node.in[1].f32();
  float* dx = node.out[0].f32();
  float* workspace = reinterpret_cast<float*>(node.workspace);
  if (is_depthwise(g)) {
    depthwise_backward_data_f32(dy, w, dx, depthwise_shape(g), workspace, node.slots);
    return;
  }
  if (sparse_dy_applies(node) && conv2d_bwd_data_sparse_dy_f32(node)) return;
  if (bwd_data_direct(g, cp)) {
    // The flipped conv's reordered weights: wt[k, r, s, c] = w'[c, k, r, s] = w[k, c, R-1-r, S-1-s]
    for (int64_t k = 0; k < g.K; ++k)
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t r = 0; r < g.R; ++r)
          for (int64_t s = 0; s < g.S; ++s)
            workspace[((k * g.R + r) * g.S + s) * g.C + c] = w[((k * g.C + c) * g.R + (g.R - 1 - r)) * g.S + (g.S - 1 - s)];
    const ConvGeometry f = flipped_geometry(g);
    conv_direct_f32(dy, workspace, nullptr, false, dx, f, flipped_params(g, cp), workspace + direct_weight_floats(f),
                    node.slots, nullptr);
    return;
  }
  const bool pointwise = is_pointwise(g, cp);
  const int64_t slot_floats = col2im_slot_floats(g, cp);
  parallel_chunks(g.N, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    float* dcol_buf = workspace + worker_slot(node.slots) * slot_floats;
    float* gemm_buf = dcol_buf + col2im_dcol_floats(g, cp);
    for (int64_t n = begin; n < end; ++n) {
      float* dx_n = dx + n * g.chw();
      // dcol = w^T dy_n; a pointwise conv's dcol is dx_n itself.
      float* dcol = pointwise ? dx_n : dcol_buf;
      for (int64_t gi = 0; gi < g.G(); ++gi)  // group gi's Cg*R*S rows of dcol from its Kg filters
        gemm_f32(g.wcrs(), g.pq(), g.Kg(), {w + gi * g.Kg() * g.wcrs(), g.wcrs(), true},
                 {dy + n * g.kpq() + gi * g.Kg() * g.pq(), g.pq(), false}, dcol + gi * g.wcrs() * g.pq(), g.pq(),
                 false, gemm_buf);
      if (pointwise) continue;
      std::memset(dx_n, 0, sizeof(float) * g.chw());
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t r = 0; r < g.R; ++r)
          for (int64_t s = 0; s < g.S; ++s)
            kernels::col2im_row_add_nchw_f32(dcol + ((c * g.R + r) * g.S + s) * g.pq(), g.H, g.W, r, s, g.cw,
                                             g.P, g.Q, dx_n + c * g.H * g.W);
    }
  });
}

// ---------------------------------------------------------------- backward, weight
namespace {

// ---- the direct path: stride 1, S = 3 with K a multiple of 8 or S = 5 with K even or a multiple of 3,
// AVX-512 builds
//
// dw[k, c, r, s] = sum over n, p, q of dy[n, k, p, q] * x_pad[n, c, p + r, q + s], with the 16
// lanes along q. A block (KB output channels, one c, one r) keeps KB * S = 24 or 20
// accumulators in registers: per 16 outputs of a row, KB dy loads and S x loads feed KB * S
// FMAs, and no column matrix is built. A row's last vector is masked, so lanes past Q add
// nothing (not even 0 * x, which is NaN for an infinite x). Lanes stay apart until a chunk's
// last panel (kept in the slot's scratch between panels, added in panel order), then each is
// summed across by one fixed instruction sequence; db's lanes likewise. Fixed order throughout.
constexpr int64_t kLanes = 16;
// Columns (output positions) per panel: a block's dy rows (KB * 1024 floats, 32 KiB at KB = 8)
// stay near L1 while the block's C * R neighbours reread them, and a block's 24 lanes are loaded
// and stored once per 64 row vectors. Measured: 512 is slower on seed-cnn-112's conv2 (the
// lanes' traffic), whole 256 KiB panels 2x slower on its conv1 (dy read from L2 every block).

constexpr int64_t kDirectPanelColumns = 1024;

// Output channels per block: KB * S accumulators, at most 24 of the 32 vector registers; 5
// kernel columns take 3 or 2 channels a block where K is not a multiple of 4 (LeNet-5's 6).
int64_t bwd_direct_block(const ConvGeometry& g) {
  if (g.S == 3) return 8;
  if (g.S != 5) return 0;
  return g.K % 4 == 0 ? 4 : g.K % 3 == 0 ? 3 : 2;
}

bool bwd_weight_direct(const ConvGeometry& g, const parity_conv2d_params& cp) {
  const int64_t kb = bwd_direct_block(g);
  return kHaveDirect && g.cw.plain() && cp.stride_h == 1 && cp.stride_w == 1 && kb > 0 && g.K % kb == 0;
}

// `images` whole images of a chunk, or `rows` output rows of one image (with their input rows).
Panel bwd_direct_panel(const ConvGeometry& g, int64_t chunk) {
  if (g.pq() <= kDirectPanelColumns) return {std::min(chunk, kDirectPanelColumns / g.pq()), g.P};
  return {1, std::clamp<int64_t>(kDirectPanelColumns / g.Q, 1, g.P)};
}

// Per slot: the panel's padded images, then the lanes of dw [K*CRS][16] and of db [K][16].
int64_t bwd_direct_slot_floats(const ConvGeometry& g, const parity_conv2d_params& cp, const Panel& panel) {
  return panel.images * direct_image_floats(g, cp) + (g.K * g.crs() + g.K) * kLanes;
}

#if defined(__AVX512F__)
__mmask16 lanes_left(int64_t left) { return left >= kLanes ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u); }

// The 16 lanes at `lanes` (64-byte aligned) summed pairwise, in a fixed order.
float sum_lanes(const float* lanes) {
  const __m256 h8 = _mm256_add_ps(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

// The lanes of dw[k0 .. k0+KB, c, r, 0 .. S] += dy * x_pad over rows [p0, p1) of `images`
// images (padded copies `xpad_floats` apart, dy of the first at dy); `first` starts them at 0.
template <int S, int KB>
void bwd_weight_block_f32(const float* xpads, int64_t xpad_floats, const float* dy, int64_t images, int64_t p0,
                          int64_t p1, int64_t k0, int64_t c, int64_t r, const ConvGeometry& g,
                          const parity_conv2d_params& cp, float* lanes, bool first) {
  const int64_t Hp = g.H + 2 * cp.pad_h, Wp = direct_row_floats(g, cp);
  float* lane = lanes + (k0 * g.crs() + (c * g.R + r) * S) * kLanes;  // + (k * CRS + s) * 16
  __m512 acc[KB][S];
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k)
#pragma GCC unroll 5
    for (int s = 0; s < S; ++s)
      acc[k][s] = first ? _mm512_setzero_ps() : _mm512_load_ps(lane + (k * g.crs() + s) * kLanes);
  for (int64_t i = 0; i < images; ++i) {
    const float* x_c = xpads + i * xpad_floats + (c * Hp + r) * Wp;
    const float* dy_i = dy + i * g.kpq() + k0 * g.pq();
    for (int64_t p = p0; p < p1; ++p) {
      const float* xr = x_c + p * Wp;
      const float* dr = dy_i + p * g.Q;
      for (int64_t q0 = 0; q0 < g.Q; q0 += kLanes) {
        const __mmask16 m = lanes_left(g.Q - q0);
        __m512 xv[S];
#pragma GCC unroll 5
        for (int s = 0; s < S; ++s) xv[s] = _mm512_loadu_ps(xr + q0 + s);
#pragma GCC unroll 8
        for (int k = 0; k < KB; ++k) {
          const __m512 d = _mm512_maskz_loadu_ps(m, dr + k * g.pq() + q0);
#pragma GCC unroll 5
          for (int s = 0; s < S; ++s) acc[k][s] = _mm512_mask3_fmadd_ps(d, xv[s], acc[k][s], m);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < KB; ++k)
#pragma GCC unroll 5
    for (int s = 0; s < S; ++s) _mm512_store_ps(lane + (k * g.crs() + s) * kLanes, acc[k][s]);
}

// The lanes of db[k] += dy[k] over the same rows, KB channels at a time (independent sums).
template <int KB>
void bwd_bias_lanes_f32(const float* dy, int64_t images, int64_t p0, int64_t p1, const ConvGeometry& g,
                        float* db_lanes, bool first) {
  for (int64_t k0 = 0; k0 < g.K; k0 += KB) {
    __m512 acc[KB];
    for (int k = 0; k < KB; ++k) acc[k] = first ? _mm512_setzero_ps() : _mm512_load_ps(db_lanes + (k0 + k) * kLanes);
    for (int64_t i = 0; i < images; ++i)
      for (int64_t p = p0; p < p1; ++p) {
        const float* dr = dy + i * g.kpq() + k0 * g.pq() + p * g.Q;
        for (int64_t q0 = 0; q0 < g.Q; q0 += kLanes) {
          const __mmask16 m = lanes_left(g.Q - q0);
          for (int k = 0; k < KB; ++k) acc[k] = _mm512_add_ps(acc[k], _mm512_maskz_loadu_ps(m, dr + k * g.pq() + q0));
        }
      }
    for (int k = 0; k < KB; ++k) _mm512_store_ps(db_lanes + (k0 + k) * kLanes, acc[k]);
  }
}

// One chunk's dw and db partials: panels in order, every block of a panel, then across lanes.
template <int S, int KB>
void bwd_weight_direct_chunk_f32(const float* x, const float* dy, int64_t begin, int64_t end, const ConvGeometry& g,
                                 const parity_conv2d_params& cp, const Panel& panel, float* slot, float* dw_part,
                                 float* db_part) {
  const int64_t xpad_floats = direct_image_floats(g, cp);
  float* lanes = slot + panel.images * xpad_floats;
  float* db_lanes = lanes + g.K * g.crs() * kLanes;
  bool first = true;
  for (int64_t n0 = begin; n0 < end; n0 += panel.images) {
    const int64_t images = std::min(end, n0 + panel.images) - n0;
    for (int64_t i = 0; i < images; ++i) pad_image_nchw_f32(x + (n0 + i) * g.chw(), g, cp, slot + i * xpad_floats);
    const float* dy_n0 = dy + n0 * g.kpq();
    for (int64_t p0 = 0; p0 < g.P; p0 += panel.rows) {
      const int64_t p1 = std::min(g.P, p0 + panel.rows);
      for (int64_t k0 = 0; k0 < g.K; k0 += KB)
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t r = 0; r < g.R; ++r)
            bwd_weight_block_f32<S, KB>(slot, xpad_floats, dy_n0, images, p0, p1, k0, c, r, g, cp, lanes, first);
      bwd_bias_lanes_f32<KB>(dy_n0, images, p0, p1, g, db_lanes, first);
      first = false;
    }
  }
  for (int64_t i = 0; i < g.K * g.crs(); ++i) dw_part[i] = sum_lanes(lanes + i * kLanes);
  for (int64_t k = 0; k < g.K; ++k) db_part[k] = sum_lanes(db_lanes + k * kLanes);
}
#endif

// ---- the GEMM path
// Backward-weight panels: the GEMM's depth is the panel's columns, which come from `images`
// whole images of a chunk side by side (dy copied beside them), or `rows` output rows of one.
Panel bwd_weight_panel(const ConvGeometry& g, const parity_conv2d_params& cp, int64_t chunk) {
  if (is_pointwise(g, cp)) return {1, g.P};  // x_n itself is the column matrix
  if (g.pq() >= kPanelColumns) return {1, std::min(g.P, std::max<int64_t>(1, kPanelColumns / g.Q))};
  return {std::min(chunk, std::max<int64_t>(1, kPanelColumns / g.pq())), g.P};
}

int64_t bwd_dy_floats(const ConvGeometry& g, const Panel& panel) {
  return panel.images > 1 ? align64(g.K * panel_columns(g, panel) * 4) / 4 : 0;
}
int64_t bwd_gemm_floats(const ConvGeometry& g, const Panel& panel) {
  // Every panel is a whole number of output rows; Eigen's blocking depends on the depth.
  int64_t most = 0;
  for (int64_t cols = g.Q; cols <= panel_columns(g, panel); cols += g.Q)
    most = std::max(most, gemm_scratch_floats(g.Kg(), g.wcrs(), cols));
  return most;
}
int64_t bwd_slot_floats(const ConvGeometry& g, const parity_conv2d_params& cp, const Panel& panel) {
  return panel_col_floats(g, cp, panel) + bwd_dy_floats(g, panel) + bwd_gemm_floats(g, panel);
}

// 3 kernel columns and C a multiple of 16: conv2d_bwd_weight_nhwc.cpp's kernel (lanes along the
// input channels) instead of the direct one above.
bool bwd_weight_nhwc(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return kHaveDirect && g.cw.plain() && cp.stride_h == 1 && cp.stride_w == 1 &&
         conv2d_bwd_weight_nhwc_applies(direct_rows_shape(g, cp));
}

// Small images (Q < 16) with 3 or 5 kernel columns: conv2d_bwd_weight_batch_lanes.cpp's kernel
// (lanes along the images of a chunk of 16) instead of the direct one above.
bool bwd_weight_batch_lanes(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return kHaveDirect && g.cw.plain() && cp.stride_h == 1 && cp.stride_w == 1 &&
         conv2d_bwd_weight_batch_lanes_applies(direct_rows_shape(g, cp));
}

// Any path's slot scratch.
int64_t bwd_weight_slot_floats(const ConvGeometry& g, const parity_conv2d_params& cp, int64_t chunk) {
  if (bwd_weight_nhwc(g, cp)) return conv2d_bwd_weight_nhwc_slot_floats(direct_rows_shape(g, cp));
  if (bwd_weight_batch_lanes(g, cp)) return conv2d_bwd_weight_batch_lanes_slot_floats(direct_rows_shape(g, cp));
  if (bwd_weight_direct(g, cp)) return bwd_direct_slot_floats(g, cp, bwd_direct_panel(g, chunk));
  return bwd_slot_floats(g, cp, bwd_weight_panel(g, cp, chunk));
}

// After the slots' scratch: the partials of dw and db.
struct BwdWeightScratch {
  float* dw_parts;  // [num_chunks][K*CRS]
  float* db_parts;  // [num_chunks][K]
  int64_t bytes;
};

BwdWeightScratch bwd_weight_scratch(const BoundNode& node, const ConvGeometry& g) {
  const int64_t col_bytes = node.slots * bwd_weight_slot_floats(g, node.params.conv2d, node.chunk) * 4;
  const int64_t dw_bytes = align64(node.num_chunks * g.K * g.wcrs() * 4);
  const int64_t db_bytes = align64(node.num_chunks * g.K * 4);
  float* base = reinterpret_cast<float*>(node.workspace);
  BwdWeightScratch s{};
  s.dw_parts = base ? base + col_bytes / 4 : nullptr;
  s.db_parts = base ? base + (col_bytes + dw_bytes) / 4 : nullptr;
  s.bytes = col_bytes + dw_bytes + db_bytes;
  return s;
}

// The GEMM path's partials of one chunk.
void bwd_weight_gemm_chunk_f32(const float* x, const float* dy, int64_t begin, int64_t end, const ConvGeometry& g,
                               const parity_conv2d_params& cp, const Panel& panel, float* col_buf, float* dw_part,
                               float* db_part) {
  float* dy_buf = col_buf + panel_col_floats(g, cp, panel);
  float* gemm_buf = dy_buf + bwd_dy_floats(g, panel);
  bool first = true;
  if (panel.images == 1) {
    for (int64_t n = begin; n < end; ++n)
      for (int64_t p0 = 0; p0 < g.P; p0 += panel.rows) {
        const int64_t p1 = std::min(g.P, p0 + panel.rows), cols = (p1 - p0) * g.Q;
        GemmOperand col{x + n * g.chw() + p0 * g.Q, g.pq(), true};
        if (!is_pointwise(g, cp)) {
          im2col_rows_nchw_f32(x + n * g.chw(), g, cp, p0, p1, col_buf, cols);
          col = {col_buf, cols, true};
        }
        // dw_part (+)= dy_tile col_tile^T, group by group
        for (int64_t gi = 0; gi < g.G(); ++gi)
          gemm_f32(g.Kg(), g.wcrs(), cols, {dy + n * g.kpq() + gi * g.Kg() * g.pq() + p0 * g.Q, g.pq(), false},
                   {col.data + gi * g.wcrs() * col.stride, col.stride, true}, dw_part + gi * g.Kg() * g.wcrs(), g.wcrs(),
                   !first, gemm_buf);
        first = false;
      }
  } else {
    for (int64_t n0 = begin; n0 < end; n0 += panel.images) {
      const int64_t n1 = std::min(end, n0 + panel.images), cols = (n1 - n0) * g.pq();
      for (int64_t n = n0; n < n1; ++n) {
        im2col_rows_nchw_f32(x + n * g.chw(), g, cp, 0, g.P, col_buf + (n - n0) * g.pq(), cols);
        for (int64_t k = 0; k < g.K; ++k)
          std::memcpy(dy_buf + k * cols + (n - n0) * g.pq(), dy + n * g.kpq() + k * g.pq(), sizeof(float) * g.pq());
      }
      for (int64_t gi = 0; gi < g.G(); ++gi)
        gemm_f32(g.Kg(), g.wcrs(), cols, {dy_buf + gi * g.Kg() * cols, cols, false},
                 {col_buf + gi * g.wcrs() * cols, cols, true}, dw_part + gi * g.Kg() * g.wcrs(), g.wcrs(), !first,
                 gemm_buf);
      first = false;
    }
  }
  for (int64_t n = begin; n < end; ++n) {
    const float* dy_n = dy + n * g.kpq();
    for (int64_t k = 0; k < g.K; ++k) {
      float sum = 0.0f;
      for (int64_t i = 0; i < g.pq(); ++i) sum += dy_n[k * g.pq() + i];
      db_part[k] = n == begin ? sum : db_part[k] + sum;
    }
  }
}

}  // namespace

int64_t prepare_conv2d_bwd_weight(BoundNode& node) {
  if (runs_on_gemm_bf16(node)) return prepare_conv2d_bf16(node);  // bf16_gemm_ops.cpp
  expect_arity(node, 2, 2, 1, 2);
  // dw plays the role of w for the geometry.
  const ConvGeometry g = check_conv(node, node.in[0], "x", node.out[0], "dw", node.in[1], "dy");
  if (node.num_outputs == 2) check_bias(node, node.out[1], "db", g.K);
  node.chunk = fixed_chunk_size(g.N, 1, kMaxBatchChunks);
  node.num_chunks = chunk_count(g.N, node.chunk);
  if (is_depthwise(g)) return node.slots * depthwise_scratch_floats(depthwise_shape(g)) * 4;
  if (sparse_dy_applies(node)) return prepare_sparse_dy_bwd_weight(node);
  if (!bwd_weight_nhwc(g, node.params.conv2d) && bwd_weight_batch_lanes(g, node.params.conv2d)) {
    node.chunk = kBatchLanesChunk;  // one image per lane
    node.num_chunks = chunk_count(g.N, node.chunk);
  }
  return bwd_weight_scratch(node, g).bytes;
}

void run_conv2d_bwd_weight(const BoundNode& node) {
  if (runs_on_gemm_bf16(node)) return run_conv2d_bf16(node);
  {
    const ConvGeometry g = geometry(node.in[0], node.out[0], node.params.conv2d);
    if (is_depthwise(g)) {
      depthwise_backward_weight_f32(node.in[0].f32(), node.in[1].f32(), node.out[0].f32(),
                                    node.num_outputs == 2 ? node.out[1].f32() : nullptr, depthwise_shape(g),
                                    reinterpret_cast<float*>(node.workspace), node.slots);
      return;
    }
  }
  if (node.fusion.pool_source) {
    if (conv2d_bwd_weight_pooled_dy_f32(node)) return;
    run_maxpool2d_bwd(*node.fusion.pool_source);  // dy after all
  }
  if (sparse_dy_applies(node)) {
    conv2d_bwd_weight_sparse_dy_f32(node);
    return;
  }
  const parity_conv2d_params cp = node.params.conv2d;
  const ConvGeometry g = geometry(node.in[0], node.out[0], cp);
  const float* x = node.in[0].f32();
  const float* dy = node.in[1].f32();
  float* dw = node.out[0].f32();
  float* db = node.num_outputs == 2 ? node.out[1].f32() : nullptr;
  const BwdWeightScratch scratch = bwd_weight_scratch(node, g);
  const int64_t dw_size = g.K * g.wcrs();
  const int64_t slot_floats = bwd_weight_slot_floats(g, cp, node.chunk);
  const bool nhwc = bwd_weight_nhwc(g, cp);
  const bool batch_lanes = !nhwc && bwd_weight_batch_lanes(g, cp);
  const bool direct = bwd_weight_direct(g, cp);
  const Panel panel = direct ? bwd_direct_panel(g, node.chunk) : bwd_weight_panel(g, cp, node.chunk);

  // Partials per batch chunk: the panels of a chunk are summed in order into its buffer.
  parallel_chunks(g.N, node.chunk, [&](int64_t part, int64_t begin, int64_t end) {
    float* slot = reinterpret_cast<float*>(node.workspace) + worker_slot(node.slots) * slot_floats;
    float* dw_part = scratch.dw_parts + part * dw_size;
    float* db_part = scratch.db_parts + part * g.K;
    if (nhwc) {
      conv2d_bwd_weight_nhwc_chunk_f32(x, dy, begin, end, direct_rows_shape(g, cp), slot, dw_part, db ? db_part : nullptr);
      return;
    }
    if (batch_lanes) {
      conv2d_bwd_weight_batch_lanes_chunk_f32(x, dy, begin, end, direct_rows_shape(g, cp), slot, dw_part,
                                              db ? db_part : nullptr);
      return;
    }
#if defined(__AVX512F__)
    if (direct) {
      switch (g.S * 10 + bwd_direct_block(g)) {
        case 38: return bwd_weight_direct_chunk_f32<3, 8>(x, dy, begin, end, g, cp, panel, slot, dw_part, db_part);
        case 54: return bwd_weight_direct_chunk_f32<5, 4>(x, dy, begin, end, g, cp, panel, slot, dw_part, db_part);
        case 53: return bwd_weight_direct_chunk_f32<5, 3>(x, dy, begin, end, g, cp, panel, slot, dw_part, db_part);
        default: return bwd_weight_direct_chunk_f32<5, 2>(x, dy, begin, end, g, cp, panel, slot, dw_part, db_part);
      }
    }
#endif
    bwd_weight_gemm_chunk_f32(x, dy, begin, end, g, cp, panel, slot, dw_part, db_part);
  });

  // Sum the partials in chunk order; elements are independent, so split them freely.
  parallel_chunks(dw_size, kSumChunk, [&](int64_t, int64_t begin, int64_t end) {
    std::memcpy(dw + begin, scratch.dw_parts + begin, sizeof(float) * (end - begin));
    for (int64_t part = 1; part < node.num_chunks; ++part) {
      const float* src = scratch.dw_parts + part * dw_size;
      for (int64_t i = begin; i < end; ++i) dw[i] += src[i];
    }
  });
  if (db) {
    for (int64_t k = 0; k < g.K; ++k) db[k] = scratch.db_parts[k];
    for (int64_t part = 1; part < node.num_chunks; ++part)
      for (int64_t k = 0; k < g.K; ++k) db[k] += scratch.db_parts[part * g.K + k];
  }
}

}  // namespace cpu
}  // namespace parity
