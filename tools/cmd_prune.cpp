// tools/cmd_prune.cpp — `parity prune`: magnitude pruning of saved weights (model/pruning.h),
// written with their masks atomically, and the report: sparsity per weight and overall, and the
// test accuracy before and after pruning.
#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "model/pruning.h"
#include "parity/parity.h"
#include "tools/commands.h"
#include "tools/threads_option.h"

namespace parity::tools {
namespace {

// Test accuracy of saved weights (run_evaluation, as `parity eval`), or the reason there is none
// when the test set cannot be read (no data installed): pruning does not need it.
std::optional<EvalResult> evaluate_if_possible(const std::string& model, const std::string& backend, int threads,
                                               const std::string& weights, const std::string& data, int64_t batch,
                                               std::string& why_not) {
  try {
    return run_evaluation(model, backend, threads, weights, data, batch);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::io) throw;
    why_not = e.what();
    return std::nullopt;
  }
}

}  // namespace

void add_prune_command(CLI::App& app, std::function<int()>& run) {
  CLI::App* cmd = app.add_subcommand(
      "prune", "zero the smallest-magnitude conv and linear weights and write them with their masks (<weight>.mask, u8)");
  struct PruneCommandOptions {
    std::string model = "seed-cnn", weights, save, scope = "global", structured, backend, data;
    double sparsity = 0.5;
    int threads = 0;
    int64_t batch = 64;
  };
  auto o = std::make_shared<PruneCommandOptions>();
  add_model_option(*cmd, o->model);
  cmd->add_option("--weights", o->weights, "safetensors with PyTorch's names, or a checkpoint of parity train --save")
      ->required();
  cmd->add_option("--sparsity", o->sparsity, "fraction of the weights (or channels) zeroed, in [0, 1)")
      ->capture_default_str();
  cmd->add_option("--scope", o->scope,
                  "global: one magnitude ranking over every conv and linear weight; layer: the fraction of each weight")
      ->capture_default_str();
  cmd->add_option("--structured", o->structured,
                  "channels: prune whole output channels ranked by their L2 norm (default: single elements by |w|)");
  cmd->add_option("--save", o->save, "the safetensors file to write: the weights and one <weight>.mask (u8) per weight")
      ->required();
  add_backend_option(*cmd, o->backend);
  cmd->add_option("--data", o->data, "folder with t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] for the "
                                     "accuracy before and after (default: Fashion-MNIST in " + default_data_folder() + ")");
  cmd->add_option("--batch", o->batch, "images per evaluation batch")->capture_default_str();
  add_threads_option(*cmd, o->threads, "threads for the cpu backend (0: all)");
  cmd->callback([&run, o] {
    run = [o] {
      PruneOptions options;
      options.sparsity = o->sparsity;
      if (o->scope != "global" && o->scope != "layer")
        throw Error(ErrorKind::invalid_argument, fmt::format("--scope must be global or layer, got '{}'", o->scope));
      options.scope = o->scope == "layer" ? PruneOptions::Scope::layer : PruneOptions::Scope::global;
      if (!o->structured.empty() && o->structured != "channels")
        throw Error(ErrorKind::invalid_argument,
                    fmt::format("--structured must be channels (whole output channels by L2 norm), got '{}'", o->structured));
      options.structured_channels = o->structured == "channels";
      if (!(options.sparsity >= 0.0 && options.sparsity < 1.0))
        throw Error(ErrorKind::invalid_argument,
                    fmt::format("--sparsity must be in [0, 1) (the fraction of weights zeroed), got {}", options.sparsity));

      const ModelSpec spec = load_model(o->model);
      TensorFile input = read_safetensors(o->weights);
      PruneResult result = magnitude_prune(spec, input.tensors, options);
      // The model's weights and buffers (not a checkpoint's optimizer state), and the masks.
      TensorFile output;
      for (const ParamSpec& p : spec.params) {
        auto it = input.tensors.find(p.name);
        if (it == input.tensors.end())
          throw Error(ErrorKind::data, fmt::format("{}: missing tensor '{}' (expected f32 {})", o->weights, p.name, p.shape.str()));
        output.tensors.emplace(p.name, it->second);
      }
      for (const BufferSpec& b : spec.buffers)
        if (input.tensors.count(b.name)) output.tensors.emplace(b.name, input.tensors.at(b.name));
      for (auto& [name, mask] : result.masks) output.tensors.emplace(name, std::move(mask));
      output.metadata = {{"format", "parity-pruned-1"},
                         {"model", spec.name},
                         {"sparsity", fmt::format("{}", options.sparsity)},
                         {"scope", o->scope},
                         {"structured", options.structured_channels ? "channels" : "none"}};
      write_safetensors(o->save, output);

      fmt::print("pruned {} of model {}: sparsity {} {}, {}\n", o->weights, spec.name, options.sparsity, o->scope,
                 options.structured_channels ? "output channels by L2 norm" : "elements by |w|");
      size_t width = 7;
      for (const PrunedTensor& t : result.tensors) width = std::max(width, t.name.size());
      for (const PrunedTensor& t : result.tensors)
        fmt::print("  {:<{}}  {:>9}/{:<9} {:6.2f}%\n", t.name, width, t.pruned, t.total, 100.0 * t.pruned / t.total);
      fmt::print("  {:<{}}  {:>9}/{:<9} {:6.2f}%\n", "overall", width, result.pruned, result.total,
                 100.0 * result.pruned / result.total);
      fmt::print("wrote {}: {} tensors and {} masks (<weight>.mask, u8: 1 kept, 0 pruned)\n", o->save,
                 output.tensors.size() - result.masks.size(), result.masks.size());

      std::string why_not;
      const auto before = evaluate_if_possible(o->model, o->backend, o->threads, o->weights, o->data, o->batch, why_not);
      const auto after =
          before ? evaluate_if_possible(o->model, o->backend, o->threads, o->save, o->data, o->batch, why_not) : std::nullopt;
      if (before && after)
        fmt::print("test accuracy: before pruning {:.2f}% (loss {:.4f}), after {:.2f}% (loss {:.4f}) ({} images)\n",
                   100 * before->accuracy, before->loss, 100 * after->accuracy, after->loss, after->images);
      else
        fmt::print("test accuracy: not evaluated ({})\n", why_not);
      return 0;
    };
  });
}

}  // namespace parity::tools
