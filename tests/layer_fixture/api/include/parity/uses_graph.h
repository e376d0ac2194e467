// tests/layer_fixture/api/include/parity/uses_graph.h — installed headers use nothing internal.
#pragma once
#include "parity/tensor.h"
#include "graph/plan.h"
