// dist/nccl_module.cpp — libparity-nccl.so: the table of dist/nccl_api.h over NCCL and the CUDA
// runtime, one call each, with their errors in their own words. Built when the CUDA toolkit has
// NCCL; compiled and linked in CI (nm -D shows the imports) and never run there: no GPU.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "dist/nccl_api.h"

namespace {

int cuda_failed(cudaError_t e, const char* what, char* err) {
  if (e == cudaSuccess) return 0;
  std::snprintf(err, PARITY_NCCL_ERROR_LEN, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
  return 1;
}

// NCCL's error string, and its last error text when it has one (the reason behind "internal
// error", "unhandled system error").
int nccl_failed(ncclResult_t r, const char* what, ncclComm_t comm, char* err) {
  if (r == ncclSuccess) return 0;
  const char* last = ncclGetLastError(comm);
  if (last && last[0]) {
    std::snprintf(err, PARITY_NCCL_ERROR_LEN, "%s: %s: %s", what, ncclGetErrorString(r), last);
  } else {
    std::snprintf(err, PARITY_NCCL_ERROR_LEN, "%s: %s", what, ncclGetErrorString(r));
  }
  return 1;
}

int describe(char* out, size_t capacity) {
  int nccl = 0, runtime = 0;
  if (ncclGetVersion(&nccl) != ncclSuccess) nccl = 0;
  if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) runtime = 0;
  // NCCL_VERSION(X,Y,Z) is X*10000 + Y*100 + Z from 2.9 on.
  std::snprintf(out, capacity, "NCCL %d.%d.%d, CUDA runtime %d.%d", nccl / 10000, nccl / 100 % 100, nccl % 100,
                runtime / 1000, runtime % 1000 / 10);
  return 0;
}

int device_count(int* count, char* err) {
  *count = 0;
  return cuda_failed(cudaGetDeviceCount(count), "cudaGetDeviceCount", err);
}

int unique_id(unsigned char id[PARITY_NCCL_UNIQUE_ID_BYTES], char* err) {
  static_assert(sizeof(ncclUniqueId) == PARITY_NCCL_UNIQUE_ID_BYTES, "NCCL_UNIQUE_ID_BYTES changed");
  ncclUniqueId u{};
  if (nccl_failed(ncclGetUniqueId(&u), "ncclGetUniqueId", nullptr, err)) return 1;
  std::memcpy(id, &u, sizeof u);
  return 0;
}

int comm_init(const unsigned char id[PARITY_NCCL_UNIQUE_ID_BYTES], int ranks, int rank, int device, void** comm,
              char* err) {
  *comm = nullptr;
  if (cuda_failed(cudaSetDevice(device), "cudaSetDevice", err)) return 1;
  ncclUniqueId u{};
  std::memcpy(&u, id, sizeof u);
  ncclComm_t c = nullptr;
  if (nccl_failed(ncclCommInitRank(&c, ranks, u, rank), "ncclCommInitRank", nullptr, err)) return 1;
  *comm = c;
  return 0;
}

int comm_destroy(void* comm, int abort, char* err) {
  auto c = static_cast<ncclComm_t>(comm);
  if (abort) return nccl_failed(ncclCommAbort(c), "ncclCommAbort", nullptr, err);
  if (nccl_failed(ncclCommFinalize(c), "ncclCommFinalize", c, err)) return 1;
  return nccl_failed(ncclCommDestroy(c), "ncclCommDestroy", nullptr, err);
}

// The device is the current one, which the plugin's instance and comm_init made current.
int stream_create(void*, void** stream, char* err) {
  cudaStream_t s = nullptr;
  if (cuda_failed(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags", err)) return 1;
  *stream = s;
  return 0;
}

int stream_destroy(void* stream, char* err) {
  return cuda_failed(cudaStreamDestroy(static_cast<cudaStream_t>(stream)), "cudaStreamDestroy", err);
}

// Ordering only: no timing, which would make every record heavier.
int event_create(void*, void** event, char* err) {
  cudaEvent_t e = nullptr;
  if (cuda_failed(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags", err)) return 1;
  *event = e;
  return 0;
}

int event_destroy(void* event, char* err) {
  return cuda_failed(cudaEventDestroy(static_cast<cudaEvent_t>(event)), "cudaEventDestroy", err);
}

int event_record(void* event, void* stream, char* err) {
  return cuda_failed(cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)),
                     "cudaEventRecord", err);
}

int stream_wait_event(void* stream, void* event, char* err) {
  return cuda_failed(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), static_cast<cudaEvent_t>(event), 0),
                     "cudaStreamWaitEvent", err);
}

// One operator per call: its scalar is read when it is made (ncclScalarHostImmediate), and it may
// be destroyed once the last call given it has returned, so nothing outlives the group.
int allreduce_scaled_f32(void* comm, void* const* data, const int64_t* counts, int32_t n, float scale, void* stream,
                         char* err) {
  auto c = static_cast<ncclComm_t>(comm);
  ncclRedOp_t op{};
  if (nccl_failed(ncclRedOpCreatePreMulSum(&op, &scale, ncclFloat32, ncclScalarHostImmediate, c),
                  "ncclRedOpCreatePreMulSum", c, err))
    return 1;
  int failed = nccl_failed(ncclGroupStart(), "ncclGroupStart", c, err);
  for (int32_t i = 0; i < n && !failed; ++i)
    failed = nccl_failed(ncclAllReduce(data[i], data[i], static_cast<size_t>(counts[i]), ncclFloat32, op, c,
                                       static_cast<cudaStream_t>(stream)),
                         "ncclAllReduce", c, err);
  // The group is ended even after a failed call inside it, so that NCCL's group state is left
  // balanced; the first error is the one reported.
  char end_err[PARITY_NCCL_ERROR_LEN];
  if (nccl_failed(ncclGroupEnd(), "ncclGroupEnd", c, failed ? end_err : err)) failed = 1;
  char destroy_err[PARITY_NCCL_ERROR_LEN];
  if (nccl_failed(ncclRedOpDestroy(op, c), "ncclRedOpDestroy", c, failed ? destroy_err : err)) failed = 1;
  return failed;
}

int broadcast(void* comm, void* data, int64_t bytes, int root, void* stream, char* err) {
  auto c = static_cast<ncclComm_t>(comm);
  return nccl_failed(ncclBroadcast(data, data, static_cast<size_t>(bytes), ncclUint8, root, c,
                                   static_cast<cudaStream_t>(stream)),
                     "ncclBroadcast", c, err);
}

int stream_synchronize(void* stream, char* err) {
  return cuda_failed(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "cudaStreamSynchronize", err);
}

const parity_nccl_api kTable = {
    PARITY_NCCL_API_VERSION, describe,          device_count, unique_id,    comm_init,
    comm_destroy,            stream_create,     stream_destroy, event_create, event_destroy,
    event_record,            stream_wait_event, allreduce_scaled_f32, broadcast, stream_synchronize,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const parity_nccl_api* parity_nccl_api_table() { return &kTable; }
