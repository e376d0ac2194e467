// backends/gpu/gpu_execute.cpp — the GPU executor's entry points other than compile, for every
// target: write_value feeds INPUT values from pinned memory on the copy stream into one of two
// input slots while the step reading the other slot runs; execute checks the run-time data on
// the host (the native dispatcher in its check pass), then launches the steps one by one (the
// first use of a slot, or with capture off) or the slot's graph (captured at its second use,
// replayed).
//
// On CUDA and HIP compiled and linked in CI, never executed here (no GPU); on the emulated device
// (the gpu_emu plugin) executed by the tests, with its ordering checks.
#include "backends/gpu/gpu_executable.h"

namespace parity {
namespace gpu {

void executable_destroy(parity_executable_t exe) {
  if (!exe) return;
  // Queued work may still use its memory. Destruction cannot report: what fails has no caller.
  try {
    gpu::rt::set_device(exe->instance->device);
    gpu::rt::stream_sync(exe->instance->stream);
    gpu::rt::stream_sync(exe->instance->copy_stream);
  } catch (const std::exception&) {
  }
  delete exe;
}

parity_status write_value(parity_executable_t exe, int32_t value, const void* host, int64_t bytes,
                          parity_error* err) {
  return guarded(err, [&] {
    if (!exe || !host) fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": write_value: NULL argument"));
    const parity_value_desc& v = parity::native::value_to_write(kName, exe->values, value, bytes);
    parity_backend_t b = exe->instance;
    b->make_current();
    const int32_t input = exe->input_index[static_cast<size_t>(value)];
    if (input >= 0) {
      // The next batch: staged in the slot's pinned memory, copied on the copy stream while the
      // step reading the other slot may still run.
      const int slot = exe->fill_slot;
      exe->open_slot(slot);
      const int64_t offset = exe->layout.input_offsets[static_cast<size_t>(input)];
      char* staged = static_cast<char*>(exe->pinned[slot].ptr) + offset;
      gpu::rt::host_write(staged, bytes);
      std::memcpy(staged, host, static_cast<size_t>(bytes));
      gpu::rt::copy_async(exe->region(exe->layout.slot_offset[slot] + offset), staged, bytes,
                          gpu::Copy::host_to_device, b->copy_stream, "write_value (input slot)");
      exe->latest_slot[static_cast<size_t>(input)] = slot;
      if (v.dtype == PARITY_I32) {
        const auto* p = static_cast<const int32_t*>(host);
        exe->host_inputs[static_cast<size_t>(value)].assign(p, p + numel_of(v));
      }
      return;
    }
    // Weights and optimizer state: ordered with the steps on the compute stream.
    gpu::rt::copy_async(exe->pointer(value, 0), host, bytes, gpu::Copy::host_to_device, b->stream,
                        "write_value (persistent)");
    gpu::rt::stream_sync(b->stream);
  });
}

parity_status read_value(parity_executable_t exe, int32_t value, void* host, int64_t bytes, parity_error* err) {
  return guarded(err, [&] {
    if (!exe || !host) fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": read_value: NULL argument"));
    parity::native::value_to_read(kName, exe->values, value, bytes);
    parity_backend_t b = exe->instance;
    b->make_current();
    gpu::rt::stream_sync(b->copy_stream);
    gpu::rt::stream_sync(b->stream);
    const int32_t input = exe->input_index[static_cast<size_t>(value)];
    // An INPUT value reads from the slot holding its latest bytes; a TEMP one from the arena.
    const int slot = input >= 0 && exe->latest_slot[static_cast<size_t>(input)] >= 0
                         ? exe->latest_slot[static_cast<size_t>(input)]
                         : 0;
    gpu::rt::copy_async(host, exe->pointer(value, slot), bytes, gpu::Copy::device_to_host, b->stream, "read_value");
    gpu::rt::stream_sync(b->stream);
  });
}

// Queues the whole step and returns (PARITY_FEATURE_ASYNC_EXECUTE).
parity_status execute(parity_executable_t exe, parity_error* err) {
  return guarded(err, [&] {
    if (!exe) fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": execute: executable is NULL"));
    parity_backend_t b = exe->instance;
    b->make_current();
    const int slot = exe->fill_slot;
    // Run-time data the kernels cannot check (labels, Adam's step), from the host copies, before
    // anything is queued: a bad batch fails this call and leaves the device untouched.
    for (const parity_node_desc& node : exe->nodes) exe->checker.run(node);
    // INPUT values not written since the last step: their latest bytes move into this slot.
    for (size_t v = 0; v < exe->values.size(); ++v) {
      const int32_t input = exe->input_index[v];
      if (input < 0) continue;
      int& latest = exe->latest_slot[static_cast<size_t>(input)];
      if (latest < 0 || latest == slot) continue;
      exe->open_slot(slot);
      const int64_t offset = exe->layout.input_offsets[static_cast<size_t>(input)];
      gpu::rt::copy_async(exe->region(exe->layout.slot_offset[slot] + offset),
                          exe->region(exe->layout.slot_offset[latest] + offset), exe->values[v].bytes,
                          gpu::Copy::device_to_device, b->copy_stream, "execute (input carried to the slot)");
      latest = slot;
    }
    gpu::rt::event_record(exe->inputs_ready[slot], b->copy_stream);
    gpu::rt::stream_wait(b->stream, exe->inputs_ready[slot]);
    exe->bind_library();  // outside any capture
    // The first execute of a slot runs eagerly: cuDNN and cuBLAS load their kernels and
    // sub-libraries on first use, which must not happen inside a capture. The second captures.
    if (exe->capture.capture && exe->runs[slot] >= 1 && !exe->graphs[slot]) exe->capture_slot(slot);
    if (exe->graphs[slot])
      gpu::rt::graph_launch(exe->graphs[slot], b->stream);
    else
      exe->enqueue_steps(slot);
    ++exe->runs[slot];
    gpu::rt::event_record(exe->step_done[slot], b->stream);
    exe->fill_slot = slot ^ 1;
    exe->slot_open[exe->fill_slot] = false;
  });
}

parity_status synchronize(parity_executable_t exe, parity_error* err) {
  return guarded(err, [&] {
    if (!exe) fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": synchronize: executable is NULL"));
    exe->instance->make_current();
    gpu::rt::stream_sync(exe->instance->copy_stream);
    gpu::rt::stream_sync(exe->instance->stream);
  });
}

parity_status memory_bytes(parity_executable_t exe, int64_t* out, parity_error* err) {
  if (!exe || !out) return report(err, PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": memory_bytes: NULL argument"));
  int64_t total = exe->arena.bytes;
  for (const auto& p : exe->held) total += p->memory.bytes;
  *out = total;
  return PARITY_OK;
}

}  // namespace gpu
}  // namespace parity
