/* parity/op_list.h — every op of the plugin ABI, declared once: PARITY_OP_LIST(X) calls
 * X(ID, name, inputs, outputs, builder) per op, in enum order. It feeds the parity_op enum
 * (PARITY_OP_<ID>), the op names (parity_op_name: "<ID>"), the arity (parity_op_num_inputs /
 * parity_op_num_outputs), the table of op rules in libparity (ops/<name>_rule) and, where
 * `builder` is 1, a GraphBuilder method `<name>(inputs..., node name)` (ops with no params and
 * one output; the others keep hand-written methods in parity/graph.h or none).
 *
 * Adding an op: append one line before the end (never reorder: enum values are ABI), describe
 * its inputs and outputs in plugin.h's enum comment, and write ops/<name>.cpp (README.md,
 * "Adding an op"). Plain C, included by plugin.h. */
#ifndef PARITY_OP_LIST_H
#define PARITY_OP_LIST_H

/*      ID                 name               in out builder */
#define PARITY_OP_LIST(X)                                            \
  X(CONV2D,            conv2d,            3, 1, 0)                  \
  X(CONV2D_BWD_DATA,   conv2d_bwd_data,   2, 1, 0)                  \
  X(CONV2D_BWD_WEIGHT, conv2d_bwd_weight, 2, 2, 0)                  \
  X(RELU,              relu,              1, 1, 1)                  \
  X(RELU_BWD,          relu_bwd,          2, 1, 0)                  \
  X(MAXPOOL2D,         maxpool2d,         1, 2, 0)                  \
  X(MAXPOOL2D_BWD,     maxpool2d_bwd,     2, 1, 0)                  \
  X(RESHAPE,           reshape,           1, 1, 0)                  \
  X(LINEAR,            linear,            3, 1, 1)                  \
  X(LINEAR_BWD_DATA,   linear_bwd_data,   2, 1, 0)                  \
  X(LINEAR_BWD_WEIGHT, linear_bwd_weight, 2, 2, 0)                  \
  X(SOFTMAX_XENT,      softmax_xent,      2, 1, 1)                  \
  X(SOFTMAX_XENT_BWD,  softmax_xent_bwd,  3, 1, 0)                  \
  X(ARGMAX,            argmax,            1, 1, 1)                  \
  X(ACCURACY,          accuracy,          2, 1, 1)                  \
  X(ADD,               add,               2, 1, 1)                  \
  X(ADAM_STEP,         adam_step,         5, 0, 0)                  \
  X(SGD_STEP,          sgd_step,          3, 0, 0)                  \
  X(FILL,              fill,              0, 1, 0)                  \
  X(SIGMOID,           sigmoid,           1, 1, 1)                  \
  X(SIGMOID_BWD,       sigmoid_bwd,       2, 1, 0)

#endif /* PARITY_OP_LIST_H */
