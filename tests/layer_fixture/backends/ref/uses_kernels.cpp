// tests/layer_fixture/backends/ref/uses_kernels.cpp — the oracle shares no code with what it checks.
#include "backends/builtin.h"
#include "util/counter_rng.h"
#include "ops/kernels/activation.h"
