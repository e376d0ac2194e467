// tests/layer_fixture/data/relative.cpp — a quoted include must name its path from the root.
#include "util/atomic_file.h"
#include "batcher_detail.h"
#include <zlib.h>
