// bench/synthetic_batch.h — the LibTorch peer's name for util/synthetic_batch.h (the peer
// includes this path and these names; drop this file once the peer includes util/ directly).
#pragma once

#include "util/synthetic_batch.h"

namespace parity::bench {
using parity::kSyntheticBatches;
using parity::synthetic_batch;
using parity::synthetic_bits;
}  // namespace parity::bench
