// dist/mpi_communicator.cpp — the Communicator over MPI: in-place (I)allreduce and broadcast on
// a duplicate of MPI_COMM_WORLD, every call checked, buffers longer than an int split in chunks.
#include "dist/mpi_communicator.h"

#include <cstdlib>
#include <fmt/format.h>
// The C API only: mpi.h compiled as C++ would otherwise declare the C++ bindings (removed in MPI-3)
// whose library, libmpi_cxx, parity does not link.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <vector>

#include "parity/error.h"

namespace parity {
namespace {

// Every MPI call goes through this check: the call, its error text, and where it was made.
// MPI_ERRORS_RETURN (set at start-up) is what makes calls return instead of aborting the job.
void check_mpi(int status, const char* call, const char* file, int line) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(status, text, &length) != MPI_SUCCESS) {
    std::snprintf(text, sizeof text, "MPI error code %d", status);
  }
  throw Error(ErrorKind::backend, fmt::format("mpi: {} failed: {} ({}:{})", call, text, file, line));
}
#define PARITY_MPI_CHECK(call) check_mpi((call), #call, __FILE__, __LINE__)

void check_count(const char* what, int64_t count) {
  if (count < 0) {
    throw Error(ErrorKind::invalid_argument, fmt::format("mpi: {} of a negative count, {}", what, count));
  }
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(int max_count_per_call) : max_count_per_call_(max_count_per_call) {
    if (max_count_per_call < 1) {
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("mpi: max_count_per_call must be at least 1, got {}", max_count_per_call));
    }
    int initialized = 0;
    int finalized = 0;
    PARITY_MPI_CHECK(MPI_Initialized(&initialized));
    PARITY_MPI_CHECK(MPI_Finalized(&finalized));
    if (finalized) {
      throw Error(ErrorKind::backend, "mpi: MPI was already finalised in this process and cannot start again");
    }
    if (!initialized) {
      // FUNNELED: parity's worker threads never call MPI; only the thread that trains does.
      int provided = 0;
      int status = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      if (status != MPI_SUCCESS) {
        throw Error(ErrorKind::backend, fmt::format("mpi: MPI_Init_thread failed with code {}", status));
      }
      owns_mpi_ = true;
      if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        throw Error(ErrorKind::backend,
                    fmt::format("mpi: this MPI provides thread level {} but parity needs MPI_THREAD_FUNNELED", provided));
      }
    }
    try {
      PARITY_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
      // The duplicate inherits the error handler; it keeps parity's collectives apart from any the
      // program itself makes on MPI_COMM_WORLD.
      PARITY_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
      PARITY_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
      PARITY_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    } catch (...) {
      if (owns_mpi_) MPI_Finalize();
      throw;
    }
  }

  ~MpiCommunicator() override {
    // Finalising with collectives in flight is erroneous: complete them (every rank started the
    // same ones, so they do complete). Errors are ignored, a destructor must not throw.
    for (auto& [id, requests] : pending_) {
      MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE);
    }
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    if (owns_mpi_) MPI_Finalize();
  }

  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(float* data, int64_t count) override { allreduce(data, count, MPI_FLOAT); }
  void allreduce_sum(double* data, int64_t count) override { allreduce(data, count, MPI_DOUBLE); }

  int64_t start_allreduce_sum(float* data, int64_t count) override {
    check_count("start_allreduce_sum", count);
    std::vector<MPI_Request> requests;
    for (int64_t at = 0; at < count; at += max_count_per_call_) {
      int chunk = static_cast<int>(std::min<int64_t>(max_count_per_call_, count - at));
      MPI_Request request = MPI_REQUEST_NULL;
      int status = MPI_Iallreduce(MPI_IN_PLACE, data + at, chunk, MPI_FLOAT, MPI_SUM, comm_, &request);
      if (status != MPI_SUCCESS) {
        // The chunks already started stay pending under an id nobody holds; the destructor waits.
        if (!requests.empty()) pending_.emplace(next_request_++, std::move(requests));
        check_mpi(status, "MPI_Iallreduce(MPI_IN_PLACE, data + at, chunk, MPI_FLOAT, MPI_SUM, comm_, &request)",
                  __FILE__, __LINE__);
      }
      requests.push_back(request);
    }
    int64_t id = next_request_++;
    pending_.emplace(id, std::move(requests));
    return id;
  }

  void wait(int64_t request) override {
    auto it = pending_.find(request);
    if (it == pending_.end()) {
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("mpi: wait on request {}, which was not started or was already waited for", request));
    }
    std::vector<MPI_Request> requests = std::move(it->second);
    pending_.erase(it);
    PARITY_MPI_CHECK(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE));
  }

  void progress() override {
    for (auto& [id, requests] : pending_) {
      int done = 0;  // completed requests become MPI_REQUEST_NULL, which wait() then passes at once
      PARITY_MPI_CHECK(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE));
    }
  }

  void broadcast(void* data, int64_t bytes, int root) override {
    check_count("broadcast", bytes);
    check_root(root);
    auto* base = static_cast<unsigned char*>(data);
    for (int64_t at = 0; at < bytes; at += max_count_per_call_) {
      int chunk = static_cast<int>(std::min<int64_t>(max_count_per_call_, bytes - at));
      PARITY_MPI_CHECK(MPI_Bcast(base + at, chunk, MPI_BYTE, root, comm_));
    }
  }

  void barrier() override { PARITY_MPI_CHECK(MPI_Barrier(comm_)); }
  [[noreturn]] void abort(int exit_code) override {
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);  // MPI_Abort does not return; if it did, this process still ends
  }

 private:
  template <typename T>
  void allreduce(T* data, int64_t count, MPI_Datatype type) {
    check_count("allreduce_sum", count);
    for (int64_t at = 0; at < count; at += max_count_per_call_) {
      int chunk = static_cast<int>(std::min<int64_t>(max_count_per_call_, count - at));
      PARITY_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data + at, chunk, type, MPI_SUM, comm_));
    }
  }

  void check_root(int root) const {
    if (root < 0 || root >= size_) {
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("mpi: broadcast from root {}, but the ranks are 0..{}", root, size_ - 1));
    }
  }

  int max_count_per_call_;
  bool owns_mpi_ = false;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  int64_t next_request_ = 0;
  std::map<int64_t, std::vector<MPI_Request>> pending_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(int max_count_per_call) {
  return std::make_unique<MpiCommunicator>(max_count_per_call);
}

}  // namespace parity
