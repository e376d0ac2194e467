// ops/conformance.h — the cases of `parity check ops`: an op with its params and operand
// tensors, the random draws they are made from, and a family of cases per forward op (its
// built-in list, and the case `--op NAME --shape ...` builds), which each op's rule file
// defines next to its rule (OpRule::conformance). check/check_ops.cpp runs them.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <random>
#include <string>
#include <vector>

#include "parity/plugin.h"
#include "parity/tensor.h"

namespace parity::ops {

struct Operand {
  Tensor tensor;
  parity_value_kind kind = PARITY_VALUE_INPUT;
};

struct OpCase {
  parity_op op;
  parity_op_params params{};
  std::vector<Operand> operands;
  std::string label;
};

// Draws operands: uniform in [-1, 1) normally, small integers in [-3, 3] in exact mode. One
// Draw serves every family in turn, so a seed gives the same cases on every run.
class Draw {
 public:
  // smooth: for gradient mode, inputs stay away from the relu and maxpool kinks (see add_kinks).
  Draw(uint64_t seed, bool exact, bool smooth = false) : seed_(seed), rng_(seed), exact_(exact), smooth_(smooth) {}
  // A Draw of its own for `stream`, from the same seed and mode, that leaves this one's sequence alone.
  Draw fork(uint64_t stream) const;
  Tensor values(const Shape& shape, float scale = 1.0f);
  Tensor positive(const Shape& shape, float hi);
  Tensor labels(int64_t n, int64_t classes);
  bool smooth() const { return smooth_; }

  // Values at the kinks: exact zeros for relu'(0) = 0, and repeated values (ties) for maxpool.
  // In gradient mode the opposite: every value at least 1e-3 from zero and all values distinct
  // with gaps >= 1e-3 (a shuffled grid), so a finite-difference step of 1e-6 crosses no kink.
  void add_kinks(Tensor& t);

 private:
  uint64_t seed_;
  std::mt19937_64 rng_;
  bool exact_;
  bool smooth_;
};

// The cases of one forward op and the ops checked with it (its backward, the ops that read the
// same operands).
struct ConformanceFamily {
  // The `--op` spellings that select the family, space-separated; one ending in '*' also
  // selects every name it begins ("conv2d*" takes conv2d_bwd_data). Empty: no user case.
  const char* spellings;
  const char* shape_meaning;  // what `--shape` lists, e.g. "N,IN,OUT"
  size_t shape_min, shape_max;
  bool zero_allowed;  // --shape may hold 0 (conv2d's padding)
  // The first kSharedDrawFamilies families draw from one shared Draw in this order (the first
  // release's, so a seed still gives the same values); each later one (a new family takes the
  // next number) draws from its own fork, so adding a family changes no other family's values.
  int draw_order;
  void (*builtin)(std::vector<OpCase>& out, Draw& draw);
  void (*from_shape)(std::vector<OpCase>& out, Draw& draw, const std::vector<int64_t>& shape);
};

constexpr int kSharedDrawFamilies = 8;

// Every family's built-in cases, in draw order.
std::vector<OpCase> builtin_cases(Draw& draw);
// For `--op`'s help and errors: every spelling `--op` accepts ("conv2d, linear, ..."), and what
// `--shape` lists for each family ("conv2d N,C,H,W,K,R,S[,stride[,pad]]; linear N,IN,OUT; ...").
std::string op_spellings();
std::string shape_meanings();
// The case `--op op --shape shape` names (throws Error(invalid_argument) naming what --shape
// must hold, or the families there are).
std::vector<OpCase> user_cases(Draw& draw, const std::string& op, const std::vector<int64_t>& shape);

}  // namespace parity::ops
