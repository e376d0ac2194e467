/* parity/op_list.h — every op of the plugin ABI, declared once: PARITY_OP_LIST(X) calls
 * X(ID, name, inputs, outputs, builder) per op, in enum order. It feeds the parity_op enum
 * (PARITY_OP_<ID>), the op names and arity (parity_op_info_of, parity_op_name: "<ID>"), the table of op rules in libparity (ops/: `<name>_rule`) and, where
 * `builder` is 1, a GraphBuilder method `<name>(inputs..., node name)` (ops with one output and
 * no params, or whose zero params are their plain form, as softmax_xent's mean; the others, and
 * the forms with params, have hand-written methods in parity/graph.h, or none).
 *
 * Inputs and outputs of each op, in the order a node stores them ("state" marks values an op
 * updates in place, listed as inputs, not outputs):
 *   CONV2D             in: x[N,C,H,W], w[K,C/G,R,S], b[K]   out: y[N,K,P,Q]
 *   CONV2D_BWD_DATA    in: dy[N,K,P,Q], w[K,C/G,R,S]        out: dx[N,C,H,W]
 *   CONV2D_BWD_WEIGHT  in: x[N,C,H,W], dy[N,K,P,Q]          out: dw[K,C/G,R,S], db[K]
 *                      (G = params.conv2d.groups; b and db are optional, below; ABI 5)
 *   RELU               in: x                                out: y
 *   RELU_BWD           in: y (the forward output), dy       out: dx   (dx = y > 0 ? dy : 0)
 *   MAXPOOL2D          in: x[N,C,H,W]                       out: y[N,C,P,Q], idx[N,C,P,Q] i32:
 *                                                           flat index h*W+w of the max within its (n,c) plane;
 *                                                           padding, dilation, ceil_mode (ABI 5): a window
 *                                                           with no input element gives y 0, idx -1
 *   MAXPOOL2D_BWD      in: dy[N,C,P,Q], idx[N,C,P,Q]        out: dx[N,C,H,W] (idx -1: that dy goes nowhere)
 *   RESHAPE            in: x                                out: y (same elements, new shape)
 *   LINEAR             in: x[N,I], w[O,I], b[O]             out: y[N,O] = x w^T + b
 *   LINEAR_BWD_DATA    in: dy[N,O], w[O,I]                  out: dx[N,I]
 *   LINEAR_BWD_WEIGHT  in: x[N,I], dy[N,O]                  out: dw[O,I], db[O]
 *   SOFTMAX_XENT       in: logits[N,K], labels[N] i32       out: loss[1] = mean_n -log softmax(logits_n)[label_n];
 *                                                           ABI 7: params.softmax_xent's reduction (mean, sum: [1];
 *                                                           none: loss[N]) and ignore_index (rows left out; plugin.h)
 *   SOFTMAX_XENT_BWD   in: logits[N,K], labels[N] i32, dloss[1] (none: dloss[N])   out: dlogits[N,K]
 *   ARGMAX             in: x[N,K]                           out: idx[N] i32 (first maximum)
 *   ACCURACY           in: logits[N,K], labels[N] i32       out: correct[1] f32 = count of argmax == label
 *   ADD                in: a, b                             out: c = a + b (gradient accumulation; ABI 6: with
 *                                                           broadcasting, below)
 *   ADAM_STEP          in: state param, grad, state m, state v, step[1] i32 (1-based)   out: none
 *   SGD_STEP           in: state param, grad, state velocity, step[1] i32 (1-based; ABI 5: the lr schedule's clock)   out: none
 *   FILL               in: none                             out: y[1] f32 = params.fill.value
 *                                                           (the autodiff seed dL/dL = 1)
 *   SIGMOID            in: x                                out: y = 1 / (1 + exp(-x))         (ABI 2)
 *   SIGMOID_BWD        in: y (the forward output), dy       out: dx = dy * y * (1 - y)         (ABI 2)
 *   TANH               in: x                                out: y = tanh(x)                   (ABI 4)
 *   TANH_BWD           in: y (the forward output), dy       out: dx = dy * (1 - y^2)           (ABI 4)
 *   LEAKY_RELU         in: x                                out: y = x > 0 ? x : x * params.leaky_relu.negative_slope  (ABI 4)
 *   LEAKY_RELU_BWD     in: x (the forward input), dy        out: dx = x > 0 ? dy : dy * negative_slope (x == 0: slope) (ABI 4)
 *   GELU               in: x                                out: y = x * Phi(x) = x/2 * (1 + erf(x / sqrt 2))  (ABI 4)
 *   GELU_BWD           in: x (the forward input), dy        out: dx = dy * (Phi(x) + x * phi(x))  (ABI 4)
 *   HARDTANH           in: x                                out: y = min(max(x, params.hardtanh.min_val), max_val)  (ABI 4)
 *   HARDTANH_BWD       in: x (the forward input), dy        out: dx = min_val < x < max_val ? dy : 0 (0 at both ends) (ABI 4)
 *   DROPOUT            in: x[N,...], step[1] i32 (1-based)  out: y = x * mask, mask = kept ? 1/(1-p) : 0 drawn from
 *                                                           (params.dropout, step, sample, element): see plugin.h (ABI 5)
 *   DROPOUT_BWD        in: dy[N,...], step[1] i32           out: dx = dy * mask, the forward's mask drawn again (ABI 5)
 *   BATCHNORM2D_TRAIN  in: x[N,C,H,W], gamma[C], beta[C], state running_mean[C], state running_var[C]
 *                      out: y[N,C,H,W], saved_mean[C], saved_invstd[C] = 1/sqrt(biased batch var + eps);
 *                      the running statistics are updated in place by params.batchnorm2d.convention (ABI 5)
 *   BATCHNORM2D_EVAL   in: x[N,C,H,W], gamma[C], beta[C], running_mean[C], running_var[C]
 *                      out: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta (ABI 5)
 *   BATCHNORM2D_BWD    in: x (the forward input), dy, gamma[C], mean[C], stat[C]   out: dx, dgamma[C], dbeta[C];
 *                      params.batchnorm2d.training 1: mean, stat = TRAIN's saved_mean, saved_invstd (the batch
 *                      statistics depend on x); 0: the running mean and variance of EVAL (constants) (ABI 5)
 *   AVGPOOL2D          in: x[N,C,H,W]                       out: y[N,C,P,Q] = window sum / divisor (params.avgpool2d;
 *                                                           a window with no input element gives 0)  (ABI 5)
 *   AVGPOOL2D_BWD      in: dy[N,C,P,Q]                      out: dx[N,C,H,W]: each element adds dy / divisor of
 *                                                           every window holding it, in row-major window order (ABI 5)
 *   GLOBAL_AVGPOOL     in: x[N,C,H,W]                       out: y[N,C,1,1] = mean of each (n,c) plane (ABI 5)
 *   GLOBAL_AVGPOOL_BWD in: dy[N,C,1,1]                      out: dx[N,C,H,W] = dy / (H*W) (params.avgpool2d.input_h,
 *                                                           input_w give H, W)  (ABI 5)
 *   SOFTMAX            in: x                                out: y = exp(x - max) / sum exp(x - max) over params.softmax's dim (ABI 5)
 *   SOFTMAX_BWD        in: y (the forward output), dy       out: dx = y * (dy - sum_dim(dy * y))   (ABI 5)
 *   LOG_SOFTMAX        in: x                                out: y = (x - max) - log sum exp(x - max) over the dim (ABI 5)
 *   LOG_SOFTMAX_BWD    in: y (the forward output), dy       out: dx = dy - exp(y) * sum_dim(dy)    (ABI 5)
 *   CONCAT             in: x_0 .. x_{k-1}, 1 <= k <= PARITY_MAX_NODE_INPUTS (PARITY_OP_VARIADIC)
 *                                                           out: y = the inputs joined along dim 1 (channels of
 *                                                           NCHW, features of [N,F]); every other dim and the dtype
 *                                                           equal. GraphBuilder::concat builds a concat of more
 *                                                           inputs as a tree of these (ABI 5)
 *   SLICE              in: x                                out: y = x[:, start : start + length] along dim 1
 *                                                           (params.slice): the gradient of one CONCAT input (ABI 5)
 *   MUL                in: a, b                             out: c = a * b, broadcasting as ADD (ABI 6)
 *   REDUCE_SUM         in: x                                out: y = x summed over the dims whose bit is set in
 *                                                           params.reduce_sum.dims, kept with size 1 (keepdim): the
 *                                                           gradient of a broadcast operand (ABI 6)
 *   CLIP_COEF          in: sumsq[1] (sum of squared grads)  out: coef[1] = min(1, max_norm / (sqrt(sumsq) + 1e-6)),
 *                                                           torch.nn.utils.clip_grad_norm_'s factor (params.clip_coef) (ABI 6)
 *   CAST               in: x (f32, bf16 or f16)             out: y of x's shape in params.cast.dtype (f32, bf16, f16):
 *                                                           rounded to nearest even; plugin.h has the exact bits (ABI 9)
 *
 * Broadcasting (ADD and MUL, ABI 6): a and b have one rank; in every dim each has the output's
 * size or 1 (numpy's rule at equal rank, so a [N,C,1,1] scale multiplies an [N,C,H,W] map and a
 * [1,C,H,W] map adds to every sample); c has the larger size in each dim. Equal shapes are the
 * plain element-wise case.
 *
 * Adding an op: append its line to the list and to the table above (never reorder: enum values
 * are ABI; then PARITY_ABI_VERSION in plugin.h and CHANGELOG.md change too), and write
 * its rule in the ops/ file of its family (README.md, "Adding an op"). Plain C, included by plugin.h. */
#ifndef PARITY_OP_LIST_H
#define PARITY_OP_LIST_H

/* The `in` of an op whose nodes take from 1 to PARITY_MAX_NODE_INPUTS inputs (CONCAT): its
 * parity_op_info says num_inputs = PARITY_MAX_NODE_INPUTS, min_inputs = 1. A node descriptor
 * keeps its fixed size; a longer concat is split by the GraphBuilder, never by a backend. */
#define PARITY_OP_VARIADIC (-1)

/*  X(ID,                name,              in, out, builder) */
#define PARITY_OP_LIST(X)                                 \
  X(CONV2D,            conv2d,            3, 1, 0)       \
  X(CONV2D_BWD_DATA,   conv2d_bwd_data,   2, 1, 0)       \
  X(CONV2D_BWD_WEIGHT, conv2d_bwd_weight, 2, 2, 0)       \
  X(RELU,              relu,              1, 1, 1)       \
  X(RELU_BWD,          relu_bwd,          2, 1, 0)       \
  X(MAXPOOL2D,         maxpool2d,         1, 2, 0)       \
  X(MAXPOOL2D_BWD,     maxpool2d_bwd,     2, 1, 0)       \
  X(RESHAPE,           reshape,           1, 1, 0)       \
  X(LINEAR,            linear,            3, 1, 1)       \
  X(LINEAR_BWD_DATA,   linear_bwd_data,   2, 1, 0)       \
  X(LINEAR_BWD_WEIGHT, linear_bwd_weight, 2, 2, 0)       \
  X(SOFTMAX_XENT,      softmax_xent,      2, 1, 1)       \
  X(SOFTMAX_XENT_BWD,  softmax_xent_bwd,  3, 1, 0)       \
  X(ARGMAX,            argmax,            1, 1, 1)       \
  X(ACCURACY,          accuracy,          2, 1, 1)       \
  X(ADD,               add,               2, 1, 1)       \
  X(ADAM_STEP,         adam_step,         5, 0, 0)       \
  X(SGD_STEP,          sgd_step,          4, 0, 0)       \
  X(FILL,              fill,              0, 1, 0)       \
  X(SIGMOID,           sigmoid,           1, 1, 1)       \
  X(SIGMOID_BWD,       sigmoid_bwd,       2, 1, 0)       \
  X(TANH,              tanh,              1, 1, 1)       \
  X(TANH_BWD,          tanh_bwd,          2, 1, 0)       \
  X(LEAKY_RELU,        leaky_relu,        1, 1, 0)       \
  X(LEAKY_RELU_BWD,    leaky_relu_bwd,    2, 1, 0)       \
  X(GELU,              gelu,              1, 1, 1)       \
  X(GELU_BWD,          gelu_bwd,          2, 1, 0)       \
  X(HARDTANH,          hardtanh,          1, 1, 0)       \
  X(HARDTANH_BWD,      hardtanh_bwd,      2, 1, 0)       \
  X(DROPOUT,           dropout,           2, 1, 0)       \
  X(DROPOUT_BWD,       dropout_bwd,       2, 1, 0)       \
  X(BATCHNORM2D_TRAIN, batchnorm2d_train, 5, 3, 0)       \
  X(BATCHNORM2D_EVAL,  batchnorm2d_eval,  5, 1, 0)       \
  X(BATCHNORM2D_BWD,   batchnorm2d_bwd,   5, 3, 0)       \
  X(AVGPOOL2D,         avgpool2d,         1, 1, 0)       \
  X(AVGPOOL2D_BWD,     avgpool2d_bwd,     1, 1, 0)       \
  X(GLOBAL_AVGPOOL,    global_avgpool,    1, 1, 1)       \
  X(GLOBAL_AVGPOOL_BWD, global_avgpool_bwd, 1, 1, 0) \
  X(SOFTMAX,           softmax,           1, 1, 0)       \
  X(SOFTMAX_BWD,       softmax_bwd,       2, 1, 0)       \
  X(LOG_SOFTMAX,       log_softmax,       1, 1, 0)       \
  X(LOG_SOFTMAX_BWD,   log_softmax_bwd,   2, 1, 0)       \
  X(CONCAT,            concat,            PARITY_OP_VARIADIC, 1, 0) \
  X(SLICE,             slice,             1, 1, 0)       \
  X(MUL,               mul,               2, 1, 1)       \
  X(REDUCE_SUM,        reduce_sum,        1, 1, 0)       \
  X(CLIP_COEF,         clip_coef,         1, 1, 0)       \
  X(CAST,              cast,              1, 1, 0)


/* Optional trailing operands (ABI 5): PARITY_OP_OPTIONAL_TRAILING(X) calls X(ID, inputs,
 * outputs) for each op whose nodes may leave off that many of their last inputs and outputs
 * (parity_op_info's min_inputs / min_outputs). A convolution without bias is a CONV2D node with
 * the two inputs x, w, and its weight gradient a CONV2D_BWD_WEIGHT node with the one output dw.
 * Plugins built against ABI 4 are never handed such nodes (backends/backend_from_table.cpp). */
#define PARITY_OP_OPTIONAL_TRAILING(X) \
  X(CONV2D,            1, 0)           \
  X(CONV2D_BWD_WEIGHT, 0, 1)

#endif /* PARITY_OP_LIST_H */
