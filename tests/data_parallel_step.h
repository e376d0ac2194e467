// tests/data_parallel_step.h — one Adam step of a model on a backend, its gradients all-reduced by
// a data-parallel extension when one is given: what the data-parallel tests compare, on the host
// (test_data_parallel.cpp, MPI) and on the emulated device (test_device_collectives.cpp, NCCL).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "dist/data_parallel.h"
#include "graph/compiled_step.h"
#include "parity/backend.h"
#include "parity/graph.h"
#include "parity/model.h"

namespace parity::testing {

inline std::vector<std::string> gradient_names(const ModelSpec& spec) {
  std::vector<std::string> names;
  for (const ParamSpec& p : spec.params) names.push_back(grad_name(p.name));
  return names;
}

inline std::vector<int32_t> gradient_values(const ModelSpec& spec, const Plan& plan) {
  std::vector<int32_t> values;
  for (const ParamSpec& p : spec.params) values.push_back(plan.value(grad_name(p.name)));
  return values;
}

// The gradients (all-reduced when a DataParallel was given) and the parameters after the step.
struct StepResult {
  std::map<std::string, Tensor> gradients, params;
};

// One Adam step of `spec` on `x`, `y` from the weights of seed 1 on `backend`; with `dp`, this
// rank's images are x's rows of a global batch of `global_images`.
inline StepResult one_adam_step(Backend& backend, const ModelSpec& spec, const Tensor& x, const Tensor& y,
                                CommunicatorDataParallel* dp, int64_t global_images) {
  const int64_t n = x.shape()[0];
  OptimizerConfig adam;
  ForwardOptions training;
  training.training = true;
  const Graph forward = build_forward(spec, n, training);
  const Graph graph = differentiate(forward, forward.find("loss"), &adam);
  CompiledStep step(backend, graph, gradient_names(spec));
  if (dp) {
    dp->step_extension(spec).compiled(step.executable(), step.plan(), n, gradient_values(spec, step.plan()));
    dp->before_step(n, global_images);
  }
  step.zero_params_and_state();
  for (const auto& [name, tensor] : init_weights(spec, 1)) step.write(name, tensor);
  step.write("x", x);
  step.write("y", y);
  Tensor t(Shape{1}, DType::i32);
  t.i32()[0] = 1;
  step.write(optimizer_step_name(), t);
  step.execute();
  StepResult r;
  for (const ParamSpec& p : spec.params) {
    r.gradients.emplace(p.name, step.read(grad_name(p.name)));
    r.params.emplace(p.name, step.read(p.name));
  }
  return r;
}

}  // namespace parity::testing
