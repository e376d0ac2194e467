// graph/compiled_step.cpp — lowering, the backend's support check, compiling, zeroing the
// persistent values and reading values back as tensors.
#include "graph/compiled_step.h"

#include <fmt/format.h>

#include "ops/op_rule.h"
#include "parity/error.h"

namespace parity {
namespace {

Shape shape_of(const parity_value_desc& d) { return Shape(std::vector<int64_t>(d.dims, d.dims + d.rank)); }

DType dtype_of(const parity_value_desc& d) {
  switch (d.dtype) {
    case PARITY_F32: return DType::f32;
    case PARITY_I32: return DType::i32;
    case PARITY_I64: return DType::i64;
    case PARITY_BF16: return DType::bf16;
    case PARITY_F16: return DType::f16;
  }
  throw Error(ErrorKind::internal, fmt::format("compiled step: value '{}' has dtype {}, not a parity_dtype",
                                               d.name, static_cast<int>(d.dtype)));
}

}  // namespace

CompiledStep::CompiledStep(const Graph& graph, const std::vector<std::string>& keep, const CompiledStepOptions& options)
    : plan_(graph, keep, options.tight_layout), options_(options) {}

CompiledStep::CompiledStep(Backend& backend, const Graph& graph, const std::vector<std::string>& keep,
                           const CompiledStepOptions& options)
    : CompiledStep(graph, keep, options) {
  compile(backend);
}

bool CompiledStep::supported_by(const Backend& backend, std::string* why) const {
  for (const parity_node_desc& node : plan_.nodes())
    if (!backend.supports(node, why)) return false;
  return true;
}

void CompiledStep::compile(Backend& backend) {
  for (const parity_node_desc& node : plan_.nodes()) {
    std::string why;
    if (!backend.supports(node, &why))
      throw Error(ErrorKind::backend, fmt::format("backend '{}' cannot run node '{}' ({}): {}", backend.name(),
                                                  node.name, ops::rule(node.op).name, why));
  }
  CompileOptions co;
  co.poison_outputs = options_.poison_outputs;
  exe_ = backend.compile(plan_.c_plan(), co, options_.share_with);
}

void CompiledStep::zero_params_and_state() {
  for (const parity_value_desc& v : plan_.values())
    if (v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE) {
      std::vector<unsigned char> zeros(static_cast<size_t>(v.bytes), 0);
      exe_->write(plan_.value(v.name), zeros.data(), zeros.size());
    }
}

Tensor CompiledStep::read(int32_t value) const {
  const parity_value_desc& d = plan_.values()[static_cast<size_t>(value)];
  Tensor t(shape_of(d), dtype_of(d));
  exe_->read(value, t.data(), t.nbytes());
  return t;
}

}  // namespace parity
