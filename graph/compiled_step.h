// graph/compiled_step.h — the one executor of a compiled step: a graph lowered to a Plan with
// chosen values kept, compiled on a backend, its values written and read by name or index.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "parity/backend.h"
#include "parity/graph.h"
#include "parity/tensor.h"

namespace parity {

struct CompiledStepOptions {
  std::vector<std::string> tight_layout;  // values placed back to back in this order (Plan's tight layout)
  bool poison_outputs = false;            // CompileOptions::poison_outputs: unwritten elements show up
  Executable* share_with = nullptr;       // an executable of the same backend whose PARAM/STATE storage this one shares
};

// The path every caller takes (trainer, checks, bench): lower `graph` keeping `keep`, compile it
// on a backend that supports every node, then write inputs, execute and read values back.
class CompiledStep {
 public:
  // Lowers the graph only; compile() puts it on a backend.
  CompiledStep(const Graph& graph, const std::vector<std::string>& keep, const CompiledStepOptions& options = {});
  // Lowers and compiles: throws Error(backend) naming the first node `backend` cannot run.
  CompiledStep(Backend& backend, const Graph& graph, const std::vector<std::string>& keep,
               const CompiledStepOptions& options = {});

  // Whether `backend` runs every node of the plan; `why` gets the backend's reason for the
  // first node it does not.
  bool supported_by(const Backend& backend, std::string* why) const;
  // Compiles on `backend` (supported_by must hold: otherwise throws Error(backend) naming the node).
  void compile(Backend& backend);

  const Plan& plan() const { return plan_; }
  Executable& executable() { return *exe_; }
  const Executable& executable() const { return *exe_; }
  int32_t value(const std::string& name) const { return plan_.value(name); }

  // Every PARAM and STATE value set to zero bytes (a fresh model and optimizer before weights load).
  void zero_params_and_state();
  void write(int32_t value, const void* host, size_t bytes) { exe_->write(value, host, bytes); }
  void write(int32_t value, const Tensor& t) { exe_->write(value, t.data(), t.nbytes()); }
  void write(const std::string& name, const Tensor& t) { write(value(name), t); }
  void execute() { exe_->execute(); }
  void read(int32_t value, void* host, size_t bytes) const { exe_->read(value, host, bytes); }
  // A value as a tensor of the plan's shape and dtype.
  Tensor read(int32_t value) const;
  Tensor read(const std::string& name) const { return read(value(name)); }

 private:
  Plan plan_;
  CompiledStepOptions options_;
  std::unique_ptr<Executable> exe_;
};

}  // namespace parity
