// backends/simt/simt_backend.cpp — the `simt` Backend: every node runs the native GPU kernels
// (backends/native) compiled for the host, through the fiber SIMT emulator, at the warp size
// PARITY_SIMT_WARP (32 or 64) read when the backend is created. "Device" memory is host
// memory: each value is its own float or int32 vector, persistent values are shared by name
// between executables, and the blocks of each launch run on a oneTBB task_arena per executable.
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <tbb/task_arena.h>

#include "backends/builtin.h"
#include "backends/native/native_ops.h"
#include "backends/simt/simt_kernels.h"
#include "backends/simt/simt_runtime.h"
#include "parity/error.h"

namespace parity {
namespace simt {
namespace {

using native::ConvShape;
using native::NativeOps;
using native::PoolShape;

struct Storage {
  parity_dtype dtype = PARITY_F32;
  int32_t rank = 0;
  int64_t dims[PARITY_MAX_RANK] = {};
  std::vector<float> f32;
  std::vector<int32_t> i32;
};
using PersistentStore = std::map<std::string, std::shared_ptr<Storage>>;

int64_t numel_of(const parity_value_desc& v) {
  int64_t n = 1;
  for (int32_t i = 0; i < v.rank; ++i) n *= v.dims[i];
  return n;
}

std::string shape_str(int32_t rank, const int64_t* dims) {
  std::string s = "[";
  for (int32_t i = 0; i < rank; ++i) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + "]";
}

bool is_persistent(const parity_value_desc& v) {
  return v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE;
}

std::shared_ptr<Storage> make_storage(const parity_value_desc& v) {
  auto s = std::make_shared<Storage>();
  s->dtype = v.dtype;
  s->rank = v.rank;
  for (int32_t i = 0; i < v.rank; ++i) s->dims[i] = v.dims[i];
  if (v.dtype == PARITY_F32) s->f32.assign(static_cast<size_t>(numel_of(v)), 0.0f);
  else s->i32.assign(static_cast<size_t>(numel_of(v)), 0);
  return s;
}

class SimtExecutable final : public Executable {
 public:
  SimtExecutable(const parity_plan& plan, const CompileOptions& options, SimtExecutable* share,
                 const NativeOps& ops, int threads)
      : values_(plan.values, plan.values + plan.num_values),
        nodes_(plan.nodes, plan.nodes + plan.num_nodes),
        persistent_(share ? share->persistent_ : std::make_shared<PersistentStore>()),
        ops_(ops),
        arena_(threads),
        poison_outputs_(options.poison_outputs) {
    for (const parity_value_desc& v : values_) {
      if (v.dtype != PARITY_F32 && v.dtype != PARITY_I32)
        throw Error(ErrorKind::backend, fmt::format("simt: value '{}' has a dtype simt does not store (f32, i32)", v.name));
      storage_.push_back(is_persistent(v) ? persistent_storage(v) : make_storage(v));
    }
    int64_t workspace = 0;
    for (const parity_node_desc& node : nodes_) {
      for (int32_t i = 0; i < node.num_inputs + node.num_outputs; ++i) {
        const int32_t v = i < node.num_inputs ? node.inputs[i] : node.outputs[i - node.num_inputs];
        if (v < 0 || v >= static_cast<int32_t>(values_.size()))
          throw Error(ErrorKind::internal, fmt::format("simt: node '{}' refers to value {}, outside [0, {})", node.name,
                                                       v, values_.size()));
      }
      if (node.op == PARITY_OP_CONV2D || node.op == PARITY_OP_CONV2D_BWD_DATA || node.op == PARITY_OP_CONV2D_BWD_WEIGHT)
        workspace = std::max(workspace, conv_shape(node).workspace_floats());
      if (node.op == PARITY_OP_SOFTMAX_XENT) workspace = std::max(workspace, dim(node, in_desc(node, 0), 2, 0));
    }
    workspace_.assign(static_cast<size_t>(workspace), 0.0f);
  }

  void write(int32_t value, const void* host, size_t bytes) override {
    const parity_value_desc& v = desc(value, "write");
    if (v.kind == PARITY_VALUE_TEMP)
      throw Error(ErrorKind::invalid_argument, fmt::format("simt: write to value '{}' refused: only INPUT, PARAM and "
                                                           "STATE values can be written",
                                                           v.name));
    check_bytes("write to", v, bytes);
    Storage& s = *storage_[static_cast<size_t>(value)];
    std::memcpy(v.dtype == PARITY_F32 ? static_cast<void*>(s.f32.data()) : s.i32.data(), host, bytes);
  }

  void read(int32_t value, void* host, size_t bytes) const override {
    const parity_value_desc& v = desc(value, "read");
    if (v.kind == PARITY_VALUE_TEMP && !v.keep)
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("simt: read of value '{}' refused: it is a TEMP value the plan did not mark keep", v.name));
    check_bytes("read of", v, bytes);
    const Storage& s = *storage_[static_cast<size_t>(value)];
    std::memcpy(host, v.dtype == PARITY_F32 ? static_cast<const void*>(s.f32.data()) : s.i32.data(), bytes);
  }

  void execute() override {
    if (poison_outputs_) poison_temps();
    arena_.execute([&] {
      for (const parity_node_desc& node : nodes_) run_node(node);
    });
  }

  int64_t memory_bytes() const override {
    int64_t total = static_cast<int64_t>(workspace_.size() * sizeof(float));
    for (const auto& s : storage_) total += static_cast<int64_t>((s->f32.size() + s->i32.size()) * 4);
    return total;
  }

 private:
  std::shared_ptr<Storage> persistent_storage(const parity_value_desc& v) {
    auto it = persistent_->find(v.name);
    if (it == persistent_->end()) return (*persistent_)[v.name] = make_storage(v);
    const Storage& s = *it->second;
    bool same = s.dtype == v.dtype && s.rank == v.rank;
    for (int32_t i = 0; same && i < v.rank; ++i) same = s.dims[i] == v.dims[i];
    if (!same)
      throw Error(ErrorKind::shape, fmt::format("simt: persistent value '{}' is {} in this plan but {} in the "
                                                "executable it shares storage with; shared values must match",
                                                v.name, shape_str(v.rank, v.dims), shape_str(s.rank, s.dims)));
    return it->second;
  }

  const parity_value_desc& desc(int32_t value, const char* what) const {
    if (value < 0 || value >= static_cast<int32_t>(values_.size()))
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("simt: {} of value {}: no such value, the plan has {}", what, value, values_.size()));
    return values_[static_cast<size_t>(value)];
  }

  static void check_bytes(const char* what, const parity_value_desc& v, size_t bytes) {
    const auto expected = static_cast<size_t>(numel_of(v)) * 4;
    if (bytes != expected)
      throw Error(ErrorKind::invalid_argument, fmt::format("simt: {} value '{}' {} needs {} bytes, got {}", what, v.name,
                                                           shape_str(v.rank, v.dims), expected, bytes));
  }

  void poison_temps() {
    for (size_t i = 0; i < values_.size(); ++i) {
      if (values_[i].kind != PARITY_VALUE_TEMP) continue;
      for (float& x : storage_[i]->f32) x = std::numeric_limits<float>::quiet_NaN();
      for (int32_t& x : storage_[i]->i32) x = 0x7fffffff;
    }
  }

  std::string label(const parity_node_desc& node) const {
    return fmt::format("simt: {} node '{}'", parity_op_name(node.op), node.name);
  }
  int32_t in_index(const parity_node_desc& node, int32_t slot) const {
    if (slot >= node.num_inputs)
      throw Error(ErrorKind::internal, fmt::format("{} has {} inputs; the op needs input {}", label(node),
                                                   node.num_inputs, slot));
    return node.inputs[slot];
  }
  int32_t out_index(const parity_node_desc& node, int32_t slot) const {
    if (slot >= node.num_outputs)
      throw Error(ErrorKind::internal, fmt::format("{} has {} outputs; the op needs output {}", label(node),
                                                   node.num_outputs, slot));
    return node.outputs[slot];
  }
  const parity_value_desc& in_desc(const parity_node_desc& node, int32_t slot) const {
    return values_[static_cast<size_t>(in_index(node, slot))];
  }
  const parity_value_desc& out_desc(const parity_node_desc& node, int32_t slot) const {
    return values_[static_cast<size_t>(out_index(node, slot))];
  }
  Storage& typed(const parity_node_desc& node, int32_t value, parity_dtype dtype) const {
    const parity_value_desc& v = values_[static_cast<size_t>(value)];
    if (v.dtype != dtype)
      throw Error(ErrorKind::internal, fmt::format("{}: value '{}' has the wrong dtype for the op", label(node), v.name));
    return *storage_[static_cast<size_t>(value)];
  }
  float* f_in(const parity_node_desc& n, int32_t s) const { return typed(n, in_index(n, s), PARITY_F32).f32.data(); }
  int32_t* i_in(const parity_node_desc& n, int32_t s) const { return typed(n, in_index(n, s), PARITY_I32).i32.data(); }
  float* f_out(const parity_node_desc& n, int32_t s) const { return typed(n, out_index(n, s), PARITY_F32).f32.data(); }
  int32_t* i_out(const parity_node_desc& n, int32_t s) const {
    return typed(n, out_index(n, s), PARITY_I32).i32.data();
  }

  int64_t dim(const parity_node_desc& node, const parity_value_desc& v, int32_t rank, int32_t axis) const {
    if (v.rank != rank)
      throw Error(ErrorKind::internal, fmt::format("{}: value '{}' has rank {}, the op needs rank {}", label(node),
                                                   v.name, v.rank, rank));
    return v.dims[axis];
  }
  // The kernels index with the shapes they are given: a value of another size is a graph bug.
  void expect_numel(const parity_node_desc& node, const parity_value_desc& v, int64_t expected) const {
    if (numel_of(v) != expected)
      throw Error(ErrorKind::internal, fmt::format("{}: value '{}' {} has {} elements, the op needs {}", label(node),
                                                   v.name, shape_str(v.rank, v.dims), numel_of(v), expected));
  }

  // x [N,C,H,W] (the forward input or dx) and w [K,C,R,S] (the weight or dw) fix the shape.
  ConvShape conv_shape(const parity_node_desc& node) const {
    const bool bwd_data = node.op == PARITY_OP_CONV2D_BWD_DATA, bwd_weight = node.op == PARITY_OP_CONV2D_BWD_WEIGHT;
    const parity_value_desc& x = bwd_data ? out_desc(node, 0) : in_desc(node, 0);
    const parity_value_desc& w = bwd_weight ? out_desc(node, 0) : in_desc(node, 1);
    ConvShape s{dim(node, x, 4, 0), dim(node, x, 4, 1), dim(node, x, 4, 2), dim(node, x, 4, 3), dim(node, w, 4, 0),
                dim(node, w, 4, 2), dim(node, w, 4, 3), 0, 0, node.params.conv2d};
    s.p = (s.h + 2 * s.params.pad_h - s.r) / s.params.stride_h + 1;
    s.q = (s.w + 2 * s.params.pad_w - s.s) / s.params.stride_w + 1;
    const parity_value_desc& y = node.op == PARITY_OP_CONV2D ? out_desc(node, 0) : in_desc(node, bwd_data ? 0 : 1);
    expect_numel(node, y, s.n * s.k * s.p * s.q);
    return s;
  }

  PoolShape pool_shape(const parity_node_desc& node, const parity_value_desc& x, const parity_value_desc& y) const {
    PoolShape s{dim(node, x, 4, 0), dim(node, x, 4, 1), dim(node, x, 4, 2), dim(node, x, 4, 3), 0, 0,
                node.params.maxpool2d};
    s.p = (s.h - s.params.kernel_h) / s.params.stride_h + 1;
    s.q = (s.w - s.params.kernel_w) / s.params.stride_w + 1;
    expect_numel(node, y, s.n * s.c * s.p * s.q);
    return s;
  }

  // Run-time data the graph cannot have validated (the kernels cannot throw): labels name a class.
  void check_labels(const parity_node_desc& node, int64_t n, int64_t k) const {
    expect_numel(node, in_desc(node, 1), n);
    const int32_t* labels = i_in(node, 1);
    for (int64_t i = 0; i < n; ++i)
      if (labels[i] < 0 || labels[i] >= k)
        throw Error(ErrorKind::data, fmt::format("{}: label {} at row {} of value '{}' is outside [0, {})", label(node),
                                                 labels[i], i, in_desc(node, 1).name, k));
  }

  void run_node(const parity_node_desc& node) {
    switch (node.op) {
      case PARITY_OP_CONV2D: {
        const ConvShape s = conv_shape(node);
        expect_numel(node, in_desc(node, 2), s.k);
        ops_.conv2d_forward(f_in(node, 0), f_in(node, 1), f_in(node, 2), f_out(node, 0), s, workspace_.data());
        break;
      }
      case PARITY_OP_CONV2D_BWD_DATA:
        ops_.conv2d_backward_data(f_in(node, 0), f_in(node, 1), f_out(node, 0), conv_shape(node), workspace_.data());
        break;
      case PARITY_OP_CONV2D_BWD_WEIGHT: {
        const ConvShape s = conv_shape(node);
        expect_numel(node, out_desc(node, 1), s.k);
        ops_.conv2d_backward_weight(f_in(node, 0), f_in(node, 1), f_out(node, 0), f_out(node, 1), s,
                                    workspace_.data());
        break;
      }
      case PARITY_OP_RELU: {
        const int64_t count = numel_of(in_desc(node, 0));
        expect_numel(node, out_desc(node, 0), count);
        ops_.relu_forward(f_in(node, 0), f_out(node, 0), count);
        break;
      }
      case PARITY_OP_RELU_BWD: {
        const int64_t count = numel_of(in_desc(node, 0));
        expect_numel(node, in_desc(node, 1), count);
        expect_numel(node, out_desc(node, 0), count);
        ops_.relu_backward(f_in(node, 0), f_in(node, 1), f_out(node, 0), count);
        break;
      }
      case PARITY_OP_MAXPOOL2D: {
        const PoolShape s = pool_shape(node, in_desc(node, 0), out_desc(node, 0));
        expect_numel(node, out_desc(node, 1), s.n * s.c * s.p * s.q);
        ops_.maxpool2d_forward(f_in(node, 0), f_out(node, 0), i_out(node, 1), s);
        break;
      }
      case PARITY_OP_MAXPOOL2D_BWD: {
        const PoolShape s = pool_shape(node, out_desc(node, 0), in_desc(node, 0));
        expect_numel(node, in_desc(node, 1), s.n * s.c * s.p * s.q);
        const int32_t* idx = i_in(node, 1);
        for (int64_t i = 0; i < s.n * s.c * s.p * s.q; ++i)
          if (idx[i] < 0 || idx[i] >= s.h * s.w)
            throw Error(ErrorKind::data, fmt::format("{}: index {} at element {} is outside its {}x{} plane",
                                                     label(node), idx[i], i, s.h, s.w));
        ops_.maxpool2d_backward(f_in(node, 0), idx, f_out(node, 0), s);
        break;
      }
      case PARITY_OP_RESHAPE: {
        const int64_t count = numel_of(in_desc(node, 0));
        expect_numel(node, out_desc(node, 0), count);
        ops_.copy(f_in(node, 0), f_out(node, 0), count);
        break;
      }
      case PARITY_OP_LINEAR: {
        const int64_t in = dim(node, in_desc(node, 1), 2, 1), out = dim(node, in_desc(node, 1), 2, 0);
        const int64_t n = in ? numel_of(in_desc(node, 0)) / in : 0;
        expect_numel(node, in_desc(node, 0), n * in);
        expect_numel(node, in_desc(node, 2), out);
        expect_numel(node, out_desc(node, 0), n * out);
        ops_.linear_forward(f_in(node, 0), f_in(node, 1), f_in(node, 2), f_out(node, 0), n, in, out);
        break;
      }
      case PARITY_OP_LINEAR_BWD_DATA: {  // dy, w -> dx
        const int64_t in = dim(node, in_desc(node, 1), 2, 1), out = dim(node, in_desc(node, 1), 2, 0);
        const int64_t n = in ? numel_of(out_desc(node, 0)) / in : 0;
        expect_numel(node, out_desc(node, 0), n * in);
        expect_numel(node, in_desc(node, 0), n * out);
        ops_.linear_backward_data(f_in(node, 0), f_in(node, 1), f_out(node, 0), n, in, out);
        break;
      }
      case PARITY_OP_LINEAR_BWD_WEIGHT: {  // x, dy -> dw, db
        const int64_t in = dim(node, out_desc(node, 0), 2, 1), out = dim(node, out_desc(node, 0), 2, 0);
        const int64_t n = in ? numel_of(in_desc(node, 0)) / in : 0;
        expect_numel(node, in_desc(node, 0), n * in);
        expect_numel(node, in_desc(node, 1), n * out);
        expect_numel(node, out_desc(node, 1), out);
        ops_.linear_backward_weight(f_in(node, 0), f_in(node, 1), f_out(node, 0), f_out(node, 1), n, in, out);
        break;
      }
      case PARITY_OP_SOFTMAX_XENT: {
        const int64_t n = dim(node, in_desc(node, 0), 2, 0), k = dim(node, in_desc(node, 0), 2, 1);
        check_labels(node, n, k);
        expect_numel(node, out_desc(node, 0), 1);
        ops_.softmax_xent_forward(f_in(node, 0), i_in(node, 1), f_out(node, 0), n, k, workspace_.data());
        break;
      }
      case PARITY_OP_SOFTMAX_XENT_BWD: {
        const int64_t n = dim(node, in_desc(node, 0), 2, 0), k = dim(node, in_desc(node, 0), 2, 1);
        check_labels(node, n, k);
        expect_numel(node, in_desc(node, 2), 1);
        expect_numel(node, out_desc(node, 0), n * k);
        ops_.softmax_xent_backward(f_in(node, 0), i_in(node, 1), f_in(node, 2), f_out(node, 0), n, k);
        break;
      }
      case PARITY_OP_ARGMAX: {
        const int64_t n = dim(node, in_desc(node, 0), 2, 0), k = dim(node, in_desc(node, 0), 2, 1);
        expect_numel(node, out_desc(node, 0), n);
        ops_.argmax(f_in(node, 0), i_out(node, 0), n, k);
        break;
      }
      case PARITY_OP_ACCURACY: {
        const int64_t n = dim(node, in_desc(node, 0), 2, 0), k = dim(node, in_desc(node, 0), 2, 1);
        check_labels(node, n, k);
        expect_numel(node, out_desc(node, 0), 1);
        ops_.accuracy(f_in(node, 0), i_in(node, 1), f_out(node, 0), n, k);
        break;
      }
      case PARITY_OP_ADD: {
        const int64_t count = numel_of(in_desc(node, 0));
        expect_numel(node, in_desc(node, 1), count);
        expect_numel(node, out_desc(node, 0), count);
        ops_.add(f_in(node, 0), f_in(node, 1), f_out(node, 0), count);
        break;
      }
      case PARITY_OP_ADAM_STEP: {
        const int64_t count = numel_of(in_desc(node, 0));
        for (int32_t slot = 1; slot <= 3; ++slot) expect_numel(node, in_desc(node, slot), count);
        expect_numel(node, in_desc(node, 4), 1);
        const int32_t* step = i_in(node, 4);
        if (step[0] < 1)
          throw Error(ErrorKind::invalid_argument, fmt::format("{}: step {} in value '{}' must be >= 1 (Adam counts "
                                                               "steps from 1)",
                                                               label(node), step[0], in_desc(node, 4).name));
        ops_.adam_step(f_in(node, 0), f_in(node, 1), f_in(node, 2), f_in(node, 3), step, count, node.params.adam);
        break;
      }
      case PARITY_OP_SGD_STEP: {
        const int64_t count = numel_of(in_desc(node, 0));
        for (int32_t slot = 1; slot <= 2; ++slot) expect_numel(node, in_desc(node, slot), count);
        ops_.sgd_step(f_in(node, 0), f_in(node, 1), f_in(node, 2), count, node.params.sgd);
        break;
      }
      case PARITY_OP_FILL:
        ops_.fill(f_out(node, 0), numel_of(out_desc(node, 0)), node.params.fill.value);
        break;
      case PARITY_OP_COUNT:
        throw Error(ErrorKind::internal, fmt::format("simt: node '{}' has op PARITY_OP_COUNT, which is a count, not an "
                                                     "op",
                                                     node.name));
    }
  }

  std::vector<parity_value_desc> values_;
  std::vector<parity_node_desc> nodes_;
  std::shared_ptr<PersistentStore> persistent_;
  std::vector<std::shared_ptr<Storage>> storage_;
  std::vector<float> workspace_;  // im2col columns and per-row loss terms
  const NativeOps& ops_;
  tbb::task_arena arena_;
  bool poison_outputs_;
};

class SimtBackend final : public Backend {
 public:
  explicit SimtBackend(const BackendOptions& options)
      : ops_(warp_size_from_env() == 64 ? native::simt_w64::native_ops() : native::simt_w32::native_ops()),
        threads_(options.threads > 0 ? options.threads : tbb::this_task_arena::max_concurrency()) {}

  std::string name() const override { return "simt"; }

  bool supports(const parity_node_desc& node, std::string* reason) const override {
    int32_t op;
    std::memcpy(&op, &node.op, sizeof op);
    if (op >= 0 && op < PARITY_OP_COUNT) return true;
    if (reason) *reason = fmt::format("simt: op {} of node '{}' is not one this build knows", op, node.name);
    return false;
  }

  std::unique_ptr<Executable> compile(const parity_plan& plan, const CompileOptions& options,
                                      Executable* share_persistent_with) override {
    for (int32_t i = 0; i < plan.num_nodes; ++i) {
      std::string reason;
      if (!supports(plan.nodes[i], &reason)) throw Error(ErrorKind::backend, reason);
    }
    // A malformed descriptor (from across the ABI) is refused before anything is sized from it.
    for (int32_t i = 0; i < plan.num_values; ++i) {
      const parity_value_desc& v = plan.values[i];
      if (v.rank < 0 || v.rank > PARITY_MAX_RANK)
        throw Error(ErrorKind::invalid_argument, fmt::format("simt: value '{}' has rank {}, must be in [0, {}]",
                                                             std::string(v.name, strnlen(v.name, PARITY_NAME_LEN)),
                                                             v.rank, PARITY_MAX_RANK));
      for (int32_t d = 0; d < v.rank; ++d)
        if (v.dims[d] < 1)
          throw Error(ErrorKind::invalid_argument, fmt::format("simt: value '{}' has dimension {} = {}, must be >= 1",
                                                               std::string(v.name, strnlen(v.name, PARITY_NAME_LEN)),
                                                               d, v.dims[d]));
    }
    SimtExecutable* share = nullptr;
    if (share_persistent_with) {
      share = dynamic_cast<SimtExecutable*>(share_persistent_with);
      if (!share)
        throw Error(ErrorKind::invalid_argument,
                    "simt: share_persistent_with must be an executable compiled by the simt backend");
    }
    return std::make_unique<SimtExecutable>(plan, options, share, ops_, threads_);
  }

  int threads() const override { return threads_; }

 private:
  const NativeOps& ops_;
  int threads_;
};

}  // namespace
}  // namespace simt

std::unique_ptr<Backend> make_simt_backend(const BackendOptions& options) {
  return std::make_unique<simt::SimtBackend>(options);
}

}  // namespace parity
