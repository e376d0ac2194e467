// parity/check.h — cross-backend correctness: comparing tensors, every op against the float64
// `ref` backend, a whole training step node by node between two backends, determinism, and the
// ONNX backend test suite.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parity/model.h"
#include "parity/tensor.h"

namespace parity {
class DataParallel;  // parity/trainer.h
}

namespace parity {

struct WorstElement {
  int64_t index = 0;
  double got = 0, want = 0;
};

// One tensor of one backend against the same tensor of the reference side.
struct TensorDiff {
  std::string name;   // value name in the graph
  std::string node;   // node that produced it
  std::string op;     // its op
  std::string role;   // "output", "gradient", "updated weight", "optimizer state"
  Shape shape;
  double nmse = 0;      // sum (got-want)^2 / sum want^2 (float), or fraction of differing elements (integer)
  double max_abs = 0, max_rel = 0;
  int64_t nonfinite_mismatch = 0;  // elements finite on one side only
  double threshold = 0;            // nmse bound; 0 means bit equality
  bool pass = true;
  std::string note;                // e.g. why the threshold, or that a value is internal to a fused node
  std::vector<WorstElement> worst; // the largest differences, worst first
};

// Compares `got` with `want` (same shape and dtype). threshold 0 demands bit equality.
TensorDiff compare_tensors(const Tensor& got, const Tensor& want, double threshold, int worst_count = 3);

struct OpCheckOptions {
  std::vector<std::string> backends;  // each compared with ref
  bool exact = false;                 // small-integer inputs: conv and linear must match ref bit for bit
  bool gradient = false;              // each forward op's backward against float64 finite differences on ref
  std::string op;                     // only this op (by its name, e.g. conv2d, CONV2D_BWD_DATA); empty: all
  std::vector<int64_t> shape;         // with `op`: one more case of that op (see `parity check ops --help`)
  uint64_t seed = 0;
  int threads = 0;
  // Which cases run, by the dtypes they hold: "all"; "f32" (no bf16 or f16 value); "bf16" or
  // "fp16" (a case with a value of that dtype: an operand, or a CAST's output).
  std::string precision = "all";
};

struct OpCaseResult {
  std::string backend, op, label;
  bool skipped = false;
  std::string skip_reason;
  std::vector<TensorDiff> outputs;
  bool pass() const;
};

std::vector<OpCaseResult> check_ops(const OpCheckOptions& options);

struct ModelCheckOptions {
  std::string model = "seed-cnn";
  std::string backend = "cpu";
  std::string against = "ref";    // a backend, or "torch": the LibTorch peer at `torch_peer`
  int64_t batch = 8;
  int steps = 1;
  std::string weights;  // safetensors with PyTorch names; empty: seeded initialisation
  std::string input;    // safetensors with x f32 [N,C,H,W] and y i64 (or i32) [N]; empty: random batch
  std::string dump;     // folder: every value of every backend as safetensors
  uint64_t seed = 0;
  int threads = 0;
  std::string torch_peer;  // path of parity-torch-peer (the CLI fills it in when the peer is built)
  // The training graph both backends run, under this precision policy (autocast, parity/model.h;
  // no loss scaling: one plain step). Not f32 is refused against torch.
  Precision precision = Precision::f32;
};

struct StepDrift {
  int step = 0;  // 1-based
  double loss_a = 0, loss_b = 0;
  double weights_nmse = 0;  // all parameters together
};

struct ModelCheckReport {
  std::string backend, against;
  std::vector<TensorDiff> values;  // first step, in graph order
  int first_failure = -1;          // index into values, -1 when every value passed
  int not_compared = 0;            // values the other side does not expose (PyTorch: dL/dL, accuracy)
  std::vector<StepDrift> drift;    // one entry per step
  bool pass() const { return first_failure < 0; }
};

ModelCheckReport check_model(const ModelCheckOptions& options);

// The replicas of a data-parallel run (`parity check model` under mpirun): options.steps (at
// least 2) training steps of options.model on options.backend, every rank on its contiguous share
// of the same random global batches of options.batch images, and after each step every rank's
// weights, optimizer state and buffers compared bit for bit with rank 0's (broadcast). Collective:
// every rank calls it. For the test of this check, the environment variable
// PARITY_TEST_DESYNC_RANK=r makes rank r nudge one weight by one ulp after its first step, the
// desynchronised replica the check exists to catch.
struct ReplicaDivergence {
  int step = 0;  // 1-based
  int rank = 0;
  std::string tensor;    // the first differing tensor, in name order
  int64_t elements = 0;  // elements that differ from rank 0's, over every tensor
  double max_abs = 0;    // the largest difference
};
struct ReplicaCheckReport {
  int ranks = 1, steps = 0;
  int64_t tensors = 0, elements = 0;  // compared per step
  std::vector<ReplicaDivergence> divergences;
  bool pass() const { return divergences.empty(); }
};
ReplicaCheckReport check_replicas(const ModelCheckOptions& options, DataParallel& data_parallel);

struct DeterminismReport {
  std::string backend;
  int64_t values_compared = 0;
  std::vector<std::string> differing;  // values whose bytes differ between the two runs
  bool pass() const { return differing.empty(); }
};

// Runs the same training step twice on fresh executables and demands bitwise equality of
// every kept value, gradient and updated weight.
DeterminismReport check_determinism(const std::string& model, const std::string& backend, int64_t batch, int threads,
                                    uint64_t seed);

// The ONNX backend test suite (`parity check onnx`): each test is a folder with model.onnx and
// test_data_set_*/input_*.pb, output_*.pb (Debian's libonnx-testdata). Every test the importer
// maps is run on each backend with the inputs written and compared with the expected outputs.
struct OnnxSuiteOptions {
  // The suite (folders of tests, e.g. node/ and simple/), one folder of tests, or one test.
  std::string dir = "/usr/share/libonnx-testdata/data";
  std::vector<std::string> backends;
  std::string filter;  // ECMAScript regex searched in "<folder>/<test>"; empty: every test
  int threads = 0;
};

// The ONNX test runner's tolerances (onnx/backend/test/runner: numpy.testing.assert_allclose).
constexpr double kOnnxSuiteRtol = 1e-3;
constexpr double kOnnxSuiteAtol = 1e-7;

struct OnnxOutputCheck {
  std::string name;                // the graph output
  int data_set = 0;                // test_data_set_<k>
  bool folded = false;             // computed at import (OnnxBuilt::constant_outputs), not by the backend
  TensorDiff diff;                 // against the expected output; diff.threshold is parity's NMSE bound
  int64_t outside_allclose = 0;    // elements with |got - want| > atol + rtol |want|
  WorstElement worst_allclose;     // the element farthest outside it (by |got - want| - rtol |want|)
  bool pass() const { return diff.pass && outside_allclose == 0; }
};

enum class OnnxTestStatus { passed, failed, skipped };
const char* to_string(OnnxTestStatus status);

struct OnnxTestResult {
  std::string folder, test, backend;
  OnnxTestStatus status = OnnxTestStatus::skipped;
  // skipped: why, in full (the importer's message names node, op type, opset and attribute);
  // failed: what failed, when it is not an output's numbers (an error while running).
  std::string reason;
  // skipped: the reason without this test's names and numbers ("Abs: this op type is not
  // supported"), to group skips by.
  std::string reason_group;
  std::vector<OnnxOutputCheck> outputs;
};

// Every test under options.dir (sorted by folder, then test), one result per backend. Throws
// Error(invalid_argument) for a dir that holds no test, a filter that is not a regex, or a
// build without ONNX (PARITY_WITH_ONNX off).
std::vector<OnnxTestResult> check_onnx_suite(const OnnxSuiteOptions& options);

}  // namespace parity
