/* parity/plugin.h — the C descriptors that cross the backend boundary: data types, the op
 * enum with one plain params struct per op, and the compiled plan (values + nodes) a backend
 * executes. Plain C so that a backend built by another compiler can read it; the function
 * table of the plugin ABI is built on these (DESIGN.md, "Plugin interface").
 *
 * Conventions every backend implements (they follow PyTorch where a choice exists):
 *  - tensors are dense, row-major, NCHW for images; linear weights are [out, in];
 *  - maxpool takes the first maximum of a window in row-major order, its gradient goes there;
 *  - relu'(0) = 0;  cross-entropy is the mean over the batch;  Adam as torch.optim.Adam. */
#ifndef PARITY_PLUGIN_H
#define PARITY_PLUGIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PARITY_ABI_VERSION 1
#define PARITY_MAX_RANK 6
#define PARITY_MAX_NODE_INPUTS 6
#define PARITY_MAX_NODE_OUTPUTS 4
#define PARITY_NAME_LEN 64

typedef enum parity_dtype { PARITY_F32 = 0, PARITY_I32 = 1, PARITY_I64 = 2 } parity_dtype;

/* Every op, forward and backward. Inputs and outputs are listed per op in the order the node
 * stores them. "state" marks values an op updates in place (listed as inputs, not outputs). */
typedef enum parity_op {
  PARITY_OP_CONV2D = 0,            /* in: x[N,C,H,W], w[K,C,R,S], b[K]     out: y[N,K,P,Q] */
  PARITY_OP_CONV2D_BWD_DATA,       /* in: dy[N,K,P,Q], w[K,C,R,S]          out: dx[N,C,H,W] */
  PARITY_OP_CONV2D_BWD_WEIGHT,     /* in: x[N,C,H,W], dy[N,K,P,Q]          out: dw[K,C,R,S], db[K] */
  PARITY_OP_RELU,                  /* in: x                                out: y */
  PARITY_OP_RELU_BWD,              /* in: y (the forward output), dy       out: dx   (dx = y > 0 ? dy : 0) */
  PARITY_OP_MAXPOOL2D,             /* in: x[N,C,H,W]                       out: y[N,C,P,Q], idx[N,C,P,Q] i32:
                                      flat index h*W+w of the max within its (n,c) plane */
  PARITY_OP_MAXPOOL2D_BWD,         /* in: dy[N,C,P,Q], idx[N,C,P,Q]        out: dx[N,C,H,W] */
  PARITY_OP_RESHAPE,               /* in: x                                out: y (same elements, new shape) */
  PARITY_OP_LINEAR,                /* in: x[N,I], w[O,I], b[O]             out: y[N,O] = x w^T + b */
  PARITY_OP_LINEAR_BWD_DATA,       /* in: dy[N,O], w[O,I]                  out: dx[N,I] */
  PARITY_OP_LINEAR_BWD_WEIGHT,     /* in: x[N,I], dy[N,O]                  out: dw[O,I], db[O] */
  PARITY_OP_SOFTMAX_XENT,          /* in: logits[N,K], labels[N] i32       out: loss[1] = mean_n -log softmax(logits_n)[label_n] */
  PARITY_OP_SOFTMAX_XENT_BWD,      /* in: logits[N,K], labels[N] i32, dloss[1]   out: dlogits[N,K] */
  PARITY_OP_ARGMAX,                /* in: x[N,K]                           out: idx[N] i32 (first maximum) */
  PARITY_OP_ACCURACY,              /* in: logits[N,K], labels[N] i32       out: correct[1] f32 = count of argmax == label */
  PARITY_OP_ADD,                   /* in: a, b (same shape)                out: c = a + b (gradient accumulation) */
  PARITY_OP_ADAM_STEP,             /* in: state param, grad, state m, state v, step[1] i32 (1-based)   out: none */
  PARITY_OP_SGD_STEP,              /* in: state param, grad, state velocity                            out: none */
  PARITY_OP_FILL,                  /* in: none                             out: y[1] f32 = params.fill.value
                                      (the autodiff seed dL/dL = 1) */
  PARITY_OP_COUNT
} parity_op;

typedef struct parity_conv2d_params {
  int32_t stride_h, stride_w;      /* > 0 */
  int32_t pad_h, pad_w;            /* >= 0, zero padding on both sides */
  /* Sizes the backward ops cannot infer from their inputs (stride > 1 makes them ambiguous);
   * used for shape inference only: backends read every shape from the value descriptors. */
  int32_t input_h, input_w;        /* CONV2D_BWD_DATA: the forward input's spatial size */
  int32_t kernel_h, kernel_w;      /* CONV2D_BWD_WEIGHT: the filter's spatial size */
} parity_conv2d_params;

typedef struct parity_maxpool2d_params {
  int32_t kernel_h, kernel_w;      /* > 0 */
  int32_t stride_h, stride_w;      /* > 0; no padding, floor division like PyTorch's default */
  int32_t input_h, input_w;        /* MAXPOOL2D_BWD: the forward input's size, for shape inference */
} parity_maxpool2d_params;

typedef struct parity_adam_params {
  float lr, beta1, beta2, eps, weight_decay;  /* torch.optim.Adam: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
                                                 p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps);
                                                 weight_decay adds wd * p to g first */
} parity_adam_params;

typedef struct parity_sgd_params {
  float lr, momentum, weight_decay;           /* torch.optim.SGD, dampening 0, no nesterov:
                                                 g += wd p; v = momentum v + g; p -= lr v  (v starts at 0) */
} parity_sgd_params;

typedef struct parity_fill_params {
  float value;
} parity_fill_params;

typedef union parity_op_params {
  parity_conv2d_params conv2d;     /* CONV2D, CONV2D_BWD_DATA, CONV2D_BWD_WEIGHT */
  parity_maxpool2d_params maxpool2d; /* MAXPOOL2D, MAXPOOL2D_BWD */
  parity_adam_params adam;         /* ADAM_STEP */
  parity_sgd_params sgd;           /* SGD_STEP */
  parity_fill_params fill;         /* FILL */
  uint8_t reserved[64];
} parity_op_params;

/* How a value lives across executions. */
typedef enum parity_value_kind {
  PARITY_VALUE_INPUT = 0,    /* written by the caller before each execute (the batch, the step count) */
  PARITY_VALUE_PARAM,        /* persistent, trainable (weights, biases) */
  PARITY_VALUE_STATE,        /* persistent, optimizer state (Adam's m and v, SGD's velocity) */
  PARITY_VALUE_TEMP,         /* produced and consumed within one execute */
} parity_value_kind;

typedef struct parity_value_desc {
  char name[PARITY_NAME_LEN];      /* unique within a plan; persistent values are matched by name */
  parity_dtype dtype;
  parity_value_kind kind;
  int32_t rank;
  int64_t dims[PARITY_MAX_RANK];
  int64_t offset;                  /* byte offset into the plan's arena (TEMP and INPUT values); -1 for persistent */
  int64_t bytes;
  int32_t keep;                    /* nonzero: readable after execute, so its memory is never reused */
} parity_value_desc;

typedef struct parity_node_desc {
  char name[PARITY_NAME_LEN];
  parity_op op;
  parity_op_params params;
  int32_t num_inputs, num_outputs;
  int32_t inputs[PARITY_MAX_NODE_INPUTS];    /* value indices */
  int32_t outputs[PARITY_MAX_NODE_OUTPUTS];
} parity_node_desc;

/* A compiled step: nodes in execution order over values. The graph has already decided the
 * values, their lifetimes and a suggested arena layout (offsets); a backend may use its own. */
typedef struct parity_plan {
  int32_t num_values, num_nodes;
  const parity_value_desc* values;
  const parity_node_desc* nodes;
  int64_t arena_bytes;             /* size of the suggested arena for TEMP and INPUT values */
} parity_plan;

const char* parity_op_name(parity_op op);

#ifdef __cplusplus
}
#endif

#endif /* PARITY_PLUGIN_H */
