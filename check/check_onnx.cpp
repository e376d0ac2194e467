// check/check_onnx.cpp — `parity check onnx`: the ONNX backend test suite (model.onnx plus
// test_data_set_*/input_*.pb and output_*.pb per test) imported, run on each backend and
// compared with the expected outputs by the ONNX runner's rule and by parity's per-op NMSE bound;
// every test that does not run is a skip with its reason.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <regex>
#include <set>

#include <fmt/format.h>

#include "ops/kernels/half.h"
#include "parity/backend.h"
#include "parity/check.h"
#include "parity/error.h"

#if PARITY_HAVE_ONNX
#include "graph/compiled_step.h"
#include "onnx/onnx_model.h"
#include "onnx/tensor_proto.h"
#include "ops/op_rule.h"
#endif

namespace parity {

const char* to_string(OnnxTestStatus status) {
  switch (status) {
    case OnnxTestStatus::passed: return "passed";
    case OnnxTestStatus::failed: return "failed";
    case OnnxTestStatus::skipped: return "skipped";
  }
  return "unknown";
}

#if !PARITY_HAVE_ONNX

std::vector<OnnxTestResult> check_onnx_suite(const OnnxSuiteOptions&) {
  throw Error(ErrorKind::invalid_argument,
              "check onnx: this build of parity has no ONNX import (install libonnx-dev and libprotobuf-dev and "
              "configure again; the configure summary says whether PARITY_WITH_ONNX is on)");
}

#else

namespace {

namespace fs = std::filesystem;

struct TestFolder {
  std::string folder, test;
  fs::path path;
};

bool is_test(const fs::path& p) {
  return fs::is_directory(p) && (fs::exists(p / "model.onnx") || fs::exists(p / "data.json"));
}

std::vector<fs::path> sorted_subfolders(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// The tests under `dir`: dir itself when it is one, its subfolders when they are tests (a
// folder such as node/), else the tests of each subfolder (the suite's root).
std::vector<TestFolder> find_tests(const std::string& dir) {
  const fs::path root = fs::path(dir).lexically_normal();
  if (!fs::is_directory(root))
    throw Error(ErrorKind::invalid_argument, fmt::format("check onnx: {} is not a folder", dir));
  auto name_of = [](const fs::path& p) {
    const fs::path clean = p.has_filename() ? p : p.parent_path();
    return clean.filename().string();
  };
  if (is_test(root)) return {{name_of(fs::absolute(root).parent_path()), name_of(root), root}};
  std::vector<TestFolder> tests;
  bool direct = false;
  for (const fs::path& sub : sorted_subfolders(root)) {
    if (is_test(sub)) {
      direct = true;
      tests.push_back({name_of(fs::absolute(root)), name_of(sub), sub});
    }
  }
  if (direct) return tests;
  for (const fs::path& folder : sorted_subfolders(root))
    for (const fs::path& sub : sorted_subfolders(folder))
      if (is_test(sub)) tests.push_back({name_of(folder), name_of(sub), sub});
  if (tests.empty())
    throw Error(ErrorKind::invalid_argument,
                fmt::format("check onnx: no test under {} (a test is a folder with model.onnx and test_data_set_*/)", dir));
  return tests;
}

// The files <prefix><k>.pb of a data set, k = 0, 1, ... while they exist.
std::vector<fs::path> numbered_files(const fs::path& data_set, const std::string& prefix) {
  std::vector<fs::path> files;
  for (int k = 0;; ++k) {
    fs::path p = data_set / fmt::format("{}{}.pb", prefix, k);
    if (!fs::exists(p)) return files;
    files.push_back(std::move(p));
  }
}

struct NamedTensor {
  std::string name;  // the TensorProto's name, often empty in older data
  Tensor tensor;
};

struct DataSet {
  std::vector<NamedTensor> inputs, outputs;
};

std::vector<DataSet> read_data_sets(const fs::path& test) {
  std::vector<fs::path> folders;
  for (const fs::path& sub : sorted_subfolders(test))
    if (sub.filename().string().rfind("test_data_set_", 0) == 0) folders.push_back(sub);
  std::vector<DataSet> sets;
  for (const fs::path& folder : folders) {
    DataSet set;
    for (const fs::path& p : numbered_files(folder, "input_")) {
      NamedTensor t;
      t.tensor = read_onnx_tensor_file(p.string(), &t.name);
      set.inputs.push_back(std::move(t));
    }
    for (const fs::path& p : numbered_files(folder, "output_")) {
      NamedTensor t;
      t.tensor = read_onnx_tensor_file(p.string(), &t.name);
      set.outputs.push_back(std::move(t));
    }
    sets.push_back(std::move(set));
  }
  if (sets.empty()) throw Error(ErrorKind::data, fmt::format("{}: no test_data_set_* folder", test.string()));
  return sets;
}

// Pairs ports with the tensors of a data set: by the proto's name when every tensor has the name
// of a port, else by position (older data has no names), as the ONNX runner feeds them.
std::vector<const Tensor*> match_ports(const std::vector<OnnxPort>& ports, const std::vector<NamedTensor>& tensors,
                                       const char* what, const fs::path& test) {
  if (tensors.size() != ports.size())
    throw Error(ErrorKind::data, fmt::format("{}: {} {}_*.pb files for the model's {} graph {}s", test.string(),
                                             tensors.size(), what, ports.size(), what));
  std::vector<const Tensor*> out(ports.size(), nullptr);
  bool by_name = true;
  for (const NamedTensor& t : tensors) {
    const bool known = std::any_of(ports.begin(), ports.end(), [&](const OnnxPort& p) { return p.name == t.name; });
    by_name = by_name && known;
  }
  for (size_t i = 0; i < ports.size(); ++i) {
    if (!by_name) {
      out[i] = &tensors[i].tensor;
      continue;
    }
    for (const NamedTensor& t : tensors)
      if (t.name == ports[i].name) out[i] = &t.tensor;
    if (!out[i]) throw Error(ErrorKind::data, fmt::format("{}: no {}_*.pb named '{}'", test.string(), what, ports[i].name));
  }
  return out;
}

// Parity's NMSE bound for an output: the largest `step_nmse` of the ops it depends on. The
// expected outputs were computed by another implementation (numpy's reference code for node/
// and simple/, PyTorch for the pytorch-* folders), in float32 with its own order of rounding
// or in float64 and then rounded. They are not `ref`'s result rounded, so the bound of an op
// alone (op_nmse: bit equality for copies and selections) does not apply; the two sides differ
// as two float32 backends do, which is what each op's step_nmse bounds in `check model` (1e-8
// for every op the importer maps: an RMS relative error of 1e-4, while one element in ten
// thousand wrong by 1% gives 1e-8 and one by 2% fails). Outputs no node computes (an input
// passed through, a constant folded at import) must be bit-equal, as must integer outputs.
double nmse_bound(const Graph& g, Value output) {
  double bound = 0;
  std::vector<int32_t> pending = {output.id};
  std::set<int32_t> seen;
  while (!pending.empty()) {
    const int32_t v = pending.back();
    pending.pop_back();
    if (!seen.insert(v).second) continue;
    const int32_t producer = g.values()[static_cast<size_t>(v)].producer;
    if (producer < 0) continue;
    const Node& n = g.nodes()[static_cast<size_t>(producer)];
    bound = std::max(bound, ops::rule(n.op).tolerance.step_nmse);
    pending.insert(pending.end(), n.inputs.begin(), n.inputs.end());
  }
  return bound;
}

OnnxOutputCheck compare_output(const std::string& name, const Tensor& got, const Tensor& want, double bound) {
  OnnxOutputCheck c;
  c.name = name;
  if (got.dtype() != want.dtype() || got.shape() != want.shape()) {
    c.diff.name = name;
    c.diff.shape = got.shape();
    c.diff.pass = false;
    c.diff.note = fmt::format("parity computed {} {}, the expected output is {} {}", to_string(got.dtype()),
                              got.shape().str(), to_string(want.dtype()), want.shape().str());
    return c;
  }
  c.diff = compare_tensors(got, want, want.dtype() == DType::f32 ? bound : 0.0);
  c.diff.name = name;
  double worst_excess = -1;
  for (int64_t i = 0; i < want.numel(); ++i) {
    double a = 0, e = 0;
    switch (want.dtype()) {
      case DType::f32: a = got.f32()[i], e = want.f32()[i]; break;
      case DType::i32: a = got.i32()[i], e = want.i32()[i]; break;
      case DType::i64: a = static_cast<double>(got.i64()[i]), e = static_cast<double>(want.i64()[i]); break;
      case DType::u8: a = got.u8()[i], e = want.u8()[i]; break;
      case DType::bf16: a = kernels::bf16_bits_to_float(got.bf16()[i]), e = kernels::bf16_bits_to_float(want.bf16()[i]); break;
      case DType::f16: a = kernels::f16_bits_to_float(got.f16()[i]), e = kernels::f16_bits_to_float(want.f16()[i]); break;
    }
    // numpy.testing.assert_allclose: NaN equals NaN, an infinity only itself.
    if (std::isnan(a) && std::isnan(e)) continue;
    if (std::isinf(e) && a == e) continue;
    const double excess = std::fabs(a - e) - (kOnnxSuiteAtol + kOnnxSuiteRtol * std::fabs(e));
    if (excess > 0 || std::isnan(excess)) {
      ++c.outside_allclose;
      const double rank = std::isnan(excess) ? INFINITY : excess;
      if (rank > worst_excess) {
        worst_excess = rank;
        c.worst_allclose = {i, a, e};
      }
    }
  }
  c.diff.note = want.dtype() == DType::f32
                    ? (bound == 0 ? "no node computes it: bit equality" : "the largest step_nmse of the ops it depends on")
                    : "integer output: equality";
  return c;
}

OnnxTestResult result_of(const TestFolder& t, const std::string& backend, OnnxTestStatus status,
                         const std::string& reason = "", const std::string& group = "") {
  OnnxTestResult r;
  r.folder = t.folder;
  r.test = t.test;
  r.backend = backend;
  r.status = status;
  r.reason = reason;
  r.reason_group = group;
  return r;
}

// The same message without the test's folder, so that one reason reads the same for every test.
std::string without_path(std::string message, const fs::path& test) {
  for (const std::string& prefix : {(test / "model.onnx").string() + ": ", test.string() + "/", test.string() + ": "}) {
    for (size_t at = message.find(prefix); at != std::string::npos; at = message.find(prefix))
      message.erase(at, prefix.size());
  }
  return message;
}

// A data set's graph: the model imported with the data set's inputs known (they give symbolic
// dims and the inputs that must be known at import, such as a Reshape's shape).
struct ImportedDataSet {
  Graph graph;
  OnnxBuilt built;
  std::vector<const Tensor*> inputs, expected;  // in the order of the model's inputs and outputs
};

// One test: imported once per data set, then run on each backend.
class SuiteTest {
 public:
  SuiteTest(const TestFolder& t, std::vector<std::unique_ptr<Backend>>& backends) : t_(t), backends_(backends) {}

  void run(std::vector<OnnxTestResult>& results) {
    if (!fs::exists(t_.path / "model.onnx")) {
      const bool links = fs::exists(t_.path / "data.json");
      const std::string why = links ? "the package holds only download links for this model (data.json names a URL "
                                      "and tolerances; the model and its data are not installed)"
                                    : "no model.onnx";
      return skip_all(results, why, links ? "download links only (data.json)" : "no model.onnx");
    }
    std::vector<DataSet> sets;
    std::vector<ImportedDataSet> imported;
    try {
      const OnnxModel model = OnnxModel::read_file((t_.path / "model.onnx").string());
      for (const OnnxPort& port : model.outputs()) output_names_.push_back(port.name);
      sets = read_data_sets(t_.path);
      for (const DataSet& set : sets) {
        ImportedDataSet d;
        d.inputs = match_ports(model.inputs(), set.inputs, "input", t_.path);
        d.expected = match_ports(model.outputs(), set.outputs, "output", t_.path);
        OnnxBuildOptions options;
        for (size_t i = 0; i < d.inputs.size(); ++i) options.known_inputs[model.inputs()[i].name] = *d.inputs[i];
        GraphBuilder builder;
        d.built = model.build(builder, options);
        d.graph = builder.take();
        imported.push_back(std::move(d));
      }
    } catch (const OnnxUnsupported& e) {
      return skip_all(results, without_path(e.what(), t_.path), e.category());
    } catch (const Error& e) {
      // The importer names every limit of parity's it knows as OnnxUnsupported; anything else
      // (a shape an op refuses after import, corrupt data) is not known to be a limit: a failure.
      for (const auto& be : backends_)
        results.push_back(result_of(t_, be->name(), OnnxTestStatus::failed,
                                    fmt::format("import: {}", without_path(e.what(), t_.path))));
      return;
    }
    for (auto& be : backends_) results.push_back(run_on(*be, imported));
  }

 private:
  void skip_all(std::vector<OnnxTestResult>& results, const std::string& why, const std::string& group) {
    for (const auto& be : backends_) results.push_back(result_of(t_, be->name(), OnnxTestStatus::skipped, why, group));
  }

  OnnxTestResult run_on(Backend& backend, const std::vector<ImportedDataSet>& sets) {
    OnnxTestResult r = result_of(t_, backend.name(), OnnxTestStatus::failed);
    try {
      for (size_t k = 0; k < sets.size(); ++k) {
        const ImportedDataSet& d = sets[k];
        std::vector<std::string> keep;
        for (Value v : d.built.outputs)
          if (v.valid() && d.graph.value(v).kind == PARITY_VALUE_TEMP) keep.push_back(d.graph.value(v).name);
        CompiledStepOptions poisoned;
        poisoned.poison_outputs = true;  // an element the backend does not write fails
        CompiledStep step(d.graph, keep, poisoned);
        std::string why;
        if (!step.supported_by(backend, &why)) {
          const std::string reason = fmt::format("backend {}: {}", r.backend, why);
          return result_of(t_, r.backend, OnnxTestStatus::skipped, reason, reason);
        }
        step.compile(backend);
        for (const auto& [name, tensor] : d.built.values) step.write(name, tensor);
        // An input read only for its value at import (a Reshape's shape) is no value of the graph.
        for (size_t i = 0; i < d.inputs.size(); ++i)
          if (d.built.inputs[i].valid()) {
            const ValueInfo& info = d.graph.value(d.built.inputs[i]);
            step.write(info.name, info.dtype == DType::i32 && d.inputs[i]->dtype() == DType::i64
                                      ? labels_as_i32(*d.inputs[i], info.name)
                                      : *d.inputs[i]);
          }
        step.execute();
        for (size_t i = 0; i < d.expected.size(); ++i) {
          const std::string& name = output_names_[i];
          const Value v = d.built.outputs[i];
          OnnxOutputCheck c = v.valid() ? compare_output(name, step.read(d.graph.value(v).name), *d.expected[i],
                                                         nmse_bound(d.graph, v))
                                        : compare_output(name, d.built.constant_outputs.at(name), *d.expected[i], 0.0);
          c.folded = !v.valid();
          c.data_set = static_cast<int>(k);
          c.diff.role = c.folded ? "output folded at import" : "output";
          if (v.valid() && d.graph.value(v).producer >= 0) {
            const Node& producer = d.graph.nodes()[static_cast<size_t>(d.graph.value(v).producer)];
            c.diff.node = producer.name;
            c.diff.op = parity_op_name(producer.op);
          }
          r.outputs.push_back(std::move(c));
        }
      }
    } catch (const Error& e) {  // a backend's error while running: a failure
      r.reason = without_path(e.what(), t_.path);
      return r;
    }
    const bool pass = std::all_of(r.outputs.begin(), r.outputs.end(), [](const OnnxOutputCheck& c) { return c.pass(); });
    r.status = pass ? OnnxTestStatus::passed : OnnxTestStatus::failed;
    return r;
  }

  const TestFolder& t_;
  std::vector<std::unique_ptr<Backend>>& backends_;
  std::vector<std::string> output_names_;
};

}  // namespace

std::vector<OnnxTestResult> check_onnx_suite(const OnnxSuiteOptions& o) {
  if (o.backends.empty()) throw Error(ErrorKind::invalid_argument, "check onnx: no backend to run");
  std::regex filter;
  try {
    if (!o.filter.empty()) filter = std::regex(o.filter);
  } catch (const std::regex_error& e) {
    throw Error(ErrorKind::invalid_argument, fmt::format("check onnx: --filter '{}' is not a regex: {}", o.filter, e.what()));
  }
  std::vector<TestFolder> tests;
  for (TestFolder& t : find_tests(o.dir))
    if (o.filter.empty() || std::regex_search(t.folder + "/" + t.test, filter)) tests.push_back(std::move(t));
  if (tests.empty())
    throw Error(ErrorKind::invalid_argument, fmt::format("check onnx: no test under {} matches --filter '{}'", o.dir, o.filter));
  BackendOptions bo;
  bo.threads = o.threads;
  std::vector<std::unique_ptr<Backend>> backends;
  for (const std::string& name : o.backends) backends.push_back(create_backend(name, bo));
  std::vector<OnnxTestResult> results;
  for (const TestFolder& t : tests) SuiteTest(t, backends).run(results);
  return results;
}

#endif

}  // namespace parity
