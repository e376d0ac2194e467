// backends/cpu/conv2d.cpp — conv2d on the cpu backend, NCHW float32: forward, backward-data and
// backward-weight side by side, as im2col + GEMM (gemm.h, Eigen's kernel) per image, images in
// parallel.
//
// Per image n the column matrix col[C*R*S, P*Q] (ops/kernels/conv_geometry.h) gives
//   forward       y_n[K, PQ]    = w[K, CRS] * col_n + b
//   backward-data dcol[CRS, PQ] = w^T * dy_n, then col2im adds dcol into dx_n
//   backward-wt   dw[K, CRS]    = sum_n dy_n * col_n^T,  db[k] = sum_n sum_pq dy_n[k, pq]
// A 1x1, stride-1, unpadded convolution uses x_n itself as col_n.
// Scratch: per worker slot a col buffer and GEMM packing space; backward-weight adds one dw/db
// partial per batch chunk (chunk size from N alone), summed afterwards in chunk order.
#include <cstring>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/gemm.h"
#include "ops/kernels/conv_geometry.h"

namespace parity {
namespace cpu {
namespace {

// Upper bound on the partial buffers of backward-weight: enough tasks for many cores, and a
// bounded amount of memory (num_chunks * K*C*R*S floats).
constexpr int64_t kMaxBatchChunks = 32;
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

int64_t col_floats(const ConvGeometry& g, const parity_conv2d_params& cp) {
  return is_pointwise(g, cp) ? 0 : align64(g.crs() * g.pq() * 4) / 4;
}

// The GEMM of each direction, [m,k] x [k,n] per image.
enum class Direction { forward, backward_data, backward_weight };
int64_t gemm_floats(const ConvGeometry& g, Direction d) {
  switch (d) {
    case Direction::forward: return gemm_scratch_floats(g.K, g.pq(), g.crs());
    case Direction::backward_data: return gemm_scratch_floats(g.crs(), g.pq(), g.K);
    case Direction::backward_weight: return gemm_scratch_floats(g.K, g.crs(), g.pq());
  }
  return 0;
}

// One worker slot's scratch: the col buffer, then the GEMM packing space.
struct SlotScratch {
  float* col;
  float* gemm;
};
int64_t slot_floats(const ConvGeometry& g, const parity_conv2d_params& cp, Direction d) {
  return col_floats(g, cp) + gemm_floats(g, d);
}
SlotScratch slot_scratch(const BoundNode& node, const ConvGeometry& g, Direction d) {
  float* base = reinterpret_cast<float*>(node.workspace) + worker_slot(node.slots) * slot_floats(g, node.params.conv2d, d);
  return {base, base + col_floats(g, node.params.conv2d)};
}

// Builds col[CRS, PQ] of image x_n.
void im2col_nchw_f32(const float* x_n, const ConvGeometry& g, const parity_conv2d_params& cp, float* col) {
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s)
        kernels::im2col_row_nchw_f32(x_n + c * g.H * g.W, g.H, g.W, r, s, cp, g.P, g.Q,
                                     col + ((c * g.R + r) * g.S + s) * g.pq());
}

// The column matrix of image n: x_n itself for a pointwise conv, else built in `scratch`.
const float* columns(const float* x_n, const ConvGeometry& g, const parity_conv2d_params& cp, float* scratch) {
  if (is_pointwise(g, cp)) return x_n;
  im2col_nchw_f32(x_n, g, cp, scratch);
  return scratch;
}

}  // namespace

// ---------------------------------------------------------------- forward
int64_t plan_conv2d(BoundNode& node) {
  expect_arity(node, 2, 3, 1, 1);
  const ConvGeometry g = check_conv(node, node.in[0], "x", node.in[1], "w", node.out[0], "y");
  if (node.num_inputs == 3) check_bias(node, node.in[2], "b", g.K);
  node.chunk = 1;  // one image per task
  node.num_chunks = chunk_count(g.N, node.chunk);
  return node.slots * slot_floats(g, node.params.conv2d, Direction::forward) * 4;
}

void conv2d_nchw_f32(const BoundNode& node) {
  const parity_conv2d_params cp = node.params.conv2d;
  const ConvGeometry g = geometry(node.in[0], node.in[1], cp);
  const float* x = node.in[0].f32();
  const float* w = node.in[1].f32();
  const float* b = node.num_inputs == 3 ? node.in[2].f32() : nullptr;
  float* y = node.out[0].f32();
  parallel_chunks(g.N, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    const SlotScratch scratch = slot_scratch(node, g, Direction::forward);
    for (int64_t n = begin; n < end; ++n) {
      const float* col = columns(x + n * g.chw(), g, cp, scratch.col);
      float* y_n = y + n * g.kpq();
      gemm_f32(g.K, g.pq(), g.crs(), {w, g.crs(), false}, {col, g.pq(), false}, y_n, g.pq(), false, scratch.gemm);
      if (b)
        for (int64_t k = 0; k < g.K; ++k)
          for (int64_t i = 0; i < g.pq(); ++i) y_n[k * g.pq() + i] += b[k];
    }
  });
}

// ---------------------------------------------------------------- backward, data
int64_t plan_conv2d_bwd_data(BoundNode& node) {
  expect_arity(node, 2, 2, 1, 1);
  // dx plays the role of x: its shape and w's define the geometry dy must have.
  const ConvGeometry g = check_conv(node, node.out[0], "dx", node.in[1], "w", node.in[0], "dy");
  node.chunk = 1;
  node.num_chunks = chunk_count(g.N, node.chunk);
  return node.slots * slot_floats(g, node.params.conv2d, Direction::backward_data) * 4;
}

void conv2d_bwd_data_nchw_f32(const BoundNode& node) {
  const parity_conv2d_params cp = node.params.conv2d;
  const ConvGeometry g = geometry(node.out[0], node.in[1], cp);
  const float* dy = node.in[0].f32();
  const float* w = node.in[1].f32();
  float* dx = node.out[0].f32();
  const bool pointwise = is_pointwise(g, cp);
  parallel_chunks(g.N, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    const SlotScratch scratch = slot_scratch(node, g, Direction::backward_data);
    for (int64_t n = begin; n < end; ++n) {
      float* dx_n = dx + n * g.chw();
      // dcol = w^T dy_n; a pointwise conv's dcol is dx_n itself.
      float* dcol = pointwise ? dx_n : scratch.col;
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

// After the slots' scratch: the partials of dw and db.
struct BwdWeightScratch {
  float* dw_parts;  // [num_chunks][K*CRS]
  float* db_parts;  // [num_chunks][K]
  int64_t bytes;
};

BwdWeightScratch bwd_weight_scratch(const BoundNode& node, const ConvGeometry& g) {
  const int64_t col_bytes = node.slots * slot_floats(g, node.params.conv2d, Direction::backward_weight) * 4;
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

  // Partials per batch chunk: the images of a chunk are summed in order into its buffer.
  parallel_chunks(g.N, node.chunk, [&](int64_t part, int64_t begin, int64_t end) {
    const SlotScratch slot = slot_scratch(node, g, Direction::backward_weight);
    float* dw_part = scratch.dw_parts + part * dw_size;
    float* db_part = scratch.db_parts + part * g.K;
    for (int64_t n = begin; n < end; ++n) {
      const float* col = columns(x + n * g.chw(), g, cp, slot.col);
      const float* dy_n = dy + n * g.kpq();
      // dw_part (+)= dy_n col^T
      gemm_f32(g.K, g.crs(), g.pq(), {dy_n, g.pq(), false}, {col, g.pq(), true}, dw_part, g.crs(), n != begin,
               slot.gemm);
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
