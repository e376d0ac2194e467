// model/autocast.h — the precision policy as a graph pass: a forward graph rewritten so that
// CONV2D and LINEAR run on half copies (CAST nodes) and the f32-only ops get f32 operands.
#pragma once

#include "parity/graph.h"
#include "parity/model.h"

namespace parity {

// The op classes of the policy (docs/autocast.md, README "--precision").
enum class AutocastClass {
  half_compute,      // CONV2D, LINEAR: x and w cast to the half dtype, bias f32
  follow_the_input,  // RELU, MAXPOOL2D, RESHAPE, ADD, ...: the operands' dtype (mixed: f32)
  f32_only,          // everything else: half operands cast to f32 first
};
AutocastClass autocast_class(parity_op op);

// `forward` (a graph of f32 values, before autodiff) under precision `p`. Precision::f32
// returns it unchanged. Otherwise every value keeps its name, dtype changes aside; each PARAM
// read by a half-compute op gets one CAST "<param>.half" shared by all its readers (the f32
// PARAM stays the master weight, so autodiff gives it an f32 gradient); other casts are made
// once per value and dtype, named "<value>.half" and "<value>.f32". Throws the op rule's error
// naming the node where an op of the graph refuses the dtypes the policy gives it.
Graph autocast(const Graph& forward, Precision p);

}  // namespace parity
