// tests/layer_fixture/model/allowed.cpp — everything above model/ in the table: nothing to report.
#include "parity/model.h"
#include "util/counter_rng.h"
#include "data/batcher.h"
#include "backends/loader.h"
#include "graph/plan.h"
#include "ops/op_rule.h"
// #include "tools/commands.h" is a comment, not an include
