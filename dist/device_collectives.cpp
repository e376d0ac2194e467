// dist/device_collectives.cpp — the NCCL communicator's bootstrap, the device choice, the
// streams and events that order each bucket's all-reduce with the backend's stream, and the
// loading of libparity-nccl.so.
#include "dist/device_collectives.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include <mutex>

#include "parity/backend.h"
#include "parity/error.h"

#ifndef PARITY_NCCL_BUILD_NOTE
#define PARITY_NCCL_BUILD_NOTE "this parity was built without NCCL"
#endif

namespace parity {

int device_for_rank(const LaunchEnv& env, int device_count) {
  if (device_count < 1)
    throw Error(ErrorKind::invalid_argument, fmt::format("--distributed nccl: rank {} sees no CUDA device", env.rank));
  if (device_count == 1) return 0;
  if (env.local_size > device_count)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("--distributed nccl: {} ranks run on rank {}'s node, which has {} CUDA devices: start at "
                            "most one rank per device (NCCL refuses two ranks on one device)",
                            env.local_size, env.rank, device_count));
  return env.local_rank;
}

DeviceCollectives::DeviceCollectives(const parity_nccl_api& api, Communicator& host, const LaunchEnv& env)
    : api_(api) {
  if (api.version != PARITY_NCCL_API_VERSION)
    throw Error(ErrorKind::backend, fmt::format("libparity-nccl.so has table version {}, this parity needs {}",
                                                api.version, PARITY_NCCL_API_VERSION));
  char err[PARITY_NCCL_ERROR_LEN] = "";
  check(api_.device_count(&device_count_, err), err);
  // Every rank learns whether any could not take a device before the collective init, so that a
  // refusal on one rank does not leave the others waiting in ncclCommInitRank.
  std::string refusal;
  try {
    device_ = device_for_rank(env, device_count_);
  } catch (const Error& e) {
    refusal = e.what();
  }
  double refused[1] = {refusal.empty() ? 0.0 : 1.0};
  host.allreduce_sum(refused, 1);
  if (!refusal.empty()) throw Error(ErrorKind::invalid_argument, refusal);
  if (refused[0] > 0)
    throw Error(ErrorKind::invalid_argument,
                fmt::format("--distributed nccl: {} other rank(s) could not take a CUDA device (their messages say why)",
                            static_cast<int>(refused[0])));

  unsigned char id[PARITY_NCCL_UNIQUE_ID_BYTES] = {};
  int got_id = 1;
  if (host.rank() == 0) got_id = api_.unique_id(id, err) == 0 ? 1 : 0;
  // Rank 0 says whether it has an id before the others wait for one.
  double ok[1] = {static_cast<double>(got_id)};
  host.allreduce_sum(ok, 1);
  if (host.rank() == 0 && !got_id) check(1, err);
  if (ok[0] < host.size())
    throw Error(ErrorKind::backend, "--distributed nccl: rank 0 could not make an NCCL unique id (its message says why)");
  host.broadcast(id, sizeof id, 0);
  check(api_.comm_init(id, host.size(), host.rank(), device_, &comm_, err), err);
}

DeviceCollectives::~DeviceCollectives() {
  char err[PARITY_NCCL_ERROR_LEN];
  // Errors here have nowhere to go: the run's result is already decided.
  if (comm_) api_.comm_destroy(comm_, 0, err);
  for (void* e : ready_)
    if (e) api_.event_destroy(e, err);
  for (void* e : done_)
    if (e) api_.event_destroy(e, err);
  if (stream_) api_.stream_destroy(stream_, err);
}

std::string DeviceCollectives::describe() const {
  char what[256] = "";
  api_.describe(what, sizeof what);
  return fmt::format("{}, device {} of {}", what, device_, device_count_);
}

void DeviceCollectives::check(int status, const char* err) const {
  if (status != 0) throw Error(ErrorKind::backend, fmt::format("--distributed nccl: {}", err));
}

void* DeviceCollectives::event_for(std::vector<void*>& events, int32_t bucket, void* near) {
  if (bucket < 0) throw Error(ErrorKind::internal, fmt::format("device collectives: bucket {}", bucket));
  if (events.size() <= static_cast<size_t>(bucket)) events.resize(static_cast<size_t>(bucket) + 1, nullptr);
  void*& e = events[static_cast<size_t>(bucket)];
  if (!e) {
    char err[PARITY_NCCL_ERROR_LEN] = "";
    check(api_.event_create(near, &e, err), err);
  }
  return e;
}

void DeviceCollectives::start_allreduce(int32_t bucket, const std::vector<DeviceSpan>& spans, float scale,
                                        void* stream) {
  char err[PARITY_NCCL_ERROR_LEN] = "";
  if (!stream_) check(api_.stream_create(stream, &stream_, err), err);
  void* ready = event_for(ready_, bucket, stream);
  void* done = event_for(done_, bucket, stream);
  std::vector<void*> data;
  std::vector<int64_t> counts;
  for (const DeviceSpan& s : spans) {
    data.push_back(s.data);
    counts.push_back(s.count);
  }
  check(api_.event_record(ready, stream, err), err);
  check(api_.stream_wait_event(stream_, ready, err), err);
  check(api_.allreduce_scaled_f32(comm_, data.data(), counts.data(), static_cast<int32_t>(data.size()), scale, stream_,
                                  err),
        err);
  check(api_.event_record(done, stream_, err), err);
}

void DeviceCollectives::wait(int32_t bucket, void* stream) {
  if (bucket < 0 || static_cast<size_t>(bucket) >= done_.size() || !done_[static_cast<size_t>(bucket)])
    throw Error(ErrorKind::internal, fmt::format("device collectives: bucket {} is waited for before it started", bucket));
  char err[PARITY_NCCL_ERROR_LEN] = "";
  check(api_.stream_wait_event(stream, done_[static_cast<size_t>(bucket)], err), err);
}

void DeviceCollectives::broadcast(void* data, int64_t bytes, int root, void* stream) {
  char err[PARITY_NCCL_ERROR_LEN] = "";
  check(api_.broadcast(comm_, data, bytes, root, stream, err), err);
}

namespace {

constexpr const char* kModuleFile = "libparity-nccl.so";

const parity_nccl_api* open_module(std::string& why) {
  std::vector<std::string> tried;
  for (const std::string& folder : plugin_search_folders()) {
    const std::string path = folder + "/" + kModuleFile;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      tried.push_back(folder);
      continue;
    }
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* e = ::dlerror();
      why = fmt::format("{} does not load: {}", path, e ? e : "dlopen failed");
      return nullptr;
    }
    auto entry = reinterpret_cast<parity_nccl_api_entry>(::dlsym(handle, "parity_nccl_api_table"));
    if (!entry) {
      why = fmt::format("{} has no entry point parity_nccl_api_table", path);
      return nullptr;
    }
    return entry();  // the handle stays open for the process's life, as the plugins' do
  }
  why = fmt::format("{} is not in the plugin folders ({}): {}", kModuleFile, fmt::join(tried, ", "),
                    PARITY_NCCL_BUILD_NOTE);
  return nullptr;
}

}  // namespace

const parity_nccl_api& load_nccl_api() {
  static std::once_flag once;
  static const parity_nccl_api* api = nullptr;
  static std::string why;
  std::call_once(once, [] { api = open_module(why); });
  if (!api) throw Error(ErrorKind::backend, fmt::format("--distributed nccl: {}", why));
  return *api;
}

}  // namespace parity
