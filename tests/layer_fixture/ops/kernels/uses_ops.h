// tests/layer_fixture/ops/kernels/uses_ops.h — kernels stand alone: ops/ itself is out of reach.
#pragma once
#include "ops/kernels/hd.h"
#include "ops/op_rule.h"
