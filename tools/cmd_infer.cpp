// tools/cmd_infer.cpp — `parity infer`: one forward pass of a model on tensors from a safetensors
// file, every output written to another, so a model can be compared with another framework.
#include <fmt/format.h>

#include "parity/inference.h"
#include "parity/safetensors.h"
#include "tools/commands.h"
#include "tools/threads_option.h"

namespace parity::tools {

void add_infer_command(CLI::App& app, std::function<int()>& run) {
  CLI::App* cmd = app.add_subcommand("infer", "one forward pass on tensors from a file; every graph output to a file");
  struct InferCommand {
    InferenceOptions options;
    std::string input, output;
  };
  auto o = std::make_shared<InferCommand>();
  add_backend_option(*cmd, o->options.backend);
  add_model_option(*cmd, o->options.model)->required();
  cmd->add_option("--weights", o->options.weights,
                  "safetensors with parity's names (default: an ONNX file's own; a built-in model's from --seed)");
  cmd->add_option("--seed", o->options.seed, "a built-in model without --weights: seed of its initial weights")
      ->capture_default_str();
  cmd->add_option("--input", o->input, "safetensors holding each graph input under its name (a built-in model: x)")
      ->required();
  cmd->add_option("--output", o->output, "safetensors to write every graph output to, under its name (written atomically)")
      ->required();
  add_threads_option(*cmd, o->options.threads, "threads for the cpu backend (0: all)");
  cmd->callback([&run, o] {
    run = [o] {
      TensorFile in = read_safetensors(o->input);
      TensorFile out;
      out.tensors = run_inference(o->options, in.tensors);
      out.metadata["model"] = o->options.model;
      out.metadata["backend"] = o->options.backend;
      write_safetensors(o->output, out);
      for (const auto& [name, t] : out.tensors)
        fmt::print("{}: {} {}\n", name, to_string(t.dtype()), t.shape().str());
      fmt::print("wrote {}\n", o->output);
      return 0;
    };
  });
}

}  // namespace parity::tools
