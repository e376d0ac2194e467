// backends/backend_from_table.cpp — TableBackend and TableExecutable: call the C table, and turn a
// status + message back into parity::Error. The instance handle is shared by the backend and
// its executables, so it is destroyed after the last of them whatever order users drop them in.
#include "backends/backend_from_table.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "backends/table_from_backend.h"
#include "parity/error.h"
#include "util/host_memory.h"

namespace parity {
namespace {

// The dtypes of parity_dtype with their names, for messages and `parity info`.
constexpr std::pair<parity_dtype, const char*> kDtypeNames[] = {
    {PARITY_F32, "f32"}, {PARITY_I32, "i32"}, {PARITY_I64, "i64"}, {PARITY_BF16, "bf16"}, {PARITY_F16, "f16"}};

std::string dtype_text(int32_t dtype) {
  for (auto [dt, name] : kDtypeNames)
    if (dt == dtype) return name;
  return "dtype " + std::to_string(dtype) + " (not a parity_dtype)";
}

ErrorKind kind_of(parity_status status) {
  switch (status) {
    case PARITY_STATUS_INVALID_ARGUMENT: return ErrorKind::invalid_argument;
    case PARITY_STATUS_SHAPE: return ErrorKind::shape;
    case PARITY_STATUS_DATA: return ErrorKind::data;
    case PARITY_STATUS_UNSUPPORTED:
    case PARITY_STATUS_OUT_OF_MEMORY:
    case PARITY_STATUS_DEVICE: return ErrorKind::backend;
    case PARITY_STATUS_IO: return ErrorKind::io;
    case PARITY_OK:
    case PARITY_STATUS_INTERNAL: break;
  }
  return ErrorKind::internal;
}

// Throws the error a table function reported.
void check(parity_status status, const parity_error& err, const char* backend, const char* function) {
  if (status == PARITY_OK) return;
  std::string message(err.message, strnlen(err.message, sizeof err.message));
  if (message.empty()) message = fmt::format("{}: {} failed with status {} and no message", backend, function,
                                             static_cast<int>(status));
  throw Error(kind_of(status), message);
}

// The first node of `plan` the table's ABI does not know, as Error(backend).
void refuse_newer_nodes(const parity_backend_table& table, const parity_plan& plan) {
  for (int32_t i = 0; i < plan.num_nodes; ++i) {
    const std::string why = abi_refusal(table.abi_version, plan.nodes[i]);
    if (!why.empty()) throw Error(ErrorKind::backend, fmt::format("{}: {}", table.name, why));
  }
}

// One created instance; destroyed when the backend and all its executables are gone.
struct Instance {
  Instance(const parity_backend_table* t, parity_backend_t h) : table(t), handle(h) {}
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;
  ~Instance() { table->destroy(handle); }
  const parity_backend_table* table;
  parity_backend_t handle;
};

class TableExecutable final : public Executable {
 public:
  TableExecutable(std::shared_ptr<Instance> instance, parity_executable_t handle)
      : instance_(std::move(instance)), handle_(handle) {}
  ~TableExecutable() override { instance_->table->executable_destroy(handle_); }

  void write(int32_t value, const void* host, size_t bytes) override {
    parity_error err{};
    check(table().write_value(handle_, value, host, static_cast<int64_t>(bytes), &err), err, table().name,
          "write_value");
  }
  void read(int32_t value, void* host, size_t bytes) const override {
    parity_error err{};
    check(table().read_value(handle_, value, host, static_cast<int64_t>(bytes), &err), err, table().name,
          "read_value");
  }
  // Queues the step, then waits: the C++ API is synchronous (GPU backends overlap within a step).
  void execute() override {
    parity_error err{};
    check(table().execute(handle_, &err), err, table().name, "execute");
    check(table().synchronize(handle_, &err), err, table().name, "synchronize");
  }
  void write_f64(int32_t value, const double* host, size_t count) override {
    if (!table().write_value_f64) Executable::write_f64(value, host, count);
    parity_error err{};
    check(table().write_value_f64(handle_, value, host, static_cast<int64_t>(count), &err), err, table().name,
          "write_value_f64");
  }
  void read_f64(int32_t value, double* host, size_t count) const override {
    if (!table().read_value_f64) Executable::read_f64(value, host, count);
    parity_error err{};
    check(table().read_value_f64(handle_, value, host, static_cast<int64_t>(count), &err), err, table().name,
          "read_value_f64");
  }
  // The hook crosses the ABI as a C function with this executable as its context; an exception
  // it throws comes back through execute's status and message.
  void set_node_hooks(const std::vector<parity_hook_point>& points, NodeHook hook) override {
    if (!table().set_node_hooks) {
      throw Error(ErrorKind::backend,
                  fmt::format("{}: this backend has no node hooks (its table has no set_node_hooks, ABI 8)", table().name));
    }
    hook_ = std::move(hook);
    const parity_node_hooks hooks{points.data(), static_cast<int32_t>(points.size()), &TableExecutable::call_hook, this};
    parity_error err{};
    check(table().set_node_hooks(handle_, points.empty() ? nullptr : &hooks, &err), err, table().name, "set_node_hooks");
  }
  void* value_address(int32_t value) override {
    if (!table().value_address) {
      throw Error(ErrorKind::backend,
                  fmt::format("{}: this backend has no value addresses (its table has no value_address, ABI 8)", table().name));
    }
    parity_error err{};
    void* address = nullptr;
    check(table().value_address(handle_, value, &address, &err), err, table().name, "value_address");
    return address;
  }
  int64_t memory_bytes() const override {
    parity_error err{};
    int64_t bytes = 0;
    check(table().memory_bytes(handle_, &bytes, &err), err, table().name, "memory_bytes");
    return bytes;
  }

  const Instance* instance() const { return instance_.get(); }
  parity_executable_t handle() const { return handle_; }

 private:
  const parity_backend_table& table() const { return *instance_->table; }

  static parity_status call_hook(void* ctx, int32_t point, void* stream, parity_error* err) {
    return kit::guarded(err, "", [&] { static_cast<TableExecutable*>(ctx)->hook_(point, stream); },
                        [](const std::exception& e, parity_status& status, std::string&) {
                          if (const auto* error = dynamic_cast<const Error*>(&e)) status = status_of_error_kind(error->kind());
                        });
  }

  std::shared_ptr<Instance> instance_;
  parity_executable_t handle_;
  NodeHook hook_;
};

class TableBackend final : public Backend {
 public:
  TableBackend(const parity_backend_table* table, const BackendOptions& options) {
    parity_backend_config config{};
    config.struct_size = sizeof config;
    config.device = options.device;
    config.threads = options.threads;
    config.stream = nullptr;
    parity_error err{};
    parity_backend_t handle = nullptr;
    check(table->create(&config, &handle, &err), err, table->name, "create");
    instance_ = std::make_shared<Instance>(table, handle);
    parity_capabilities caps{};
    check(table->get_capabilities(handle, &caps, &err), err, table->name, "get_capabilities");
    threads_ = caps.threads;
    dtypes_ = caps.dtypes;
  }

  std::string name() const override { return instance_->table->name; }

  bool supports(const parity_node_desc& node, std::string* reason) const override {
    const std::string refusal = abi_refusal(instance_->table->abi_version, node);
    if (!refusal.empty()) {
      if (reason) *reason = refusal;
      return false;
    }
    char why[PARITY_ERROR_MESSAGE_LEN] = {};
    const bool ok = instance_->table->supports(instance_->handle, &node, why, sizeof why) != 0;
    if (!ok && reason) *reason = why[0] ? std::string(why) : "the backend gave no reason";
    return ok;
  }

  std::unique_ptr<Executable> compile(const parity_plan& plan, const CompileOptions& options,
                                      Executable* share_persistent_with) override {
    parity_executable_t share = nullptr;
    if (share_persistent_with) {
      auto* other = dynamic_cast<TableExecutable*>(share_persistent_with);
      if (!other || other->instance() != instance_.get())
        throw Error(ErrorKind::backend,
                    fmt::format("{}: share_persistent_with must be an executable compiled by this same backend "
                                "instance; persistent values cannot be shared across backends or instances",
                                name()));
      share = other->handle();
    }
    refuse_newer_nodes(*instance_->table, plan);
    refuse_unstored_dtypes(plan);
    refuse_what_cannot_fit(plan, options, share_persistent_with);
    const uint32_t flags = options.poison_outputs ? PARITY_COMPILE_POISON_OUTPUTS : 0u;
    parity_error err{};
    parity_executable_t handle = nullptr;
    check(instance_->table->compile(instance_->handle, &plan, flags, share, &handle, &err), err,
          instance_->table->name, "compile");
    return std::make_unique<TableExecutable>(instance_, handle);
  }

  int threads() const override { return threads_; }

  // A value of a dtype the backend does not list in its capabilities (a bf16 value on a backend
  // of f32 and i32) is refused here, naming the backend and the dtype, before the plugin sees it.
  void refuse_unstored_dtypes(const parity_plan& plan) const {
    for (int32_t i = 0; i < plan.num_values; ++i) {
      const parity_value_desc& v = plan.values[i];
      int32_t dtype;
      std::memcpy(&dtype, &v.dtype, sizeof dtype);
      if (dtype >= 0 && dtype < 32 && (dtypes_ & (1u << dtype))) continue;
      std::string stored;
      for (auto [dt, dt_name] : kDtypeNames)
        if (dtypes_ & PARITY_DTYPE_BIT(dt)) stored += (stored.empty() ? "" : ", ") + std::string(dt_name);
      throw Error(ErrorKind::backend,
                  fmt::format("backend '{}' cannot run {} values (plan value '{}'); it runs {} values only", name(),
                              dtype_text(dtype), std::string(v.name, strnlen(v.name, sizeof v.name)), stored));
    }
  }

  // A plan whose host memory need exceeds what this process may still take is refused before
  // anything is allocated (otherwise the kernel's OOM killer ends the process, or malloc fails
  // half-way). Device memory is the plugin's to check against its device.
  void refuse_what_cannot_fit(const parity_plan& plan, const CompileOptions& options, Executable* share) const {
    const std::optional<MemoryNeed> need = memory_need(plan, options, share);
    if (!need) return;
    const HostMemory host = available_host_memory();
    if (need->host_bytes <= host.available_bytes) return;
    throw Error(ErrorKind::memory,
                fmt::format("{}: the plan needs {} of host memory, more than the {} this process may still take "
                            "(bounded by {})",
                            name(), format_bytes(need->host_bytes), format_bytes(host.available_bytes), host.source));
  }

  std::optional<MemoryNeed> memory_need(const parity_plan& plan, const CompileOptions& options,
                                        Executable* share_persistent_with) const override {
    const parity_backend_table& table = *instance_->table;
    refuse_newer_nodes(table, plan);
    // memory_need is optional, and absent from tables older than ABI 3.
    if (table.struct_size < offsetof(parity_backend_table, memory_need) + sizeof table.memory_need ||
        !table.memory_need)
      return std::nullopt;
    refuse_unstored_dtypes(plan);
    parity_executable_t share = nullptr;
    if (auto* other = dynamic_cast<TableExecutable*>(share_persistent_with);
        other && other->instance() == instance_.get())
      share = other->handle();
    const uint32_t flags = options.poison_outputs ? PARITY_COMPILE_POISON_OUTPUTS : 0u;
    parity_error err{};
    parity_memory_need need{};
    const parity_status status = table.memory_need(instance_->handle, &plan, flags, share, &need, &err);
    if (status == PARITY_STATUS_UNSUPPORTED) return std::nullopt;
    check(status, err, table.name, "memory_need");
    return MemoryNeed{need.host_bytes, need.device_bytes};
  }

 private:
  std::shared_ptr<Instance> instance_;
  int threads_ = 1;
  uint32_t dtypes_ = 0;  // parity_capabilities.dtypes
};

std::string feature_names(uint64_t features) {
  static const std::pair<uint64_t, const char*> kNames[] = {
      {PARITY_FEATURE_ASYNC_EXECUTE, "async"},        {PARITY_FEATURE_GRAPH_CAPTURE, "graph-capture"},
      {PARITY_FEATURE_HOST_MEMORY, "host-memory"},    {PARITY_FEATURE_DETERMINISTIC, "deterministic"},
      {PARITY_FEATURE_THREADS, "threads"},            {PARITY_FEATURE_EXTERNAL_STREAM, "external-stream"},
      {PARITY_FEATURE_FLOAT64_VALUES, "float64-values"}};
  std::string s;
  for (const auto& [bit, name] : kNames)
    if (features & bit) s += (s.empty() ? "" : " ") + std::string(name);
  return s.empty() ? "none" : s;
}

}  // namespace

std::optional<MemoryNeed> memory_need_from_table_without_device(const parity_backend_table* table,
                                                                const parity_plan& plan, const CompileOptions& options) {
  // Optional, and absent from tables older than ABI 4.
  if (!table || table->struct_size < offsetof(parity_backend_table, memory_need_without_device) +
                                         sizeof table->memory_need_without_device ||
      !table->memory_need_without_device)
    return std::nullopt;
  refuse_newer_nodes(*table, plan);
  const uint32_t flags = options.poison_outputs ? PARITY_COMPILE_POISON_OUTPUTS : 0u;
  parity_error err{};
  parity_memory_need need{};
  const parity_status status = table->memory_need_without_device(&plan, flags, &need, &err);
  if (status == PARITY_STATUS_UNSUPPORTED) return std::nullopt;
  check(status, err, table->name, "memory_need_without_device");
  return MemoryNeed{need.host_bytes, need.device_bytes};
}

std::string abi_refusal(uint32_t abi_version, const parity_node_desc& node) {
  const uint32_t needed = std::min<uint32_t>(PARITY_ABI_CONV2D_GENERAL, PARITY_ABI_VERSION);
  const bool convolution = node.op == PARITY_OP_CONV2D || node.op == PARITY_OP_CONV2D_BWD_DATA ||
                           node.op == PARITY_OP_CONV2D_BWD_WEIGHT;
  if (!convolution || abi_version >= needed) return "";
  const parity_conv2d_params& p = node.params.conv2d;
  const parity_op_info info = parity_op_info_of(node.op);
  std::string uses;
  auto add = [&](const std::string& what) { uses += (uses.empty() ? "" : ", ") + what; };
  if (parity_conv2d_groups(&p) != 1) add(fmt::format("groups {}", parity_conv2d_groups(&p)));
  if (parity_conv2d_dilation_h(&p) != 1 || parity_conv2d_dilation_w(&p) != 1)
    add(fmt::format("dilation {}x{}", parity_conv2d_dilation_h(&p), parity_conv2d_dilation_w(&p)));
  if (parity_conv2d_pad_bottom(&p) != p.pad_h || parity_conv2d_pad_right(&p) != p.pad_w)
    add(fmt::format("asymmetric padding {},{},{},{} (top,left,bottom,right)", p.pad_h, p.pad_w,
                    parity_conv2d_pad_bottom(&p), parity_conv2d_pad_right(&p)));
  if (node.num_inputs < info.num_inputs || node.num_outputs < info.num_outputs) add("no bias");
  if (uses.empty()) return "";
  return fmt::format("node '{}' ({}) uses {}, which plugins built for ABI {} do not know (they need ABI {}); rebuild "
                     "the plugin against this parity",
                     std::string(node.name, strnlen(node.name, sizeof node.name)), info.name, uses, abi_version,
                     PARITY_ABI_CONV2D_GENERAL);
}

std::unique_ptr<Backend> make_backend_from_table(const parity_backend_table* table, const BackendOptions& options) {
  return std::make_unique<TableBackend>(table, options);
}

std::string describe_capabilities(const parity_backend_table* table) {
  parity_backend_config config{};
  config.struct_size = sizeof config;
  parity_error err{};
  parity_backend_t handle = nullptr;
  check(table->create(&config, &handle, &err), err, table->name, "create");
  Instance instance(table, handle);
  parity_capabilities caps{};
  check(table->get_capabilities(handle, &caps, &err), err, table->name, "get_capabilities");
  std::string dtypes;
  for (auto [dt, name] : kDtypeNames)
    if (caps.dtypes & PARITY_DTYPE_BIT(dt)) dtypes += (dtypes.empty() ? "" : " ") + std::string(name);
  return fmt::format("dtypes {}; features {}; {}", dtypes, feature_names(caps.features),
                     std::string(caps.device_name, strnlen(caps.device_name, sizeof caps.device_name)));
}

}  // namespace parity
