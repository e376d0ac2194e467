// backends/gpu_emu/emu_memory.h — the emulated device's allocations (device and pinned host
// memory, each with an id never reused and its access history), the freed ones it remembers,
// and the pointer checks: which allocation a pointer argument lies in, and whether that is what
// its role needs (device memory, host memory, within bounds, not freed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backends/gpu_emu/emu_hazards.h"

namespace parity {
namespace emu {

enum class MemoryKind : uint8_t { device, pinned };

struct Allocation {
  uint64_t id = 0;  // "#id" in messages; a new allocation at a freed address has a new id
  MemoryKind kind = MemoryKind::device;
  char* base = nullptr;
  size_t bytes = 0;     // as asked for: the bounds of the checks
  size_t reserved = 0;  // bytes rounded up to the alignment: no other allocation starts inside
  AccessHistory history;
  Allocation(uint64_t id_, MemoryKind kind_, char* base_, size_t bytes_, size_t reserved_)
      : id(id_), kind(kind_), base(base_), bytes(bytes_), reserved(reserved_), history(bytes_) {}
};

// "device allocation #3", "pinned allocation #4".
std::string allocation_name(MemoryKind kind, uint64_t id);

// Checked bytes of a live allocation: [offset, offset + bytes) of allocation `allocation_id`
// at `ptr`. A captured operation keeps its spans and checks them again at each replay.
struct Span {
  const void* ptr = nullptr;
  size_t bytes = 0;
  uint64_t allocation_id = 0;
  MemoryKind kind = MemoryKind::device;
  size_t offset = 0;
};

class AllocationTable {
 public:
  static constexpr size_t kAlignment = 256;  // as cudaMalloc's

  AllocationTable() = default;
  AllocationTable(const AllocationTable&) = delete;
  AllocationTable& operator=(const AllocationTable&) = delete;
  ~AllocationTable();

  // Fresh memory filled with 0xff bytes; bytes > 0. The block freed last with the same rounded
  // size is reused first (as a caching allocator does), so freeing and allocating again gives the
  // same address: a stale pointer then points into the new allocation, the case its id tells apart.
  Allocation& allocate(MemoryKind kind, size_t bytes);
  // Keeps the memory for reuse (never handed back to the host's malloc, so a freed address stays
  // recognizable) and remembers the range as freed until an allocation reuses it.
  void release(Allocation& allocation);

  // The live allocation whose reserved bytes hold `ptr`, or nullptr.
  Allocation* live_at(const void* ptr);

  // `bytes` bytes at `ptr`, which `operation` uses as `role` ("destination", "read #2") and which
  // must be device memory: a live device allocation, within bounds. Throws HazardError
  // (host_pointer_as_device, use_after_free, unknown_pointer, out_of_bounds) otherwise.
  Span device_span(const void* ptr, size_t bytes, const std::string& operation, const std::string& role);
  // The same for host memory: a live pinned allocation (its span), or memory the device knows
  // nothing of (pageable: nullopt). Throws HazardError for device memory (device_pointer_as_host),
  // freed pinned memory (use_after_free) and a range running past a pinned allocation (out_of_bounds).
  std::optional<Span> host_span(const void* ptr, size_t bytes, const std::string& operation,
                                const std::string& role);

 private:
  // A freed allocation whose reserved bytes held `ptr` (none reused them since), or nullptr.
  struct Freed {
    uint64_t id;
    MemoryKind kind;
    size_t reserved;
  };
  const Freed* freed_at(const void* ptr) const;
  Span within_bounds(Allocation& allocation, const void* ptr, size_t bytes, const std::string& operation,
                     const std::string& role) const;

  std::map<uintptr_t, std::unique_ptr<Allocation>> live_;  // by base address
  std::map<uintptr_t, Freed> freed_;
  // Freed blocks by kind and rounded size, the last freed at the back.
  std::map<std::pair<MemoryKind, size_t>, std::vector<void*>> reusable_;
  uint64_t next_id_ = 1;
};

// "0x7f...": a pointer in a message.
std::string address_text(const void* ptr);

}  // namespace emu
}  // namespace parity
