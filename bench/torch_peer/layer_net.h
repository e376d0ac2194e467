// bench/torch_peer/layer_net.h — the LibTorch peer's model: read from the description file that
// parity writes (model/model_description.h) and built as torch::nn modules with the same
// PyTorch state_dict names, so the peer holds no network of its own.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace parity::torch_peer {

struct LayerDescription {
  std::string op;      // conv2d, relu, tanh, relu6, maxpool2d, avgpool2d, global_avgpool, batchnorm2d, flatten,
                       // linear, add, dropout
  std::string name;    // parity's value name of the layer's output
  std::string module;  // conv2d, linear, batchnorm2d: the module owning "<module>.weight" (and ".bias", buffers)
  int64_t in = 0, out = 0;  // conv2d: channels; linear: features; batchnorm2d: channels (both)
  int64_t kernel = 0, stride = 1, padding = 0;
  int64_t groups = 1;  // conv2d
  bool bias = true;    // conv2d
  std::vector<std::string> inputs;  // earlier layers' names (or "x"); empty: the previous layer
  double p = 0;                     // dropout
  uint32_t node_key = 0;            // dropout: parity's mask stream (ops/kernels/dropout.h)
};

// How dropout layers behave in the next forward: the identity (evaluation), or parity's mask of
// training step `step` (1-based) under `seed`, drawn by ops/kernels/dropout.h for samples
// first_sample.. (the peer applies parity's mask, not its own, so the runs stay comparable).
struct DropoutClock {
  bool training = false;
  uint64_t seed = 0;
  int32_t step = 1;
  int64_t first_sample = 0;
};

struct ModelDescription {
  std::string name;
  int64_t channels = 0, height = 0, width = 0, num_classes = 0;
  std::vector<LayerDescription> layers;
};

// Reads and checks a description file; a bad file throws std::runtime_error naming the path,
// the layer (index and name) and the field.
ModelDescription read_model_file(const std::string& path);

// Every layer's output in order (its gradient retained for backward) and each max-pool's argmax
// indices as "<name>.indices": what `--mode step` compares under parity's names.
struct Trace {
  std::vector<std::pair<std::string, torch::Tensor>> values;
  std::map<std::string, torch::Tensor> indices;
};

class LayerNetImpl : public torch::nn::Module {
 public:
  explicit LayerNetImpl(ModelDescription description);
  // The logits; with `trace`, every intermediate is kept in it.
  torch::Tensor forward(torch::Tensor x, Trace* trace = nullptr);
  const ModelDescription& description() const { return description_; }
  void set_dropout(const DropoutClock& clock) { dropout_ = clock; }

 private:
  // Registers `module` under a dotted path ("layer1.conv1"): libtorch refuses dots in a name,
  // so each prefix is a plain container module, as nested nn.Modules are in Python, and the
  // state_dict keys come out dotted as PyTorch's.
  template <class Holder>
  Holder register_path(const std::string& path, Holder module) {
    const size_t dot = path.rfind('.');
    if (dot == std::string::npos) return register_module(path, module);
    return container(path.substr(0, dot))->register_module(path.substr(dot + 1), module);
  }
  std::shared_ptr<torch::nn::Module> container(const std::string& path);

  ModelDescription description_;
  DropoutClock dropout_;
  std::map<std::string, std::shared_ptr<torch::nn::Module>> containers_;
  std::vector<torch::nn::Conv2d> convs_;     // per layer; empty handle unless conv2d
  std::vector<torch::nn::Linear> linears_;  // per layer; empty handle unless linear
  std::vector<torch::nn::BatchNorm2d> norms_;  // per layer; empty handle unless batchnorm2d
};
TORCH_MODULE(LayerNet);

// Copies parity's weights (a safetensors file) into the model's parameters and batch norms'
// running statistics (num_batches_tracked, which nothing reads with momentum set, may be
// absent); throws naming the file and the tensor that is missing or has the wrong shape.
void load_weights(LayerNet& model, const std::string& path);

// The model of `--model-file PATH`; `expected_name`, when not empty (`--model NAME`), must be
// the file's model.
LayerNet make_layer_net(const std::string& model_file, const std::string& expected_name);

}  // namespace parity::torch_peer
