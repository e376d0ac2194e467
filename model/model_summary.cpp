// model/model_summary.cpp — the layer table and training-step memory of a model
// (model/model_summary.h): counts come from the op rules on the graphs the Trainer builds.
#include "model/model_summary.h"

#include <map>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "graph/compiled_step.h"
#include "ops/op_rule.h"
#include "parity/backend.h"
#include "parity/error.h"

namespace parity {
namespace {

double node_flops(const Graph& g, const Node& n) {
  std::vector<const ValueInfo*> inputs;
  for (int32_t in : n.inputs) inputs.push_back(&g.values()[static_cast<size_t>(in)]);
  const ops::OpCall call{n.name, n.params, inputs, n.op};
  return ops::rule(n.op).flops(call);
}

int64_t value_bytes(const ValueInfo& v) { return v.shape.numel() * static_cast<int64_t>(dtype_size(v.dtype)); }

bool is_optimizer(const Node& n) { return n.op == PARITY_OP_ADAM_STEP || n.op == PARITY_OP_SGD_STEP; }

// The forward node a backward node belongs to: gradient rules name their nodes "<node>.bwd*".
std::string owner_of(const std::string& backward_node) {
  const size_t at = backward_node.rfind(".bwd");
  return at == std::string::npos ? std::string() : backward_node.substr(0, at);
}

nlohmann::ordered_json shape_json(const Shape& s) { return s.dims(); }

}  // namespace

const char* flop_convention() {
  return "FLOPs of the op rules: a multiply-add counts 2 (conv2d 2*N*K*P*Q*C*R*S + bias, linear 2*N*O*I + bias); "
         "backward = bwd_data + bwd_weight (about 2x forward); relu and pool 1 per element, flatten 0";
}

Graph build_training_step(const ModelSpec& spec, int64_t batch, const OptimizerConfig& optimizer) {
  Graph forward = build_forward(spec, batch);
  return differentiate(forward, forward.find("loss"), &optimizer);
}

ModelSummary summarize_model(const ModelSpec& spec, int64_t batch, const OptimizerConfig& optimizer) {
  if (batch < 1) throw Error(ErrorKind::invalid_argument, fmt::format("batch must be >= 1, got {}", batch));
  const Graph forward = build_forward(spec, batch);
  const Graph train = differentiate(forward, forward.find("loss"), &optimizer);
  ModelSummary s;
  s.model = spec.name;
  s.batch = batch;
  s.input = forward.value(forward.find("x")).shape;
  std::map<std::string, std::string> layer_ops;
  for (const LayerSpec& l : spec.layers) layer_ops[l.name] = layer_op_name(l.op);

  std::map<std::string, size_t> row_of;
  const size_t forward_nodes = forward.nodes().size();
  for (size_t i = 0; i < forward_nodes; ++i) {
    const Node& n = train.nodes()[i];
    LayerSummary row;
    row.name = n.name;
    auto op = layer_ops.find(n.name);
    row.op = op != layer_ops.end() ? op->second : ops::lower_name(n.op);
    if (!n.outputs.empty()) row.output = train.values()[static_cast<size_t>(n.outputs[0])].shape;
    for (int32_t in : n.inputs) {
      const ValueInfo& v = train.values()[static_cast<size_t>(in)];
      if (v.kind == PARITY_VALUE_PARAM) row.params += v.shape.numel();
    }
    for (int32_t out : n.outputs) row.activation_bytes += value_bytes(train.values()[static_cast<size_t>(out)]);
    row.flops_forward = node_flops(train, n);
    s.flops_forward += row.flops_forward;
    s.activation_bytes += row.activation_bytes;
    row_of[n.name] = s.layers.size();
    s.layers.push_back(std::move(row));
  }
  for (size_t i = forward_nodes; i < train.nodes().size(); ++i) {
    const Node& n = train.nodes()[i];
    const double flops = node_flops(train, n);
    if (is_optimizer(n)) {
      s.flops_optimizer += flops;
      continue;
    }
    s.flops_backward += flops;
    auto row = row_of.find(owner_of(n.name));
    if (row != row_of.end()) s.layers[row->second].flops_backward += flops;
  }
  for (const ValueInfo& v : train.values()) {
    if (v.kind == PARITY_VALUE_PARAM) {
      s.params += v.shape.numel();
      s.param_bytes += value_bytes(v);
    }
    if (v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE) s.persistent_bytes += value_bytes(v);
  }
  s.training_nodes = static_cast<int64_t>(train.nodes().size());
  // The values the Trainer keeps readable: the same plan it compiles.
  const Plan plan(train, {"loss", "correct"});
  s.arena_bytes = plan.arena_bytes();
  return s;
}

BackendMemory training_step_memory(const ModelSpec& spec, int64_t batch, const std::string& backend_name,
                                   const OptimizerConfig& optimizer) {
  BackendMemory m;
  m.backend = backend_name;
  CompiledStep step(build_training_step(spec, batch, optimizer), {"loss", "correct"});
  std::unique_ptr<Backend> backend;
  try {
    backend = create_backend(backend_name);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::backend) throw;  // an unknown name is the caller's mistake
    m.why = e.what();
    // A backend unavailable here may still plan without its device ("auto" names none).
    if (backend_name != "auto") {
      try {
        m.planned = memory_need_without_device(backend_name, step.plan().c_plan());
      } catch (const Error& refused) {
        m.why += fmt::format("; planning without its device refused the step: {}", refused.what());
      }
    }
    return m;
  }
  m.backend = backend->name();
  if (!step.supported_by(*backend, &m.why)) return m;
  m.available = true;
  // The backend's own answer, allocating nothing (equal to memory_bytes() after compiling, as
  // tests/test_memory_need.cpp checks); a backend that cannot tell is compiled and asked.
  if (const std::optional<MemoryNeed> need = backend->memory_need(step.plan().c_plan(), {}, nullptr)) {
    m.bytes = need->host_bytes + need->device_bytes;
    return m;
  }
  step.compile(*backend);
  m.bytes = step.executable().memory_bytes();
  return m;
}

std::string model_summary_json(const ModelSummary& s, const BackendMemory* memory) {
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const LayerSummary& l : s.layers)
    layers.push_back({{"name", l.name},
                      {"op", l.op},
                      {"output", shape_json(l.output)},
                      {"params", l.params},
                      {"flops_forward", l.flops_forward},
                      {"flops_backward", l.flops_backward},
                      {"activation_bytes", l.activation_bytes}});
  nlohmann::ordered_json step = {
      {"nodes", s.training_nodes}, {"arena_bytes", s.arena_bytes}, {"persistent_bytes", s.persistent_bytes}};
  if (memory) {
    nlohmann::ordered_json b = {{"name", memory->backend}, {"available", memory->available}};
    if (memory->available)
      b["memory_bytes"] = memory->bytes;
    else
      b["reason"] = memory->why;
    if (memory->planned)
      b["planned_without_device"] = {{"device_bytes", memory->planned->device_bytes},
                                     {"host_bytes", memory->planned->host_bytes},
                                     {"upper_bound", true}};
    step["backend"] = std::move(b);
  }
  const nlohmann::ordered_json doc = {
      {"model", s.model},
      {"batch", s.batch},
      {"input", shape_json(s.input)},
      {"flop_convention", flop_convention()},
      {"layers", std::move(layers)},
      {"totals",
       {{"params", s.params},
        {"param_bytes", s.param_bytes},
        {"flops_forward", s.flops_forward},
        {"flops_backward", s.flops_backward},
        {"flops_optimizer", s.flops_optimizer},
        {"activation_bytes", s.activation_bytes}}},
      {"training_step", std::move(step)},
  };
  return doc.dump(2) + "\n";
}

}  // namespace parity
