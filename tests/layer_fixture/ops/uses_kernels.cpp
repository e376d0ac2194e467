// tests/layer_fixture/ops/uses_kernels.cpp — ops/ may use its own sub-layer and api/, not graph/.
#include "ops/kernels/hd.h"
#include "parity/plugin.h"
  #  include "graph/plan.h"
