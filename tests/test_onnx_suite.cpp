// tests/test_onnx_suite.cpp — the engine of `parity check onnx` on tests of Debian's
// libonnx-testdata: a handful pass on cpu, simt and ref; an expected output made wrong (by one
// element, or by a relative error inside the ONNX runner's rtol that parity's NMSE bound still
// catches) fails naming the element; tests parity cannot run are skipped with their reason.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include <gtest/gtest.h>

#include "onnx/tensor_proto.h"
#include "parity/check.h"
#include "parity/error.h"

namespace parity {
namespace {

namespace fs = std::filesystem;

const std::string kData = OnnxSuiteOptions{}.dir;

bool have_test_data() { return fs::exists(fs::path(kData) / "node" / "test_relu" / "model.onnx"); }

#define REQUIRE_TEST_DATA()                                                                          \
  if (!have_test_data()) GTEST_SKIP() << kData << " is missing: install Debian's libonnx-testdata"

const OnnxTestResult& only(const std::vector<OnnxTestResult>& results, const std::string& test, const std::string& backend) {
  auto it = std::find_if(results.begin(), results.end(),
                         [&](const OnnxTestResult& r) { return r.test == test && r.backend == backend; });
  if (it == results.end()) throw Error(ErrorKind::internal, "no result for " + test + " on " + backend);
  return *it;
}

// A copy of one test of the suite in a fresh folder, <tmp>/<folder>/<test>, to change.
fs::path copy_test(const std::string& folder, const std::string& test) {
  const fs::path root = fs::path(::testing::TempDir()) / ("parity-onnx-suite-" + std::to_string(::getpid()));
  const fs::path to = root / folder / test;
  fs::remove_all(to);
  fs::create_directories(to.parent_path());
  fs::copy(fs::path(kData) / folder / test, to, fs::copy_options::recursive);
  for (const auto& e : fs::recursive_directory_iterator(to))  // the package's files are read-only
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return to;
}

TEST(OnnxSuite, AHandfulOfTestsPassOnCpuSimtAndRef) {
  REQUIRE_TEST_DATA();
  OnnxSuiteOptions o;
  o.backends = {"cpu", "simt", "ref"};
  // A plain op, a strided padded conv, Gemm with B computed at run time (MUL + REDUCE_SUM), an
  // average pool with SAME_UPPER's asymmetric pads (cropped), Concat on axis 0, a 1-d conv of
  // PyTorch's (a 2-d view), and Shape (folded at import).
  o.filter = "^node/test_(relu|conv_with_strides_padding|gemm_alpha|averagepool_2d_same_upper|concat_2d_axis_0|shape)$"
             "|^pytorch-converted/test_Conv1d$";
  const std::vector<OnnxTestResult> results = check_onnx_suite(o);
  ASSERT_EQ(results.size(), 7u * 3u);
  for (const OnnxTestResult& r : results) {
    EXPECT_EQ(r.status, OnnxTestStatus::passed) << r.folder << "/" << r.test << " on " << r.backend << ": " << r.reason;
    ASSERT_FALSE(r.outputs.empty()) << r.test;
    for (const OnnxOutputCheck& c : r.outputs) {
      EXPECT_TRUE(c.pass()) << r.test << " output " << c.name << " nmse " << c.diff.nmse;
      EXPECT_EQ(c.folded, r.test == "test_shape") << r.test;
    }
  }
  // Parity's bound is that of the ops an output depends on: Gemm's product is a REDUCE_SUM.
  EXPECT_EQ(only(results, "test_gemm_alpha", "cpu").outputs[0].diff.threshold, 1e-8);
  EXPECT_EQ(only(results, "test_relu", "cpu").outputs[0].diff.threshold, 1e-8);
}

TEST(OnnxSuite, AWrongExpectedOutputFailsNamingTheElement) {
  REQUIRE_TEST_DATA();
  const fs::path test = copy_test("node", "test_relu");
  const fs::path expected = test / "test_data_set_0" / "output_0.pb";
  std::string name;
  const Tensor right = read_onnx_tensor_file(expected.string(), &name);
  OnnxSuiteOptions o;
  o.dir = test.string();
  o.backends = {"cpu"};

  // One element off by 0.5: outside the ONNX rule, and over the NMSE bound.
  Tensor one_off = right;
  one_off.f32()[7] += 0.5f;
  write_onnx_tensor_file(one_off, name, expected.string());
  std::vector<OnnxTestResult> results = check_onnx_suite(o);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].folder, "node");
  EXPECT_EQ(results[0].status, OnnxTestStatus::failed);
  ASSERT_EQ(results[0].outputs.size(), 1u);
  const OnnxOutputCheck& c = results[0].outputs[0];
  EXPECT_FALSE(c.pass());
  EXPECT_EQ(c.outside_allclose, 1);
  EXPECT_EQ(c.worst_allclose.index, 7);
  EXPECT_EQ(c.worst_allclose.want, double(one_off.f32()[7]));
  EXPECT_GT(c.diff.nmse, c.diff.threshold);

  // Every element 5e-4 larger: inside the runner's rtol of 1e-3, but an NMSE of 2.5e-7, over
  // parity's bound of 1e-8 for relu: the second rule catches what the first lets through.
  Tensor scaled = right;
  for (int64_t i = 0; i < scaled.numel(); ++i) scaled.f32()[i] *= 1.0005f;
  write_onnx_tensor_file(scaled, name, expected.string());
  results = check_onnx_suite(o);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, OnnxTestStatus::failed);
  EXPECT_EQ(results[0].outputs[0].outside_allclose, 0);
  EXPECT_FALSE(results[0].outputs[0].diff.pass);

  // The right numbers pass again.
  write_onnx_tensor_file(right, name, expected.string());
  EXPECT_EQ(check_onnx_suite(o)[0].status, OnnxTestStatus::passed);
  fs::remove_all(test.parent_path().parent_path());
}

TEST(OnnxSuite, TestsParityCannotRunAreSkippedWithTheirReason) {
  REQUIRE_TEST_DATA();
  OnnxSuiteOptions o;
  o.backends = {"cpu", "simt"};
  o.filter = "^node/test_erf$|^node/test_and2d$|^real/test_resnet50$";
  const std::vector<OnnxTestResult> results = check_onnx_suite(o);
  ASSERT_EQ(results.size(), 3u * 2u);
  for (const OnnxTestResult& r : results) EXPECT_EQ(r.status, OnnxTestStatus::skipped) << r.test;
  // An op parity does not map: the message names node, op type and opset; the group drops them.
  const OnnxTestResult& erf = only(results, "test_erf", "simt");
  EXPECT_EQ(erf.reason_group, "Erf: this op type is not supported");
  EXPECT_NE(erf.reason.find("(Erf) at opset"), std::string::npos) << erf.reason;
  // A dtype parity does not hold.
  EXPECT_EQ(only(results, "test_and2d", "cpu").reason_group, "data type BOOL");
  // real/ holds only download links.
  const OnnxTestResult& real = only(results, "test_resnet50", "cpu");
  EXPECT_EQ(real.folder, "real");
  EXPECT_EQ(real.reason_group, "download links only (data.json)");
}

TEST(OnnxSuite, BadRequestsAreErrors) {
  OnnxSuiteOptions o;
  o.backends = {"cpu"};
  o.dir = "/nonexistent/parity-onnx-suite";
  EXPECT_THROW(check_onnx_suite(o), Error);
  if (!have_test_data()) return;
  o.dir = kData;
  o.filter = "([unclosed";
  EXPECT_THROW(check_onnx_suite(o), Error);
  o.filter = "^no/such/test$";
  EXPECT_THROW(check_onnx_suite(o), Error);
  o.filter = "";
  o.backends = {};
  EXPECT_THROW(check_onnx_suite(o), Error);
}

}  // namespace
}  // namespace parity
