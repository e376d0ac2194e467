// tests/layer_fixture/backends/cpu/uses_kernels.cpp — other backends may use ops/kernels, not graph/ or ops/.
#include "ops/kernels/activation.h"
#include "backends/cpu/cpu_ops.h"
#include "ops/op_rule.h"
#include <CLI/CLI.hpp>
