// fuzz/fuzz_idx.cpp — libFuzzer target: the IDX reader (plain or gzip) on any bytes, read as images and as labels.
#include <cstddef>
#include <cstdint>

#include "fuzz/memory_file.h"
#include "parity/data.h"
#include "parity/error.h"

namespace {

// The valid partners of the input: one 2x2 image, one label.
constexpr uint8_t kOneImage[] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 85, 170, 255};
constexpr uint8_t kOneLabel[] = {0, 0, 8, 1, 0, 0, 0, 1, 7};

void load(const MemoryFile& images, const MemoryFile& labels) {
  try {
    parity::load_idx_pair(images.path(), labels.path(), 10);
  } catch (const parity::Error&) {
    // the expected rejection of bad bytes; any other exception escapes and is a finding
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const MemoryFile images(kOneImage, sizeof kOneImage);
  static const MemoryFile labels(kOneLabel, sizeof kOneLabel);
  static MemoryFile input;
  input.set(data, size);
  // load_idx_pair reads the labels whole and then the images whole, so the input is read whole in
  // both roles whichever of them it fails.
  load(input, labels);
  load(images, input);
  return 0;
}
