// tests/idx_dataset_writer.h — writes a small labelled IDX dataset (the four files `--data DIR`
// reads, plain or gzipped) of any image size and class count, learnable: class c lights a band.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace parity::testing {

struct IdxDatasetShape {
  uint32_t rows = 28, cols = 28;
  uint32_t classes = 10;
  uint32_t train = 64, test = 32;  // images per split
  bool gzip = false;
};

inline void write_idx_file(const std::string& path, const std::vector<unsigned char>& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    if (f == nullptr || gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) != static_cast<int>(bytes.size()) ||
        gzclose(f) != Z_OK)
      throw std::runtime_error("cannot write " + path);
    return;
  }
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

// {train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte in `dir` (".gz" added when
// gzipped). Labels cycle through every class, so each split shows the full class count.
inline void write_idx_dataset(const std::string& dir, const IdxDatasetShape& s) {
  auto put_u32 = [](std::vector<unsigned char>& out, uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<unsigned char>(v >> shift));
  };
  uint32_t noise = 12345;
  for (const auto& [prefix, count] : {std::pair<std::string, uint32_t>{"train", s.train}, {"t10k", s.test}}) {
    std::vector<unsigned char> images, labels;
    put_u32(images, 0x803);
    put_u32(images, count);
    put_u32(images, s.rows);
    put_u32(images, s.cols);
    put_u32(labels, 0x801);
    put_u32(labels, count);
    for (uint32_t i = 0; i < count; ++i) {
      const uint32_t label = (i * 7 + 3) % s.classes;
      labels.push_back(static_cast<unsigned char>(label));
      for (uint32_t r = 0; r < s.rows; ++r)
        for (uint32_t c = 0; c < s.cols; ++c) {
          noise = noise * 1664525u + 1013904223u;
          const bool lit = r * s.classes / s.rows == label;
          images.push_back(static_cast<unsigned char>((lit ? 160 : 0) + (noise >> 27)));
        }
    }
    const std::string ext = s.gzip ? ".gz" : "";
    write_idx_file(dir + "/" + prefix + "-images-idx3-ubyte" + ext, images, s.gzip);
    write_idx_file(dir + "/" + prefix + "-labels-idx1-ubyte" + ext, labels, s.gzip);
  }
}

}  // namespace parity::testing
