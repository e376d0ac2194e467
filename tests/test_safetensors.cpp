// tests/test_safetensors.cpp — safetensors round trip, byte layout, validation errors and atomic writes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "parity/error.h"
#include "parity/safetensors.h"

namespace parity {
namespace {

using Bytes = std::vector<unsigned char>;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "parity_st_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  static Bytes read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  static void write_bytes(const std::string& path, const Bytes& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  // A file with the given header text (not padded) followed by `data_bytes` zero bytes.
  static Bytes file_with_header(const std::string& header, size_t data_bytes) {
    Bytes out(8);
    for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<unsigned char>(header.size() >> (8 * i));
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), data_bytes, 0);
    return out;
  }
  std::vector<std::string> folder_entries() const {
    std::vector<std::string> names;
    DIR* dir = ::opendir(dir_.c_str());
    while (dirent* e = ::readdir(dir)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(dir);
    return names;
  }
  // Expects read_safetensors(path) to throw Error(data) mentioning `needle` and the path.
  static void expect_read_error(const std::string& path, const std::string& needle) {
    try {
      read_safetensors(path);
      ADD_FAILURE() << "expected an error containing '" << needle << "'";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(e.kind(), ErrorKind::data) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
    }
  }

  static TensorFile sample_file() {
    TensorFile f;
    f.tensors["conv1.weight"] = Tensor::from_f32({2, 1, 1, 3}, {1.5f, -2.0f, 0.0f, 3.25f, 1e-30f, -0.0f});
    f.tensors["labels"] = Tensor::from_i32({3}, {7, -1, 2147483647});
    Tensor step(Shape{1}, DType::i64);
    step.i64()[0] = int64_t{1} << 40;
    f.tensors["step"] = step;
    f.tensors["empty"] = Tensor(Shape{0, 4}, DType::f32);
    f.metadata["format"] = "pt";
    f.metadata["model"] = "seed-cnn";
    return f;
  }

  std::string dir_;
};

TEST_F(SafetensorsTest, RoundTripsAllDtypesAndMetadata) {
  const std::string path = dir_ + "/model.safetensors";
  const TensorFile original = sample_file();
  write_safetensors(path, original);
  const TensorFile back = read_safetensors(path);
  EXPECT_EQ(back.metadata, original.metadata);
  ASSERT_EQ(back.tensors.size(), original.tensors.size());
  for (const auto& [name, t] : original.tensors) {
    const Tensor& u = back.tensors.at(name);
    EXPECT_EQ(u.dtype(), t.dtype()) << name;
    EXPECT_EQ(u.shape(), t.shape()) << name;
    ASSERT_EQ(u.nbytes(), t.nbytes()) << name;
    if (t.nbytes() > 0) {
      EXPECT_EQ(std::memcmp(u.data(), t.data(), t.nbytes()), 0) << name;
    }
  }
  EXPECT_EQ(back.tensors.at("step").i64()[0], int64_t{1} << 40);
  EXPECT_TRUE(std::signbit(back.tensors.at("conv1.weight").f32()[5]));
}

// bf16 and f16 (ABI 9) under safetensors' names BF16 and F16, their bit patterns kept exactly
// (a NaN payload, a subnormal, -0, inf).
TEST_F(SafetensorsTest, RoundTripsBf16AndF16Bits) {
  const std::string path = dir_ + "/half.safetensors";
  const std::vector<uint16_t> bf16_bits = {0x3F80, 0xFFE1, 0x0001, 0x8000, 0x7F80, 0xC2F7};
  const std::vector<uint16_t> f16_bits = {0x3C00, 0x7E01, 0x0001, 0x8000, 0xFC00, 0x7BFF};
  TensorFile f;
  Tensor b(Shape{2, 3}, DType::bf16), h(Shape{6}, DType::f16);
  std::memcpy(b.bf16(), bf16_bits.data(), 12);
  std::memcpy(h.f16(), f16_bits.data(), 12);
  f.tensors["b"] = b;
  f.tensors["h"] = h;
  write_safetensors(path, f);
  const Bytes bytes = read_bytes(path);
  const std::string text(bytes.begin(), bytes.end());
  EXPECT_NE(text.find("\"dtype\":\"BF16\""), std::string::npos) << text.substr(0, 200);
  EXPECT_NE(text.find("\"dtype\":\"F16\""), std::string::npos) << text.substr(0, 200);
  const TensorFile back = read_safetensors(path);
  const Tensor& b2 = back.tensors.at("b");
  const Tensor& h2 = back.tensors.at("h");
  ASSERT_EQ(b2.dtype(), DType::bf16);
  ASSERT_EQ(h2.dtype(), DType::f16);
  EXPECT_EQ(b2.shape(), (Shape{2, 3}));
  EXPECT_EQ(std::vector<uint16_t>(b2.bf16(), b2.bf16() + 6), bf16_bits);
  EXPECT_EQ(std::vector<uint16_t>(h2.f16(), h2.f16() + 6), f16_bits);
}

// A file written by another program (the header by hand, little-endian data after it) reads
// with each dtype's element size: two bytes per BF16 and F16 element.
TEST_F(SafetensorsTest, ReadsHandWrittenHalfTensors) {
  const std::string path = dir_ + "/hand.safetensors";
  const std::string header =
      R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"c":{"dtype":"F16","shape":[1],"data_offsets":[4,6]}})";
  Bytes file = file_with_header(header, 0);
  for (unsigned char byte : {0x80, 0x3F, 0x49, 0x40, 0x00, 0xBC}) file.push_back(byte);
  write_bytes(path, file);
  const TensorFile back = read_safetensors(path);
  EXPECT_EQ(back.tensors.at("a").bf16()[0], 0x3F80);  // 1.0
  EXPECT_EQ(back.tensors.at("a").bf16()[1], 0x4049);  // 3.140625
  EXPECT_EQ(back.tensors.at("c").f16()[0], 0xBC00);   // -1.0
  // The byte count must fit the dtype: 3 F16 elements in 4 bytes is refused.
  const std::string bad = R"({"c":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}})";
  write_bytes(path, file_with_header(bad, 4));
  expect_read_error(path, "c");
}

TEST_F(SafetensorsTest, HeaderLayoutMatchesTheFormat) {
  const std::string path = dir_ + "/model.safetensors";
  write_safetensors(path, sample_file());
  const Bytes bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | bytes[static_cast<size_t>(i)];
  EXPECT_EQ(n % 8, 0u) << "header must be padded to a multiple of 8";
  const size_t data_bytes = 6 * 4 + 3 * 4 + 8;
  EXPECT_EQ(bytes.size(), 8 + n + data_bytes);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  EXPECT_EQ(header.front(), '{');
  const auto last = header.find_last_not_of(' ');
  EXPECT_EQ(header[last], '}');
  EXPECT_LT(header.size() - 1 - last, 8u) << "padding is spaces, fewer than 8";
  const auto json = nlohmann::json::parse(header);
  EXPECT_EQ(json["__metadata__"]["model"], "seed-cnn");
  EXPECT_EQ(json["conv1.weight"]["dtype"], "F32");
  EXPECT_EQ(json["conv1.weight"]["shape"], nlohmann::json({2, 1, 1, 3}));
  EXPECT_EQ(json["labels"]["dtype"], "I32");
  EXPECT_EQ(json["step"]["dtype"], "I64");
  // Tensors are laid out in name order: conv1.weight, empty, labels, step.
  EXPECT_EQ(json["conv1.weight"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(json["empty"]["data_offsets"], nlohmann::json({24, 24}));
  EXPECT_EQ(json["labels"]["data_offsets"], nlohmann::json({24, 36}));
  EXPECT_EQ(json["step"]["data_offsets"], nlohmann::json({36, 44}));
  float first = 0;
  std::memcpy(&first, bytes.data() + 8 + n, 4);
  EXPECT_EQ(first, 1.5f);
}

TEST_F(SafetensorsTest, ReadsAFileWrittenByTheReference) {
  // The bytes Python's safetensors.torch.save_file({"w": torch.tensor([1., 2.])}) writes.
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string padded = header;
  padded.append((8 - padded.size() % 8) % 8, ' ');
  Bytes bytes = file_with_header(padded, 0);
  const float values[2] = {1.0f, 2.0f};
  bytes.insert(bytes.end(), reinterpret_cast<const unsigned char*>(values),
               reinterpret_cast<const unsigned char*>(values) + 8);
  const std::string path = dir_ + "/ref.safetensors";
  write_bytes(path, bytes);
  const TensorFile f = read_safetensors(path);
  const Tensor& w = require_tensor(f, "w", DType::f32, Shape{2}, path);
  EXPECT_EQ(w.f32()[0], 1.0f);
  EXPECT_EQ(w.f32()[1], 2.0f);
  EXPECT_TRUE(f.metadata.empty());
}

TEST_F(SafetensorsTest, RequireTensorMessages) {
  const TensorFile f = sample_file();
  const std::string path = "ckpt.safetensors";
  EXPECT_EQ(require_tensor(f, "labels", DType::i32, Shape{3}, path).i32()[0], 7);
  try {
    require_tensor(f, "fc1.weight", DType::f32, Shape{128, 10}, path);
    ADD_FAILURE();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("fc1.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("conv1.weight"), std::string::npos) << "lists what the file holds: " << msg;
  }
  try {
    require_tensor(f, "conv1.weight", DType::f32, Shape{2, 1, 3, 3}, path);
    ADD_FAILURE();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("conv1.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2,1,1,3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2,1,3,3]"), std::string::npos) << msg;
  }
  try {
    require_tensor(f, "labels", DType::i64, Shape{3}, path);
    ADD_FAILURE();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("labels"), std::string::npos) << msg;
    EXPECT_NE(msg.find("I32"), std::string::npos) << msg;
    EXPECT_NE(msg.find("I64"), std::string::npos) << msg;
  }
}

TEST_F(SafetensorsTest, TruncatedFile) {
  const std::string path = dir_ + "/t.safetensors";
  write_safetensors(path, sample_file());
  Bytes bytes = read_bytes(path);
  bytes.resize(bytes.size() - 5);
  write_bytes(path, bytes);
  expect_read_error(path, "run past");
  write_bytes(path, Bytes{1, 2, 3});
  expect_read_error(path, "8-byte header length");
}

TEST_F(SafetensorsTest, BadHeaderLength) {
  const std::string path = dir_ + "/h.safetensors";
  Bytes bytes = file_with_header("{}", 0);
  bytes[0] = 200;  // claims 200 header bytes, the file has 2
  write_bytes(path, bytes);
  expect_read_error(path, "header length 200");
}

TEST_F(SafetensorsTest, BadJson) {
  const std::string path = dir_ + "/j.safetensors";
  write_bytes(path, file_with_header(R"({"w":{"dtype":"F32",)", 0));
  expect_read_error(path, "not valid JSON");
  write_bytes(path, file_with_header(R"([1,2])", 0));
  expect_read_error(path, "JSON object");
  // Found by fuzz/fuzz_safetensors: a number too large for a double is nlohmann's out_of_range,
  // not a parse_error, and escaped the reader as a json exception.
  write_bytes(path, file_with_header(R"({"w":{"dtype":"F32","shape":[2e999],"data_offsets":[0,8]}})", 8));
  expect_read_error(path, "not valid JSON");
}

TEST_F(SafetensorsTest, ParsesBytesInMemoryAsTheFileReaderDoes) {
  const std::string path = dir_ + "/m.safetensors";
  write_safetensors(path, sample_file());
  const Bytes bytes = read_bytes(path);
  const TensorFile from_memory = parse_safetensors(bytes.data(), bytes.size(), "in memory");
  const TensorFile from_file = read_safetensors(path);
  EXPECT_EQ(from_memory.metadata, from_file.metadata);
  ASSERT_EQ(from_memory.tensors.size(), from_file.tensors.size());
  for (const auto& [name, tensor] : from_file.tensors) {
    const Tensor& other = from_memory.tensors.at(name);
    EXPECT_EQ(other.shape(), tensor.shape()) << name;
    EXPECT_EQ(other.dtype(), tensor.dtype()) << name;
    ASSERT_EQ(other.nbytes(), tensor.nbytes()) << name;
    // (an empty tensor has no bytes, and memcmp's pointers must not be null even for 0 bytes)
    if (tensor.nbytes() > 0) EXPECT_EQ(std::memcmp(other.data(), tensor.data(), tensor.nbytes()), 0) << name;
  }
  try {
    parse_safetensors(bytes.data(), bytes.size() - 1, "the download");
    ADD_FAILURE() << "a cut file must be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data);
    EXPECT_NE(std::string(e.what()).find("safetensors file 'the download'"), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsTest, OffsetsOutOfRangeOverlappingOrWrongSize) {
  const std::string path = dir_ + "/o.safetensors";
  write_bytes(path, file_with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8));
  expect_read_error(path, "run past");
  write_bytes(path, file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                     12));
  expect_read_error(path, "overlap");
  write_bytes(path, file_with_header(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8));
  expect_read_error(path, "needs 12 bytes");
  write_bytes(path, file_with_header(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8));
  expect_read_error(path, "non-negative");
  write_bytes(path, file_with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8));
  expect_read_error(path, "end before");
}

TEST_F(SafetensorsTest, UnsupportedDtypeNamesTensorAndDtype) {
  const std::string path = dir_ + "/d.safetensors";
  write_bytes(path, file_with_header(R"({"wide":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", 16));
  expect_read_error(path, "tensor 'wide' has dtype F64");
}

TEST_F(SafetensorsTest, MissingFileIsIoError) {
  try {
    read_safetensors(dir_ + "/absent.safetensors");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    EXPECT_NE(std::string(e.what()).find("absent.safetensors"), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsTest, AtomicWriteLeavesNoTempFileAndReplacesOldContent) {
  const std::string path = dir_ + "/ckpt.safetensors";
  write_safetensors(path, sample_file());
  TensorFile second;
  second.tensors["only"] = Tensor::from_f32({1}, {9.0f});
  write_safetensors(path, second);
  EXPECT_EQ(folder_entries(), std::vector<std::string>{"ckpt.safetensors"});
  const TensorFile back = read_safetensors(path);
  ASSERT_EQ(back.tensors.size(), 1u);
  EXPECT_EQ(back.tensors.at("only").f32()[0], 9.0f);
}

TEST_F(SafetensorsTest, FailedWriteLeavesTheOldFileUntouched) {
  const std::string path = dir_ + "/ckpt.safetensors";
  write_safetensors(path, sample_file());
  const Bytes before = read_bytes(path);

  // Writing into a folder that does not exist fails cleanly, naming the path.
  try {
    write_safetensors(dir_ + "/no/such/dir/x.safetensors", sample_file());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    EXPECT_NE(std::string(e.what()).find("no/such/dir/x.safetensors"), std::string::npos) << e.what();
  }
  // Rename over a directory fails after the data was written: the temp file must go.
  const std::string folder_path = dir_ + "/a_folder";
  ASSERT_EQ(::mkdir(folder_path.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((folder_path + "/inner").c_str(), 0755), 0);
  EXPECT_THROW(write_safetensors(folder_path, sample_file()), Error);
  // A bad tensor name is refused before anything touches the disk.
  TensorFile bad;
  bad.tensors["__metadata__"] = Tensor::from_f32({1}, {1.0f});
  EXPECT_THROW(write_safetensors(path, bad), Error);

  EXPECT_EQ(read_bytes(path), before);
  auto entries = folder_entries();
  std::sort(entries.begin(), entries.end());
  EXPECT_EQ(entries, (std::vector<std::string>{"a_folder", "ckpt.safetensors"}));
}

}  // namespace
}  // namespace parity
