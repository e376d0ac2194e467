// tests/layer_fixture/tools/anything.cpp — the CLI may use every layer and CLI11.
#include <CLI/CLI.hpp>
#include "bench/bench.h"
#include "graph/plan.h"
