/* parity/plugin.h — the versioned C ABI between parity and its backends: the descriptors
 * that cross it (data types, the op enum with one plain params struct per op, the compiled
 * plan of values and nodes) and the function table every backend exports (DESIGN.md,
 * "Plugin interface"). Plain C so that a backend built by another compiler can implement it.
 * This header is the whole contract a third-party backend implements; see "Writing a
 * backend plugin" at the end of this file and in README.md.
 *
 * Conventions every backend implements (they follow PyTorch where a choice exists):
 *  - tensors are dense, row-major, NCHW for images; linear weights are [out, in];
 *  - maxpool takes the first maximum of a window in row-major order, its gradient goes there;
 *  - pooling windows (maxpool, avgpool) follow torch.nn.functional's: zero padding on both
 *    sides, ceil_mode's last window starts inside the input or the left padding; padding may
 *    exceed half the kernel (ONNX allows it; PyTorch refuses it): a window with no element of
 *    the input gives maxpool 0 with index -1 (its gradient goes nowhere) and avgpool 0;
 *  - relu'(0) = 0;  Adam as torch.optim.Adam;
 *  - softmax cross-entropy as torch.nn.functional.cross_entropy with integer labels: the mean
 *    over the batch unless parity_softmax_xent_params says sum or none, rows whose label is the
 *    ignore_index left out (ABI 7);
 *  - sigmoid as torch.sigmoid, tanh as torch.tanh, their gradients taken from the forward output;
 *  - leaky_relu, gelu (erf form, approximate='none') and hardtanh as torch.nn.functional's,
 *    their gradients taken from the forward input: leaky_relu'(0) = negative_slope, hardtanh'
 *    is 0 at x == min_val and x == max_val (relu6 is hardtanh(0, 6));
 *  - batchnorm2d as torch.nn.BatchNorm2d (per channel over N, H, W; the batch variance biased,
 *    eps inside the sqrt) with the running statistics of either PyTorch or ONNX
 *    (parity_batchnorm2d_params); its saved mean and inverse std are not differentiable;
 *  - softmax and log_softmax as torch's over one dim (the row maximum subtracted first), their
 *    gradients taken from the forward output; concat as torch.cat along dim 1. */
#ifndef PARITY_PLUGIN_H
#define PARITY_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "parity/op_list.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of everything in this header. A loader uses a backend only when the table it
 * returns carries exactly this number; any change to a struct, an enum value or a function
 * signature below increments it. */
#define PARITY_ABI_VERSION 9  /* 2: op names in this header, SIGMOID, PARITY_STATUS_IO; 3: memory_need;
                                 4: memory_need_without_device, TANH, LEAKY_RELU, GELU, HARDTANH
                                 and their backwards; 5: SGD_STEP's step input, AdamW, Nesterov,
                                 lr schedules, DROPOUT, conv2d groups/dilation/
                                 asymmetric padding/optional bias; 6: broadcasting ADD, MUL,
                                 REDUCE_SUM, CLIP_COEF; 7: SOFTMAX_XENT's reduction and
                                 ignore_index; 8: node hooks and value addresses
                                 (set_node_hooks, value_address: data-parallel
                                 training's gradient all-reduce); 9: PARITY_BF16,
                                 PARITY_F16 and CAST (mixed precision's
                                 foundation) (CHANGELOG.md) */
/* The ABI that gave conv2d groups, dilation, asymmetric padding and an optional bias
 * (parity_conv2d_params' appended fields, PARITY_OP_OPTIONAL_TRAILING). A plugin built against an
 * older one would read such a node as a plain convolution, so libparity never hands it one
 * (backends/backend_from_table.cpp). */
#define PARITY_ABI_CONV2D_GENERAL 5
#define PARITY_MAX_RANK 6
#define PARITY_MAX_NODE_INPUTS 6
#define PARITY_MAX_NODE_OUTPUTS 4
#define PARITY_NAME_LEN 64

/* The element types values may have. BF16 (bfloat16: f32's sign and exponent, 7 stored mantissa
 * bits) and F16 (IEEE 754 binary16) are 2 bytes each, stored as their bit patterns (ABI 9). A
 * backend lists the ones it stores in parity_capabilities.dtypes; libparity never hands it a
 * plan with a value of another. Appended only: the numbers are ABI. */
typedef enum parity_dtype {
  PARITY_F32 = 0,
  PARITY_I32 = 1,
  PARITY_I64 = 2,
  PARITY_BF16 = 3, /* ABI 9 */
  PARITY_F16 = 4   /* ABI 9 */
} parity_dtype;

/* Every op, forward and backward, generated from PARITY_OP_LIST: parity/op_list.h lists each
 * op's inputs and outputs in the order a node stores them. */
typedef enum parity_op {
#define PARITY_OP_ENUM_VALUE(id, name, inputs, outputs, builder) PARITY_OP_##id,
  PARITY_OP_LIST(PARITY_OP_ENUM_VALUE)
#undef PARITY_OP_ENUM_VALUE
  PARITY_OP_COUNT
} parity_op;

/* What PARITY_OP_LIST says of an op: its name ("CONV2D") and how many inputs and outputs its
 * nodes have; {"UNKNOWN", -1, -1} outside [0, PARITY_OP_COUNT). Defined here, so plugins and
 * libparity name ops alike without linking anything. */
typedef struct parity_op_info {
  const char* name;
  int32_t num_inputs, num_outputs;  /* the most a node has */
  int32_t min_inputs, min_outputs;  /* the fewest (ABI 5): PARITY_OP_OPTIONAL_TRAILING's ops may leave
                                       their last inputs or outputs off; a PARITY_OP_VARIADIC op
                                       (CONCAT) takes 1 .. PARITY_MAX_NODE_INPUTS inputs */
} parity_op_info;

static inline parity_op_info parity_op_info_of(parity_op op) {
  parity_op_info info = {"UNKNOWN", -1, -1, -1, -1};
  switch (op) {
#define PARITY_OP_INFO_CASE(id, lower_name, inputs, outputs, builder)                   \
  case PARITY_OP_##id:                                                                  \
    info.name = #id;                                                                    \
    info.num_inputs = (inputs) == PARITY_OP_VARIADIC ? PARITY_MAX_NODE_INPUTS : (inputs); \
    info.min_inputs = (inputs) == PARITY_OP_VARIADIC ? 1 : (inputs);                    \
    info.num_outputs = info.min_outputs = outputs;                                      \
    break;
    PARITY_OP_LIST(PARITY_OP_INFO_CASE)
#undef PARITY_OP_INFO_CASE
    default:
      break;
  }
  switch (op) {
#define PARITY_OP_OPTIONAL_CASE(id, optional_inputs, optional_outputs) \
  case PARITY_OP_##id:                                                 \
    info.min_inputs -= optional_inputs;                                \
    info.min_outputs -= optional_outputs;                              \
    break;
    PARITY_OP_OPTIONAL_TRAILING(PARITY_OP_OPTIONAL_CASE)
#undef PARITY_OP_OPTIONAL_CASE
    default:
      break;
  }
  return info;
}

static inline const char* parity_op_name(parity_op op) { return parity_op_info_of(op).name; }

typedef struct parity_conv2d_params {
  int32_t stride_h, stride_w;      /* > 0 */
  int32_t pad_h, pad_w;            /* >= 0, zero padding on both sides */
  /* Sizes the backward ops cannot infer from their inputs (stride > 1 makes them ambiguous);
   * used for shape inference only: backends read every shape from the value descriptors. */
  int32_t input_h, input_w;        /* CONV2D_BWD_DATA: the forward input's spatial size */
  int32_t kernel_h, kernel_w;      /* CONV2D_BWD_WEIGHT: the filter's spatial size */
  /* ABI 5, appended so that zero-initialised params keep their ABI 4 meaning (read them through
   * parity_conv2d_groups() and the other helpers below, which apply these defaults): */
  int32_t dilation_h, dilation_w;  /* >= 0; 0 reads as 1 (no dilation): tap r of output row p
                                      reads input row p * stride_h - pad_h + r * dilation_h */
  int32_t groups;                  /* >= 0; 0 reads as 1. C and K divisible by groups, weight
                                      [K, C / groups, R, S]: output channel k (of group
                                      g = k / (K / groups)) reads input channels
                                      [g * C / groups, (g + 1) * C / groups); depthwise: groups = C */
  int32_t pad_end_given;           /* 0: symmetric padding, pad_h and pad_w on both sides. Nonzero:
                                      pad_h, pad_w pad the top and left only, pad_bottom and
                                      pad_right the bottom and right (ONNX pads begin/end) */
  int32_t pad_bottom, pad_right;   /* >= 0; read only when pad_end_given */
  int32_t without_bias;            /* CONV2D_BWD_WEIGHT: nonzero infers dw alone (the forward had no
                                      bias). For shape inference only, as input_h and kernel_h:
                                      backends read num_outputs */
} parity_conv2d_params;

/* The ABI 5 fields of parity_conv2d_params with their defaults applied. */
static inline int32_t parity_conv2d_groups(const parity_conv2d_params* p) { return p->groups > 0 ? p->groups : 1; }
static inline int32_t parity_conv2d_dilation_h(const parity_conv2d_params* p) {
  return p->dilation_h > 0 ? p->dilation_h : 1;
}
static inline int32_t parity_conv2d_dilation_w(const parity_conv2d_params* p) {
  return p->dilation_w > 0 ? p->dilation_w : 1;
}
static inline int32_t parity_conv2d_pad_bottom(const parity_conv2d_params* p) {
  return p->pad_end_given ? p->pad_bottom : p->pad_h;
}
static inline int32_t parity_conv2d_pad_right(const parity_conv2d_params* p) {
  return p->pad_end_given ? p->pad_right : p->pad_w;
}

typedef struct parity_maxpool2d_params {
  int32_t kernel_h, kernel_w;      /* > 0 */
  int32_t stride_h, stride_w;      /* > 0 */
  int32_t input_h, input_w;        /* MAXPOOL2D_BWD: the forward input's size, for shape inference */
  /* Appended in ABI 5; their zeros are ABI 4's maxpool (no padding, floor division): */
  int32_t pad_h, pad_w;            /* >= 0 on both sides, any size (pad < kernel is not required);
                                      padded positions are never picked */
  int32_t dilation_h, dilation_w;  /* >= 1; 0 reads as 1 */
  int32_t ceil_mode;               /* 0: floor; else ceil, PyTorch's rule (the last window must
                                      start inside the input or the left padding) */
  /* Output extent per axis: (in + 2 pad - dilation (kernel - 1) - 1 [+ stride - 1 if ceil]) / stride + 1,
   * less 1 if ceil_mode and the last window would start at or after in + pad. The dilated kernel
   * must fit the padded input. idx is h*W+w in the (n,c) plane, or -1 for a window holding no
   * element of the input (its y is 0). */
} parity_maxpool2d_params;

/* The learning rate of optimizer step t (1-based; i = t - 1 steps taken before it), as
 * torch.optim.lr_scheduler defines it when stepped once per optimizer step (ABI 5). With
 * warmup_steps W > 0, steps i < W take LinearLR's lr * (f + (1 - f) * i / W) (f =
 * warmup_start_factor in (0, 1]) and the main schedule starts at i = W (SequentialLR with
 * milestone W); the main schedule, at its own step k (= i - W):
 *   PARITY_LR_CONSTANT: lr;
 *   PARITY_LR_STEP:     lr * gamma^floor(k / step_size)                  (StepLR);
 *   PARITY_LR_COSINE:   min_lr + (lr - min_lr) * (1 + cos(pi k / total_steps)) / 2
 *                       (CosineAnnealingLR's closed form, T_max = total_steps).
 * Computed in double, rounded to float where torch passes a Python float to a float32 tensor.
 * All zero (the zero-initialised params of ABI 4 code): constant, no warmup. */
typedef enum parity_lr_schedule_kind {
  PARITY_LR_CONSTANT = 0,
  PARITY_LR_STEP = 1,
  PARITY_LR_COSINE = 2,
  PARITY_LR_SCHEDULE_COUNT
} parity_lr_schedule_kind;

typedef struct parity_lr_schedule {
  int32_t kind;                    /* parity_lr_schedule_kind */
  int32_t step_size;               /* PARITY_LR_STEP: > 0 */
  float gamma;                     /* PARITY_LR_STEP: finite, >= 0 */
  int32_t total_steps;             /* PARITY_LR_COSINE: > 0 */
  float min_lr;                    /* PARITY_LR_COSINE: finite, >= 0 */
  int32_t warmup_steps;            /* >= 0; 0: no warmup */
  float warmup_start_factor;       /* with warmup: in (0, 1] */
} parity_lr_schedule;

/* AVGPOOL2D, AVGPOOL2D_BWD (ABI 5), with torch.nn.functional.avg_pool2d's semantics (no
 * divisor_override); GLOBAL_AVGPOOL_BWD reads only input_h, input_w. The output extent is
 * maxpool's with dilation 1. Each output is the float sum of its window's input elements in
 * row-major order, divided by: with count_include_pad, the window clipped to the padded input
 * (the ceil_mode overhang past in + pad is not counted; a window entirely in padding gives
 * 0 / window = 0); without, the number of input elements in it (none: the output is 0). */
typedef struct parity_avgpool2d_params {
  int32_t kernel_h, kernel_w;      /* > 0 */
  int32_t stride_h, stride_w;      /* > 0 */
  int32_t pad_h, pad_w;            /* >= 0, any size */
  int32_t ceil_mode;               /* 0: floor; else ceil, as maxpool's */
  int32_t count_include_pad;       /* 0: divide by the input elements only; else torch's default */
  int32_t input_h, input_w;        /* AVGPOOL2D_BWD, GLOBAL_AVGPOOL_BWD: the forward input's size */
} parity_avgpool2d_params;

typedef struct parity_adam_params {
  float lr, beta1, beta2, eps, weight_decay;  /* torch.optim.Adam: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
                                                 p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps);
                                                 weight_decay adds wd * p to g first */
  int32_t decoupled_weight_decay;  /* ABI 5, nonzero: torch.optim.AdamW: p *= 1 - lr_t * wd first, g unchanged */
  parity_lr_schedule schedule;     /* ABI 5: lr_t of step t; lr above is the base */
} parity_adam_params;

typedef struct parity_sgd_params {
  float lr, momentum, weight_decay;           /* torch.optim.SGD, dampening 0:
                                                 g += wd p; v = momentum v + g; p -= lr v  (v starts at 0) */
  int32_t nesterov;                /* ABI 5, nonzero (needs momentum > 0): p -= lr (g + momentum v) */
  parity_lr_schedule schedule;     /* ABI 5: lr_t of step t (SGD_STEP's step input); lr above is the base */
} parity_sgd_params;

typedef struct parity_fill_params {
  float value;
} parity_fill_params;

typedef struct parity_leaky_relu_params {
  float negative_slope;            /* finite; torch's default 0.01 */
} parity_leaky_relu_params;

typedef struct parity_hardtanh_params {
  float min_val, max_val;          /* not NaN, min_val <= max_val; torch's defaults -1, 1 (relu6: 0, 6) */
} parity_hardtanh_params;

/* DROPOUT's mask (ABI 5) is a pure function of these and the step, so every backend draws the
 * same one, bit for bit, and a batch split across processes draws the same as one that is not:
 * element e (row-major within its sample) of sample n is kept when
 *   (philox4x32_10(counter = (e / 4, first_sample + n, step, node_key), key = (seed_lo, seed_hi)).word[e % 4] >> 8)
 *     * 2^-24 >= p
 * (ops/kernels/philox.h, ops/kernels/dropout.h), and a kept element is scaled by
 * 1.0f / (float)(1 - p), as torch's noise.bernoulli_(1 - p).div_(1 - p). */
typedef struct parity_dropout_params {
  float p;                         /* in [0, 1): the probability of zeroing an element */
  uint32_t seed_lo, seed_hi;       /* the run's seed */
  uint32_t node_key;               /* names the node's stream (GraphBuilder: FNV-1a of the node name, folded) */
  int32_t first_sample;            /* >= 0: the global index, in the whole batch, of this batch's sample 0 */
} parity_dropout_params;
/* batchnorm2d's running-statistics conventions (ABI 5). */
typedef enum parity_batchnorm_convention {
  PARITY_BATCHNORM_PYTORCH = 0,    /* torch.nn.BatchNorm2d: running = (1 - momentum) running + momentum batch,
                                      running_var takes the UNBIASED batch variance (n / (n - 1)); n = N*H*W
                                      must be > 1 in training (torch raises "Expected more than 1 value per
                                      channel"; parity refuses the node at build time) */
  PARITY_BATCHNORM_ONNX = 1,       /* ONNX BatchNormalization, training_mode=1: running = momentum running +
                                      (1 - momentum) batch, with the BIASED batch variance; n == 1 is allowed
                                      (variance 0: y = beta) */
} parity_batchnorm_convention;

typedef struct parity_batchnorm2d_params {
  float eps;                       /* finite, > 0 (there is no "0 means default": 0 is refused naming the
                                      node; torch's and GraphBuilder's default is 1e-5) */
  float momentum;                  /* in [0, 1]; the weight of the batch (PyTorch, default 0.1) or of the
                                      old running value (ONNX, whose default is 0.9); TRAIN only */
  int32_t convention;              /* parity_batchnorm_convention; 0 (zero-initialised) is PyTorch's */
  int32_t training;                /* BATCHNORM2D_BWD: 1 = the backward of TRAIN, 0 = of EVAL (the op_list.h
                                      table says what its inputs are); ignored by TRAIN and EVAL */
} parity_batchnorm2d_params;

typedef struct parity_softmax_params {
  int32_t dim;                     /* in [-rank, rank), negative counting from the end as in torch */
  int32_t has_dim;                 /* 0: dim is 1 whatever `dim` holds (torch's default for [N,K] and
                                      NCHW; what zero-initialised params give); nonzero: `dim` */
} parity_softmax_params;

typedef struct parity_slice_params {
  int32_t start, length;           /* along dim 1: 0 <= start, 0 < length, start + length <= x's dim 1 */
} parity_slice_params;

/* REDUCE_SUM (ABI 6): bit d set sums dim d (d < the input's rank; at least one bit). Each output
 * element is the float sum of its input elements; backends may order that sum their own way
 * (the op's tolerance allows it), each the same way every run. */
typedef struct parity_reduce_sum_params {
  uint32_t dims;
} parity_reduce_sum_params;

/* CLIP_COEF (ABI 6): torch.nn.utils.clip_grad_norm_(max_norm, norm_type 2) without
 * error_if_nonfinite: a NaN or infinite norm gives a NaN or 0 factor, as in torch. */
typedef struct parity_clip_coef_params {
  float max_norm;                  /* finite, > 0 */
} parity_clip_coef_params;

/* SOFTMAX_XENT and SOFTMAX_XENT_BWD (ABI 7): torch.nn.functional.cross_entropy's `reduction` and
 * `ignore_index`. Zero-initialised params are ABI 6's loss: the mean over every row, no label
 * ignored. With logits[N,K] and labels[N], row n is *ignored* when has_ignore_index is nonzero
 * and labels[n] == ignore_index (any int32, inside [0, K) or not, torch's default being -100);
 * every other label must be in [0, K). Row n's term is t_n = -log softmax(logits_n)[labels[n]],
 * and 0 for an ignored row (whatever its logits hold). The loss:
 *   PARITY_REDUCTION_MEAN  loss[1] = sum_n t_n / (number of rows not ignored); every row ignored
 *                          gives 0 / 0 = NaN, as torch 1.13 does
 *   PARITY_REDUCTION_SUM   loss[1] = sum_n t_n (every row ignored: 0)
 *   PARITY_REDUCTION_NONE  loss[N] = t_n
 * SOFTMAX_XENT_BWD reads dloss[1] (mean, sum) or dloss[N] (none) and writes
 *   dlogits[n,k] = (softmax(logits_n)[k] - (k == labels[n])) * s_n,
 * s_n = dloss / (rows not ignored) (mean), dloss (sum) or dloss[n] (none), and s_n = 0 for an
 * ignored row: its gradient is 0 (NaN where its softmax is NaN, since NaN * 0 is NaN, as in torch).
 * A label outside [0, K) that is not ignored is a PARITY_STATUS_DATA error wherever the backend
 * sees the labels on the host (every built-in backend does for INPUT labels); a GPU kernel that
 * meets one gives that row a NaN term and NaN gradient, and never reads outside the row.
 * ops/kernels/softmax_xent.h has this row math in a form host and device code share. */
typedef enum parity_reduction {
  PARITY_REDUCTION_MEAN = 0,
  PARITY_REDUCTION_SUM = 1,
  PARITY_REDUCTION_NONE = 2
} parity_reduction;

typedef struct parity_softmax_xent_params {
  int32_t reduction;               /* parity_reduction; 0 (zero-initialised) is ABI 6's mean */
  int32_t ignore_index;            /* read only when has_ignore_index is nonzero */
  int32_t has_ignore_index;        /* 0: every row counts (ABI 6; torch's ignore_index=-100 must be given) */
} parity_softmax_xent_params;

/* CAST (ABI 9): y = x converted to `dtype`, which is also y's value dtype (the two must agree).
 * Every pair of F32, BF16 and F16 (the identity included, a copy). To a half dtype the value is
 * rounded to nearest, ties to even, overflow to infinity, below the smallest subnormal to a zero
 * of x's sign; a NaN stays NaN (its quiet bit set, its sign and the top bits of its payload kept:
 * bf16 = x[31:16] | 0x0040, f16 = sign | 0x7E00 | x[22:13]). From a half dtype to F32 it is exact
 * (an F16 NaN quieted, a BF16 NaN the 16-bit shift). These are the bits of x86's VCVTNEPS2BF16 /
 * VCVTPS2PH / VCVTPH2PS, except that an f32 subnormal rounds like any value (VCVTNEPS2BF16 flushes
 * it to zero; CUDA and torch round it). ops/kernels/half.h has the conversions in a form host and
 * device code share. */
typedef struct parity_cast_params {
  int32_t dtype;                   /* parity_dtype of the output */
} parity_cast_params;

typedef union parity_op_params {
  parity_conv2d_params conv2d;     /* CONV2D, CONV2D_BWD_DATA, CONV2D_BWD_WEIGHT */
  parity_maxpool2d_params maxpool2d; /* MAXPOOL2D, MAXPOOL2D_BWD */
  parity_adam_params adam;         /* ADAM_STEP */
  parity_sgd_params sgd;           /* SGD_STEP */
  parity_fill_params fill;         /* FILL */
  parity_leaky_relu_params leaky_relu; /* LEAKY_RELU, LEAKY_RELU_BWD (ABI 4) */
  parity_hardtanh_params hardtanh; /* HARDTANH, HARDTANH_BWD (ABI 4) */
  parity_softmax_params softmax;   /* SOFTMAX, SOFTMAX_BWD, LOG_SOFTMAX, LOG_SOFTMAX_BWD (ABI 5) */
  parity_slice_params slice;       /* SLICE (ABI 5) */
  parity_dropout_params dropout;   /* DROPOUT, DROPOUT_BWD (ABI 5) */
  parity_batchnorm2d_params batchnorm2d; /* BATCHNORM2D_TRAIN, _EVAL, _BWD (ABI 5) */
  parity_avgpool2d_params avgpool2d; /* AVGPOOL2D, AVGPOOL2D_BWD, GLOBAL_AVGPOOL_BWD (ABI 5) */
  parity_reduce_sum_params reduce_sum; /* REDUCE_SUM (ABI 6) */
  parity_clip_coef_params clip_coef; /* CLIP_COEF (ABI 6) */
  parity_softmax_xent_params softmax_xent; /* SOFTMAX_XENT, SOFTMAX_XENT_BWD (ABI 7) */
  parity_cast_params cast;         /* CAST (ABI 9) */
  uint8_t reserved[64];
} parity_op_params;
/* The union's size is ABI: a params struct that grows past 64 bytes fails to compile here. */
typedef char parity_op_params_is_64_bytes[sizeof(parity_op_params) == 64 ? 1 : -1];

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
 * values, their lifetimes and a suggested arena layout (offsets); a backend may use its own.
 * In that layout a node's outputs never share bytes with its inputs, except a RESHAPE whose
 * output may sit exactly on its input (the input dies there): then there is nothing to copy. */
typedef struct parity_plan {
  int32_t num_values, num_nodes;
  const parity_value_desc* values;
  const parity_node_desc* nodes;
  int64_t arena_bytes;             /* size of the suggested arena for TEMP and INPUT values */
} parity_plan;

/* ======================================================================================
 * The backend function table
 * ======================================================================================
 *
 * A backend is one table of function pointers (struct parity_backend_table). A plugin is a
 * shared library named libparity-backend-<name>.so that exports one C function,
 *
 *     const parity_backend_table* parity_backend_entry(void);
 *
 * (PARITY_BACKEND_ENTRY_SYMBOL), returning a pointer to a table that lives as long as the
 * library. The built-in backends (ref, cpu, and simt when built in) are compiled into
 * libparity and reach parity through the same table, so every test exercises this ABI.
 *
 * Errors: no C++ exception, longjmp or abort crosses the ABI. A function that can fail
 * returns a parity_status and, when it is not PARITY_OK, writes a NUL-terminated message
 * into the caller's parity_error (which may be NULL when the caller does not want it). A
 * message names the thing, the value and the rule ("cuda: node 'conv1': stride must be
 * > 0, got 0"); it starts with the backend's name.
 *
 * Asynchrony: a GPU backend may queue work. write_value may return before the copy is done
 * provided the caller's host memory is no longer needed when it returns (copy it to staging
 * or synchronize); execute may return once the whole step is queued (the whole plan is
 * handed over at compile time, so CUDA can capture one execute as a graph and replay it);
 * read_value and synchronize return only when every earlier operation on the executable has
 * finished. An error of queued work may be reported by a later call on the same executable.
 *
 * Threads: the caller uses one backend instance, and the executables compiled from it, from
 * one thread at a time. Separate instances must be independent (no shared mutable state
 * other than what the device itself serialises). probe may be called from any thread.
 *
 * Memory: the backend owns every handle it returns; the caller releases each with the
 * matching destroy/free function, executables before the backend instance they came from.
 * Descriptors passed in (plans, nodes, configs) are only borrowed for the duration of the
 * call: a backend copies what it keeps. */

/* What a call that can fail returns. */
typedef enum parity_status {
  PARITY_OK = 0,
  PARITY_STATUS_INVALID_ARGUMENT = 1, /* a nonsensical argument (unknown value index, wrong byte count) */
  PARITY_STATUS_SHAPE = 2,            /* shapes that break an op's rule or do not match */
  PARITY_STATUS_DATA = 3,             /* run-time data out of range (a label outside [0, K)) */
  PARITY_STATUS_UNSUPPORTED = 4,      /* an op, dtype or feature this backend does not have */
  PARITY_STATUS_OUT_OF_MEMORY = 5,    /* host or device memory exhausted */
  PARITY_STATUS_DEVICE = 6,           /* the device, driver or a vendor library failed */
  PARITY_STATUS_INTERNAL = 7,         /* a broken invariant: a bug */
  PARITY_STATUS_IO = 8                /* a file or stream could not be read or written (ABI 2) */
} parity_status;

#define PARITY_ERROR_MESSAGE_LEN 1024

/* Filled by the callee when a call fails. */
typedef struct parity_error {
  parity_status status;
  char message[PARITY_ERROR_MESSAGE_LEN]; /* NUL-terminated; truncated if longer */
} parity_error;

/* Node hooks (ABI 8): calls into the caller at chosen points of an execute, so that work such
 * as a gradient all-reduce starts as soon as the backward has produced what it needs and is
 * waited for just before the first node that reads the result (dist/ builds them).
 *
 * A point names a node of the plan and whether the hook runs just BEFORE that node or just
 * AFTER it. Points are given in plan order (ascending node, BEFORE before AFTER at one node).
 * During execute the backend calls fn(ctx, point, stream, err) at each point, in that order,
 * from the thread that called execute:
 * - a host backend calls AFTER once the node's outputs are complete in memory, and BEFORE
 *   before the node reads anything. A backend that fuses nodes may call the points of a node
 *   whose work a neighbour does at that node's place in plan order: fusion never hides a kept
 *   value, so the points that matter (AFTER the node producing a kept value, BEFORE the first
 *   node reading it) hold exactly;
 * - an asynchronous backend calls them as it queues the nodes: AFTER once the node is queued
 *   on `stream`, so that work the hook queues on that stream, or on another stream after an
 *   event recorded on it, runs after the node; BEFORE before the node is queued, so that the
 *   hook can make the stream wait for work of its own. `stream` is the backend's stream (a
 *   cudaStream_t or hipStream_t); NULL on a host backend. A backend that replays a captured
 *   graph does not capture an executable with hooks: every execute calls them.
 * A hook that returns non-OK (filling err) stops the execute, which returns that status and
 * message. Hooks run inside execute: they must not call back into the same executable. */
typedef enum parity_hook_when { PARITY_HOOK_BEFORE = 0, PARITY_HOOK_AFTER = 1 } parity_hook_when;

typedef struct parity_hook_point {
  int32_t node; /* index into parity_plan.nodes */
  int32_t when; /* parity_hook_when */
} parity_hook_point;

typedef struct parity_node_hooks {
  const parity_hook_point* points; /* count points in plan order; copied by set_node_hooks */
  int32_t count;
  /* point: the index into points of the point being reached. */
  parity_status (*fn)(void* ctx, int32_t point, void* stream, parity_error* err);
  void* ctx;
} parity_node_hooks;

/* Why a probe found no usable device. */
typedef enum parity_unavailable_reason {
  PARITY_AVAILABLE = 0,               /* at least one usable device */
  PARITY_UNAVAILABLE_NO_DRIVER = 1,   /* the driver or runtime is not installed or not loaded */
  PARITY_UNAVAILABLE_DRIVER_TOO_OLD = 2, /* the driver is older than the runtime this backend was built with */
  PARITY_UNAVAILABLE_NO_DEVICE = 3,   /* the driver works but reports no device */
  PARITY_UNAVAILABLE_DEVICE_TOO_OLD = 4, /* devices exist, none can run the code built (e.g. compute capability) */
  PARITY_UNAVAILABLE_OTHER = 5        /* anything else: see detail */
} parity_unavailable_reason;

/* What probe reports. It must be cheap and must not keep the device busy (no context that
 * outlives the call is required). */
typedef struct parity_probe_result {
  int32_t device_count;               /* usable devices; 0 when unavailable */
  parity_unavailable_reason reason;   /* PARITY_AVAILABLE when device_count > 0 */
  char detail[256];                   /* available: what it is ("NVIDIA H100, driver 550.54, CUDA 12.4");
                                         unavailable: why, with the versions involved */
} parity_probe_result;

/* Bits of parity_capabilities.dtypes: (1u << dtype). */
#define PARITY_DTYPE_BIT(dtype) (1u << (unsigned)(dtype))

/* Bits of parity_capabilities.features. */
#define PARITY_FEATURE_ASYNC_EXECUTE (1ull << 0)  /* execute may return before the work is done */
#define PARITY_FEATURE_GRAPH_CAPTURE (1ull << 1)  /* a step is replayed as one captured graph */
#define PARITY_FEATURE_HOST_MEMORY (1ull << 2)    /* buffers are host memory (copies are memcpy) */
#define PARITY_FEATURE_DETERMINISTIC (1ull << 3)  /* bitwise repeatable at a fixed configuration */
#define PARITY_FEATURE_THREADS (1ull << 4)        /* honours parity_backend_config.threads */
#define PARITY_FEATURE_EXTERNAL_STREAM (1ull << 5) /* honours parity_backend_config.stream */
#define PARITY_FEATURE_FLOAT64_VALUES (1ull << 6) /* computes in float64 and implements
                                                     write_value_f64 / read_value_f64 */

typedef struct parity_capabilities {
  uint32_t dtypes;                    /* PARITY_DTYPE_BIT of every dtype values may have; libparity
                                         refuses a plan with a value of another before compile (ABI 9) */
  uint64_t features;                  /* PARITY_FEATURE_* */
  int32_t threads;                    /* host threads an execute uses (1 for a GPU backend's host side) */
  int32_t device;                     /* the device index this instance uses */
  int64_t device_memory_bytes;        /* total memory of that device; 0 when not meaningful */
  char device_name[128];              /* e.g. "NVIDIA H100 80GB HBM3", "host (16 threads)" */
} parity_capabilities;

/* How to create an instance. Fields may be added at the end in a later ABI version;
 * struct_size tells the callee how much of the struct the caller filled. */
typedef struct parity_backend_config {
  uint32_t struct_size;               /* sizeof(parity_backend_config) */
  int32_t device;                     /* device index in [0, device_count) */
  int32_t threads;                    /* host threads, 0: every hardware thread (backends without threads ignore it) */
  void* stream;                       /* optional: a vendor stream (cudaStream_t, hipStream_t) to submit to;
                                         NULL: the backend creates and owns its own */
} parity_backend_config;

/* Flags of compile. */
#define PARITY_COMPILE_POISON_OUTPUTS (1u << 0) /* fill every TEMP value with NaN (f32; bf16 0x7FC0, f16
                                                   0x7E00) or the largest integer (i32, i64) before each
                                                   execute, so an element an op forgets to write shows
                                                   up as a mismatch */

/* What compile() would allocate for a plan (memory_need, ABI 3): bytes of this process's host
 * memory and of the instance's device memory (0 for a host backend). */
typedef struct parity_memory_need {
  int64_t host_bytes;
  int64_t device_bytes;
} parity_memory_need;

/* Opaque handles, defined by each backend. */
typedef struct parity_backend_instance* parity_backend_t;
typedef struct parity_buffer_object* parity_buffer_t;
typedef struct parity_executable_object* parity_executable_t;

typedef struct parity_backend_table {
  /* --- identity; these two fields come first and never move, so a loader can read them
   *     from a table of any version --- */
  uint32_t abi_version;               /* PARITY_ABI_VERSION the backend was built with */
  uint32_t struct_size;               /* sizeof(parity_backend_table) as the backend saw it */
  const char* name;                   /* "cuda": lowercase, the <name> of its file name */
  const char* description;            /* one line: "cuDNN + cuBLAS on NVIDIA GPUs" */

  /* --- discovery --- */
  /* Counts usable devices or says why there is none. Returning non-OK means the probe
   * itself failed (reported like an unavailable backend with reason OTHER). Required. */
  parity_status (*probe)(parity_probe_result* out, parity_error* err);

  /* --- instances --- */
  parity_status (*create)(const parity_backend_config* config, parity_backend_t* out, parity_error* err);
  void (*destroy)(parity_backend_t backend);  /* NULL is a no-op */
  parity_status (*get_capabilities)(parity_backend_t backend, parity_capabilities* out, parity_error* err);

  /* Whether this instance can run the node as described (op, dtypes of the plan are not
   * visible here; compile checks those). Returns nonzero when it can; otherwise writes why
   * into reason (reason_len bytes, NUL-terminated) when reason is not NULL. */
  int32_t (*supports)(parity_backend_t backend, const parity_node_desc* node, char* reason, size_t reason_len);

  /* --- raw device buffers (for callers that manage memory themselves, e.g. to move a batch
   *     between two executables without the host). Copies are ordered with the instance's
   *     other work; device_to_host returns when the bytes are on the host. --- */
  parity_status (*buffer_alloc)(parity_backend_t backend, int64_t bytes, parity_buffer_t* out, parity_error* err);
  void (*buffer_free)(parity_backend_t backend, parity_buffer_t buffer);  /* NULL is a no-op */
  parity_status (*copy_host_to_device)(parity_backend_t backend, parity_buffer_t dst, int64_t dst_offset,
                                       const void* src, int64_t bytes, parity_error* err);
  parity_status (*copy_device_to_host)(parity_backend_t backend, void* dst, parity_buffer_t src, int64_t src_offset,
                                       int64_t bytes, parity_error* err);
  parity_status (*copy_device_to_device)(parity_backend_t backend, parity_buffer_t dst, int64_t dst_offset,
                                         parity_buffer_t src, int64_t src_offset, int64_t bytes, parity_error* err);

  /* --- compiled plans ---
   * compile: turns a whole plan into an executable holding the memory it needs (arena,
   * workspaces, persistent values). flags: PARITY_COMPILE_*. share_with: NULL, or an
   * executable of this same instance whose PARAM and STATE values with the same name,
   * dtype and shape become the same storage in the new one (a training plan, its last
   * partial batch and an evaluation plan share one set of weights); a mismatching shared
   * value is a PARITY_STATUS_SHAPE error naming it and both shapes. A node the backend does
   * not support is a PARITY_STATUS_UNSUPPORTED error naming the node and op. */
  parity_status (*compile)(parity_backend_t backend, const parity_plan* plan, uint32_t flags,
                           parity_executable_t share_with, parity_executable_t* out, parity_error* err);
  void (*executable_destroy)(parity_executable_t exe);  /* NULL is a no-op; shared storage lives
                                                           until its last executable is destroyed */
  /* Copies host bytes into an INPUT, PARAM or STATE value; bytes must equal the value's size. */
  parity_status (*write_value)(parity_executable_t exe, int32_t value, const void* host, int64_t bytes,
                               parity_error* err);
  /* Copies a value to the host (INPUT, PARAM, STATE, or a TEMP value the plan marked keep);
   * waits for earlier work first. */
  parity_status (*read_value)(parity_executable_t exe, int32_t value, void* host, int64_t bytes,
                              parity_error* err);
  /* Runs every node of the plan once, in order (or queues it: see Asynchrony). */
  parity_status (*execute)(parity_executable_t exe, parity_error* err);
  /* Waits until every operation queued on the executable has finished. */
  parity_status (*synchronize)(parity_executable_t exe, parity_error* err);
  /* Bytes the executable holds (arena, workspaces, persistent values). */
  parity_status (*memory_bytes)(parity_executable_t exe, int64_t* out, parity_error* err);

  /* --- optional: NULL unless the backend sets PARITY_FEATURE_FLOAT64_VALUES ---
   * Float64 access to an f32 value of a backend that computes in float64 (the `ref` oracle),
   * so that `parity check ops --gradient` can take finite differences in float64. count is
   * the value's element count; the same kinds as write_value / read_value may be accessed. */
  parity_status (*write_value_f64)(parity_executable_t exe, int32_t value, const double* host, int64_t count,
                                   parity_error* err);
  parity_status (*read_value_f64)(parity_executable_t exe, int32_t value, double* host, int64_t count,
                                  parity_error* err);

  /* --- optional (ABI 3): NULL, or PARITY_STATUS_UNSUPPORTED, when the backend cannot tell ---
   * The memory compile() would allocate for this plan, flags and share_with (values shared
   * with share_with are not counted again), computed without allocating anything; the plan
   * is validated as compile() validates it. The caller compares the need with what the
   * machine has and refuses a plan that cannot fit before compiling it (libparity does so for
   * host memory: the smaller of MemAvailable and the cgroup's limit). */
  parity_status (*memory_need)(parity_backend_t backend, const parity_plan* plan, uint32_t flags,
                               parity_executable_t share_with, parity_memory_need* out, parity_error* err);

  /* --- optional (ABI 4): NULL, or PARITY_STATUS_UNSUPPORTED, when the backend has no planner
   *     that works without a device ---
   * What compile() of this plan with these flags would allocate on an instance created with
   * the default configuration, computed with no device and no instance: the loader keeps the
   * table of a plugin whose probe found no device for this call alone (`parity summary` on a
   * machine without the GPU). Nothing is allocated and no device call is made. What only a
   * device can settle (a convolution workspace that an algorithm search chooses) is counted at
   * its limit, so the answer is an upper bound of what compile() would take. The plan is
   * validated as compile() validates it. */
  parity_status (*memory_need_without_device)(const parity_plan* plan, uint32_t flags, parity_memory_need* out,
                                              parity_error* err);

  /* --- optional (ABI 8): NULL when the backend has no node hooks; data-parallel training
   *     needs both ---
   * set_node_hooks: from the next execute on, calls hooks->fn at hooks->points (see "Node
   * hooks" above); NULL or count 0 removes them. A point outside the plan or out of order is
   * PARITY_STATUS_INVALID_ARGUMENT naming it. fn returns a parity_status.
   * value_address: where a value lives, for a hook to hand to a communication library: device
   * memory on a GPU backend (what NCCL takes), host memory on a host backend. Valid for PARAM
   * and STATE values and for TEMP values the plan marks keep, until the executable is
   * destroyed; the bytes are the value's, dense, in its dtype. Other values may share memory,
   * not exist, or (an INPUT on a GPU backend) move between staging slots: a backend may refuse
   * them with PARITY_STATUS_INVALID_ARGUMENT naming the value. Between the AFTER point of the
   * node that produces a kept value and the BEFORE point of the next node that reads it, the
   * backend neither reads nor writes it, so a hook may change it in place. */
  parity_status (*set_node_hooks)(parity_executable_t exe, const parity_node_hooks* hooks, parity_error* err);
  parity_status (*value_address)(parity_executable_t exe, int32_t value, void** out, parity_error* err);
} parity_backend_table;

/* The one symbol a plugin exports. */
#define PARITY_BACKEND_ENTRY_SYMBOL "parity_backend_entry"
typedef const parity_backend_table* (*parity_backend_entry_fn)(void);

#if defined(_WIN32)
#define PARITY_PLUGIN_EXPORT __declspec(dllexport)
#else
#define PARITY_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* Writing a backend plugin (the short version; README.md has the long one):
 *  1. Implement every function of parity_backend_table in a shared library that links
 *     nothing of parity (include only this header, and ops/kernels/ for shared math).
 *  2. Export   PARITY_PLUGIN_EXPORT const parity_backend_table* parity_backend_entry(void)
 *     with C linkage, returning a static table whose abi_version is PARITY_ABI_VERSION.
 *  3. Name the file libparity-backend-<name>.so and install it in <prefix>/lib/parity (in
 *     parity's tree: parity_add_backend_plugin(<name> SOURCES ...) does all of it), or
 *     point PARITY_BACKEND_PATH at its folder.
 *  4. Catch every exception inside each function and return it as a status + message. */

#ifdef __cplusplus
}
#endif

#endif /* PARITY_PLUGIN_H */
