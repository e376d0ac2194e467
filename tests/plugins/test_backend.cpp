// tests/plugins/test_backend.cpp — a tiny backend plugin that exists only for the tests: it runs
// FILL, ADD and RESHAPE on the host through the C ABI, loaded with dlopen. The same file, built
// with one of the PARITY_TEST_* definitions, makes the broken plugins the loader must reject:
// a wrong ABI version, no entry point, a library that will not load (no_device.c is the fourth),
// and (PARITY_TEST_FAULTY) a backend with deliberate bugs that `parity check ops` must catch:
// its values live in one arena at the plan's offsets, ADD writes one element past its output,
// RESHAPE leaves its last element unwritten, and FILL is off by 1e-3.
// It links nothing of parity: only plugin.h (a plugin must not need libparity's symbols).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "parity/plugin.h"

#ifndef PARITY_TEST_PLUGIN_NAME
#error "define PARITY_TEST_PLUGIN_NAME"
#endif

#ifdef PARITY_TEST_MISSING_LIBRARY
// From a stub library whose SONAME names a file that exists nowhere (see tests/plugins/CMakeLists.txt).
extern "C" int parity_test_stand_in_function(void);
#endif

namespace {

const char kName[] = PARITY_TEST_PLUGIN_NAME;

struct Failure : std::runtime_error {
  Failure(parity_status s, const std::string& m) : std::runtime_error(m), status(s) {}
  parity_status status;
};

[[noreturn]] void fail(parity_status s, const std::string& what) { throw Failure(s, std::string(kName) + ": " + what); }

template <typename Body>
parity_status guarded(parity_error* err, Body&& body) {
  parity_status status = PARITY_OK;
  std::string message;
  try {
    body();
  } catch (const Failure& f) {
    status = f.status;
    message = f.what();
  } catch (const std::bad_alloc&) {
    status = PARITY_STATUS_OUT_OF_MEMORY;
    message = std::string(kName) + ": out of memory";
  } catch (const std::exception& e) {
    status = PARITY_STATUS_INTERNAL;
    message = e.what();
  }
  if (status != PARITY_OK && err) {
    err->status = status;
    const size_t n = std::min(message.size(), sizeof err->message - 1);
    std::memcpy(err->message, message.data(), n);
    err->message[n] = '\0';
  }
  return status;
}

using Bytes = std::vector<unsigned char>;
using Store = std::map<std::string, std::shared_ptr<Bytes>>;

struct Instance {
  int unused = 0;
};

struct Buffer {
  Bytes bytes;
};

struct Exe {
  Instance* owner = nullptr;
  std::vector<parity_value_desc> values;
  std::vector<parity_node_desc> nodes;
  std::shared_ptr<Store> store;
  std::vector<std::shared_ptr<Bytes>> data;  // per value
  std::vector<float*> arena_values;          // PARITY_TEST_FAULTY: INPUT/TEMP values in the arena
  Bytes arena;
  bool poison = false;
};

bool supported(parity_op op) { return op == PARITY_OP_FILL || op == PARITY_OP_ADD || op == PARITY_OP_RESHAPE; }

int64_t numel(const parity_value_desc& v) {
  int64_t n = 1;
  for (int32_t i = 0; i < v.rank; ++i) n *= v.dims[i];
  return n;
}

unsigned char* bytes_of(Exe& e, int32_t value) {
#ifdef PARITY_TEST_FAULTY
  return reinterpret_cast<unsigned char*>(e.arena_values[static_cast<size_t>(value)]);
#else
  return e.data[static_cast<size_t>(value)]->data();
#endif
}

float* f32(Exe& e, int32_t value) { return reinterpret_cast<float*>(bytes_of(e, value)); }

const parity_value_desc& value_of(const Exe& e, int32_t value, const char* what) {
  if (value < 0 || value >= static_cast<int32_t>(e.values.size()))
    fail(PARITY_STATUS_INVALID_ARGUMENT, std::string(what) + ": value index " + std::to_string(value) +
                                             " is outside [0, " + std::to_string(e.values.size()) + ")");
  return e.values[static_cast<size_t>(value)];
}

void check_bytes(const parity_value_desc& v, int64_t bytes, const char* what) {
  if (bytes != v.bytes)
    fail(PARITY_STATUS_INVALID_ARGUMENT, std::string(what) + " '" + v.name + "': " + std::to_string(bytes) +
                                             " bytes given, the value holds " + std::to_string(v.bytes));
}

// --- the table's functions ---

parity_status probe(parity_probe_result* out, parity_error*) {
  *out = parity_probe_result{};
#ifdef PARITY_TEST_MISSING_LIBRARY
  if (parity_test_stand_in_function() != 0) return PARITY_STATUS_INTERNAL;
#endif
  out->device_count = 1;
  out->reason = PARITY_AVAILABLE;
  std::strcpy(out->detail, "test plugin: FILL, ADD and RESHAPE on the host");
  return PARITY_OK;
}

parity_status create(const parity_backend_config*, parity_backend_t* out, parity_error* err) {
  return guarded(err, [&] { *out = reinterpret_cast<parity_backend_t>(new Instance()); });
}

void destroy(parity_backend_t b) { delete reinterpret_cast<Instance*>(b); }

parity_status get_capabilities(parity_backend_t, parity_capabilities* out, parity_error*) {
  *out = parity_capabilities{};
  out->dtypes = PARITY_DTYPE_BIT(PARITY_F32);
  out->features = PARITY_FEATURE_HOST_MEMORY | PARITY_FEATURE_DETERMINISTIC;
  out->threads = 1;
  std::strcpy(out->device_name, "host (test plugin)");
  return PARITY_OK;
}

int32_t supports(parity_backend_t, const parity_node_desc* node, char* reason, size_t reason_len) {
  if (supported(node->op)) return 1;
  if (reason && reason_len)
    std::snprintf(reason, reason_len, "%s: only FILL, ADD and RESHAPE are implemented, not %s (op %d)", kName,
                  parity_op_name(node->op), static_cast<int>(node->op));
  return 0;
}

parity_status buffer_alloc(parity_backend_t, int64_t bytes, parity_buffer_t* out, parity_error* err) {
  return guarded(err, [&] {
    if (bytes < 0) fail(PARITY_STATUS_INVALID_ARGUMENT, "buffer_alloc: bytes must be >= 0, got " + std::to_string(bytes));
    auto* b = new Buffer();
    b->bytes.resize(static_cast<size_t>(bytes));
    *out = reinterpret_cast<parity_buffer_t>(b);
  });
}

void buffer_free(parity_backend_t, parity_buffer_t b) { delete reinterpret_cast<Buffer*>(b); }

Bytes& buffer_range(parity_buffer_t b, int64_t offset, int64_t bytes) {
  Bytes& data = reinterpret_cast<Buffer*>(b)->bytes;
  if (offset < 0 || bytes < 0 || offset + bytes > static_cast<int64_t>(data.size()))
    fail(PARITY_STATUS_INVALID_ARGUMENT, "copy: range outside the buffer");
  return data;
}

parity_status h2d(parity_backend_t, parity_buffer_t dst, int64_t off, const void* src, int64_t bytes, parity_error* err) {
  return guarded(err, [&] { std::memcpy(buffer_range(dst, off, bytes).data() + off, src, static_cast<size_t>(bytes)); });
}
parity_status d2h(parity_backend_t, void* dst, parity_buffer_t src, int64_t off, int64_t bytes, parity_error* err) {
  return guarded(err, [&] { std::memcpy(dst, buffer_range(src, off, bytes).data() + off, static_cast<size_t>(bytes)); });
}
parity_status d2d(parity_backend_t, parity_buffer_t dst, int64_t doff, parity_buffer_t src, int64_t soff, int64_t bytes,
                  parity_error* err) {
  return guarded(err, [&] {
    std::memmove(buffer_range(dst, doff, bytes).data() + doff, buffer_range(src, soff, bytes).data() + soff,
                 static_cast<size_t>(bytes));
  });
}

parity_status compile(parity_backend_t b, const parity_plan* plan, uint32_t flags, parity_executable_t share_with,
                      parity_executable_t* out, parity_error* err) {
  return guarded(err, [&] {
    auto* owner = reinterpret_cast<Instance*>(b);
    auto* share = reinterpret_cast<Exe*>(share_with);
    if (share && share->owner != owner) fail(PARITY_STATUS_INVALID_ARGUMENT, "compile: share_with is of another instance");
    auto e = std::make_unique<Exe>();
    e->owner = owner;
    e->poison = (flags & PARITY_COMPILE_POISON_OUTPUTS) != 0;
    e->values.assign(plan->values, plan->values + plan->num_values);
    e->nodes.assign(plan->nodes, plan->nodes + plan->num_nodes);
    e->store = share ? share->store : std::make_shared<Store>();
    for (const parity_value_desc& v : e->values) {
      if (v.dtype != PARITY_F32)
        fail(PARITY_STATUS_UNSUPPORTED, std::string("value '") + v.name + "': only f32 values are supported");
      if (v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE) {
        std::shared_ptr<Bytes>& slot = (*e->store)[v.name];
        if (!slot) slot = std::make_shared<Bytes>(static_cast<size_t>(v.bytes));
        if (static_cast<int64_t>(slot->size()) != v.bytes)
          fail(PARITY_STATUS_SHAPE, std::string("persistent value '") + v.name + "' has another size in the shared executable");
        e->data.push_back(slot);
      } else {
        e->data.push_back(std::make_shared<Bytes>(static_cast<size_t>(v.bytes)));
      }
    }
#ifdef PARITY_TEST_FAULTY
    e->arena.assign(static_cast<size_t>(plan->arena_bytes) + 64, 0);
    for (size_t i = 0; i < e->values.size(); ++i) {
      const parity_value_desc& v = e->values[i];
      const bool in_arena = v.kind == PARITY_VALUE_INPUT || v.kind == PARITY_VALUE_TEMP;
      e->arena_values.push_back(in_arena ? reinterpret_cast<float*>(e->arena.data() + v.offset)
                                         : reinterpret_cast<float*>(e->data[i]->data()));
    }
#endif
    for (const parity_node_desc& n : e->nodes) {
      if (!supported(n.op))
        fail(PARITY_STATUS_UNSUPPORTED, std::string("node '") + n.name + "': op " + std::to_string(n.op) +
                                            " is not supported (only FILL, ADD and RESHAPE)");
      for (int32_t i = 0; i < n.num_inputs; ++i) value_of(*e, n.inputs[i], "compile");
      for (int32_t i = 0; i < n.num_outputs; ++i) value_of(*e, n.outputs[i], "compile");
    }
    *out = reinterpret_cast<parity_executable_t>(e.release());
  });
}

void executable_destroy(parity_executable_t e) { delete reinterpret_cast<Exe*>(e); }

parity_status write_value(parity_executable_t h, int32_t value, const void* host, int64_t bytes, parity_error* err) {
  return guarded(err, [&] {
    Exe& e = *reinterpret_cast<Exe*>(h);
    const parity_value_desc& v = value_of(e, value, "write");
    if (v.kind == PARITY_VALUE_TEMP) fail(PARITY_STATUS_INVALID_ARGUMENT, std::string("write: '") + v.name + "' is TEMP");
    check_bytes(v, bytes, "write");
    std::memcpy(bytes_of(e, value), host, static_cast<size_t>(bytes));
  });
}

parity_status read_value(parity_executable_t h, int32_t value, void* host, int64_t bytes, parity_error* err) {
  return guarded(err, [&] {
    Exe& e = *reinterpret_cast<Exe*>(h);
    const parity_value_desc& v = value_of(e, value, "read");
    if (v.kind == PARITY_VALUE_TEMP && !v.keep)
      fail(PARITY_STATUS_INVALID_ARGUMENT, std::string("read: '") + v.name + "' is TEMP and not kept");
    check_bytes(v, bytes, "read");
    std::memcpy(host, bytes_of(e, value), static_cast<size_t>(bytes));
  });
}

// ADD with ABI 6's broadcasting: a and b of c's rank, each dim c's or 1 (stride 0 there).
void broadcast_add(Exe& e, const parity_node_desc& n, float* y, int64_t count) {
  const parity_value_desc& a = e.values[static_cast<size_t>(n.inputs[0])];
  const parity_value_desc& b = e.values[static_cast<size_t>(n.inputs[1])];
  const parity_value_desc& c = e.values[static_cast<size_t>(n.outputs[0])];
  const float* pa = f32(e, n.inputs[0]);
  const float* pb = f32(e, n.inputs[1]);
  if (numel(a) == count && numel(b) == count) {
    for (int64_t i = 0; i < count; ++i) y[i] = pa[i] + pb[i];
    return;
  }
  if (a.rank != c.rank || b.rank != c.rank) fail(PARITY_STATUS_SHAPE, std::string("node '") + n.name + "': ranks differ");
  for (int64_t i = 0; i < count; ++i) {
    int64_t rest = i, offset_a = 0, offset_b = 0, stride_a = 1, stride_b = 1;
    for (int32_t d = c.rank - 1; d >= 0; --d) {
      const int64_t k = rest % c.dims[d];
      rest /= c.dims[d];
      offset_a += (a.dims[d] == 1 ? 0 : k) * stride_a;
      offset_b += (b.dims[d] == 1 ? 0 : k) * stride_b;
      stride_a *= a.dims[d];
      stride_b *= b.dims[d];
    }
    y[i] = pa[offset_a] + pb[offset_b];
  }
}

parity_status execute(parity_executable_t h, parity_error* err) {
  return guarded(err, [&] {
    Exe& e = *reinterpret_cast<Exe*>(h);
    if (e.poison)
      for (size_t i = 0; i < e.values.size(); ++i)
        if (e.values[i].kind == PARITY_VALUE_TEMP) std::fill_n(f32(e, static_cast<int32_t>(i)), numel(e.values[i]), NAN);
    for (const parity_node_desc& n : e.nodes) {
      const int64_t count = numel(e.values[static_cast<size_t>(n.outputs[0])]);
      float* y = f32(e, n.outputs[0]);
      switch (n.op) {
#ifndef PARITY_TEST_FAULTY
        case PARITY_OP_FILL: std::fill_n(y, count, n.params.fill.value); break;
        case PARITY_OP_ADD: broadcast_add(e, n, y, count); break;
        case PARITY_OP_RESHAPE: std::memmove(y, f32(e, n.inputs[0]), static_cast<size_t>(count) * sizeof(float)); break;
#else
        case PARITY_OP_FILL: std::fill_n(y, count, n.params.fill.value + 1e-3f); break;
        case PARITY_OP_ADD:
          broadcast_add(e, n, y, count);
          y[count] = 0.0f;  // one element past the output: lands in the checker's guard
          break;
        case PARITY_OP_RESHAPE:
          std::memmove(y, f32(e, n.inputs[0]), static_cast<size_t>(count - 1) * sizeof(float));
          break;
#endif
        default: fail(PARITY_STATUS_INTERNAL, "execute: unsupported op reached execute");
      }
    }
  });
}

parity_status synchronize(parity_executable_t, parity_error*) { return PARITY_OK; }

parity_status memory_bytes(parity_executable_t h, int64_t* out, parity_error*) {
  const Exe& e = *reinterpret_cast<Exe*>(h);
  *out = 0;
  for (const auto& d : e.data) *out += static_cast<int64_t>(d->size());
  return PARITY_OK;
}

#if defined(PARITY_TEST_HUGE_NEED)
// Says a plan needs 2^61 bytes of host memory, more than any machine has: libparity must refuse
// to compile it before calling compile.
parity_status memory_need(parity_backend_t, const parity_plan*, uint32_t, parity_executable_t, parity_memory_need* out,
                          parity_error*) {
  out->host_bytes = int64_t{1} << 61;
  out->device_bytes = 0;
  return PARITY_OK;
}
#endif

const parity_backend_table kTable = {
#if defined(PARITY_TEST_WRONG_ABI)
    PARITY_ABI_VERSION + 1000,
#elif defined(PARITY_TEST_ABI_1)
    1,  // built against the first ABI, before op names moved into plugin.h and SIGMOID was added
#elif defined(PARITY_TEST_ABI_2)
    2,  // built against ABI 2, before memory_need was appended to the table
#elif defined(PARITY_TEST_ABI_3)
    3,  // built against ABI 3, before memory_need_without_device was appended to the table
#elif defined(PARITY_TEST_ABI_4)
    4,  // built against ABI 4, before SGD_STEP took the step input and the optimizer params grew
#elif defined(PARITY_TEST_ABI_5)
    5,  // built against ABI 5, whose ADD never broadcasts
#elif defined(PARITY_TEST_ABI_6)
    6,  // built against ABI 6, whose SOFTMAX_XENT has no params (always the mean, nothing ignored)
#elif defined(PARITY_TEST_ABI_7)
    7,  // built against ABI 7, before set_node_hooks and value_address were appended to the table
#elif defined(PARITY_TEST_ABI_8)
    8,  // built against ABI 8, before PARITY_BF16, PARITY_F16 and CAST
#else
    PARITY_ABI_VERSION,
#endif
    sizeof(parity_backend_table),
    kName,
    "test plugin (tests/plugins)",
    probe,
    create,
    destroy,
    get_capabilities,
    supports,
    buffer_alloc,
    buffer_free,
    h2d,
    d2h,
    d2d,
    compile,
    executable_destroy,
    write_value,
    read_value,
    execute,
    synchronize,
    memory_bytes,
    nullptr,  // write_value_f64
    nullptr,  // read_value_f64
#if defined(PARITY_TEST_HUGE_NEED)
    memory_need,
#else
    nullptr,  // memory_need: the other variants cannot tell
#endif
    nullptr,  // memory_need_without_device: no planner without a device
    nullptr,  // set_node_hooks (ABI 8): no node hooks, so no data-parallel training
    nullptr,  // value_address
};

}  // namespace

#ifndef PARITY_TEST_NO_ENTRY
extern "C" PARITY_PLUGIN_EXPORT const parity_backend_table* parity_backend_entry(void) { return &kTable; }
#else
// Exported under another name: the library loads, but has no parity_backend_entry.
extern "C" PARITY_PLUGIN_EXPORT const parity_backend_table* parity_backend_entry_misspelt(void) { return &kTable; }
#endif
