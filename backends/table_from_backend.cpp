// backends/table_from_backend.cpp — the functions of an adapted table: each unwraps its handle,
// calls the C++ backend, and turns any exception into a parity_status and a message.
#include "backends/table_from_backend.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "backends/kit/abi_guard.h"
#include "parity/error.h"

namespace parity {
namespace {

struct AdaptedInstance {
  const AdaptedBackendSpec* spec;
  std::unique_ptr<Backend> impl;
};

struct AdaptedExecutable {
  AdaptedInstance* owner;
  std::unique_ptr<Executable> impl;
};

// Host memory, 64-byte aligned so that a backend may use it with wide vector loads.
struct AdaptedBuffer {
  unsigned char* data;
  int64_t bytes;
};

AdaptedInstance* instance(parity_backend_t h) { return reinterpret_cast<AdaptedInstance*>(h); }
AdaptedExecutable* executable(parity_executable_t h) { return reinterpret_cast<AdaptedExecutable*>(h); }
AdaptedBuffer* buffer(parity_buffer_t h) { return reinterpret_cast<AdaptedBuffer*>(h); }


parity_status fail(parity_error* err, parity_status status, const std::string& message) {
  return kit::report(err, status, message);
}

// Runs `body`; whatever it throws comes back as a status and message. A parity::Error keeps
// its kind as the status; any other exception is a bug.
template <typename Body>
parity_status guarded(parity_error* err, Body&& body) {
  return kit::guarded(err, "", body, [](const std::exception& e, parity_status& status, std::string&) {
    if (const auto* error = dynamic_cast<const Error*>(&e)) status = status_of_error_kind(error->kind());
  });
}

parity_status null_handle(parity_error* err, const char* function, const char* what) {
  return fail(err, PARITY_STATUS_INVALID_ARGUMENT, std::string(function) + ": " + what + " must not be NULL");
}

void destroy(parity_backend_t h) { delete instance(h); }

parity_status get_capabilities(parity_backend_t h, parity_capabilities* out, parity_error* err) {
  if (!h || !out) return null_handle(err, "get_capabilities", "the backend and the output");
  return guarded(err, [&] {
    AdaptedInstance& in = *instance(h);
    *out = parity_capabilities{};
    out->dtypes = in.spec->dtypes;
    out->features = in.spec->features;
    out->threads = in.impl->threads();
    out->device = 0;
    copy_message(out->device_name, sizeof out->device_name,
                 "host, " + std::to_string(out->threads) + (out->threads == 1 ? " thread" : " threads"));
  });
}

int32_t supports(parity_backend_t h, const parity_node_desc* node, char* reason, size_t reason_len) {
  std::string why;
  bool ok = false;
  try {
    if (!h || !node) why = "supports: the backend and the node must not be NULL";
    else ok = instance(h)->impl->supports(*node, &why);
  } catch (const std::exception& e) {
    why = e.what();
  } catch (...) {
    why = "an exception that is not a std::exception";
  }
  if (!ok && reason && reason_len > 0) copy_message(reason, reason_len, why);
  return ok ? 1 : 0;
}

parity_status buffer_alloc(parity_backend_t h, int64_t bytes, parity_buffer_t* out, parity_error* err) {
  if (!h || !out) return null_handle(err, "buffer_alloc", "the backend and the output");
  if (bytes < 0)
    return fail(err, PARITY_STATUS_INVALID_ARGUMENT,
                std::string(instance(h)->spec->name) + ": buffer_alloc: bytes must be >= 0, got " +
                    std::to_string(bytes));
  return guarded(err, [&] {
    const auto rounded = static_cast<size_t>((bytes + 63) / 64 * 64);
    void* data = rounded ? std::aligned_alloc(64, rounded) : nullptr;
    if (rounded && !data) throw std::bad_alloc();
    *out = reinterpret_cast<parity_buffer_t>(new AdaptedBuffer{static_cast<unsigned char*>(data), bytes});
  });
}

void buffer_free(parity_backend_t, parity_buffer_t b) {
  if (!b) return;
  std::free(buffer(b)->data);
  delete buffer(b);
}

// A byte range [offset, offset + bytes) must lie within the buffer.
parity_status check_range(parity_backend_t h, parity_buffer_t b, int64_t offset, int64_t bytes, const char* function,
                          parity_error* err) {
  if (!h || !b) return null_handle(err, function, "the backend and the buffer");
  const int64_t size = buffer(b)->bytes;
  if (offset < 0 || bytes < 0 || offset > size || bytes > size - offset)
    return fail(err, PARITY_STATUS_INVALID_ARGUMENT,
                std::string(instance(h)->spec->name) + ": " + function + ": bytes [" + std::to_string(offset) + ", " +
                    std::to_string(offset + bytes) + ") must lie within the buffer of " + std::to_string(size) +
                    " bytes");
  return PARITY_OK;
}

parity_status copy_host_to_device(parity_backend_t h, parity_buffer_t dst, int64_t dst_offset, const void* src,
                                  int64_t bytes, parity_error* err) {
  if (parity_status s = check_range(h, dst, dst_offset, bytes, "copy_host_to_device", err)) return s;
  if (bytes) std::memcpy(buffer(dst)->data + dst_offset, src, static_cast<size_t>(bytes));
  return PARITY_OK;
}

parity_status copy_device_to_host(parity_backend_t h, void* dst, parity_buffer_t src, int64_t src_offset,
                                  int64_t bytes, parity_error* err) {
  if (parity_status s = check_range(h, src, src_offset, bytes, "copy_device_to_host", err)) return s;
  if (bytes) std::memcpy(dst, buffer(src)->data + src_offset, static_cast<size_t>(bytes));
  return PARITY_OK;
}

parity_status copy_device_to_device(parity_backend_t h, parity_buffer_t dst, int64_t dst_offset, parity_buffer_t src,
                                    int64_t src_offset, int64_t bytes, parity_error* err) {
  if (parity_status s = check_range(h, dst, dst_offset, bytes, "copy_device_to_device", err)) return s;
  if (parity_status s = check_range(h, src, src_offset, bytes, "copy_device_to_device", err)) return s;
  if (bytes) std::memmove(buffer(dst)->data + dst_offset, buffer(src)->data + src_offset, static_cast<size_t>(bytes));
  return PARITY_OK;
}

CompileOptions options_of(uint32_t flags) {
  CompileOptions options;
  options.poison_outputs = (flags & PARITY_COMPILE_POISON_OUTPUTS) != 0;
  return options;
}

// What compile and memory_need (`function`) refuse before the backend sees the plan: sharing
// with another instance, unknown flags, a node the backend does not support.
parity_status check_compile_arguments(parity_backend_t h, const parity_plan& plan, uint32_t flags,
                                      const AdaptedExecutable* share, const char* function, parity_error* err) {
  const AdaptedInstance* in = instance(h);
  if (share && share->owner != in)
    return fail(err, PARITY_STATUS_INVALID_ARGUMENT,
                std::string(in->spec->name) + ": " + function +
                    ": share_with is an executable of another backend instance; persistent values are "
                    "shared only between executables of one instance");
  if (flags & ~uint32_t{PARITY_COMPILE_POISON_OUTPUTS})
    return fail(err, PARITY_STATUS_UNSUPPORTED,
                std::string(in->spec->name) + ": " + function + ": unknown flags 0x" + std::to_string(flags) +
                    " (known: PARITY_COMPILE_POISON_OUTPUTS)");
  for (int32_t i = 0; plan.nodes && i < plan.num_nodes; ++i) {
    const parity_node_desc& node = plan.nodes[i];
    char why[PARITY_ERROR_MESSAGE_LEN / 2] = {};
    if (supports(h, &node, why, sizeof why)) continue;
    const bool is_op = node.op >= 0 && node.op < PARITY_OP_COUNT;
    return fail(err, PARITY_STATUS_UNSUPPORTED,
                std::string(in->spec->name) + ": node '" + std::string(node.name, strnlen(node.name, PARITY_NAME_LEN)) +
                    "' (" + (is_op ? parity_op_name(node.op) : "op " + std::to_string(static_cast<int>(node.op))) +
                    ") is not supported: " + std::string(why));
  }
  return PARITY_OK;
}

parity_status compile(parity_backend_t h, const parity_plan* plan, uint32_t flags, parity_executable_t share_with,
                      parity_executable_t* out, parity_error* err) {
  if (!h || !plan || !out) return null_handle(err, "compile", "the backend, the plan and the output");
  AdaptedExecutable* share = executable(share_with);
  if (const parity_status status = check_compile_arguments(h, *plan, flags, share, "compile", err); status != PARITY_OK)
    return status;
  return guarded(err, [&] {
    auto exe = std::make_unique<AdaptedExecutable>();
    exe->owner = instance(h);
    exe->impl = instance(h)->impl->compile(*plan, options_of(flags), share ? share->impl.get() : nullptr);
    *out = reinterpret_cast<parity_executable_t>(exe.release());
  });
}

parity_status memory_need(parity_backend_t h, const parity_plan* plan, uint32_t flags, parity_executable_t share_with,
                          parity_memory_need* out, parity_error* err) {
  if (!h || !plan || !out) return null_handle(err, "memory_need", "the backend, the plan and the output");
  AdaptedExecutable* share = executable(share_with);
  if (const parity_status status = check_compile_arguments(h, *plan, flags, share, "memory_need", err);
      status != PARITY_OK)
    return status;
  bool known = false;
  const parity_status status = guarded(err, [&] {
    if (const auto need = instance(h)->impl->memory_need(*plan, options_of(flags), share ? share->impl.get() : nullptr)) {
      *out = parity_memory_need{need->host_bytes, need->device_bytes};
      known = true;
    }
  });
  if (status != PARITY_OK || known) return status;
  return fail(err, PARITY_STATUS_UNSUPPORTED,
              std::string(instance(h)->spec->name) + ": memory_need: this backend cannot tell");
}

void executable_destroy(parity_executable_t h) { delete executable(h); }

parity_status write_value(parity_executable_t h, int32_t value, const void* host, int64_t bytes, parity_error* err) {
  if (!h || (!host && bytes)) return null_handle(err, "write_value", "the executable and the host pointer");
  if (bytes < 0) return fail(err, PARITY_STATUS_INVALID_ARGUMENT, "write_value: bytes must be >= 0, got " + std::to_string(bytes));
  return guarded(err, [&] { executable(h)->impl->write(value, host, static_cast<size_t>(bytes)); });
}

parity_status read_value(parity_executable_t h, int32_t value, void* host, int64_t bytes, parity_error* err) {
  if (!h || (!host && bytes)) return null_handle(err, "read_value", "the executable and the host pointer");
  if (bytes < 0) return fail(err, PARITY_STATUS_INVALID_ARGUMENT, "read_value: bytes must be >= 0, got " + std::to_string(bytes));
  return guarded(err, [&] { executable(h)->impl->read(value, host, static_cast<size_t>(bytes)); });
}

parity_status write_value_f64(parity_executable_t h, int32_t value, const double* host, int64_t count,
                              parity_error* err) {
  if (!h || (!host && count)) return null_handle(err, "write_value_f64", "the executable and the host pointer");
  if (count < 0) return fail(err, PARITY_STATUS_INVALID_ARGUMENT, "write_value_f64: count must be >= 0");
  return guarded(err, [&] { executable(h)->impl->write_f64(value, host, static_cast<size_t>(count)); });
}

parity_status read_value_f64(parity_executable_t h, int32_t value, double* host, int64_t count, parity_error* err) {
  if (!h || (!host && count)) return null_handle(err, "read_value_f64", "the executable and the host pointer");
  if (count < 0) return fail(err, PARITY_STATUS_INVALID_ARGUMENT, "read_value_f64: count must be >= 0");
  return guarded(err, [&] { executable(h)->impl->read_f64(value, host, static_cast<size_t>(count)); });
}

parity_status execute(parity_executable_t h, parity_error* err) {
  if (!h) return null_handle(err, "execute", "the executable");
  return guarded(err, [&] { executable(h)->impl->execute(); });
}

// Host backends finish their work inside execute.
parity_status synchronize(parity_executable_t h, parity_error* err) {
  return h ? PARITY_OK : null_handle(err, "synchronize", "the executable");
}

parity_status memory_bytes(parity_executable_t h, int64_t* out, parity_error* err) {
  if (!h || !out) return null_handle(err, "memory_bytes", "the executable and the output");
  return guarded(err, [&] { *out = executable(h)->impl->memory_bytes(); });
}

// The C hook of the caller, called from the C++ backend's execute; a failed hook stops the
// execute with the hook's status and message.
parity_status set_node_hooks(parity_executable_t h, const parity_node_hooks* hooks, parity_error* err) {
  if (!h) return null_handle(err, "set_node_hooks", "the executable");
  if (hooks && hooks->count > 0 && (!hooks->points || !hooks->fn))
    return null_handle(err, "set_node_hooks", "the points and the hook function");
  return guarded(err, [&] {
    if (!hooks || hooks->count <= 0) {
      executable(h)->impl->set_node_hooks({}, nullptr);
      return;
    }
    std::vector<parity_hook_point> points(hooks->points, hooks->points + hooks->count);
    const parity_node_hooks c = *hooks;
    executable(h)->impl->set_node_hooks(points, [c](int32_t point, void* stream) {
      parity_error e{};
      const parity_status status = c.fn(c.ctx, point, stream, &e);
      if (status != PARITY_OK)
        kit::abi_fail(status, e.message[0] ? std::string(e.message, strnlen(e.message, sizeof e.message))
                                           : "a node hook failed with status " + std::to_string(status) + " and no message");
    });
  });
}

parity_status value_address(parity_executable_t h, int32_t value, void** out, parity_error* err) {
  if (!h || !out) return null_handle(err, "value_address", "the executable and the output");
  return guarded(err, [&] { *out = executable(h)->impl->value_address(value); });
}

}  // namespace


parity_status status_of_error_kind(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_argument: return PARITY_STATUS_INVALID_ARGUMENT;
    case ErrorKind::shape: return PARITY_STATUS_SHAPE;
    case ErrorKind::data: return PARITY_STATUS_DATA;
    case ErrorKind::backend: return PARITY_STATUS_DEVICE;
    case ErrorKind::io: return PARITY_STATUS_IO;
    case ErrorKind::memory: return PARITY_STATUS_OUT_OF_MEMORY;
    case ErrorKind::numeric:
    case ErrorKind::internal: return PARITY_STATUS_INTERNAL;
  }
  return PARITY_STATUS_INTERNAL;
}

parity_status adapted_create(const AdaptedBackendSpec& spec, const parity_backend_config* config,
                             parity_backend_t* out, parity_error* err) {
  if (!out) return null_handle(err, "create", "the output");
  BackendOptions options;
  if (config) {
    if (config->struct_size < sizeof(parity_backend_config))
      return fail(err, PARITY_STATUS_INVALID_ARGUMENT,
                  std::string(spec.name) + ": create: config.struct_size is " + std::to_string(config->struct_size) +
                      ", this backend needs at least " + std::to_string(sizeof(parity_backend_config)));
    if (config->device != 0)
      return fail(err, PARITY_STATUS_INVALID_ARGUMENT,
                  std::string(spec.name) + ": create: device must be 0 (the host is the only device), got " +
                      std::to_string(config->device));
    options.threads = config->threads;
  }
  return guarded(err, [&] {
    auto in = std::make_unique<AdaptedInstance>();
    in->spec = &spec;
    in->impl = spec.make(options);
    *out = reinterpret_cast<parity_backend_t>(in.release());
  });
}

parity_status adapted_host_probe(const AdaptedBackendSpec& spec, parity_probe_result* out) {
  if (!out) return PARITY_STATUS_INVALID_ARGUMENT;
  *out = parity_probe_result{};
  out->device_count = 1;
  out->reason = PARITY_AVAILABLE;
  copy_message(out->detail, sizeof out->detail, spec.description);
  return PARITY_OK;
}

parity_backend_table make_adapted_table(const AdaptedBackendSpec& spec,
                                        parity_status (*probe)(parity_probe_result*, parity_error*),
                                        parity_status (*create)(const parity_backend_config*, parity_backend_t*,
                                                                parity_error*)) {
  parity_backend_table t{};
  t.abi_version = PARITY_ABI_VERSION;
  t.struct_size = sizeof(parity_backend_table);
  t.name = spec.name;
  t.description = spec.description;
  t.probe = probe;
  t.create = create;
  t.destroy = destroy;
  t.get_capabilities = get_capabilities;
  t.supports = supports;
  t.buffer_alloc = buffer_alloc;
  t.buffer_free = buffer_free;
  t.copy_host_to_device = copy_host_to_device;
  t.copy_device_to_host = copy_device_to_host;
  t.copy_device_to_device = copy_device_to_device;
  t.compile = compile;
  t.executable_destroy = executable_destroy;
  t.write_value = write_value;
  t.read_value = read_value;
  t.execute = execute;
  t.synchronize = synchronize;
  t.memory_bytes = memory_bytes;
  t.memory_need = memory_need;
  t.set_node_hooks = set_node_hooks;
  t.value_address = value_address;
  if (spec.features & PARITY_FEATURE_FLOAT64_VALUES) {
    t.write_value_f64 = write_value_f64;
    t.read_value_f64 = read_value_f64;
  }
  return t;
}

}  // namespace parity
