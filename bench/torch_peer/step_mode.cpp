// bench/torch_peer/step_mode.cpp — `parity-torch-peer --mode step`: PyTorch's side of
// `parity check model --against torch`. From parity's weights and batch it runs N Adam steps
// of the same model and writes every value parity can compare, under parity's value names:
// forward activations (conv1, relu1, pool1, pool1.indices, ..., logits, loss), their gradients
// (grad/<value>), the parameter gradients, and after the first step the updated weights and
// Adam's state (optimizer.<param>.exp_avg, .exp_avg_sq) and batch norms' running statistics; for
// every step k the loss (loss@k) and the weights after it (step<k>/<param>). Dropout layers apply
// parity's masks of (--seed, step).
#include <cstdio>
#include <string>

#include "bench/torch_peer/step_mode.h"

#include "bench/torch_peer/layer_net.h"
#include "bench/torch_peer/tensor_file.h"

namespace parity::torch_peer {

int run_step_mode(int argc, char** argv) {
  std::string model_name, model_file, weights_path, input_path, out_path;
  int steps = 1, threads = 1;
  uint64_t seed = 0;  // parity's dropout seed: the peer applies parity's masks
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) throw std::runtime_error("missing value after " + a);
    const std::string v = argv[++i];
    if (a == "--model") model_name = v;
    else if (a == "--model-file") model_file = v;
    else if (a == "--weights") weights_path = v;
    else if (a == "--input") input_path = v;
    else if (a == "--out") out_path = v;
    else if (a == "--steps") steps = std::stoi(v);
    else if (a == "--threads") threads = std::stoi(v);
    else if (a == "--seed") seed = std::stoull(v);
    else throw std::runtime_error("unknown option " + a + " for --mode step");
  }
  if (model_file.empty() || weights_path.empty() || input_path.empty() || out_path.empty())
    throw std::runtime_error("--mode step needs --model-file, --weights, --input and --out");
  if (steps < 1 || threads < 1) throw std::runtime_error("--steps and --threads must be >= 1");
  torch::set_num_threads(threads);
  LayerNet model = make_layer_net(model_file, model_name);
  load_weights(model, weights_path);
  const auto batch = read_weights(input_path);
  const torch::Tensor x = batch.at("x");
  const torch::Tensor y = batch.at("y").to(torch::kInt64);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-3));

  std::map<std::string, torch::Tensor> out;
  for (int step = 1; step <= steps; ++step) {
    optimizer.zero_grad();
    model->set_dropout(DropoutClock{true, seed, step, 0});
    Trace trace;
    torch::Tensor logits = model->forward(x, &trace);
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
    loss.backward();
    out["loss@" + std::to_string(step)] = loss.detach().reshape({1});
    if (step == 1) {
      for (auto& [name, t] : trace.values) {
        out[name] = t.detach();
        out["grad/" + name] = t.grad();
      }
      out["loss"] = loss.detach().reshape({1});
      for (auto& [name, t] : trace.indices) out[name] = t;
      for (auto& item : model->named_parameters()) out["grad/" + item.key()] = item.value().grad().clone();
    }
    optimizer.step();
    if (step == 1)  // batch norms' running statistics after the first step (num_batches_tracked is not parity's)
      for (auto& item : model->named_buffers())
        if (item.value().scalar_type() == torch::kFloat32) out[item.key()] = item.value().detach().clone();
    for (auto& item : model->named_parameters()) {
      out["step" + std::to_string(step) + "/" + item.key()] = item.value().detach().clone();
      if (step != 1) continue;
      out[item.key()] = item.value().detach().clone();
      auto& state = static_cast<torch::optim::AdamParamState&>(
          *optimizer.state().at(c10::guts::to_string(item.value().unsafeGetTensorImpl())));
      out["optimizer." + item.key() + ".exp_avg"] = state.exp_avg().clone();
      out["optimizer." + item.key() + ".exp_avg_sq"] = state.exp_avg_sq().clone();
    }
  }
  write_tensors(out_path, out);
  return 0;
}

}  // namespace parity::torch_peer
