// backends/cpu/avgpool.cpp — average pooling on the cpu backend, NCHW float32: avgpool2d
// (window sum in row-major order over its divisor, ops/kernels/pool.h) and its backward as a
// gather (each dx element sums dy / divisor over the windows holding it, in row-major window
// order), and global_avgpool (a plane's row-major sum over H*W) and its backward. Every sum has
// one fixed order and one writer, planes are split into fixed chunks, and nothing needs scratch:
// bitwise the same for any thread count, no allocation at run time. Windows that tile the input
// (tiles) take loops without per-window clipping, with the same arithmetic and bits.

#include "backends/cpu/cpu_ops.h"
#include "ops/kernels/pool.h"

namespace parity {
namespace cpu {
namespace {

// Input elements per task, at least: keeps small planes from becoming one task each.
constexpr int64_t kMinElementsPerChunk = 8192;
constexpr int64_t kMaxChunks = 1024;

struct AvgpoolGeometry {
  int64_t planes, H, W, P, Q;  // planes = N*C
  kernels::PoolWindow window;
  bool count_include_pad;
};

// Windows that tile the input (no padding, stride == kernel, floor mode): every window lies
// inside and has the divisor kernel_h * kernel_w, and an input element is in at most one window.
// The loops below then need no per-window clipping or divisor, and compute the general
// kernels' arithmetic (ops/kernels/pool.h) in their order: the same bits (LeNet-5's 2x2 pools).
bool tiles(const AvgpoolGeometry& g) {
  const kernels::PoolAxis& h = g.window.h;
  const kernels::PoolAxis& w = g.window.w;
  return h.pad == 0 && w.pad == 0 && h.stride == h.kernel && w.stride == w.kernel && !h.ceil_mode && !w.ceil_mode;
}

void split_planes(BoundNode& node, int64_t planes, int64_t plane_elements) {
  node.chunk = fixed_chunk_size(planes, (kMinElementsPerChunk + plane_elements - 1) / plane_elements, kMaxChunks);
  node.num_chunks = chunk_count(planes, node.chunk);
}

AvgpoolGeometry geometry(const BoundValue& x, const parity_avgpool2d_params& ap) {
  const kernels::PoolWindow win = kernels::pool_window(ap);
  return {x.dims[0] * x.dims[1], x.dims[2], x.dims[3], kernels::pool_output_size(x.dims[2], win.h),
          kernels::pool_output_size(x.dims[3], win.w), win, ap.count_include_pad != 0};
}

// Checks x (or dx) against the params and y (or dy) against the shape they give.
void check_avgpool(BoundNode& node, const BoundValue& x, const char* x_role, const BoundValue& y, const char* y_role) {
  const parity_avgpool2d_params& ap = node.params.avgpool2d;
  const kernels::PoolWindow win = kernels::pool_window(ap);
  if (ap.kernel_h <= 0 || ap.kernel_w <= 0)
    fail(node, "kernel must be > 0, got " + std::to_string(ap.kernel_h) + "x" + std::to_string(ap.kernel_w));
  if (ap.stride_h <= 0 || ap.stride_w <= 0)
    fail(node, "stride must be > 0, got " + std::to_string(ap.stride_h) + "x" + std::to_string(ap.stride_w));
  if (ap.pad_h < 0 || ap.pad_w < 0)
    fail(node, "padding must be >= 0, got " + std::to_string(ap.pad_h) + "x" + std::to_string(ap.pad_w));
  expect_value(node, x, x_role, PARITY_F32, 4);
  if (x.dims[2] + 2 * win.h.pad < win.h.kernel || x.dims[3] + 2 * win.w.pad < win.w.kernel)
    fail(node, std::string(x_role) + " " + x.shape_str() + " padded by " + std::to_string(ap.pad_h) + "x" +
                   std::to_string(ap.pad_w) + " is smaller than the window " + std::to_string(ap.kernel_h) + "x" +
                   std::to_string(ap.kernel_w));
  const AvgpoolGeometry g = geometry(x, ap);
  const int64_t dims[4] = {x.dims[0], x.dims[1], g.P, g.Q};
  expect_value(node, y, y_role, PARITY_F32, 4);
  expect_dims(node, y, y_role, dims, 4, "[N,C,P,Q], P and Q pooled from H and W (parity/plugin.h)");
  split_planes(node, g.planes, g.H * g.W);
}

// x [N,C,H,W] (or dx) and y [N,C,1,1] (or dy).
void check_global(BoundNode& node, const BoundValue& x, const char* x_role, const BoundValue& y, const char* y_role) {
  expect_value(node, x, x_role, PARITY_F32, 4);
  const int64_t dims[4] = {x.dims[0], x.dims[1], 1, 1};
  expect_value(node, y, y_role, PARITY_F32, 4);
  expect_dims(node, y, y_role, dims, 4, "[N,C,1,1], one mean per (n,c) plane");
  split_planes(node, x.dims[0] * x.dims[1], x.dims[2] * x.dims[3]);
}

}  // namespace

int64_t prepare_avgpool2d(BoundNode& node) {
  expect_arity(node, 1, 1, 1, 1);
  check_avgpool(node, node.in[0], "x", node.out[0], "y");
  return 0;
}

void run_avgpool2d(const BoundNode& node) {
  const AvgpoolGeometry g = geometry(node.in[0], node.params.avgpool2d);
  const float* x = node.in[0].f32();
  float* y = node.out[0].f32();
  const int64_t kh = g.window.h.kernel, kw = g.window.w.kernel;
  const float divisor = static_cast<float>(kh * kw);
  const bool tiled = tiles(g);
  parallel_chunks(g.planes, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* x_plane = x + plane * g.H * g.W;
      float* y_plane = y + plane * g.P * g.Q;
      if (tiled && kh == 2 && kw == 2) {  // the common 2x2 pool, with constant taps the compiler vectorises
        for (int64_t p = 0; p < g.P; ++p) {
          const float* top = x_plane + 2 * p * g.W;
          const float* bottom = top + g.W;
          for (int64_t q = 0; q < g.Q; ++q)
            y_plane[p * g.Q + q] = (((0.0f + top[2 * q]) + top[2 * q + 1]) + bottom[2 * q]) + bottom[2 * q + 1];
          for (int64_t q = 0; q < g.Q; ++q) y_plane[p * g.Q + q] /= divisor;
        }
        continue;
      }
      if (tiled) {
        for (int64_t p = 0; p < g.P; ++p)
          for (int64_t q = 0; q < g.Q; ++q) {
            float sum = 0.0f;
            for (int64_t r = 0; r < kh; ++r)
              for (int64_t s = 0; s < kw; ++s) sum += x_plane[(p * kh + r) * g.W + q * kw + s];
            y_plane[p * g.Q + q] = sum / divisor;
          }
        continue;
      }
      for (int64_t p = 0; p < g.P; ++p)
        for (int64_t q = 0; q < g.Q; ++q)
          y_plane[p * g.Q + q] = kernels::avgpool2d_window_nchw_f32(x_plane, g.H, g.W, p, q, g.window, g.count_include_pad);
    }
  });
}

int64_t prepare_avgpool2d_bwd(BoundNode& node) {
  expect_arity(node, 1, 1, 1, 1);
  check_avgpool(node, node.out[0], "dx", node.in[0], "dy");
  return 0;
}

void run_avgpool2d_bwd(const BoundNode& node) {
  const AvgpoolGeometry g = geometry(node.out[0], node.params.avgpool2d);
  const float* dy = node.in[0].f32();
  float* dx = node.out[0].f32();
  const int64_t kh = g.window.h.kernel, kw = g.window.w.kernel;
  const float divisor = static_cast<float>(kh * kw);
  const bool tiled = tiles(g);
  parallel_chunks(g.planes, node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* dy_plane = dy + plane * g.P * g.Q;
      float* dx_plane = dx + plane * g.H * g.W;
      if (tiled) {
        // The gather's sum over the one window holding (h, w), from 0.0f as the general kernel
        // (so a -0 quotient gives +0); 0 outside the windows (floor mode's uncovered edge).
        // Row by row and window by window, so no element needs a division to find its window.
        for (int64_t h = 0; h < g.H; ++h) {
          float* dx_row = dx_plane + h * g.W;
          int64_t w = 0;
          if (h < g.P * kh) {
            const float* dy_row = dy_plane + (h / kh) * g.Q;
            if (kw == 2) {  // the common 2x2 pool: constant taps the compiler vectorises
              for (int64_t q = 0; q < g.Q; ++q) {
                const float v = 0.0f + dy_row[q] / divisor;
                dx_row[2 * q] = v;
                dx_row[2 * q + 1] = v;
              }
            } else {
              for (int64_t q = 0; q < g.Q; ++q) {
                const float v = 0.0f + dy_row[q] / divisor;
                for (int64_t s = 0; s < kw; ++s) dx_row[q * kw + s] = v;
              }
            }
            w = g.Q * kw;
          }
          for (; w < g.W; ++w) dx_row[w] = 0.0f;
        }
        continue;
      }
      for (int64_t h = 0; h < g.H; ++h)
        for (int64_t w = 0; w < g.W; ++w)
          dx_plane[h * g.W + w] =
              kernels::avgpool2d_bwd_element_nchw_f32(dy_plane, g.H, g.W, g.P, g.Q, h, w, g.window, g.count_include_pad);
    }
  });
}

int64_t prepare_global_avgpool(BoundNode& node) {
  expect_arity(node, 1, 1, 1, 1);
  check_global(node, node.in[0], "x", node.out[0], "y");
  return 0;
}

void run_global_avgpool(const BoundNode& node) {
  const BoundValue& x = node.in[0];
  const int64_t plane_size = x.dims[2] * x.dims[3];
  const float* xs = x.f32();
  float* y = node.out[0].f32();
  parallel_chunks(x.dims[0] * x.dims[1], node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane)
      y[plane] = kernels::global_avgpool_plane_f32(xs + plane * plane_size, plane_size);
  });
}

int64_t prepare_global_avgpool_bwd(BoundNode& node) {
  expect_arity(node, 1, 1, 1, 1);
  check_global(node, node.out[0], "dx", node.in[0], "dy");
  return 0;
}

void run_global_avgpool_bwd(const BoundNode& node) {
  const BoundValue& dx = node.out[0];
  const int64_t plane_size = dx.dims[2] * dx.dims[3];
  const float* dy = node.in[0].f32();
  float* out = dx.f32();
  const float count = static_cast<float>(plane_size);
  parallel_chunks(dx.dims[0] * dx.dims[1], node.chunk, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const float g = dy[plane] / count;
      for (int64_t i = 0; i < plane_size; ++i) out[plane * plane_size + i] = g;
    }
  });
}

}  // namespace cpu
}  // namespace parity
