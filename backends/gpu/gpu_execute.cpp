// backends/gpu/gpu_execute.cpp — the GPU executor's entry points other than compile, for every
// target: write_value feeds INPUT values from pinned memory on the copy stream into one of two
// input slots while the step reading the other slot runs; execute checks the run-time data on
// the host (the native dispatcher in its check pass), then launches the steps one by one (the
// first use of a slot, with capture off, or with node hooks set, calling them) or the slot's
// graph (captured at its second use, replayed). Node hooks and value addresses (ABI 8) are here.
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
    // Node hooks (ABI 8) are host calls at every execute, which a replayed graph would not make:
    // while any are set, the step is queued node by node and never captured or replayed. A graph
    // captured before they were set serves again once they are removed.
    const bool graphs_allowed = exe->node_hooks.empty();
    // The first execute of a slot runs eagerly: cuDNN and cuBLAS load their kernels and
    // sub-libraries on first use, which must not happen inside a capture. The second captures.
    if (graphs_allowed && exe->capture.capture && exe->runs[slot] >= 1 && !exe->graphs[slot]) exe->capture_slot(slot);
    if (graphs_allowed && exe->graphs[slot]) {
      gpu::rt::graph_launch(exe->graphs[slot], b->stream);
    } else {
      try {
        exe->enqueue_steps(slot, &exe->node_hooks);
      } catch (const std::exception&) {
        // A hook (or a launch) stopped the step with its first part queued, reading this slot:
        // the next write into the slot waits for that part as it would for a whole step.
        try {
          gpu::rt::event_record(exe->step_done[slot], b->stream);
          exe->slot_open[slot] = false;
        } catch (const std::exception&) {  // the error being reported is the one that matters
        }
        throw;
      }
    }
    ++exe->runs[slot];
    gpu::rt::event_record(exe->step_done[slot], b->stream);
    exe->fill_slot = slot ^ 1;
    exe->slot_open[exe->fill_slot] = false;
  });
}

// ABI 8: from the next execute on, the caller's hook at its points (gpu_launch.cpp calls them as
// the steps are queued); a hook's non-OK status stops execute with that status and message.
parity_status set_node_hooks(parity_executable_t exe, const parity_node_hooks* hooks, parity_error* err) {
  return guarded(err, [&] {
    if (!exe) fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": set_node_hooks: executable is NULL"));
    const int32_t num_nodes = static_cast<int32_t>(exe->nodes.size());
    if (!hooks || hooks->count <= 0) {
      exe->node_hooks.set({}, nullptr, num_nodes, kName);
      return;
    }
    if (!hooks->points || !hooks->fn)
      fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": set_node_hooks: the points and the hook function must not be NULL"));
    std::vector<parity_hook_point> points(hooks->points, hooks->points + hooks->count);
    const parity_node_hooks c = *hooks;
    exe->node_hooks.set(
        std::move(points),
        [c](int32_t point, void* stream) {
          parity_error e{};
          const parity_status status = c.fn(c.ctx, point, stream, &e);
          if (status != PARITY_OK)
            fail(status, e.message[0] ? std::string(e.message, strnlen(e.message, sizeof e.message))
                                      : msg("a node hook failed with status ", static_cast<int>(status), " and no message"));
        },
        num_nodes, kName);
  });
}

// ABI 8: the device address of a PARAM or STATE value (its own allocation) or a kept TEMP value
// (its place in the arena, which no other value shares). An INPUT lives in whichever input slot
// the execute uses, and an unkept TEMP shares memory: both are refused.
parity_status value_address(parity_executable_t exe, int32_t value, void** out, parity_error* err) {
  return guarded(err, [&] {
    if (!exe || !out) fail(PARITY_STATUS_INVALID_ARGUMENT, msg(kName, ": value_address: NULL argument"));
    *out = nullptr;
    const parity_value_desc& v = parity::native::value_desc_at(kName, exe->values, value, "value_address");
    if (v.kind == PARITY_VALUE_INPUT)
      fail(PARITY_STATUS_INVALID_ARGUMENT,
           msg(kName, ": value_address of '", value_name(v),
               "' refused: an INPUT value moves between the two input slots from one execute to the next"));
    if (v.kind == PARITY_VALUE_TEMP && !v.keep)
      fail(PARITY_STATUS_INVALID_ARGUMENT,
           msg(kName, ": value_address of '", value_name(v),
               "' refused: it is a TEMP value the plan did not mark keep, so its memory is reused"));
    *out = exe->pointer(value, 0);  // the slot matters only for INPUT values
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
