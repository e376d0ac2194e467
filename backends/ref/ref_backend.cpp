// backends/ref/ref_backend.cpp — the `ref` Backend and its Executable: every value held as its
// own float64 (or int32) vector, persistent values shared by name between executables, and
// nodes run in plan order through one switch over parity_op into ref_ops.
#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/builtin.h"
#include "backends/kit/persistent_store.h"
#include "backends/kit/poison.h"
#include "backends/kit/value_desc.h"
#include "backends/ref/ref_ops.h"
#include "parity/error.h"

namespace parity {
namespace ref {
namespace {

// One value's storage. f32 values are widened to double on write (exact) and rounded to the
// nearest float on read; i32 values are kept as int32 so labels and indices need no conversion.
struct Storage {
  parity_dtype dtype = PARITY_F32;
  int32_t rank = 0;
  int64_t dims[PARITY_MAX_RANK] = {};
  std::vector<double> f64;
  std::vector<int32_t> i32;
};

// PARAM and STATE values by name; executables compiled with share_persistent_with hold the same map.
using PersistentStore = kit::PersistentStore<Storage>;

using kit::numel_of;
using kit::shape_str;
constexpr auto dtype_str = kit::dtype_name;

bool is_persistent(const parity_value_desc& v) { return kit::is_persistent(v.kind); }

std::shared_ptr<Storage> make_storage(const parity_value_desc& v) {
  auto s = std::make_shared<Storage>();
  s->dtype = v.dtype;
  s->rank = v.rank;
  for (int32_t i = 0; i < v.rank; ++i) s->dims[i] = v.dims[i];
  const auto count = static_cast<size_t>(numel_of(v));
  if (v.dtype == PARITY_F32) s->f64.assign(count, 0.0);
  else s->i32.assign(count, 0);
  return s;
}

class RefExecutable final : public Executable {
 public:
  RefExecutable(const parity_plan& plan, const CompileOptions& options, RefExecutable* share)
      : values_(plan.values, plan.values + plan.num_values),
        nodes_(plan.nodes, plan.nodes + plan.num_nodes),
        persistent_(share ? share->persistent_ : std::make_shared<PersistentStore>()),
        poison_outputs_(options.poison_outputs) {
    storage_.reserve(values_.size());
    for (const parity_value_desc& v : values_) {
      if (v.dtype != PARITY_F32 && v.dtype != PARITY_I32)
        throw Error(ErrorKind::backend, "ref: value '" + std::string(v.name) + "' has dtype " +
                                            dtype_str(v.dtype) + "; ref stores f32 and i32 values only");
      if (v.rank < 0 || v.rank > PARITY_MAX_RANK)
        throw Error(ErrorKind::internal, "ref: value '" + std::string(v.name) + "' has rank " +
                                             std::to_string(v.rank) + ", outside [0, " +
                                             std::to_string(PARITY_MAX_RANK) + "]");
      storage_.push_back(is_persistent(v) ? persistent_storage(v) : make_storage(v));
    }
    for (const parity_node_desc& node : nodes_) check_node_indices(node);
  }

  void write(int32_t value, const void* host, size_t bytes) override {
    const parity_value_desc& v = desc(value, "write");
    if (v.kind == PARITY_VALUE_TEMP)
      throw Error(ErrorKind::invalid_argument, "ref: write to value '" + std::string(v.name) +
                                                   "' refused: only INPUT, PARAM and STATE values can be written");
    check_bytes("write to", v, bytes);
    Storage& s = *storage_[static_cast<size_t>(value)];
    if (v.dtype == PARITY_F32) {
      const auto* src = static_cast<const unsigned char*>(host);
      for (size_t i = 0; i < s.f64.size(); ++i) {
        float f;
        std::memcpy(&f, src + i * sizeof(float), sizeof(float));
        s.f64[i] = static_cast<double>(f);  // exact: every float is a double
      }
    } else {
      std::memcpy(s.i32.data(), host, bytes);
    }
  }

  void read(int32_t value, void* host, size_t bytes) const override {
    const parity_value_desc& v = desc(value, "read");
    if (v.kind == PARITY_VALUE_TEMP && !v.keep)
      throw Error(ErrorKind::invalid_argument, "ref: read of value '" + std::string(v.name) +
                                                   "' refused: it is a TEMP value the plan did not mark keep");
    check_bytes("read of", v, bytes);
    const Storage& s = *storage_[static_cast<size_t>(value)];
    if (v.dtype == PARITY_F32) {
      auto* dst = static_cast<unsigned char*>(host);
      for (size_t i = 0; i < s.f64.size(); ++i) {
        const float f = static_cast<float>(s.f64[i]);  // round to nearest (the default FP mode)
        std::memcpy(dst + i * sizeof(float), &f, sizeof(float));
      }
    } else {
      std::memcpy(host, s.i32.data(), bytes);
    }
  }

  // The float64 values themselves, for finite differences in float64 (parity check --gradient).
  void write_f64(int32_t value, const double* host, size_t count) override {
    const parity_value_desc& v = desc(value, "write_f64");
    if (v.kind == PARITY_VALUE_TEMP || v.dtype != PARITY_F32)
      throw Error(ErrorKind::invalid_argument, "ref: write_f64 to value '" + std::string(v.name) +
                                                   "' refused: only f32 INPUT, PARAM and STATE values");
    Storage& s = *storage_[static_cast<size_t>(value)];
    if (count != s.f64.size())
      throw Error(ErrorKind::invalid_argument, "ref: write_f64 to value '" + std::string(v.name) + "': " +
                                                   std::to_string(count) + " elements, it has " +
                                                   std::to_string(s.f64.size()));
    std::copy(host, host + count, s.f64.begin());
  }

  void read_f64(int32_t value, double* host, size_t count) const override {
    const parity_value_desc& v = desc(value, "read_f64");
    if ((v.kind == PARITY_VALUE_TEMP && !v.keep) || v.dtype != PARITY_F32)
      throw Error(ErrorKind::invalid_argument, "ref: read_f64 of value '" + std::string(v.name) +
                                                   "' refused: only f32 values that are kept or not TEMP");
    const Storage& s = *storage_[static_cast<size_t>(value)];
    if (count != s.f64.size())
      throw Error(ErrorKind::invalid_argument, "ref: read_f64 of value '" + std::string(v.name) + "': " +
                                                   std::to_string(count) + " elements, it has " +
                                                   std::to_string(s.f64.size()));
    std::copy(s.f64.begin(), s.f64.end(), host);
  }

  void execute() override {
    if (poison_outputs_) poison_temps();
    for (const parity_node_desc& node : nodes_) run_node(node);
  }

  // The vectors this plan's values live in; persistent values shared with another executable
  // are counted by each executable that uses them.
  int64_t memory_bytes() const override {
    int64_t total = 0;
    for (const auto& s : storage_)
      total += static_cast<int64_t>(s->f64.size() * sizeof(double) + s->i32.size() * sizeof(int32_t));
    return total;
  }

 private:
  std::shared_ptr<Storage> persistent_storage(const parity_value_desc& v) {
    return persistent_->bind(
        v, [&] { return make_storage(v); },
        [&](const parity_value_desc& s) {
          throw Error(ErrorKind::shape, "ref: persistent value '" + std::string(v.name) + "' is " +
                                            dtype_str(v.dtype) + shape_str(v.rank, v.dims) + " in this plan but " +
                                            dtype_str(s.dtype) + shape_str(s.rank, s.dims) +
                                            " in the executable it shares storage with; shared values must match");
        });
  }

  void check_node_indices(const parity_node_desc& node) const {
    const std::string where = "ref: node '" + std::string(node.name) + "'";
    if (node.num_inputs < 0 || node.num_inputs > PARITY_MAX_NODE_INPUTS || node.num_outputs < 0 ||
        node.num_outputs > PARITY_MAX_NODE_OUTPUTS)
      throw Error(ErrorKind::internal, where + " has " + std::to_string(node.num_inputs) + " inputs and " +
                                           std::to_string(node.num_outputs) + " outputs, outside the ABI limits");
    const auto n = static_cast<int32_t>(values_.size());
    for (int32_t i = 0; i < node.num_inputs + node.num_outputs; ++i) {
      const int32_t v = i < node.num_inputs ? node.inputs[i] : node.outputs[i - node.num_inputs];
      if (v < 0 || v >= n)
        throw Error(ErrorKind::internal, where + " refers to value " + std::to_string(v) + ", outside [0, " +
                                             std::to_string(n) + ")");
    }
  }

  const parity_value_desc& desc(int32_t value, const char* what) const {
    if (value < 0 || value >= static_cast<int32_t>(values_.size()))
      throw Error(ErrorKind::invalid_argument, std::string("ref: ") + what + " of value " + std::to_string(value) +
                                                   ": no such value, the plan has " +
                                                   std::to_string(values_.size()));
    return values_[static_cast<size_t>(value)];
  }

  static void check_bytes(const char* what, const parity_value_desc& v, size_t bytes) {
    const auto expected = static_cast<size_t>(numel_of(v)) * 4;  // f32 and i32 are both 4 bytes on the host
    if (bytes != expected)
      throw Error(ErrorKind::invalid_argument, std::string("ref: ") + what + " value '" + v.name + "' " +
                                                   dtype_str(v.dtype) + shape_str(v.rank, v.dims) + " needs " +
                                                   std::to_string(expected) + " bytes, got " +
                                                   std::to_string(bytes));
  }

  void poison_temps() {
    kit::poison_temps(values_, [&](size_t i, int64_t, uint32_t) {
      Storage& s = *storage_[i];
      std::fill(s.f64.begin(), s.f64.end(), kit::poison_value<double>());
      std::fill(s.i32.begin(), s.i32.end(), kit::poison_value<int32_t>());
    });
  }

  // --- typed access to a node's operands; a mismatch here is a bug in the graph layer ---

  std::string node_label(const parity_node_desc& node) const {
    return std::string("ref: ") + parity_op_name(node.op) + " node '" + node.name + "'";
  }

  int32_t input_index(const parity_node_desc& node, int32_t slot) const {
    if (slot >= node.num_inputs)
      throw Error(ErrorKind::internal, node_label(node) + " has " + std::to_string(node.num_inputs) +
                                           " inputs; the op needs input " + std::to_string(slot));
    return node.inputs[slot];
  }
  int32_t output_index(const parity_node_desc& node, int32_t slot) const {
    if (slot >= node.num_outputs)
      throw Error(ErrorKind::internal, node_label(node) + " has " + std::to_string(node.num_outputs) +
                                           " outputs; the op needs output " + std::to_string(slot));
    return node.outputs[slot];
  }

  Storage& typed(const parity_node_desc& node, int32_t value, parity_dtype dtype) const {
    const parity_value_desc& v = values_[static_cast<size_t>(value)];
    if (v.dtype != dtype)
      throw Error(ErrorKind::internal, node_label(node) + ": value '" + v.name + "' is " + dtype_str(v.dtype) +
                                           ", the op needs " + dtype_str(dtype));
    return *storage_[static_cast<size_t>(value)];
  }

  double* f_in(const parity_node_desc& node, int32_t slot) const {
    return typed(node, input_index(node, slot), PARITY_F32).f64.data();
  }
  int32_t* i_in(const parity_node_desc& node, int32_t slot) const {
    return typed(node, input_index(node, slot), PARITY_I32).i32.data();
  }
  double* f_out(const parity_node_desc& node, int32_t slot) const {
    return typed(node, output_index(node, slot), PARITY_F32).f64.data();
  }
  int32_t* i_out(const parity_node_desc& node, int32_t slot) const {
    return typed(node, output_index(node, slot), PARITY_I32).i32.data();
  }
  const parity_value_desc& in_desc(const parity_node_desc& node, int32_t slot) const {
    return values_[static_cast<size_t>(input_index(node, slot))];
  }
  const parity_value_desc& out_desc(const parity_node_desc& node, int32_t slot) const {
    return values_[static_cast<size_t>(output_index(node, slot))];
  }

  // Dimension `axis` of a value the op reads as rank `rank`.
  int64_t dim(const parity_node_desc& node, const parity_value_desc& v, int32_t rank, int32_t axis) const {
    if (v.rank != rank)
      throw Error(ErrorKind::internal, node_label(node) + ": value '" + v.name + "' has rank " +
                                           std::to_string(v.rank) + ", the op needs rank " + std::to_string(rank));
    return v.dims[axis];
  }

  // Guards the loops of ref_ops against writing or reading past a vector the graph sized wrongly.
  void expect_numel(const parity_node_desc& node, const parity_value_desc& v, int64_t expected) const {
    if (numel_of(v) != expected)
      throw Error(ErrorKind::internal, node_label(node) + ": value '" + v.name + "' " +
                                           shape_str(v.rank, v.dims) + " has " + std::to_string(numel_of(v)) +
                                           " elements, the op needs " + std::to_string(expected));
  }

  // The element count of an element-wise node (relu, sigmoid and their backwards), whose
  // `inputs` inputs and one output all hold that many values.
  int64_t elementwise_count(const parity_node_desc& node, int32_t inputs) const {
    const int64_t count = numel_of(in_desc(node, 0));
    for (int32_t slot = 1; slot < inputs; ++slot) expect_numel(node, in_desc(node, slot), count);
    expect_numel(node, out_desc(node, 0), count);
    return count;
  }

  // Run-time data the graph cannot have validated: labels must name a class.
  void check_labels(const parity_node_desc& node, int32_t slot, const XentDims& d) const {
    const parity_value_desc& v = in_desc(node, slot);
    expect_numel(node, v, d.n);
    const int32_t* labels = i_in(node, slot);
    for (int64_t n = 0; n < d.n; ++n)
      if (labels[n] < 0 || labels[n] >= d.k)
        throw Error(ErrorKind::data, node_label(node) + ": label " + std::to_string(labels[n]) + " at row " +
                                         std::to_string(n) + " of value '" + v.name + "' is outside [0, " +
                                         std::to_string(d.k) + ")");
  }

  // Pooling indices may come from the caller (an INPUT in an op-level check): each must lie in its plane.
  void check_pool_indices(const parity_node_desc& node, int32_t slot, const Maxpool2dDims& d) const {
    const parity_value_desc& v = in_desc(node, slot);
    expect_numel(node, v, d.n * d.c * d.p * d.q);
    const int32_t* idx = i_in(node, slot);
    for (int64_t i = 0; i < d.n * d.c * d.p * d.q; ++i)
      if (idx[i] < 0 || idx[i] >= d.h * d.w)
        throw Error(ErrorKind::data, node_label(node) + ": index " + std::to_string(idx[i]) + " at element " +
                                         std::to_string(i) + " of value '" + v.name + "' is outside its " +
                                         std::to_string(d.h) + "x" + std::to_string(d.w) + " plane");
  }

  Conv2dDims conv_dims(const parity_node_desc& node, const parity_value_desc& x, const parity_value_desc& w) const {
    const parity_conv2d_params& p = node.params.conv2d;
    return make_conv2d_dims(dim(node, x, 4, 0), dim(node, x, 4, 1), dim(node, x, 4, 2), dim(node, x, 4, 3),
                            dim(node, w, 4, 0), dim(node, w, 4, 2), dim(node, w, 4, 3), p.stride_h, p.stride_w,
                            p.pad_h, p.pad_w);
  }

  Maxpool2dDims pool_dims(const parity_node_desc& node, const parity_value_desc& x) const {
    const parity_maxpool2d_params& p = node.params.maxpool2d;
    return make_maxpool2d_dims(dim(node, x, 4, 0), dim(node, x, 4, 1), dim(node, x, 4, 2), dim(node, x, 4, 3),
                               p.kernel_h, p.kernel_w, p.stride_h, p.stride_w);
  }

  // Linear dims from the weight [O,I]; the batch is whatever x holds of rows of I.
  LinearDims linear_dims(const parity_node_desc& node, const parity_value_desc& rows_of_in,
                         const parity_value_desc& w) const {
    LinearDims d{0, dim(node, w, 2, 1), dim(node, w, 2, 0)};
    d.n = d.in > 0 ? numel_of(rows_of_in) / d.in : 0;
    expect_numel(node, rows_of_in, d.n * d.in);
    return d;
  }

  XentDims xent_dims(const parity_node_desc& node, const parity_value_desc& logits) const {
    return XentDims{dim(node, logits, 2, 0), dim(node, logits, 2, 1)};
  }

  void run_node(const parity_node_desc& node) {
    switch (node.op) {
      case PARITY_OP_CONV2D: {
        const Conv2dDims d = conv_dims(node, in_desc(node, 0), in_desc(node, 1));
        expect_numel(node, in_desc(node, 2), d.k);
        expect_numel(node, out_desc(node, 0), d.n * d.k * d.p * d.q);
        conv2d_forward(f_in(node, 0), f_in(node, 1), f_in(node, 2), f_out(node, 0), d);
        break;
      }
      case PARITY_OP_CONV2D_BWD_DATA: {  // dy, w -> dx
        const Conv2dDims d = conv_dims(node, out_desc(node, 0), in_desc(node, 1));
        expect_numel(node, in_desc(node, 0), d.n * d.k * d.p * d.q);
        conv2d_backward_data(f_in(node, 0), f_in(node, 1), f_out(node, 0), d);
        break;
      }
      case PARITY_OP_CONV2D_BWD_WEIGHT: {  // x, dy -> dw, db
        const Conv2dDims d = conv_dims(node, in_desc(node, 0), out_desc(node, 0));
        expect_numel(node, in_desc(node, 1), d.n * d.k * d.p * d.q);
        expect_numel(node, out_desc(node, 1), d.k);
        conv2d_backward_weight(f_in(node, 0), f_in(node, 1), f_out(node, 0), f_out(node, 1), d);
        break;
      }
      case PARITY_OP_RELU: relu_forward(f_in(node, 0), f_out(node, 0), elementwise_count(node, 1)); break;
      case PARITY_OP_RELU_BWD:  // y, dy -> dx
        relu_backward(f_in(node, 0), f_in(node, 1), f_out(node, 0), elementwise_count(node, 2));
        break;
      case PARITY_OP_SIGMOID: sigmoid_forward(f_in(node, 0), f_out(node, 0), elementwise_count(node, 1)); break;
      case PARITY_OP_SIGMOID_BWD:  // y, dy -> dx
        sigmoid_backward(f_in(node, 0), f_in(node, 1), f_out(node, 0), elementwise_count(node, 2));
        break;
      case PARITY_OP_MAXPOOL2D: {  // x -> y, idx
        const Maxpool2dDims d = pool_dims(node, in_desc(node, 0));
        expect_numel(node, out_desc(node, 0), d.n * d.c * d.p * d.q);
        expect_numel(node, out_desc(node, 1), d.n * d.c * d.p * d.q);
        maxpool2d_forward(f_in(node, 0), f_out(node, 0), i_out(node, 1), d);
        break;
      }
      case PARITY_OP_MAXPOOL2D_BWD: {  // dy, idx -> dx
        const Maxpool2dDims d = pool_dims(node, out_desc(node, 0));
        expect_numel(node, in_desc(node, 0), d.n * d.c * d.p * d.q);
        check_pool_indices(node, 1, d);
        maxpool2d_backward(f_in(node, 0), i_in(node, 1), f_out(node, 0), d);
        break;
      }
      case PARITY_OP_RESHAPE: {
        const int64_t count = numel_of(in_desc(node, 0));
        expect_numel(node, out_desc(node, 0), count);
        reshape_forward(f_in(node, 0), f_out(node, 0), count);
        break;
      }
      case PARITY_OP_LINEAR: {  // x, w, b -> y
        const LinearDims d = linear_dims(node, in_desc(node, 0), in_desc(node, 1));
        expect_numel(node, in_desc(node, 2), d.out);
        expect_numel(node, out_desc(node, 0), d.n * d.out);
        linear_forward(f_in(node, 0), f_in(node, 1), f_in(node, 2), f_out(node, 0), d);
        break;
      }
      case PARITY_OP_LINEAR_BWD_DATA: {  // dy, w -> dx
        const LinearDims d = linear_dims(node, out_desc(node, 0), in_desc(node, 1));
        expect_numel(node, in_desc(node, 0), d.n * d.out);
        linear_backward_data(f_in(node, 0), f_in(node, 1), f_out(node, 0), d);
        break;
      }
      case PARITY_OP_LINEAR_BWD_WEIGHT: {  // x, dy -> dw, db
        const LinearDims d = linear_dims(node, in_desc(node, 0), out_desc(node, 0));
        expect_numel(node, in_desc(node, 1), d.n * d.out);
        expect_numel(node, out_desc(node, 1), d.out);
        linear_backward_weight(f_in(node, 0), f_in(node, 1), f_out(node, 0), f_out(node, 1), d);
        break;
      }
      case PARITY_OP_SOFTMAX_XENT: {  // logits, labels -> loss[1]
        const XentDims d = xent_dims(node, in_desc(node, 0));
        check_labels(node, 1, d);
        expect_numel(node, out_desc(node, 0), 1);
        f_out(node, 0)[0] = softmax_xent_forward(f_in(node, 0), i_in(node, 1), d);
        break;
      }
      case PARITY_OP_SOFTMAX_XENT_BWD: {  // logits, labels, dloss[1] -> dlogits
        const XentDims d = xent_dims(node, in_desc(node, 0));
        check_labels(node, 1, d);
        expect_numel(node, in_desc(node, 2), 1);
        expect_numel(node, out_desc(node, 0), d.n * d.k);
        softmax_xent_backward(f_in(node, 0), i_in(node, 1), f_in(node, 2)[0], f_out(node, 0), d);
        break;
      }
      case PARITY_OP_ARGMAX: {  // x[N,K] -> idx[N]
        const XentDims d = xent_dims(node, in_desc(node, 0));
        expect_numel(node, out_desc(node, 0), d.n);
        argmax_rows(f_in(node, 0), i_out(node, 0), d.n, d.k);
        break;
      }
      case PARITY_OP_ACCURACY: {  // logits, labels -> correct[1]
        const XentDims d = xent_dims(node, in_desc(node, 0));
        check_labels(node, 1, d);
        expect_numel(node, out_desc(node, 0), 1);
        f_out(node, 0)[0] = accuracy_count(f_in(node, 0), i_in(node, 1), d);
        break;
      }
      case PARITY_OP_ADD: {
        const int64_t count = numel_of(in_desc(node, 0));
        expect_numel(node, in_desc(node, 1), count);
        expect_numel(node, out_desc(node, 0), count);
        add_forward(f_in(node, 0), f_in(node, 1), f_out(node, 0), count);
        break;
      }
      case PARITY_OP_ADAM_STEP: {  // param, grad, m, v, step[1] — updated in place
        const int64_t count = numel_of(in_desc(node, 0));
        for (int32_t slot = 1; slot <= 3; ++slot) expect_numel(node, in_desc(node, slot), count);
        expect_numel(node, in_desc(node, 4), 1);
        const int32_t step = i_in(node, 4)[0];
        if (step < 1)
          throw Error(ErrorKind::invalid_argument, node_label(node) + ": step " + std::to_string(step) +
                                                       " in value '" + in_desc(node, 4).name +
                                                       "' must be >= 1 (Adam counts steps from 1)");
        const parity_adam_params& p = node.params.adam;
        const AdamHyper h{p.lr, p.beta1, p.beta2, p.eps, p.weight_decay};
        adam_step(f_in(node, 0), f_in(node, 1), f_in(node, 2), f_in(node, 3), count, step, h);
        break;
      }
      case PARITY_OP_SGD_STEP: {  // param, grad, velocity — updated in place
        const int64_t count = numel_of(in_desc(node, 0));
        for (int32_t slot = 1; slot <= 2; ++slot) expect_numel(node, in_desc(node, slot), count);
        const parity_sgd_params& p = node.params.sgd;
        const SgdHyper h{p.lr, p.momentum, p.weight_decay};
        sgd_step(f_in(node, 0), f_in(node, 1), f_in(node, 2), count, h);
        break;
      }
      case PARITY_OP_FILL:  // -> y, every element the (float) value widened exactly
        fill_forward(f_out(node, 0), numel_of(out_desc(node, 0)), node.params.fill.value);
        break;
      case PARITY_OP_COUNT:
        throw Error(ErrorKind::internal, "ref: node '" + std::string(node.name) +
                                             "' has op PARITY_OP_COUNT, which is a count, not an op");
    }
  }

  std::vector<parity_value_desc> values_;
  std::vector<parity_node_desc> nodes_;
  std::shared_ptr<PersistentStore> persistent_;
  std::vector<std::shared_ptr<Storage>> storage_;  // by value index; persistent ones point into persistent_
  bool poison_outputs_;
};

class RefBackend final : public Backend {
 public:
  std::string name() const override { return "ref"; }

  bool supports(const parity_node_desc& node, std::string* reason) const override {
    // Read the enum's bits as an integer: a node from across the ABI may hold a value this
    // build's enum does not have, and loading that as a parity_op would be undefined.
    static_assert(sizeof(parity_op) == sizeof(int32_t), "parity_op crosses the ABI as a 32-bit int");
    int32_t op;
    std::memcpy(&op, &node.op, sizeof op);
    if (op >= 0 && op < PARITY_OP_COUNT) return true;
    if (reason)
      *reason = "ref: op " + std::to_string(op) + " of node '" + node.name +
                "' is not one this build knows (ops are 0.." + std::to_string(PARITY_OP_COUNT - 1) + ")";
    return false;
  }

  std::unique_ptr<Executable> compile(const parity_plan& plan, const CompileOptions& options,
                                      Executable* share_persistent_with) override {
    for (int32_t i = 0; i < plan.num_nodes; ++i) {
      std::string reason;
      if (!supports(plan.nodes[i], &reason)) throw Error(ErrorKind::backend, reason);
    }
    RefExecutable* share = nullptr;
    if (share_persistent_with) {
      share = dynamic_cast<RefExecutable*>(share_persistent_with);
      if (!share)
        throw Error(ErrorKind::invalid_argument,
                    "ref: share_persistent_with must be an executable compiled by the ref backend; got one "
                    "from another backend");
    }
    return std::make_unique<RefExecutable>(plan, options, share);
  }

  int threads() const override { return 1; }
};

}  // namespace
}  // namespace ref

std::unique_ptr<Backend> make_ref_backend(const BackendOptions& /*options: ref is single-threaded*/) {
  return std::make_unique<ref::RefBackend>();
}

}  // namespace parity
