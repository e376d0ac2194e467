/* dist/nccl_api.h — the C table of libparity-nccl.so: the few NCCL and CUDA runtime calls that
 * data-parallel training on CUDA devices makes, behind plain C types, so that libparity never
 * links NCCL or the CUDA runtime (the module is opened with dlopen by --distributed nccl only)
 * and so that every decision above this table (dist/device_collectives.h) runs in tests on the
 * emulated device through a table of the test's own.
 *
 * Handles are opaque: a stream is a cudaStream_t, an event a cudaEvent_t, a communicator an
 * ncclComm_t. Every function returns 0 on success; otherwise non-zero, with a NUL-terminated
 * message of at most PARITY_NCCL_ERROR_LEN bytes (the library's own words, e.g. NCCL's
 * ncclGetErrorString and ncclGetLastError) in `err`. Functions are called from one thread. */
#ifndef PARITY_DIST_NCCL_API_H
#define PARITY_DIST_NCCL_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PARITY_NCCL_API_VERSION 1
#define PARITY_NCCL_ERROR_LEN 512
#define PARITY_NCCL_UNIQUE_ID_BYTES 128 /* NCCL_UNIQUE_ID_BYTES */

typedef struct parity_nccl_api {
  uint32_t version; /* PARITY_NCCL_API_VERSION */
  /* What is loaded, e.g. "NCCL 2.28.3, CUDA runtime 13.0". */
  int (*describe)(char* out, size_t capacity);
  /* Visible CUDA devices (cudaGetDeviceCount). */
  int (*device_count)(int* count, char* err);
  /* ncclGetUniqueId: rank 0's id, which every rank passes to comm_init. */
  int (*unique_id)(unsigned char id[PARITY_NCCL_UNIQUE_ID_BYTES], char* err);
  /* cudaSetDevice(device), then ncclCommInitRank(ranks, id, rank): collective over the ranks. */
  int (*comm_init)(const unsigned char id[PARITY_NCCL_UNIQUE_ID_BYTES], int ranks, int rank, int device,
                   void** comm, char* err);
  /* ncclCommDestroy after finishing its work (abort = 0), or ncclCommAbort (abort = 1: a rank
   * failed, and waiting for the others could hang). */
  int (*comm_destroy)(void* comm, int abort, char* err);
  /* A stream and an event on the device `near` (a stream) runs on. */
  int (*stream_create)(void* near, void** stream, char* err);
  int (*stream_destroy)(void* stream, char* err);
  int (*event_create)(void* near, void** event, char* err);
  int (*event_destroy)(void* event, char* err);
  int (*event_record)(void* event, void* stream, char* err);
  /* stream's later work waits for the work before the event's last record. */
  int (*stream_wait_event)(void* stream, void* event, char* err);
  /* In place on `stream`, one group: each data[i][0..counts[i]) float32 becomes the sum over the
   * ranks of scale * data[i] (ncclAllReduce with a ncclRedOpCreatePreMulSum operator). */
  int (*allreduce_scaled_f32)(void* comm, void* const* data, const int64_t* counts, int32_t n, float scale,
                              void* stream, char* err);
  /* In place on `stream`: rank root's data[0..bytes) on every rank (ncclBroadcast). */
  int (*broadcast)(void* comm, void* data, int64_t bytes, int root, void* stream, char* err);
  /* The host waits for the work queued so far on stream. */
  int (*stream_synchronize)(void* stream, char* err);
} parity_nccl_api;

/* The entry point the module exports (dlsym name "parity_nccl_api_table"): the table, static. */
typedef const parity_nccl_api* (*parity_nccl_api_entry)(void);

#ifdef __cplusplus
}
#endif

#endif /* PARITY_DIST_NCCL_API_H */
