// tests/layer_fixture/graph/uses_model.cpp — graph/ reaching up into model/ and sideways into backends/.
#include "graph/own_header.h"
#include "parity/graph.h"
#include "model/zoo.h"
#include <backends/builtin.h>
