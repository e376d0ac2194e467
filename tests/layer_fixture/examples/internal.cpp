// tests/layer_fixture/examples/internal.cpp — examples see only the installed headers.
#include <parity/parity.h>
#include "parity/tensor.h"
#include <graph/builder.h>
#include "util/atomic_file.h"
#include <vector>
