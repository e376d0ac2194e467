// parity/model.h — a model as data (input geometry and a layer list with PyTorch module names),
// the built-in zoo (seed-cnn, seed-cnn-112), forward graphs walked from the layers, and seeded
// initial weights identical on every backend.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "parity/data.h"
#include "parity/graph.h"
#include "parity/tensor.h"

namespace parity {

struct ParamSpec {
  std::string name;  // PyTorch state_dict key, e.g. "conv1.weight"
  Shape shape;
  int64_t fan_in;    // inputs per output unit: bounds the default initialisation
  // PyTorch's default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for conv and linear
  // weights and biases; ones and zeros for a batch norm's weight and bias.
  enum class Init { uniform, ones, zeros } init = Init::uniform;
};

// A model's state that is not trained (a PyTorch buffer): a batch norm's running_mean and
// running_var, f32, updated by the training steps, saved and loaded with the weights under
// their state_dict names; and its num_batches_tracked, an i64 scalar that parity does not use
// (momentum is set) and saves as the number of training steps taken.
struct BufferSpec {
  std::string name;  // e.g. "bn1.running_var"
  Shape shape;       // [] for a step count
  float initial = 0.0f;
  bool step_count = false;  // num_batches_tracked: i64, not a graph value
};

// What a layer computes. The names (layer_op_name) are those of the model description file
// that the LibTorch peer reads.
enum class LayerOp { conv2d, relu, maxpool2d, flatten, linear, tanh, relu6, add, dropout, avgpool2d, global_avgpool,
                     batchnorm2d };
const char* layer_op_name(LayerOp op);

// One layer, applied to the previous layer's output (the first to the input "x"), or to the
// outputs of earlier layers it names (`inputs`: a residual connection's add).
struct LayerSpec {
  LayerOp op = LayerOp::relu;
  // The layer's node and output value in parity's graph, e.g. "conv1", "relu1", "logits".
  std::string name;
  // conv2d, linear and batchnorm2d: the PyTorch module that owns the weights, so the
  // state_dict keys are "<module>.weight" and "<module>.bias" (e.g. "fc2" for the layer whose
  // output is "logits"), and a batch norm's "<module>.running_mean", ".running_var" and
  // ".num_batches_tracked".
  std::string module;
  int64_t features = 0;  // conv2d: output channels; linear: output features
  int kernel = 0;        // conv2d, maxpool2d, avgpool2d: square window
  int stride = 1;        // conv2d, maxpool2d, avgpool2d
  int padding = 0;       // conv2d: zero padding on every side
  int groups = 1;        // conv2d: groups == input channels is a depthwise convolution
  bool bias = true;      // conv2d: whether it has "<module>.bias"
  float p = 0.0f;        // dropout: the probability of zeroing, in [0, 1)
  // The names of the earlier layers (or "x") whose outputs this layer takes; empty: the
  // previous layer's. add takes two.
  std::vector<std::string> inputs;
};

struct ForwardOptions;

// A model's layers given as a graph instead of a LayerSpec list: a model read from a file
// (load_model of an ONNX file). build_forward adds them where it would walk `layers`.
class LayerGraph {
 public:
  virtual ~LayerGraph() = default;
  // Adds the layers to `b`, reading x [batch, C, H, W] (and `step`, the INPUT optimizer.step,
  // when training with dropout); returns what the loss reads: the graph's output, the input of
  // its final Softmax or LogSoftmax (whose cross-entropy is the loss's own), or the scores of the
  // graph's own SoftmaxCrossEntropyLoss (ModelSpec::loss then carries that op's settings).
  virtual Value add(GraphBuilder& b, Value x, const ForwardOptions& options, Value step) const = 0;
  // The initial value of every parameter and buffer (the file's initializers and constants).
  virtual std::map<std::string, Tensor> initial_values() const = 0;
  virtual bool has_dropout() const = 0;
  // The batch size the file fixes, or 0 when its batch dimension is symbolic.
  virtual int64_t fixed_batch() const = 0;
};

// The training and evaluation loss on "logits": softmax cross-entropy against "y", by default
// the mean over the batch. A model file whose graph ends in its own SoftmaxCrossEntropyLoss
// carries that op's reduction (mean or sum) and ignore_index here (parity_softmax_xent_params).
struct LossSpec {
  parity_reduction reduction = PARITY_REDUCTION_MEAN;
  std::optional<int32_t> ignore_index;
};

struct ModelSpec {
  std::string name;
  std::string description;
  int channels = 1, height = 28, width = 28;  // graph input geometry (NCHW without N)
  BatchGeometry geometry;                     // how a 28x28 Fashion-MNIST image becomes that input
  int num_classes = 10;
  // The last layer's output is named "logits", [batch, num_classes].
  std::vector<LayerSpec> layers;
  // Derived from the layers (layer_params, layer_buffers); the zoo fills them in.
  std::vector<ParamSpec> params;
  std::vector<BufferSpec> buffers;
  // Set for a model read from a file: `layers` is empty, and params and buffers list the
  // graph's PARAM and STATE values (their initial values come from the file, not a seed).
  std::shared_ptr<const LayerGraph> layer_graph;
  LossSpec loss;
};

std::vector<std::string> model_names();
// Throws Error(invalid_argument) listing the known models.
const ModelSpec& model_spec(const std::string& name);

// A built-in model by name, or a model file: a path ending in ".onnx" (read by the ONNX importer,
// onnx/onnx_model.h; its input geometry becomes the model's, Fashion-MNIST resized to it with its
// channel repeated). Error(invalid_argument) for an unknown name or a build without ONNX, and the
// importer's errors (naming node, op type, opset and attribute) for a file it cannot map.
ModelSpec load_model(const std::string& name_or_file);

// The parameters that spec.layers imply on spec's input geometry, in layer order (weight,
// then bias), with PyTorch's fan_in (a bias takes its weight's). Throws Error naming the layer
// whose shapes do not fit.
std::vector<ParamSpec> layer_params(const ModelSpec& spec);

// The buffers (batch norms' running statistics and step counts) the layers imply, in layer order.
std::vector<BufferSpec> layer_buffers(const ModelSpec& spec);

// The same layers on another input geometry (C x H x W, each >= 1): the parameters re-derived
// (a linear layer after a flatten takes the new feature count), the name saying so
// ("seed-cnn at 3x32x32"). Throws Error(invalid_argument) for a dimension < 1, and layer_params'
// error naming the layer whose shapes do not fit (an input too small for the pooling).
ModelSpec with_input(const ModelSpec& spec, int channels, int height, int width);

// How a forward graph is built: for evaluation (dropout is the identity) or for a training step
// (dropout draws its mask from `seed`, the INPUT "optimizer.step" and the sample's global index
// first_sample + n: a process holding part of a batch passes the index of its first sample).
struct ForwardOptions {
  bool training = false;
  uint64_t seed = 0;
  int64_t first_sample = 0;
};

// The forward graph for one batch size. Values: INPUT "x" f32 [batch,C,H,W], INPUT "y" i32
// [batch], PARAMs named as in spec.params, one TEMP per layer (named as the layer; a max-pool
// layer's argmax indices are "<name>.indices"; an evaluation graph's dropout layer has none: its
// name stands for its input), and TEMP "loss" (cross-entropy of "logits" as spec.loss says:
// the mean over the batch unless a model file's own loss sets sum or ignore_index; [1]) and
// "correct" (number of rows whose argmax is the label, [1]); for training with dropout also
// INPUT "optimizer.step" (i32 [1], 1-based).
Graph build_forward(const ModelSpec& spec, int64_t batch, const ForwardOptions& options = {});

// The precision policy of a training or evaluation graph (model/autocast: PyTorch's autocast
// mapped onto parity's ops; README "--precision"): f32 runs everything in float32; bf16 and f16
// run CONV2D and LINEAR on half copies of their input and weight (f32 master weights, f32 bias
// and accumulation), the dtype-preserving ops in their input's dtype and the rest in float32.
// f16 training adds dynamic loss scaling (TrainOptions::precision).
enum class Precision { f32, bf16, f16 };
// "f32", "bf16", "fp16" (the spelling of `parity train --precision`).
const char* precision_name(Precision p);
// Parses "f32", "bf16", "fp16" (and "f16"); anything else is Error(invalid_argument) listing them.
Precision parse_precision(const std::string& text);
// The half dtype a precision computes CONV2D and LINEAR in; f32 for Precision::f32.
DType compute_dtype(Precision p);

// Whether any layer of the model is a dropout (its training graphs then read optimizer.step).
bool has_dropout(const ModelSpec& spec);

// PyTorch's default initialisation, drawn from a counter-based RNG keyed by (seed, parameter
// name): every conv and linear weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
// (kaiming-uniform with a = sqrt(5) reduces to that bound for weights), batch norms' weights 1
// and biases 0; and the f32 buffers at their initial values (running_mean 0, running_var 1).
std::map<std::string, Tensor> init_weights(const ModelSpec& spec, uint64_t seed);

}  // namespace parity
