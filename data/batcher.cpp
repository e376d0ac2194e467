// data/batcher.cpp — epoch order (seeded Fisher-Yates) and batch filling with nearest resize (or upsample) and channel repeat.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include <fmt/format.h>

#include "util/counter_rng.h"
#include "parity/data.h"
#include "parity/error.h"

namespace parity {

std::vector<int64_t> epoch_order(int64_t count, uint64_t seed, int64_t epoch, bool shuffle) {
  if (count < 0) {
    throw Error(ErrorKind::invalid_argument, fmt::format("epoch_order: count must be >= 0, got {}", count));
  }
  if (epoch < 0) {
    throw Error(ErrorKind::invalid_argument, fmt::format("epoch_order: epoch must be >= 0, got {}", epoch));
  }
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!shuffle) return order;
  // One stream per epoch; draw i swaps position i with j uniform in [0, i]. The modulo of a
  // 64-bit draw has a bias below count / 2^64, far beneath anything measurable.
  const uint64_t stream = stream_id("parity.epoch_order") + static_cast<uint64_t>(epoch);
  for (int64_t i = count - 1; i > 0; --i) {
    const uint64_t r = random_u64(seed, stream, static_cast<uint64_t>(i));
    const auto j = static_cast<int64_t>(r % static_cast<uint64_t>(i + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

HoldOut hold_out(int64_t count, double fraction, uint64_t seed) {
  if (count < 0) throw Error(ErrorKind::invalid_argument, fmt::format("hold_out: count must be >= 0, got {}", count));
  if (!(fraction >= 0.0 && fraction < 1.0)) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("validation fraction must be in [0, 1), got {}", fraction));
  }
  HoldOut parts;
  const auto held = static_cast<int64_t>(std::llround(fraction * static_cast<double>(count)));
  if (fraction > 0.0 && (held < 1 || held >= count)) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("validation fraction {} of {} samples holds out {}: both the validation and the training "
                            "part need at least one sample",
                            fraction, count, held));
  }
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (held > 0) {
    const uint64_t stream = stream_id("parity.hold_out");
    for (int64_t i = count - 1; i > 0; --i) {
      const uint64_t r = random_u64(seed, stream, static_cast<uint64_t>(i));
      const auto j = static_cast<int64_t>(r % static_cast<uint64_t>(i + 1));
      std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
    }
  }
  parts.validation.assign(order.begin(), order.begin() + held);
  parts.train.assign(order.begin() + held, order.end());
  std::sort(parts.validation.begin(), parts.validation.end());
  std::sort(parts.train.begin(), parts.train.end());
  return parts;
}

Dataset subset(const Dataset& d, const std::vector<int64_t>& indices) {
  Dataset out;
  out.rows = d.rows;
  out.cols = d.cols;
  out.num_classes = d.num_classes;
  out.count = static_cast<int64_t>(indices.size());
  const auto pixels = static_cast<size_t>(d.rows) * static_cast<size_t>(d.cols);
  out.images.resize(indices.size() * pixels);
  out.labels.resize(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    const int64_t at = indices[i];
    if (at < 0 || at >= d.count) {
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("subset: index {} is outside the dataset of {} samples", at, d.count));
    }
    std::memcpy(out.images.data() + i * pixels, d.images.data() + static_cast<size_t>(at) * pixels,
                pixels * sizeof(float));
    out.labels[i] = d.labels[static_cast<size_t>(at)];
  }
  return out;
}

namespace {

void check_geometry(const Dataset& d, const BatchGeometry& g) {
  if (g.channels < 1 || g.upsample < 1 || g.height < 0 || g.width < 0 || (g.height > 0) != (g.width > 0)) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("fill_batch: geometry channels and upsample must be >= 1 and height, width both 0 or both "
                            "> 0, got channels={} upsample={} height={} width={}",
                            g.channels, g.upsample, g.height, g.width));
  }
  const auto pixels = static_cast<size_t>(d.count) * static_cast<size_t>(d.rows) * static_cast<size_t>(d.cols);
  if (d.count < 0 || d.images.size() != pixels || d.labels.size() != static_cast<size_t>(d.count)) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("fill_batch: dataset is inconsistent: count={} rows={} cols={} but {} pixels and {} labels",
                            d.count, d.rows, d.cols, d.images.size(), d.labels.size()));
  }
}

}  // namespace

void fill_batch(const Dataset& d, const std::vector<int64_t>& order, int64_t first, int64_t n,
                const BatchGeometry& g, float* x, int32_t* y) {
  check_geometry(d, g);
  const auto order_size = static_cast<int64_t>(order.size());
  if (first < 0 || n < 0 || first > order_size || n > order_size - first) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("fill_batch: samples [{}, {}) are outside the epoch order of {} samples", first,
                            first + n, order_size));
  }
  if (n > 0 && (x == nullptr || y == nullptr)) {
    throw Error(ErrorKind::invalid_argument, "fill_batch: x and y must not be null");
  }
  const size_t in_rows = static_cast<size_t>(d.rows), in_cols = static_cast<size_t>(d.cols);
  const size_t out_rows = static_cast<size_t>(geometry_height(g, d.rows));
  const size_t out_cols = static_cast<size_t>(geometry_width(g, d.cols));
  const size_t plane = out_rows * out_cols;
  // Nearest neighbour: output row r reads input row floor(r * in_rows / out_rows), and so for
  // columns (an integer upsample repeats each pixel `upsample` times).
  std::vector<size_t> src_col(out_cols);
  for (size_t c = 0; c < out_cols; ++c) src_col[c] = c * in_cols / out_cols;
  for (int64_t b = 0; b < n; ++b) {
    const int64_t sample = order[static_cast<size_t>(first + b)];
    if (sample < 0 || sample >= d.count) {
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("fill_batch: order[{}] = {} is not a sample index in [0, {})", first + b, sample,
                              d.count));
    }
    y[b] = d.labels[static_cast<size_t>(sample)];
    const float* src = d.images.data() + static_cast<size_t>(sample) * in_rows * in_cols;
    float* dst = x + static_cast<size_t>(b) * static_cast<size_t>(g.channels) * plane;
    // Channel 0 row by row; a row reading the same source row as the previous one is copied.
    for (size_t r = 0; r < out_rows; ++r) {
      float* row = dst + r * out_cols;
      const size_t from = r * in_rows / out_rows;
      if (r > 0 && (r - 1) * in_rows / out_rows == from) {
        std::memcpy(row, row - out_cols, out_cols * sizeof(float));
        continue;
      }
      for (size_t c = 0; c < out_cols; ++c) row[c] = src[from * in_cols + src_col[c]];
    }
    for (int ch = 1; ch < g.channels; ++ch) std::memcpy(dst + static_cast<size_t>(ch) * plane, dst, plane * sizeof(float));
  }
}

void fill_batch(const Dataset& d, const std::vector<int64_t>& order, int64_t first, const BatchGeometry& g,
                Tensor& x, Tensor& y) {
  check_geometry(d, g);
  const int64_t n = x.shape().rank() == 4 ? x.shape()[0] : -1;
  const Shape want_x{n, g.channels, geometry_height(g, d.rows), geometry_width(g, d.cols)};
  if (x.dtype() != DType::f32 || x.shape() != want_x) {
    throw Error(ErrorKind::shape, fmt::format("fill_batch: x must be f32 {} for this dataset and geometry, got {} {}",
                                              want_x.str(), to_string(x.dtype()), x.shape().str()));
  }
  const Shape want_y{n};
  if (y.dtype() != DType::i32 || y.shape() != want_y) {
    throw Error(ErrorKind::shape, fmt::format("fill_batch: y must be i32 {} to match x, got {} {}", want_y.str(),
                                              to_string(y.dtype()), y.shape().str()));
  }
  fill_batch(d, order, first, n, g, x.f32(), y.i32());
}

}  // namespace parity
