// dist/communicator.h — the collective operations data-parallel training needs, behind one
// interface so that the trainer does not see which engine (MPI, NCCL) carries them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace parity {

// Every rank calls the same collectives in the same order, each with the same count and root:
// that is what lets the engine match them up. Calls come from one thread (the one that created
// the communicator). Engine failures are Error(backend) with the engine's own text.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string name() const = 0;  // "mpi"
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // data[0..count) becomes the element-wise sum over the ranks, in place; blocking.
  virtual void allreduce_sum(float* data, int64_t count) = 0;
  virtual void allreduce_sum(double* data, int64_t count) = 0;
  // The same sum, started and not waited for: data must stay untouched until wait(request)
  // returns. Every rank starts the same sequence of calls; requests may be waited in any order.
  virtual int64_t start_allreduce_sum(float* data, int64_t count) = 0;
  virtual void wait(int64_t request) = 0;
  // Lets the started sums advance without waiting for them: an MPI library without a progress
  // thread (Open MPI's default) moves a non-blocking collective on only inside MPI calls.
  virtual void progress() = 0;
  // data[0..bytes) of rank `root` is copied into data on every other rank.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Ends every rank's process with `exit_code` (MPI_Abort): what a rank that failed does, so
  // that the others do not wait for it forever in their next collective.
  [[noreturn]] virtual void abort(int exit_code) = 0;
};

// The communicator of `kind`: "mpi" (throws Error(backend) when this parity was built without
// MPI). Any other kind: Error(invalid_argument) listing the kinds.
std::unique_ptr<Communicator> make_communicator(const std::string& kind);

// The configuration check at start-up, collective: rank 0 broadcasts its `description` (lines
// "key=value"), every rank compares it with its own, and all learn which ranks differ. Returns
// when every rank's is identical; otherwise every rank throws the same Error(invalid_argument)
// naming each differing rank and its first differing keys with both values, e.g. "rank 1 was
// started with lr=0.01, rank 0 with lr=0.001".
void check_same_configuration(Communicator& comm, const std::string& description);

}  // namespace parity
