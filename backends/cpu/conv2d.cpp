// backends/cpu/conv2d.cpp — conv2d on the cpu backend, NCHW float32: forward, backward-data and
// backward-weight side by side, as im2col + GEMM (gemm.h, Eigen's kernel), images in parallel.
//
// The column matrix col[C*R*S, P*Q] (ops/kernels/conv_geometry.h) gives
//   forward       y_n[K, PQ]    = w[K, CRS] * col_n + b   (then relu, when fused: cpu_ops.h)
//   backward-data for stride 1 and pad < kernel, a forward conv of dy with the flipped,
//                 transposed filter w'[C, K, R, S] = w[K, C, R-1-r, S-1-s] and pad R-1-pad
//                 (no col2im); otherwise dcol[CRS, PQ] = w^T * dy_n, then col2im adds dcol into dx_n
//   backward-wt   dw[K, CRS]    = sum_n dy_n * col_n^T,  db[k] = sum_n sum_pq dy_n[k, pq]
// The forward GEMM works on panels of about kPanelColumns columns, so that the panel of col
// and its output stay in cache: a few output rows of one large image, or several small images
// side by side (their results then scattered into NCHW with the bias and relu). The panel
// shape depends on the shapes only, so results are reproducible at any thread count.
// A 1x1, stride-1, unpadded convolution uses x_n itself as col_n.
// Scratch: per worker slot a col buffer and GEMM packing space; backward-weight adds one dw/db
// partial per batch chunk (chunk size from N alone), summed afterwards in chunk order.
#include <algorithm>
#include <cstring>

#include "backends/cpu/cpu_ops.h"
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

struct ConvGeometry {
  int64_t N, C, H, W, K, R, S, P, Q;
  int64_t crs() const { return C * R * S; }
  int64_t pq() const { return P * Q; }
  int64_t chw() const { return C * H * W; }
  int64_t kpq() const { return K * P * Q; }
};

// x[N,C,H,W] and w[K,C,R,S] give the geometry; P and Q follow from the params.
ConvGeometry geometry(const BoundValue& x, const BoundValue& w, const parity_conv2d_params& cp) {
  ConvGeometry g{};
  g.N = x.dims[0], g.C = x.dims[1], g.H = x.dims[2], g.W = x.dims[3];
  g.K = w.dims[0], g.R = w.dims[2], g.S = w.dims[3];
  g.P = kernels::conv2d_output_size(g.H, g.R, cp.stride_h, cp.pad_h);
  g.Q = kernels::conv2d_output_size(g.W, g.S, cp.stride_w, cp.pad_w);
  return g;
}

bool is_pointwise(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return g.R == 1 && g.S == 1 && cp.stride_h == 1 && cp.stride_w == 1 && cp.pad_h == 0 && cp.pad_w == 0;
}

void check_params(const BoundNode& node) {
  const parity_conv2d_params& cp = node.params.conv2d;
  if (cp.stride_h <= 0 || cp.stride_w <= 0)
    fail(node, "stride must be > 0, got " + std::to_string(cp.stride_h) + "x" + std::to_string(cp.stride_w));
  if (cp.pad_h < 0 || cp.pad_w < 0)
    fail(node, "padding must be >= 0, got " + std::to_string(cp.pad_h) + "x" + std::to_string(cp.pad_w));
}

// Checks x (or dx) against w and the params, and y (or dy) against the geometry they give.
ConvGeometry check_conv(const BoundNode& node, const BoundValue& x, const char* x_role, const BoundValue& w,
                        const char* w_role, const BoundValue& y, const char* y_role) {
  check_params(node);
  expect_value(node, x, x_role, PARITY_F32, 4);
  expect_value(node, w, w_role, PARITY_F32, 4);
  if (w.dims[1] != x.dims[1])
    fail(node, std::string(w_role) + " must be [K,C,R,S] with C = " + std::to_string(x.dims[1]) + " (the channels of " +
                   x_role + "), got " + w.shape_str());
  const ConvGeometry g = geometry(x, w, node.params.conv2d);
  if (g.P < 1 || g.Q < 1)
    fail(node, std::string("the padded input ") + x.shape_str() + " is smaller than the kernel " + w.shape_str());
  const int64_t dims[4] = {g.N, g.K, g.P, g.Q};
  expect_dims(node, y, y_role, dims, 4, "[N,K,P,Q] with P, Q = (H + 2 pad - R) / stride + 1");
  return g;
}

void check_bias(const BoundNode& node, const BoundValue& b, const char* role, int64_t K) {
  expect_value(node, b, role, PARITY_F32, 1);
  const int64_t dims[1] = {K};
  expect_dims(node, b, role, dims, 1, "[K], K = the output channels");
}

// Scratch of the col2im path of backward-data (strides > 1, or padding as large as the kernel),
// per worker slot: the whole dcol[CRS, PQ] of one image, then GEMM packing space.
struct Col2imScratch {
  float* dcol;
  float* gemm;
};
int64_t col2im_dcol_floats(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return is_pointwise(g, cp) ? 0 : align64(g.crs() * g.pq() * 4) / 4;
}
int64_t col2im_slot_floats(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return col2im_dcol_floats(g, cp) + gemm_scratch_floats(g.crs(), g.pq(), g.K);
}
Col2imScratch col2im_scratch(const BoundNode& node, const ConvGeometry& g) {
  float* base = reinterpret_cast<float*>(node.workspace) + worker_slot(node.slots) * col2im_slot_floats(g, node.params.conv2d);
  return {base, base + col2im_dcol_floats(g, node.params.conv2d)};
}

}  // namespace

// ---------------------------------------------------------------- forward panels
namespace {

// Columns of col per forward GEMM: 144 x 1024 floats (conv2's panel) is 576 KiB, within L2.
constexpr int64_t kPanelColumns = 1024;

// One forward GEMM covers `images` whole images side by side, or `rows` output rows of one image.
struct Panel {
  int64_t images, rows;
};

Panel forward_panel(const ConvGeometry& g, const parity_conv2d_params& cp) {
  if (is_pointwise(g, cp)) return {1, g.P};
  if (g.pq() >= kPanelColumns) return {1, std::min(g.P, std::max<int64_t>(1, kPanelColumns / g.Q))};
  // Several images per GEMM, but keep at least 8 tasks per batch for the workers.
  const int64_t images = std::min(std::max<int64_t>(1, kPanelColumns / g.pq()), std::max<int64_t>(1, g.N / 8));
  return {images, g.P};
}

int64_t panel_columns(const ConvGeometry& g, const Panel& panel) { return panel.images * panel.rows * g.Q; }

// Per worker slot: col panel, the panel's output (several images only), GEMM packing space.
struct PanelScratch {
  float* col;
  float* out;
  float* gemm;
};
int64_t panel_col_floats(const ConvGeometry& g, const parity_conv2d_params& cp, const Panel& panel) {
  return is_pointwise(g, cp) ? 0 : align64(g.crs() * panel_columns(g, panel) * 4) / 4;
}
int64_t panel_out_floats(const ConvGeometry& g, const Panel& panel) {
  return panel.images > 1 ? align64(g.K * panel_columns(g, panel) * 4) / 4 : 0;
}
int64_t panel_gemm_floats(const ConvGeometry& g, const Panel& panel) {
  // The last panel of an image or a batch may be narrower; Eigen's blocking depends on the width.
  const int64_t full = panel_columns(g, panel);
  const int64_t last_rows = g.P - (g.P - 1) / panel.rows * panel.rows;
  const int64_t last_images = g.N - (g.N - 1) / panel.images * panel.images;
  const int64_t narrow = panel.images > 1 ? last_images * g.pq() : last_rows * g.Q;
  return std::max(gemm_scratch_floats(g.K, full, g.crs()), gemm_scratch_floats(g.K, narrow, g.crs()));
}
int64_t panel_slot_floats(const ConvGeometry& g, const parity_conv2d_params& cp, const Panel& panel) {
  return panel_col_floats(g, cp, panel) + panel_out_floats(g, panel) + panel_gemm_floats(g, panel);
}
PanelScratch panel_scratch(float* base, const ConvGeometry& g, const parity_conv2d_params& cp, const Panel& panel) {
  PanelScratch p{};
  p.col = base;
  p.out = p.col + panel_col_floats(g, cp, panel);
  p.gemm = p.out + panel_out_floats(g, panel);
  return p;
}

// Rows [p0, p1) of image x_n's column matrix, into col (rows `ld` floats apart).
void im2col_rows_nchw_f32(const float* x_n, const ConvGeometry& g, const parity_conv2d_params& cp, int64_t p0,
                          int64_t p1, float* col, int64_t ld) {
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        const float* plane = x_n + c * g.H * g.W;
        float* row = col + ((c * g.R + r) * g.S + s) * ld;
        int64_t qb, qe;
        kernels::conv2d_valid_outputs(g.W, g.Q, s, cp.stride_w, cp.pad_w, &qb, &qe);
        for (int64_t p = p0; p < p1; ++p) {
          float* dst = row + (p - p0) * g.Q;
          const int64_t h = kernels::conv2d_input_coord(p, r, cp.stride_h, cp.pad_h);
          if (h < 0 || h >= g.H) {
            std::memset(dst, 0, sizeof(float) * g.Q);
            continue;
          }
          const float* src = plane + h * g.W;
          for (int64_t q = 0; q < qb; ++q) dst[q] = 0.0f;
          if (cp.stride_w == 1) {
            const float* s0 = src + (s - cp.pad_w);
            for (int64_t q = qb; q < qe; ++q) dst[q] = s0[q];
          } else {
            for (int64_t q = qb; q < qe; ++q) dst[q] = src[kernels::conv2d_input_coord(q, s, cp.stride_w, cp.pad_w)];
          }
          for (int64_t q = qe; q < g.Q; ++q) dst[q] = 0.0f;
        }
      }
}

// dst[i] = src[i] + bias (then relu): the GEMM epilogue, on a row still in cache.
inline void bias_relu_row(const float* src, float* dst, int64_t n, float bias, bool relu) {
  if (relu)
    for (int64_t i = 0; i < n; ++i) dst[i] = kernels::relu_f32(src[i] + bias);
  else
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i] + bias;
}

// y = conv(x, w) + b (b may be null), then relu when asked; images [0, N) in chunks of
// panel.images (node.chunk), scratch from `workspace` per worker slot.
void conv_forward_panels(const float* x, const float* w, const float* b, bool relu, float* y, const ConvGeometry& g,
                         const parity_conv2d_params& cp, float* workspace, int32_t slots) {
  const Panel panel = forward_panel(g, cp);
  const int64_t slot_floats = panel_slot_floats(g, cp, panel);
  parallel_chunks(g.N, panel.images, [&](int64_t, int64_t begin, int64_t end) {
    const PanelScratch scratch = panel_scratch(workspace + worker_slot(slots) * slot_floats, g, cp, panel);
    if (panel.images == 1) {
      for (int64_t n = begin; n < end; ++n) {
        const float* x_n = x + n * g.chw();
        float* y_n = y + n * g.kpq();
        for (int64_t p0 = 0; p0 < g.P; p0 += panel.rows) {
          const int64_t p1 = std::min(g.P, p0 + panel.rows), cols = (p1 - p0) * g.Q;
          const float* col = x_n;
          int64_t ld = g.pq();
          if (!is_pointwise(g, cp)) {
            im2col_rows_nchw_f32(x_n, g, cp, p0, p1, scratch.col, cols);
            col = scratch.col;
            ld = cols;
          }
          float* y_tile = y_n + p0 * g.Q;
          gemm_f32(g.K, cols, g.crs(), {w, g.crs(), false}, {col, ld, false}, y_tile, g.pq(), false, scratch.gemm);
          if (b || relu)
            for (int64_t k = 0; k < g.K; ++k)
              bias_relu_row(y_tile + k * g.pq(), y_tile + k * g.pq(), cols, b ? b[k] : 0.0f, relu);
        }
      }
      return;
    }
    const int64_t cols = (end - begin) * g.pq();
    for (int64_t n = begin; n < end; ++n)
      im2col_rows_nchw_f32(x + n * g.chw(), g, cp, 0, g.P, scratch.col + (n - begin) * g.pq(), cols);
    gemm_f32(g.K, cols, g.crs(), {w, g.crs(), false}, {scratch.col, cols, false}, scratch.out, cols, false,
             scratch.gemm);
    for (int64_t n = begin; n < end; ++n)
      for (int64_t k = 0; k < g.K; ++k)
        bias_relu_row(scratch.out + k * cols + (n - begin) * g.pq(), y + n * g.kpq() + k * g.pq(), g.pq(),
                      b ? b[k] : 0.0f, relu);
  });
}

}  // namespace

// ---------------------------------------------------------------- forward
int64_t plan_conv2d(BoundNode& node) {
  expect_arity(node, 2, 3, 1, 1);
  const ConvGeometry g = check_conv(node, node.in[0], "x", node.in[1], "w", node.out[0], "y");
  if (node.num_inputs == 3) check_bias(node, node.in[2], "b", g.K);
  const Panel panel = forward_panel(g, node.params.conv2d);
  node.chunk = panel.images;
  node.num_chunks = chunk_count(g.N, node.chunk);
  return node.slots * panel_slot_floats(g, node.params.conv2d, panel) * 4;
}

void conv2d_nchw_f32(const BoundNode& node) {
  const ConvGeometry g = geometry(node.in[0], node.in[1], node.params.conv2d);
  conv_forward_panels(node.in[0].f32(), node.in[1].f32(), node.num_inputs == 3 ? node.in[2].f32() : nullptr,
                      node.fused_relu, node.out[0].f32(), g, node.params.conv2d,
                      reinterpret_cast<float*>(node.workspace), node.slots);
}

// ---------------------------------------------------------------- backward, data
namespace {

// Backward-data as a forward conv of dy (stride 1, pad < kernel): its geometry and params.
bool bwd_data_as_conv(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return cp.stride_h == 1 && cp.stride_w == 1 && cp.pad_h < g.R && cp.pad_w < g.S && !is_pointwise(g, cp);
}
ConvGeometry flipped_geometry(const ConvGeometry& g) {
  return ConvGeometry{g.N, g.K, g.P, g.Q, g.C, g.R, g.S, g.H, g.W};
}
parity_conv2d_params flipped_params(const ConvGeometry& g, const parity_conv2d_params& cp) {
  parity_conv2d_params f = cp;
  f.pad_h = static_cast<int32_t>(g.R - 1 - cp.pad_h);
  f.pad_w = static_cast<int32_t>(g.S - 1 - cp.pad_w);
  return f;
}
int64_t flipped_w_floats(const ConvGeometry& g) { return align64(g.K * g.crs() * 4) / 4; }

}  // namespace

int64_t plan_conv2d_bwd_data(BoundNode& node) {
  expect_arity(node, 2, 2, 1, 1);
  // dx plays the role of x: its shape and w's define the geometry dy must have.
  const ConvGeometry g = check_conv(node, node.out[0], "dx", node.in[1], "w", node.in[0], "dy");
  if (bwd_data_as_conv(g, node.params.conv2d)) {
    const ConvGeometry f = flipped_geometry(g);
    const parity_conv2d_params fp = flipped_params(g, node.params.conv2d);
    const Panel panel = forward_panel(f, fp);
    node.chunk = panel.images;
    node.num_chunks = chunk_count(g.N, node.chunk);
    return (flipped_w_floats(g) + node.slots * panel_slot_floats(f, fp, panel)) * 4;
  }
  node.chunk = 1;
  node.num_chunks = chunk_count(g.N, node.chunk);
  return node.slots * col2im_slot_floats(g, node.params.conv2d) * 4;
}

void conv2d_bwd_data_nchw_f32(const BoundNode& node) {
  const parity_conv2d_params cp = node.params.conv2d;
  const ConvGeometry g = geometry(node.out[0], node.in[1], cp);
  const float* dy = node.in[0].f32();
  const float* w = node.in[1].f32();
  float* dx = node.out[0].f32();
  if (bwd_data_as_conv(g, cp)) {
    // w'[c, k, r, s] = w[k, c, R-1-r, S-1-s]
    float* wf = reinterpret_cast<float*>(node.workspace);
    for (int64_t k = 0; k < g.K; ++k)
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t r = 0; r < g.R; ++r)
          for (int64_t s = 0; s < g.S; ++s)
            wf[((c * g.K + k) * g.R + r) * g.S + s] = w[((k * g.C + c) * g.R + (g.R - 1 - r)) * g.S + (g.S - 1 - s)];
    conv_forward_panels(dy, wf, nullptr, false, dx, flipped_geometry(g), flipped_params(g, cp),
                        wf + flipped_w_floats(g), node.slots);
    return;
  }
  const bool pointwise = is_pointwise(g, cp);
  parallel_chunks(g.N, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    const Col2imScratch scratch = col2im_scratch(node, g);
    for (int64_t n = begin; n < end; ++n) {
      float* dx_n = dx + n * g.chw();
      // dcol = w^T dy_n; a pointwise conv's dcol is dx_n itself.
      float* dcol = pointwise ? dx_n : scratch.dcol;
      gemm_f32(g.crs(), g.pq(), g.K, {w, g.crs(), true}, {dy + n * g.kpq(), g.pq(), false}, dcol, g.pq(), false,
               scratch.gemm);
      if (pointwise) continue;
      std::memset(dx_n, 0, sizeof(float) * g.chw());
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t r = 0; r < g.R; ++r)
          for (int64_t s = 0; s < g.S; ++s)
            kernels::col2im_row_add_nchw_f32(dcol + ((c * g.R + r) * g.S + s) * g.pq(), g.H, g.W, r, s, cp,
                                             g.P, g.Q, dx_n + c * g.H * g.W);
    }
  });
}

// ---------------------------------------------------------------- backward, weight
namespace {

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
    most = std::max(most, gemm_scratch_floats(g.K, g.crs(), cols));
  return most;
}
int64_t bwd_slot_floats(const ConvGeometry& g, const parity_conv2d_params& cp, const Panel& panel) {
  return panel_col_floats(g, cp, panel) + bwd_dy_floats(g, panel) + bwd_gemm_floats(g, panel);
}

// After the slots' scratch: the partials of dw and db.
struct BwdWeightScratch {
  float* dw_parts;  // [num_chunks][K*CRS]
  float* db_parts;  // [num_chunks][K]
  int64_t bytes;
};

BwdWeightScratch bwd_weight_scratch(const BoundNode& node, const ConvGeometry& g) {
  const Panel panel = bwd_weight_panel(g, node.params.conv2d, node.chunk);
  const int64_t col_bytes = node.slots * bwd_slot_floats(g, node.params.conv2d, panel) * 4;
  const int64_t dw_bytes = align64(node.num_chunks * g.K * g.crs() * 4);
  const int64_t db_bytes = align64(node.num_chunks * g.K * 4);
  float* base = reinterpret_cast<float*>(node.workspace);
  BwdWeightScratch s{};
  s.dw_parts = base ? base + col_bytes / 4 : nullptr;
  s.db_parts = base ? base + (col_bytes + dw_bytes) / 4 : nullptr;
  s.bytes = col_bytes + dw_bytes + db_bytes;
  return s;
}

}  // namespace

int64_t plan_conv2d_bwd_weight(BoundNode& node) {
  expect_arity(node, 2, 2, 1, 2);
  // dw plays the role of w for the geometry.
  const ConvGeometry g = check_conv(node, node.in[0], "x", node.out[0], "dw", node.in[1], "dy");
  if (node.num_outputs == 2) check_bias(node, node.out[1], "db", g.K);
  node.chunk = fixed_chunk_size(g.N, 1, kMaxBatchChunks);
  node.num_chunks = chunk_count(g.N, node.chunk);
  return bwd_weight_scratch(node, g).bytes;
}

void conv2d_bwd_weight_nchw_f32(const BoundNode& node) {
  const parity_conv2d_params cp = node.params.conv2d;
  const ConvGeometry g = geometry(node.in[0], node.out[0], cp);
  const float* x = node.in[0].f32();
  const float* dy = node.in[1].f32();
  float* dw = node.out[0].f32();
  float* db = node.num_outputs == 2 ? node.out[1].f32() : nullptr;
  const BwdWeightScratch scratch = bwd_weight_scratch(node, g);
  const int64_t dw_size = g.K * g.crs();
  const Panel panel = bwd_weight_panel(g, node.params.conv2d, node.chunk);
  const int64_t slot_floats = bwd_slot_floats(g, cp, panel);
  const bool pointwise = is_pointwise(g, cp);

  // Partials per batch chunk: the panels of a chunk are summed in order into its buffer.
  parallel_chunks(g.N, node.chunk, [&](int64_t part, int64_t begin, int64_t end) {
    float* col_buf = reinterpret_cast<float*>(node.workspace) + worker_slot(node.slots) * slot_floats;
    float* dy_buf = col_buf + panel_col_floats(g, cp, panel);
    float* gemm_buf = dy_buf + bwd_dy_floats(g, panel);
    float* dw_part = scratch.dw_parts + part * dw_size;
    float* db_part = scratch.db_parts + part * g.K;
    bool first = true;
    if (panel.images == 1) {
      for (int64_t n = begin; n < end; ++n)
        for (int64_t p0 = 0; p0 < g.P; p0 += panel.rows) {
          const int64_t p1 = std::min(g.P, p0 + panel.rows), cols = (p1 - p0) * g.Q;
          GemmOperand col{x + n * g.chw() + p0 * g.Q, g.pq(), true};
          if (!pointwise) {
            im2col_rows_nchw_f32(x + n * g.chw(), g, cp, p0, p1, col_buf, cols);
            col = {col_buf, cols, true};
          }
          // dw_part (+)= dy_tile col_tile^T
          gemm_f32(g.K, g.crs(), cols, {dy + n * g.kpq() + p0 * g.Q, g.pq(), false}, col, dw_part, g.crs(), !first,
                   gemm_buf);
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
        gemm_f32(g.K, g.crs(), cols, {dy_buf, cols, false}, {col_buf, cols, true}, dw_part, g.crs(), !first, gemm_buf);
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
