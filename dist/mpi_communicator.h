// dist/mpi_communicator.h — the Communicator over MPI's C API (host buffers). Built when
// PARITY_HAVE_MPI; no MPI type appears here, so users need not find mpi.h.
#pragma once

#include <limits>
#include <memory>

#include "dist/communicator.h"

namespace parity {

// Initialises MPI (MPI_THREAD_FUNNELED) unless the program already did, and works on a duplicate
// of MPI_COMM_WORLD, so parity's collectives never match the program's own. Every MPI error
// becomes Error(backend) with MPI_Error_string's text. The destructor finalises MPI only if this
// communicator initialised it. `max_count_per_call` is the most elements (or bytes, for
// broadcast) one MPI call carries: MPI counts are int, so longer buffers go in several calls.
// Tests set it small to exercise that split.
std::unique_ptr<Communicator> make_mpi_communicator(int max_count_per_call = std::numeric_limits<int>::max());

}  // namespace parity
