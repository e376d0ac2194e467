// backends/gpu_emu/emu_memory.cpp — allocations and the pointer checks. See emu_memory.h.
#include "backends/gpu_emu/emu_memory.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "backends/gpu_emu/emu_runtime.h"

namespace parity {
namespace emu {

std::string allocation_name(MemoryKind kind, uint64_t id) {
  return std::string(kind == MemoryKind::device ? "device" : "pinned") + " allocation #" + std::to_string(id);
}

std::string address_text(const void* ptr) {
  char text[32];
  std::snprintf(text, sizeof text, "%p", ptr);
  return text;
}

namespace {
uintptr_t address_of(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr); }

std::string range_text(size_t begin, size_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}
}  // namespace

AllocationTable::~AllocationTable() {
  for (auto& entry : live_) std::free(entry.second->base);
  for (auto& entry : reusable_)
    for (void* block : entry.second) std::free(block);
}

Allocation& AllocationTable::allocate(MemoryKind kind, size_t bytes) {
  const size_t reserved = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* memory = nullptr;
  std::vector<void*>& reusable = reusable_[{kind, reserved}];
  if (!reusable.empty()) {
    memory = reusable.back();
    reusable.pop_back();
  } else {
    memory = std::aligned_alloc(kAlignment, reserved);
    if (!memory) throw std::bad_alloc();
  }
  std::memset(memory, 0xff, reserved);  // a NaN in every float until written
  const uintptr_t base = address_of(memory);
  // Freed ranges this one reuses are no longer "freed": the address is live again, with a new id.
  auto it = freed_.lower_bound(base);
  if (it != freed_.begin() && std::prev(it)->first + std::prev(it)->second.reserved > base) --it;
  while (it != freed_.end() && it->first < base + reserved) it = freed_.erase(it);
  auto allocation = std::make_unique<Allocation>(next_id_++, kind, static_cast<char*>(memory), bytes, reserved);
  Allocation& result = *allocation;
  live_.emplace(base, std::move(allocation));
  return result;
}

void AllocationTable::release(Allocation& allocation) {
  const uintptr_t base = address_of(allocation.base);
  freed_[base] = Freed{allocation.id, allocation.kind, allocation.reserved};
  reusable_[{allocation.kind, allocation.reserved}].push_back(allocation.base);
  live_.erase(base);  // destroys `allocation`
}

Allocation* AllocationTable::live_at(const void* ptr) {
  const uintptr_t address = address_of(ptr);
  auto it = live_.upper_bound(address);
  if (it == live_.begin()) return nullptr;
  --it;
  return address < it->first + it->second->reserved ? it->second.get() : nullptr;
}

const AllocationTable::Freed* AllocationTable::freed_at(const void* ptr) const {
  const uintptr_t address = address_of(ptr);
  auto it = freed_.upper_bound(address);
  if (it == freed_.begin()) return nullptr;
  --it;
  return address < it->first + it->second.reserved ? &it->second : nullptr;
}

Span AllocationTable::within_bounds(Allocation& allocation, const void* ptr, size_t bytes,
                                    const std::string& operation, const std::string& role) const {
  const size_t offset = static_cast<size_t>(static_cast<const char*>(ptr) - allocation.base);
  if (offset > allocation.bytes || bytes > allocation.bytes - offset)
    throw HazardError(Check::out_of_bounds,
                      operation + ": " + role + " " + range_text(offset, offset + bytes) + " of " +
                          allocation_name(allocation.kind, allocation.id) + " runs past its " +
                          std::to_string(allocation.bytes) + " bytes");
  return Span{ptr, bytes, allocation.id, allocation.kind, offset};
}

Span AllocationTable::device_span(const void* ptr, size_t bytes, const std::string& operation,
                                  const std::string& role) {
  const std::string where = operation + ": " + role + " at " + address_text(ptr);
  if (Allocation* allocation = live_at(ptr)) {
    if (allocation->kind != MemoryKind::device)
      throw HazardError(Check::host_pointer_as_device,
                        where + " is in " + allocation_name(allocation->kind, allocation->id) +
                            ", host memory where device memory is needed");
    return within_bounds(*allocation, ptr, bytes, operation, role);
  }
  if (const Freed* freed = freed_at(ptr))
    throw HazardError(Check::use_after_free, where + " is in " + allocation_name(freed->kind, freed->id) +
                                                 ", which was freed");
  throw HazardError(Check::unknown_pointer,
                    where + " is in no device allocation (pageable host memory, or never allocated)");
}

std::optional<Span> AllocationTable::host_span(const void* ptr, size_t bytes, const std::string& operation,
                                               const std::string& role) {
  Allocation* allocation = live_at(ptr);
  if (!allocation) {
    if (const Freed* freed = freed_at(ptr))  // freed blocks are kept: this is no pageable memory
      throw HazardError(Check::use_after_free, operation + ": " + role + " at " + address_text(ptr) + " is in " +
                                                   allocation_name(freed->kind, freed->id) + ", which was freed");
    return std::nullopt;  // pageable host memory
  }
  if (allocation->kind == MemoryKind::device)
    throw HazardError(Check::device_pointer_as_host,
                      operation + ": " + role + " at " + address_text(ptr) + " is in " +
                          allocation_name(allocation->kind, allocation->id) +
                          ", device memory where host memory is needed");
  return within_bounds(*allocation, ptr, bytes, operation, role);
}

}  // namespace emu
}  // namespace parity
