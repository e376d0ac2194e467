// tools/cmd_export.cpp — `parity export`: a built-in model's evaluation graph, with seeded or
// saved weights, written as an ONNX file (onnx/onnx_export.h) atomically; optionally the model
// description and the weights that bench/torch_reference/export_onnx.py needs for PyTorch's export.
#include <fmt/format.h>

#include "model/model_description.h"
#include "onnx/onnx_export.h"
#include "parity/parity.h"
#include "tools/commands.h"
#include "util/atomic_file.h"

namespace parity::tools {

void add_export_command(CLI::App& app, std::function<int()>& run) {
  CLI::App* cmd = app.add_subcommand("export", "write a built-in model's inference graph as an ONNX file (opset 13)");
  struct ExportOptions {
    std::string model = "seed-cnn", weights, onnx, description, save_weights;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<ExportOptions>();
  add_model_option(*cmd, o->model);
  CLI::Option* weights = cmd->add_option(
      "--weights", o->weights, "safetensors with PyTorch's names, or a checkpoint (default: the initial weights of --seed)");
  cmd->add_option("--seed", o->seed, "seed of the initial weights, when no --weights is given")
      ->capture_default_str()
      ->excludes(weights);
  cmd->add_option("--onnx", o->onnx, "the ONNX file to write")->required();
  cmd->add_option("--description", o->description,
                  "also write the model description (JSON) that bench/torch_reference/export_onnx.py builds the "
                  "PyTorch module from");
  cmd->add_option("--save-weights", o->save_weights, "also write the exported weights here as safetensors");
  cmd->callback([&run, o] {
    run = [o] {
      const ModelSpec& spec = model_spec(o->model);
      std::map<std::string, Tensor> tensors;
      std::string source;
      if (o->weights.empty()) {
        tensors = init_weights(spec, o->seed);
        source = fmt::format("the initial weights of seed {}", o->seed);
      } else {
        tensors = read_safetensors(o->weights).tensors;
        source = o->weights;
      }
      // The batch is symbolic in the file; the graph is built for one sample.
      const Graph graph = build_forward(spec, 1);
      OnnxExportOptions options;
      options.graph_name = spec.name;
      options.weights_source = source;
      const OnnxExported exported = export_onnx(graph, tensors, options);
      write_file_atomically(o->onnx, exported.bytes);
      fmt::print("wrote {}: model {} at opset {}, input x [batch,{},{},{}], output logits [batch,{}], {} nodes, "
                 "{} initializers named as parity's parameters and buffers, weights: {}\n",
                 o->onnx, spec.name, kOnnxExportOpset, spec.channels, spec.height, spec.width, spec.num_classes,
                 exported.nodes, exported.initializers.size(), source);
      if (!o->description.empty()) {
        write_model_description(spec, o->description);
        fmt::print("wrote {}: the model description\n", o->description);
      }
      if (!o->save_weights.empty()) {
        TensorFile file;
        for (const std::string& name : exported.initializers) file.tensors.emplace(name, tensors.at(name));
        write_safetensors(o->save_weights, file);
        fmt::print("wrote {}: the {} exported tensors\n", o->save_weights, file.tensors.size());
      }
      return 0;
    };
  });
}

}  // namespace parity::tools
