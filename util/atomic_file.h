// util/atomic_file.h — writing a file so that readers see the old content or the new, never a
// half-written one: a temporary file in the same folder, fsync, rename.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace parity {

struct ByteRange {
  const void* data;
  size_t bytes;
};

// Writes the ranges, in order, as the new content of `path`. Throws Error(io) naming `path`;
// the original file is untouched and no temporary file is left behind on any failure.
void write_file_atomically(const std::string& path, const std::vector<ByteRange>& content);

inline void write_file_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, {ByteRange{text.data(), text.size()}});
}

}  // namespace parity
