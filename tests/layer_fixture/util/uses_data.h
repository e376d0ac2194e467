// tests/layer_fixture/util/uses_data.h — util/ sits below data/.
#pragma once
#include "parity/error.h"
#include "data/batcher.h"
