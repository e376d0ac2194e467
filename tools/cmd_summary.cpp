// tools/cmd_summary.cpp — `parity summary`: the layer table of a model (model/model_summary.h)
// printed as torchinfo and Keras do, its JSON, and its graph as Graphviz DOT or rendered SVG.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include <unistd.h>

#include <fmt/format.h>

#include "graph/dot.h"
#include "model/model_summary.h"
#include "parity/parity.h"
#include "tools/commands.h"
#include "util/atomic_file.h"
#include "util/process.h"

namespace parity::tools {
namespace {

struct SummaryOptions {
  std::string model = "seed-cnn", input, backend, json, dot, svg;
  int64_t batch = 64;
  bool train = false;
};

std::string si(double v, const char* unit = "") {
  if (v >= 1e12) return fmt::format("{:.2f}T{}", v / 1e12, unit);
  if (v >= 1e9) return fmt::format("{:.2f}G{}", v / 1e9, unit);
  if (v >= 1e6) return fmt::format("{:.2f}M{}", v / 1e6, unit);
  if (v >= 1e3) return fmt::format("{:.2f}k{}", v / 1e3, unit);
  return fmt::format("{:.0f}{}", v, unit);
}

std::string bytes(int64_t b) {
  if (b >= (int64_t{1} << 30)) return fmt::format("{:.2f} GiB", double(b) / double(int64_t{1} << 30));
  if (b >= (int64_t{1} << 20)) return fmt::format("{:.2f} MiB", double(b) / double(1 << 20));
  if (b >= 1024) return fmt::format("{:.1f} KiB", double(b) / 1024);
  return fmt::format("{} B", b);
}

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

void print_table(const ModelSummary& s, const BackendMemory& memory, const OptimizerConfig& opt) {
  fmt::print("model {}: batch {}, input {}\n\n", s.model, s.batch, s.input.str());
  const std::string rule(100, '-');
  fmt::print("{:<10} {:<13} {:<18} {:>10} {:>12} {:>12} {:>14}\n", "layer", "op", "output shape", "params",
             "FLOPs fwd", "FLOPs bwd", "activations");
  fmt::print("{}\n", rule);
  for (const LayerSummary& l : s.layers)
    fmt::print("{:<10} {:<13} {:<18} {:>10} {:>12} {:>12} {:>14}\n", l.name, l.op, l.output.str(),
               with_commas(l.params), si(l.flops_forward), l.flops_backward > 0 ? si(l.flops_backward) : "-",
               bytes(l.activation_bytes));
  fmt::print("{}\n", rule);
  fmt::print("{:<43} {:>10} {:>12} {:>12} {:>14}\n", "total", with_commas(s.params), si(s.flops_forward),
             si(s.flops_backward), bytes(s.activation_bytes));
  fmt::print("\nparameters: {} ({}, float32)\n", with_commas(s.params), bytes(s.param_bytes));
  fmt::print("FLOPs per training step: {} forward + {} backward + {} {} update = {} ({} per image)\n",
             si(s.flops_forward), si(s.flops_backward), si(s.flops_optimizer),
             optimizer_name(opt.kind),
             si(s.flops_forward + s.flops_backward + s.flops_optimizer),
             si((s.flops_forward + s.flops_backward) / double(s.batch)));
  fmt::print("  ({})\n", flop_convention());
  fmt::print("training step: {} nodes; plan arena {} (inputs and temporaries, reused along the step) + {} of "
             "parameters and optimizer state = {}\n",
             s.training_nodes, bytes(s.arena_bytes), bytes(s.persistent_bytes), bytes(s.arena_bytes + s.persistent_bytes));
  if (memory.available)
    fmt::print("backend {}: the compiled training step holds {} (arena, workspaces and persistent values)\n",
               memory.backend, bytes(memory.bytes));
  else if (memory.planned)
    fmt::print("backend {}: unavailable here ({}); planned without a device, the compiled training step would "
               "hold at most {} of device memory and {} of host memory (what only the device settles, such as a "
               "convolution's workspace, counted at its limit)\n",
               memory.backend, memory.why, bytes(memory.planned->device_bytes), bytes(memory.planned->host_bytes));
  else
    fmt::print("backend {}: unavailable, no compiled size: {}\n", memory.backend, memory.why);
}

// Renders DOT text with Graphviz's `dot -Tsvg` (no shell); throws with a clear message when dot
// is not installed or fails.
std::string render_svg(const std::string& dot_text) {
  std::string temp = (std::filesystem::temp_directory_path() / "parity-summary-XXXXXX").string();
  const int fd = ::mkstemp(temp.data());
  if (fd < 0) throw Error(ErrorKind::io, fmt::format("summary: cannot create a temporary file in {}", std::filesystem::temp_directory_path().string()));
  const bool written = ::write(fd, dot_text.data(), dot_text.size()) == static_cast<ssize_t>(dot_text.size());
  ::close(fd);
  struct Remove {
    std::string path;
    ~Remove() { std::remove(path.c_str()); }
  } remove_temp{temp};
  if (!written) throw Error(ErrorKind::io, fmt::format("summary: cannot write the temporary file {}", temp));
  ProcessResult r = run_process({"dot", "-Tsvg", temp});
  if (!r.started)
    throw Error(ErrorKind::invalid_argument,
                "--svg needs Graphviz, which is not installed: `dot` is not on PATH (Debian: apt-get install graphviz); "
                "--dot writes the graph without it");
  if (r.exit_status != 0 || r.out.empty())
    throw Error(ErrorKind::io, fmt::format("summary: `dot -Tsvg` failed (exit status {})", r.exit_status));
  return r.out;
}

// `--input CxHxW`: three whole numbers >= 1 joined by 'x'; the model's layers on that geometry.
ModelSpec model_at_input(const ModelSpec& spec, const std::string& text) {
  int dims[3] = {0, 0, 0};
  size_t at = 0;
  for (int i = 0; i < 3; ++i) {
    const size_t end = i < 2 ? text.find('x', at) : text.size();
    const std::string part = end == std::string::npos ? std::string() : text.substr(at, end - at);
    const bool digits = !part.empty() && part.size() <= 6 &&
                        part.find_first_not_of("0123456789") == std::string::npos;
    if (!digits || std::stoi(part) < 1)
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("--input '{}' must be CxHxW: channels, height and width, whole numbers >= 1 joined by "
                              "'x' (for example 3x32x32)",
                              text));
    dims[i] = std::stoi(part);
    at = end + 1;
  }
  return with_input(spec, dims[0], dims[1], dims[2]);
}

int run_summary(const SummaryOptions& o) {
  if (o.batch < 1) throw Error(ErrorKind::invalid_argument, fmt::format("--batch must be >= 1, got {}", o.batch));
  if (o.train && o.dot.empty() && o.svg.empty())
    throw Error(ErrorKind::invalid_argument, "--train applies to the graph of --dot or --svg; give one of them");
  const ModelSpec spec = o.input.empty() ? load_model(o.model) : model_at_input(load_model(o.model), o.input);
  const OptimizerConfig opt;  // the Trainer's default: adam
  const ModelSummary s = summarize_model(spec, o.batch, opt);
  const BackendMemory memory = training_step_memory(spec, o.batch, o.backend, opt);
  print_table(s, memory, opt);
  if (!o.json.empty()) {
    write_file_atomically(o.json, model_summary_json(s, &memory));
    fmt::print("wrote {}\n", o.json);
  }
  if (!o.dot.empty() || !o.svg.empty()) {
    const Graph graph = o.train ? build_training_step(spec, o.batch, opt) : build_forward(spec, o.batch);
    const std::string title =
        fmt::format("{} batch {}: {}", spec.name, o.batch, o.train ? "training step (forward, backward, adam)" : "forward");
    const std::string dot = graph_dot(graph, title);
    if (!o.dot.empty()) {
      write_file_atomically(o.dot, dot);
      fmt::print("wrote {}\n", o.dot);
    }
    if (!o.svg.empty()) {
      write_file_atomically(o.svg, render_svg(dot));
      fmt::print("wrote {}\n", o.svg);
    }
  }
  return 0;
}

}  // namespace

void add_summary_command(CLI::App& app, std::function<int()>& run) {
  CLI::App* cmd = app.add_subcommand(
      "summary", "a model's layer table (output shapes, parameters, FLOPs, activation memory) and the memory of its "
                 "training step; its graph as DOT or SVG");
  auto o = std::make_shared<SummaryOptions>();
  add_model_option(*cmd, o->model);
  cmd->add_option("--batch", o->batch, "images per step")->capture_default_str();
  cmd->add_option("--input", o->input, "CxHxW: the model's layers on another input geometry, e.g. 3x32x32 "
                                       "(default: the model's own)");
  add_backend_option(*cmd, o->backend);
  cmd->add_option("--json", o->json, "also write the table and totals as JSON here");
  cmd->add_option("--dot", o->dot, "write the graph as Graphviz DOT here (the forward graph; --train: the training step)");
  cmd->add_flag("--train", o->train, "--dot/--svg draw the whole training step: gradients and optimizer updates");
  cmd->add_option("--svg", o->svg, "render the graph to SVG here with Graphviz's dot (must be installed)");
  cmd->callback([&run, o] { run = [o] { return run_summary(*o); }; });
}

}  // namespace parity::tools
