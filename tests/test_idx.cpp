// tests/test_idx.cpp — IDX loading: scaling, plain and gzip files, every corrupt-file error, limit, the real dataset.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "parity/data.h"
#include "parity/error.h"

namespace parity {
namespace {

using Bytes = std::vector<unsigned char>;

void put_u32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<unsigned char>(v >> shift));
}

Bytes images_bytes(uint32_t count, uint32_t rows, uint32_t cols, const Bytes& pixels, uint32_t magic = 0x803) {
  Bytes out;
  put_u32(out, magic);
  put_u32(out, count);
  put_u32(out, rows);
  put_u32(out, cols);
  out.insert(out.end(), pixels.begin(), pixels.end());
  return out;
}

Bytes labels_bytes(uint32_t count, const Bytes& labels, uint32_t magic = 0x801) {
  Bytes out;
  put_u32(out, magic);
  put_u32(out, count);
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

// Pixels that do not compress away, so a damaged gzip stream is damaged in the data.
Bytes noisy_pixels(size_t n) {
  Bytes out(n);
  uint32_t state = 12345;
  for (auto& b : out) {
    state = state * 1664525u + 1013904223u;
    b = static_cast<unsigned char>(state >> 24);
  }
  return out;
}

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "parity_idx_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  std::string write_plain(const std::string& name, const Bytes& bytes) {
    const std::string path = dir_ + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    EXPECT_TRUE(out.good());
    return path;
  }

  std::string write_gz(const std::string& name, const Bytes& bytes) {
    const std::string path = dir_ + "/" + name;
    gzFile f = gzopen(path.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
    EXPECT_EQ(gzclose(f), Z_OK);
    return path;
  }

  static Bytes read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  // A gzip file whose first member holds `idx_header` (its own CRC and length intact) and whose
  // second member's trailer claims 0xFFFFFFF0 bytes: zlib hands over the header before it meets
  // the false trailer, so only the reader's own bound on the claim stops the allocation for it.
  Bytes header_then_false_trailer(const Bytes& idx_header) {
    Bytes out = read_file(write_gz("member1.gz", idx_header));
    Bytes second = read_file(write_gz("member2.gz", Bytes(64, 0)));
    std::fill(second.end() - 4, second.end(), 0xff);
    second[second.size() - 4] = 0xf0;
    out.insert(out.end(), second.begin(), second.end());
    return out;
  }

  // Expects load_idx_pair to throw Error of `kind` whose message contains `needle`; returns the message.
  static std::string expect_error(const std::string& images, const std::string& labels, ErrorKind kind,
                                  const std::string& needle) {
    try {
      load_idx_pair(images, labels);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
      return e.what();
    }
    ADD_FAILURE() << "expected parity::Error containing '" << needle << "'";
    return {};
  }

  std::string dir_;
};

TEST_F(IdxTest, LoadsPlainFilesAndScalesPixels) {
  const Bytes pixels = {0, 255, 128, 1, 2, 3, 10, 20, 30, 40, 50, 60};  // 2 images of 2x3
  const auto images = write_plain("img", images_bytes(2, 2, 3, pixels));
  const auto labels = write_plain("lab", labels_bytes(2, {7, 0}));
  const Dataset d = load_idx_pair(images, labels);
  EXPECT_EQ(d.count, 2);
  EXPECT_EQ(d.rows, 2);
  EXPECT_EQ(d.cols, 3);
  ASSERT_EQ(d.images.size(), 12u);
  EXPECT_EQ(d.images[0], 0.0f);
  EXPECT_EQ(d.images[1], 1.0f);
  EXPECT_EQ(d.images[2], 128.0f / 255.0f);
  EXPECT_EQ(d.images[11], 60.0f / 255.0f);
  EXPECT_EQ(d.labels, (std::vector<int32_t>{7, 0}));
}

TEST_F(IdxTest, LoadsGzippedFilesIdenticallyToPlain) {
  const Bytes pixels = noisy_pixels(5 * 4 * 4);
  const Bytes label_values = {0, 1, 2, 3, 9};
  const Dataset plain = load_idx_pair(write_plain("img", images_bytes(5, 4, 4, pixels)),
                                      write_plain("lab", labels_bytes(5, label_values)));
  const Dataset gz = load_idx_pair(write_gz("img.gz", images_bytes(5, 4, 4, pixels)),
                                   write_gz("lab.gz", labels_bytes(5, label_values)));
  EXPECT_EQ(gz.count, 5);
  EXPECT_EQ(gz.images, plain.images);
  EXPECT_EQ(gz.labels, plain.labels);
  EXPECT_EQ(gz.images[3], pixels[3] / 255.0f);
}

TEST_F(IdxTest, TruncatedGzipReportsExpectedAndReadBytes) {
  const Bytes pixels = noisy_pixels(100 * 28 * 28);
  const auto full = write_gz("full.gz", images_bytes(100, 28, 28, pixels));
  Bytes gz = read_file(full);
  gz.resize(gz.size() / 2);
  const auto images = write_plain("cut.gz", gz);
  const auto labels = write_plain("lab", labels_bytes(100, Bytes(100, 1)));
  const std::string msg = expect_error(images, labels, ErrorKind::data, "truncated");
  EXPECT_NE(msg.find(images), std::string::npos) << msg;
}

TEST_F(IdxTest, TruncatedGzipWithIntactTrailerReportsShortRead) {
  // Cut the middle out but keep the 8-byte trailer, so ISIZE still promises the full size
  // and the short read itself must be caught.
  const Bytes pixels = noisy_pixels(100 * 28 * 28);
  Bytes gz = read_file(write_gz("full.gz", images_bytes(100, 28, 28, pixels)));
  Bytes cut(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2));
  cut.insert(cut.end(), gz.end() - 8, gz.end());
  const auto images = write_plain("cut.gz", cut);
  const auto labels = write_plain("lab", labels_bytes(100, Bytes(100, 1)));
  const std::string msg = expect_error(images, labels, ErrorKind::data, "expected 78400 bytes of pixel data, read");
  EXPECT_NE(msg.find(images), std::string::npos) << msg;
}

TEST_F(IdxTest, CorruptGzipStreamIsDataError) {
  const Bytes pixels = noisy_pixels(100 * 28 * 28);
  Bytes gz = read_file(write_gz("good.gz", images_bytes(100, 28, 28, pixels)));
  for (size_t i = gz.size() / 2; i < gz.size() / 2 + 16; ++i) gz[i] ^= 0x5a;
  const auto images = write_plain("bad.gz", gz);
  const auto labels = write_plain("lab", labels_bytes(100, Bytes(100, 1)));
  expect_error(images, labels, ErrorKind::data, "corrupt");
}

TEST_F(IdxTest, WrongMagicNamesBothValues) {
  const auto images = write_plain("img", images_bytes(1, 2, 2, {1, 2, 3, 4}, 0x801));
  const auto labels = write_plain("lab", labels_bytes(1, {1}));
  const std::string msg = expect_error(images, labels, ErrorKind::data, "0x00000803");
  EXPECT_NE(msg.find("0x00000801"), std::string::npos) << msg;

  const auto good_images = write_plain("img2", images_bytes(1, 2, 2, {1, 2, 3, 4}));
  const auto bad_labels = write_plain("lab2", labels_bytes(1, {1}, 0x12345678));
  expect_error(good_images, bad_labels, ErrorKind::data, "got 0x12345678");
}

TEST_F(IdxTest, ZeroOrAbsurdDimensions) {
  const auto labels = write_plain("lab", labels_bytes(1, {1}));
  expect_error(write_plain("zero", images_bytes(1, 0, 28, {})), labels, ErrorKind::data, "dimensions");
  expect_error(write_plain("huge", images_bytes(1, 1u << 20, 28, {})), labels, ErrorKind::data, "dimensions");
}

TEST_F(IdxTest, HeaderClaimingMoreImagesThanThePlainFileHolds) {
  const auto images = write_plain("img", images_bytes(1000000, 28, 28, noisy_pixels(28 * 28)));
  const auto labels = write_plain("lab", labels_bytes(1, {1}));
  const std::string msg = expect_error(images, labels, ErrorKind::data, "1000000 images");
  EXPECT_NE(msg.find("the file is only"), std::string::npos) << msg;
}

TEST_F(IdxTest, HeaderClaimingMoreImagesThanTheGzipFileHolds) {
  const auto images = write_gz("img.gz", images_bytes(1000000, 28, 28, noisy_pixels(28 * 28)));
  const auto labels = write_plain("lab", labels_bytes(1, {1}));
  const std::string msg = expect_error(images, labels, ErrorKind::data, "gzip trailer");
  EXPECT_NE(msg.find("1000000 images"), std::string::npos) << msg;
}

// Found by fuzz/fuzz_idx: 63 bytes claiming 5000000 images of 28x28 made the reader zero 16 GB of
// floats before reading a pixel. 10000 images keep the allocation small should the bound go.
TEST_F(IdxTest, GzipClaimingMoreThanDeflateCanExpandIsRefusedBeforeAllocating) {
  const auto labels = write_plain("lab", labels_bytes(1, {1}));
  const auto images = write_plain("img.gz", header_then_false_trailer(images_bytes(10000, 28, 28, {})));
  const std::string msg = expect_error(images, labels, ErrorKind::data, "holds at most 1032 times");
  EXPECT_NE(msg.find("10000 images of 28x28"), std::string::npos) << msg;

  const auto one_image = write_plain("img1", images_bytes(1, 1, 1, {5}));
  const auto many_labels = write_plain("lab.gz", header_then_false_trailer(labels_bytes(1000000, {})));
  expect_error(one_image, many_labels, ErrorKind::data, "holds at most 1032 times");
}

// The bound above is deflate's limit, not a guess: blank images compress about as well as deflate
// can (about 1000:1, within 10% of 1032) and still load.
TEST_F(IdxTest, GzipNearDeflatesBestRatioLoads) {
  const uint32_t count = 2000;
  const auto images = write_gz("blank.gz", images_bytes(count, 28, 28, Bytes(count * 28 * 28, 0)));
  struct stat st {};
  ASSERT_EQ(::stat(images.c_str(), &st), 0);
  EXPECT_GT((16.0 + count * 28 * 28) / static_cast<double>(st.st_size), 0.9 * 1032)
      << "the file no longer tests a ratio near the bound";
  const Dataset d = load_idx_pair(images, write_plain("lab", labels_bytes(count, Bytes(count, 3))));
  EXPECT_EQ(d.count, count);
  EXPECT_EQ(*std::max_element(d.images.begin(), d.images.end()), 0.0f);
}

TEST_F(IdxTest, HeaderClaimingMoreLabelsThanTheFileHolds) {
  const auto images = write_plain("img", images_bytes(1, 1, 1, {5}));
  const auto labels = write_plain("lab", labels_bytes(50, {1, 2}));
  expect_error(images, labels, ErrorKind::data, "50 labels");
}

TEST_F(IdxTest, CountMismatch) {
  const auto images = write_plain("img", images_bytes(3, 1, 1, {1, 2, 3}));
  const auto labels = write_plain("lab", labels_bytes(2, {1, 2}));
  const std::string msg = expect_error(images, labels, ErrorKind::data, "3 images");
  EXPECT_NE(msg.find("2 labels"), std::string::npos) << msg;
}

TEST_F(IdxTest, LabelOutOfRangeNamesIndexAndValue) {
  const auto images = write_plain("img", images_bytes(3, 1, 1, {1, 2, 3}));
  const auto labels = write_plain("lab", labels_bytes(3, {1, 2, 10}));
  expect_error(images, labels, ErrorKind::data, "label 10 at index 2 is outside [0, 10)");
}

TEST_F(IdxTest, MissingFileIsIoError) {
  const auto labels = write_plain("lab", labels_bytes(1, {1}));
  expect_error(dir_ + "/nope", labels, ErrorKind::io, "nope");
}

TEST_F(IdxTest, MissingFolderMentionsThePackage) {
  try {
    load_fashion_mnist(dir_ + "/absent", Split::train);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("dataset-fashion-mnist"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--data"), std::string::npos) << msg;
    EXPECT_NE(msg.find(dir_ + "/absent"), std::string::npos) << msg;
  }
}

TEST_F(IdxTest, MissingFileInFolderMentionsThePackage) {
  write_gz("t10k-images-idx3-ubyte.gz", images_bytes(1, 1, 1, {1}));
  try {
    load_fashion_mnist(dir_, Split::test);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("t10k-labels-idx1-ubyte"), std::string::npos) << msg;
    EXPECT_NE(msg.find("dataset-fashion-mnist"), std::string::npos) << msg;
  }
}

TEST_F(IdxTest, FolderLoadWithLimitAndPlainOrGzipNames) {
  const Bytes pixels = noisy_pixels(6 * 2 * 2);
  write_gz("train-images-idx3-ubyte.gz", images_bytes(6, 2, 2, pixels));
  write_plain("train-labels-idx1-ubyte", labels_bytes(6, {0, 1, 2, 3, 4, 5}));
  const Dataset all = load_fashion_mnist(dir_, Split::train);
  EXPECT_EQ(all.count, 6);
  const Dataset some = load_fashion_mnist(dir_, Split::train, 4);
  EXPECT_EQ(some.count, 4);
  EXPECT_EQ(some.images.size(), 16u);
  EXPECT_EQ(some.labels, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(std::vector<float>(all.images.begin(), all.images.begin() + 16), some.images);
  EXPECT_EQ(load_fashion_mnist(dir_, Split::train, 100).count, 6);
  EXPECT_THROW(load_fashion_mnist(dir_, Split::train, -1), Error);
}

TEST_F(IdxTest, AnyFolderLoadsAnyImageSizeAndCountsItsClasses) {
  const Bytes pixels = noisy_pixels(5 * 3 * 7);
  write_gz("train-images-idx3-ubyte.gz", images_bytes(5, 3, 7, pixels));
  write_plain("train-labels-idx1-ubyte", labels_bytes(5, {0, 99, 4, 7, 12}));
  const Dataset d = load_idx_folder(dir_, Split::train);
  EXPECT_EQ(d.count, 5);
  EXPECT_EQ(d.rows, 3);
  EXPECT_EQ(d.cols, 7);
  EXPECT_EQ(d.num_classes, 100);  // labels up to 99
  EXPECT_EQ(load_idx_folder(dir_, Split::train, 2).num_classes, 100);  // the first two: 0 and 99
  EXPECT_EQ(load_idx_folder(dir_, Split::train, 1).num_classes, 1);
  // Fashion-MNIST's loader still holds labels to 0-9.
  try {
    load_fashion_mnist(dir_, Split::train);
    ADD_FAILURE() << "label 99 is not a Fashion-MNIST class";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("label 99 at index 1 is outside [0, 10)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_idx_folder(dir_, Split::train, -1), Error);
}

TEST(FashionMnist, RealDatasetLoads) {
  struct stat st {};
  if (::stat(default_data_folder().c_str(), &st) != 0) {
    GTEST_SKIP() << default_data_folder() << " is absent (Debian package dataset-fashion-mnist)";
  }
  const Dataset train = load_fashion_mnist(default_data_folder(), Split::train);
  const Dataset test = load_fashion_mnist(default_data_folder(), Split::test);
  EXPECT_EQ(train.count, 60000);
  EXPECT_EQ(test.count, 10000);
  for (const Dataset* d : {&train, &test}) {
    EXPECT_EQ(d->rows, 28);
    EXPECT_EQ(d->cols, 28);
    ASSERT_EQ(d->images.size(), static_cast<size_t>(d->count) * 28 * 28);
    std::vector<int64_t> per_class(10, 0);
    for (int32_t label : d->labels) {
      ASSERT_GE(label, 0);
      ASSERT_LT(label, 10);
      ++per_class[static_cast<size_t>(label)];
    }
    for (int64_t n : per_class) EXPECT_EQ(n, d->count / 10);  // Fashion-MNIST is balanced
    float lo = 1, hi = 0;
    for (float p : d->images) {
      lo = std::min(lo, p);
      hi = std::max(hi, p);
    }
    EXPECT_EQ(lo, 0.0f);
    EXPECT_EQ(hi, 1.0f);
  }
}

}  // namespace
}  // namespace parity
