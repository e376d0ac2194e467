// parity/data.h — training data: IDX (MNIST-format) loading, epoch order and batch filling.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parity/tensor.h"

namespace parity {

enum class Split { train, test };

// A labelled image set in memory: images scaled to [0, 1], one channel, row-major pixels.
struct Dataset {
  int64_t count = 0;
  int rows = 0, cols = 0;
  std::vector<float> images;    // count * rows * cols, pixel byte p stored as p / 255
  std::vector<int32_t> labels;  // count, each in [0, num_classes)
  int num_classes = 0;          // 1 + the largest label loaded (0 for no samples)
};

// "/usr/share/datasets/fashion-mnist", where the Debian package dataset-fashion-mnist installs.
std::string default_data_folder();

// Reads an IDX3 ubyte image file and an IDX1 ubyte label file, gzipped or plain (detected
// from the content, not the name). Throws Error(io) for files that cannot be opened or read
// and Error(data) for bad content: wrong magic, zero or absurd dimensions, a header that
// claims more items than the file holds (checked before allocating), truncated or corrupt
// gzip streams, image and label counts that differ, labels outside [0, num_classes).
// Bytes after the last item are ignored (a gzip stream is still read to its end so its
// CRC is checked).
Dataset load_idx_pair(const std::string& images_path, const std::string& labels_path,
                      int num_classes = 10);

// Loads {train,t10k}-images-idx3-ubyte[.gz] and {train,t10k}-labels-idx1-ubyte[.gz] from
// `folder`. limit > 0 keeps only the first `limit` samples (and reads only those);
// limit == 0 keeps all. A missing folder or file is Error(io) naming what was looked for.
Dataset load_fashion_mnist(const std::string& folder, Split split, int64_t limit = 0);

// Any IDX pair under the same four names as load_fashion_mnist, of any image size, with labels
// 0-255: the class count is what the labels show (Dataset::num_classes). What `--data DIR` reads.
Dataset load_idx_folder(const std::string& folder, Split split, int64_t limit = 0);

// How a 1-channel dataset image becomes a graph input: each pixel repeated upsample x upsample
// (nearest neighbour) and the plane repeated `channels` times.
// seed-cnn (Fashion-MNIST as is): {1, 1}; seed-cnn-112 (3x112x112): {3, 4}.
// A model read from a file asks for its own H and W instead: height and width > 0 resize each
// image to them by nearest neighbour (PyTorch's interpolate(mode="nearest"): output row r reads
// input row floor(r * rows / height)), which is the upsample when they are multiples.
struct BatchGeometry {
  int channels = 1;
  int upsample = 1;
  int height = 0, width = 0;  // > 0: resize to height x width (upsample is then ignored)
};

// The H and W a dataset image of rows x cols becomes under `g`.
inline int geometry_height(const BatchGeometry& g, int rows) { return g.height > 0 ? g.height : rows * g.upsample; }
inline int geometry_width(const BatchGeometry& g, int cols) { return g.width > 0 ? g.width : cols * g.upsample; }

// The order of sample indices for one epoch: 0..count-1 when shuffle is false, otherwise a
// Fisher-Yates permutation drawn from the counter RNG keyed by (seed, epoch), so epoch e
// has the same order whether or not the run was resumed there.
std::vector<int64_t> epoch_order(int64_t count, uint64_t seed, int64_t epoch, bool shuffle);

// A seeded split of `count` samples into those trained on and those held out for validation.
// Each list is in ascending index order.
struct HoldOut {
  std::vector<int64_t> train, validation;
};

// Holds out round(fraction * count) samples, drawn by a seeded Fisher-Yates permutation on a
// stream of its own (so it does not depend on, nor change, epoch_order's draws). fraction 0
// holds out nothing (train = 0..count-1). Error(invalid_argument) unless 0 <= fraction < 1,
// or when a fraction > 0 leaves either part empty.
HoldOut hold_out(int64_t count, double fraction, uint64_t seed);

// The samples `indices` of `d`, in that order (Error(invalid_argument) for an index outside d).
Dataset subset(const Dataset& d, const std::vector<int64_t>& indices);

// Fills x (float [n, channels, rows*upsample, cols*upsample]) and y (int32 [n]) with the
// samples order[first], ..., order[first+n-1]. The caller allocates x and y with exactly
// those sizes; the range, the indices in `order` and the geometry are checked
// (Error(invalid_argument)). For a last partial batch pass the smaller n.
void fill_batch(const Dataset& d, const std::vector<int64_t>& order, int64_t first, int64_t n,
                const BatchGeometry& g, float* x, int32_t* y);

// The same into tensors whose shapes and dtypes are checked: x f32 [n, C, H, W] and y i32 [n],
// with n taken from x (Error(shape) when they do not fit the dataset and geometry).
void fill_batch(const Dataset& d, const std::vector<int64_t>& order, int64_t first,
                const BatchGeometry& g, Tensor& x, Tensor& y);

}  // namespace parity
