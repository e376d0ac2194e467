// data/idx.cpp — reads IDX (MNIST-format) image and label files, plain or gzipped, with every check up front.
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "parity/data.h"
#include "parity/error.h"

namespace parity {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned byte, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned byte, 1 dimension
constexpr uint32_t kMaxSide = 16384;           // rows and cols above this are not an image
constexpr unsigned kChunkBytes = 1u << 20;    // the most read at once
constexpr unsigned kMinBufferBytes = 8u << 10;  // zlib's default buffer size
// Deflate's best case is a 258-byte match coded in 2 bits, so no gzip file expands more than
// 1032 times: a trailer (ISIZE) or header promising more is corrupt, and the reader refuses it
// before allocating for it (a 63-byte file claiming 4 GB once cost 16 GB of zeroed floats).
constexpr uint64_t kMaxDeflateRatio = 1032;

constexpr const char* kInstallHint =
    "install the Debian package dataset-fashion-mnist or pass --data DIR";

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool folder_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// How many uncompressed bytes a file can yield, known before decompressing: the file size
// for a plain file, the gzip ISIZE trailer (uncompressed size mod 2^32) for a gzip file.
struct Capacity {
  bool gzip = false;
  uint64_t bytes = 0;
  uint64_t file_bytes = 0;  // the size of the file itself
};

Capacity probe_capacity(const std::string& path, const char* what) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) {
    throw Error(ErrorKind::io, fmt::format("cannot open {} file '{}': {}", what, path, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fileno(file.get()), &st) != 0) {
    throw Error(ErrorKind::io, fmt::format("cannot stat {} file '{}': {}", what, path, std::strerror(errno)));
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  unsigned char magic[2] = {0, 0};
  const size_t got = std::fread(magic, 1, 2, file.get());
  Capacity cap;
  cap.file_bytes = size;
  cap.gzip = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  if (!cap.gzip) {
    cap.bytes = size;
    return cap;
  }
  // 10-byte gzip header + 8-byte trailer (CRC32, ISIZE) is the least a gzip file can be.
  unsigned char trailer[4] = {0, 0, 0, 0};
  if (size < 18 || std::fseek(file.get(), -4, SEEK_END) != 0 || std::fread(trailer, 1, 4, file.get()) != 4) {
    throw Error(ErrorKind::data,
                fmt::format("{} file '{}' is a truncated gzip file: {} bytes is too short to hold a "
                            "gzip header and trailer (18 bytes)",
                            what, path, size));
  }
  cap.bytes = uint64_t{trailer[0]} | uint64_t{trailer[1]} << 8 | uint64_t{trailer[2]} << 16 |
              uint64_t{trailer[3]} << 24;
  return cap;
}

// A zlib gzFile reading gzipped and plain files alike, with errors that name the file.
class IdxReader {
 public:
  IdxReader(const std::string& path, const char* what) : path_(path), what_(what) {
    capacity_ = probe_capacity(path, what);
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) {
      throw Error(ErrorKind::io, fmt::format("cannot open {} file '{}': {}", what, path,
                                             errno ? std::strerror(errno) : "out of memory"));
    }
    // zlib's buffers (this size in, twice it out) need not outgrow the file: a small file costs
    // small buffers.
    gzbuffer(file_, static_cast<unsigned>(std::clamp<uint64_t>(capacity_.file_bytes, kMinBufferBytes, kChunkBytes)));
  }
  ~IdxReader() {
    if (file_ != nullptr) gzclose(file_);
  }
  IdxReader(const IdxReader&) = delete;
  IdxReader& operator=(const IdxReader&) = delete;

  const std::string& path() const { return path_; }
  const char* what() const { return what_; }

  // Reads exactly `bytes` bytes; `part` names them for the message ("header", "pixel data").
  void read_exact(void* out, size_t bytes, const char* part) {
    auto* dst = static_cast<unsigned char*>(out);
    size_t done = 0;
    while (done < bytes) {
      const auto want = static_cast<unsigned>(std::min<size_t>(bytes - done, kChunkBytes));
      const int got = gzread(file_, dst + done, want);
      if (got < 0) throw stream_error(bytes, done, part);
      if (got == 0) break;
      done += static_cast<size_t>(got);
    }
    if (done < bytes) throw stream_error(bytes, done, part);
  }

  // Header: the magic, then `dims` big-endian uint32 dimensions.
  std::vector<uint32_t> read_header(uint32_t expected_magic, int dims) {
    std::array<unsigned char, 16> raw{};
    const size_t bytes = 4 * static_cast<size_t>(1 + dims);
    read_exact(raw.data(), bytes, "header");
    std::vector<uint32_t> words(static_cast<size_t>(1 + dims));
    for (size_t i = 0; i < words.size(); ++i) {
      words[i] = uint32_t{raw[4 * i]} << 24 | uint32_t{raw[4 * i + 1]} << 16 |
                 uint32_t{raw[4 * i + 2]} << 8 | uint32_t{raw[4 * i + 3]};
    }
    if (words[0] != expected_magic) {
      throw Error(ErrorKind::data,
                  fmt::format("{} file '{}' is not an IDX {} file: magic number must be 0x{:08x}, got 0x{:08x}",
                              what_, path_, what_, expected_magic, words[0]));
    }
    return {words.begin() + 1, words.end()};
  }

  // The header promises header_bytes + payload_bytes; refuse before allocating if the file
  // cannot hold them.
  void check_capacity(uint64_t header_bytes, uint64_t payload_bytes, const std::string& claim) {
    const uint64_t needed = header_bytes + payload_bytes;
    if (capacity_.gzip) {
      if (needed > UINT32_MAX) {
        throw Error(ErrorKind::data,
                    fmt::format("{} file '{}': header claims {} ({} bytes); gzipped IDX files are limited "
                                "to 4 GiB uncompressed",
                                what_, path_, claim, needed));
      }
      if (needed > capacity_.bytes) {
        throw Error(ErrorKind::data,
                    fmt::format("{} file '{}': header claims {} ({} bytes uncompressed) but the gzip "
                                "trailer says the file holds {} bytes (truncated or corrupt file?)",
                                what_, path_, claim, needed, capacity_.bytes));
      }
      if (needed > kMaxDeflateRatio * capacity_.file_bytes) {
        throw Error(ErrorKind::data,
                    fmt::format("{} file '{}': header claims {} ({} bytes uncompressed) but a gzip file of "
                                "{} bytes holds at most {} times that (corrupt file?)",
                                what_, path_, claim, needed, capacity_.file_bytes, kMaxDeflateRatio));
      }
    } else if (needed > capacity_.bytes) {
      throw Error(ErrorKind::data,
                  fmt::format("{} file '{}': header claims {} ({} bytes) but the file is only {} bytes "
                              "(truncated file?)",
                              what_, path_, claim, needed, capacity_.bytes));
    }
  }

  // For a gzip stream, reads to the end so zlib verifies the CRC and length trailer;
  // bytes after the last item are ignored.
  void finish() {
    if (!capacity_.gzip) return;
    std::vector<unsigned char> sink(kMinBufferBytes);  // a whole file has nothing left but its trailer
    for (;;) {
      const int got = gzread(file_, sink.data(), static_cast<unsigned>(sink.size()));
      if (got < 0) {
        int code = 0;
        const char* message = gzerror(file_, &code);
        throw Error(ErrorKind::data, fmt::format("{} file '{}' is corrupt: gzip check failed after the "
                                                 "last item: {}",
                                                 what_, path_, message));
      }
      if (got == 0) {
        int code = 0;
        const char* message = gzerror(file_, &code);
        if (code != Z_OK) {
          throw Error(ErrorKind::data,
                      fmt::format("{} file '{}' is truncated or corrupt: gzip stream ended badly: {}", what_,
                                  path_, message));
        }
        return;
      }
    }
  }

 private:
  Error stream_error(size_t expected, size_t read, const char* part) {
    int code = Z_OK;
    const char* message = gzerror(file_, &code);
    const std::string detail = code != Z_OK && message != nullptr && *message != '\0'
                                   ? fmt::format(" (zlib: {})", message)
                                   : std::string();
    return Error(ErrorKind::data, fmt::format("{} file '{}' is truncated or corrupt: expected {} bytes of {}, "
                                              "read {}{}",
                                              what_, path_, expected, part, read, detail));
  }

  std::string path_;
  const char* what_;
  Capacity capacity_;
  gzFile file_ = nullptr;
};

// Reads at most max_items images (0 = all) scaled to [0, 1] through a 256-entry table, so
// 255 maps to exactly 1.0f.
int64_t read_images(const std::string& path, int64_t max_items, Dataset& out) {
  IdxReader reader(path, "images");
  const auto dims = reader.read_header(kImagesMagic, 3);
  const uint32_t count = dims[0], rows = dims[1], cols = dims[2];
  if (count == 0 || rows == 0 || cols == 0 || count > INT32_MAX || rows > kMaxSide || cols > kMaxSide) {
    throw Error(ErrorKind::data,
                fmt::format("images file '{}': dimensions {}x{}x{} are not usable: count must be in "
                            "[1, {}] and rows, cols in [1, {}]",
                            path, count, rows, cols, INT32_MAX, kMaxSide));
  }
  const uint64_t image_bytes = uint64_t{rows} * cols;
  reader.check_capacity(16, uint64_t{count} * image_bytes, fmt::format("{} images of {}x{}", count, rows, cols));

  const int64_t keep = max_items > 0 ? std::min<int64_t>(max_items, count) : count;
  out.rows = static_cast<int>(rows);
  out.cols = static_cast<int>(cols);
  out.images.resize(static_cast<size_t>(keep) * image_bytes);

  std::array<float, 256> scale{};
  for (int p = 0; p < 256; ++p) scale[static_cast<size_t>(p)] = static_cast<float>(p) / 255.0f;
  const uint64_t total = static_cast<uint64_t>(keep) * image_bytes;
  std::vector<unsigned char> chunk(static_cast<size_t>(std::min<uint64_t>(total, kChunkBytes)));
  for (uint64_t done = 0; done < total;) {
    const auto bytes = static_cast<size_t>(std::min<uint64_t>(total - done, kChunkBytes));
    reader.read_exact(chunk.data(), bytes, "pixel data");
    float* dst = out.images.data() + done;
    for (size_t i = 0; i < bytes; ++i) dst[i] = scale[chunk[i]];
    done += bytes;
  }
  if (keep == static_cast<int64_t>(count)) reader.finish();
  return count;
}

int64_t read_labels(const std::string& path, int64_t max_items, int num_classes, Dataset& out) {
  IdxReader reader(path, "labels");
  const auto dims = reader.read_header(kLabelsMagic, 1);
  const uint32_t count = dims[0];
  if (count == 0 || count > INT32_MAX) {
    throw Error(ErrorKind::data, fmt::format("labels file '{}': count {} is not usable: it must be in [1, {}]",
                                             path, count, INT32_MAX));
  }
  reader.check_capacity(8, count, fmt::format("{} labels", count));

  const int64_t keep = max_items > 0 ? std::min<int64_t>(max_items, count) : count;
  std::vector<unsigned char> raw(static_cast<size_t>(keep));
  reader.read_exact(raw.data(), raw.size(), "labels");
  if (keep == static_cast<int64_t>(count)) reader.finish();
  out.labels.resize(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] >= num_classes) {
      throw Error(ErrorKind::data, fmt::format("labels file '{}': label {} at index {} is outside [0, {})", path,
                                               raw[i], i, num_classes));
    }
    out.labels[i] = raw[i];
  }
  return count;
}

Dataset load_pair(const std::string& images_path, const std::string& labels_path, int num_classes,
                  int64_t limit) {
  if (num_classes < 1) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("load_idx_pair: num_classes must be >= 1, got {}", num_classes));
  }
  Dataset d;
  const int64_t label_count = read_labels(labels_path, limit, num_classes, d);
  const int64_t image_count = read_images(images_path, limit, d);
  if (label_count != image_count) {
    throw Error(ErrorKind::data, fmt::format("images file '{}' holds {} images but labels file '{}' holds {} "
                                             "labels; the counts must match",
                                             images_path, image_count, labels_path, label_count));
  }
  d.count = static_cast<int64_t>(d.labels.size());
  for (int32_t label : d.labels) d.num_classes = std::max(d.num_classes, label + 1);
  return d;
}

// folder/name.gz if present, else folder/name; Error(io) naming both when neither exists.
std::string find_file(const std::string& folder, const std::string& name) {
  const std::string plain = folder + "/" + name;
  if (file_exists(plain + ".gz")) return plain + ".gz";
  if (file_exists(plain)) return plain;
  throw Error(ErrorKind::io, fmt::format("Fashion-MNIST file not found: neither '{}.gz' nor '{}' exists; {}", plain,
                                         plain, kInstallHint));
}

}  // namespace

std::string default_data_folder() { return "/usr/share/datasets/fashion-mnist"; }

Dataset load_idx_pair(const std::string& images_path, const std::string& labels_path, int num_classes) {
  return load_pair(images_path, labels_path, num_classes, 0);
}

namespace {

constexpr int kMaxIdxClasses = 256;  // a label is one unsigned byte

Dataset load_folder(const char* caller, const std::string& folder, Split split, int64_t limit, int num_classes) {
  if (limit < 0) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("{}: limit must be >= 0 (0 = all samples), got {}", caller, limit));
  }
  if (!folder_exists(folder)) {
    throw Error(ErrorKind::io, fmt::format("Fashion-MNIST folder '{}' does not exist; {}", folder, kInstallHint));
  }
  const std::string prefix = split == Split::train ? "train" : "t10k";
  const std::string images = find_file(folder, prefix + "-images-idx3-ubyte");
  const std::string labels = find_file(folder, prefix + "-labels-idx1-ubyte");
  return load_pair(images, labels, num_classes, limit);
}

}  // namespace

Dataset load_fashion_mnist(const std::string& folder, Split split, int64_t limit) {
  return load_folder("load_fashion_mnist", folder, split, limit, 10);
}

Dataset load_idx_folder(const std::string& folder, Split split, int64_t limit) {
  return load_folder("load_idx_folder", folder, split, limit, kMaxIdxClasses);
}

}  // namespace parity
