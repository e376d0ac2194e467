// graph/loss_scale.h — the two graphs of a training step with dynamic loss scaling (fp16, as
// torch.cuda.amp.GradScaler): gradients of the scaled loss, unscaled and checked for inf/NaN;
// and the optimizer update, compiled apart so that a step with a non-finite gradient is skipped.
#pragma once

#include <string>
#include <vector>

#include "parity/graph.h"

namespace parity {

// The gradients graph: `forward` plus
//   TEMP "loss.scaled" = loss * INPUT "loss_scale" (f32 [1]), the seed of autodiff;
//   per trained parameter p, TEMP "unscaled/<p>" = grad/<p> * INPUT "loss_scale.inverse" (f32,
//   so the division by the scale is exact for a power of two, as torch's unscale_);
//   TEMP "found_inf" (f32 [1]): the sum over every unscaled gradient element of (element * 0),
//   which is exactly 0 when all are finite and NaN when any is inf or NaN.
// The update graph: every PARAM and STATE of the gradients graph (so that it can own the
// persistent values the other graphs share), INPUT "grad/<p>" f32 per trained parameter, INPUT
// "optimizer.step", and append_optimizer's nodes (masks, clipping, updates). The caller runs
// the gradients graph, reads found_inf and, only when it is 0, copies unscaled/<p> into grad/<p>
// and runs the update: a skipped step leaves the parameters and optimizer state untouched.
struct LossScaledTraining {
  Graph gradients;
  Graph update;
  std::vector<std::string> params;  // the trained parameters (those the loss reaches), graph order
};
LossScaledTraining differentiate_loss_scaled(const Graph& forward, Value loss, const OptimizerConfig& optimizer);

inline const char* loss_scale_name() { return "loss_scale"; }
inline const char* loss_scale_inverse_name() { return "loss_scale.inverse"; }
inline const char* found_inf_name() { return "found_inf"; }
inline std::string unscaled_grad_name(const std::string& param) { return "unscaled/" + param; }

}  // namespace parity
