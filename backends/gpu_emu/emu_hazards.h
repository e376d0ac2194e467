// backends/gpu_emu/emu_hazards.h — happens-before for the emulated device runtime: vector clocks
// (one component per agent: the host and each stream) and, per allocation, who last wrote each
// byte range and who read it since, with the searches for an earlier access that a new one is
// not ordered after. Knows nothing of streams or memory; emu_runtime.cpp turns a Conflict into
// a HazardError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace parity {
namespace emu {

// Who accesses memory: the host, or a stream (by its id, from 1).
using Agent = uint32_t;
constexpr Agent kHostAgent = 0;

// "the host" or "stream N".
std::string agent_name(Agent agent);

// Per agent, the last epoch of that agent known to have happened before; 0 for none.
class VectorClock {
 public:
  uint64_t at(Agent agent) const { return agent < epochs_.size() ? epochs_[agent] : 0; }
  // The agent's next epoch (its own component plus one), kept.
  uint64_t tick(Agent agent);
  // Componentwise maximum: everything `other` knows happened before, this now knows too.
  void join(const VectorClock& other);

 private:
  std::vector<uint64_t> epochs_;
};

// One access to memory by one operation: the agent, the agent's epoch when it was made, and the
// operation's description for messages ("launch 'conv1.fwd' on stream 2").
struct Access {
  Agent agent = kHostAgent;
  uint64_t epoch = 0;
  std::shared_ptr<const std::string> operation;

  // Whether an access by `by`, whose clock is `clock`, comes after this one: the same agent (its
  // program order) or a clock that has seen this epoch.
  bool happens_before(Agent by, const VectorClock& clock) const { return agent == by || clock.at(agent) >= epoch; }
  bool same_access(const Access& other) const { return agent == other.agent && epoch == other.epoch; }
};

// An earlier access that a new one is not ordered after, and the bytes [begin, end) of the
// allocation where they meet (the first such run of bytes).
struct Conflict {
  size_t begin = 0, end = 0;
  Access earlier;
  bool earlier_wrote = false;
};

// The access history of one allocation of `bytes` bytes: per byte range, the last write and the
// reads since it (the latest per agent; an earlier read of the same agent is ordered before it).
class AccessHistory {
 public:
  explicit AccessHistory(size_t bytes);

  // The first earlier write that a read of [begin, end) by `agent` at `clock` is not ordered after.
  std::optional<Conflict> unordered_for_read(size_t begin, size_t end, Agent agent, const VectorClock& clock) const;
  // The first earlier write or read that a write of [begin, end) by `agent` is not ordered after.
  std::optional<Conflict> unordered_for_write(size_t begin, size_t end, Agent agent, const VectorClock& clock) const;
  // The first access to any byte that `agent` at `clock` is not ordered after (before a free).
  std::optional<Conflict> unordered_anywhere(Agent agent, const VectorClock& clock) const {
    return unordered_for_write(0, bytes_, agent, clock);
  }

  void record_read(size_t begin, size_t end, const Access& access);
  void record_write(size_t begin, size_t end, const Access& access);

 private:
  struct Segment {
    size_t end = 0;
    std::optional<Access> write;
    std::vector<Access> reads;
  };
  // The first access of `segment` that `agent` at `clock` is not ordered after; reads only when
  // `with_reads`.
  static const Access* unordered_in(const Segment& segment, bool with_reads, Agent agent, const VectorClock& clock,
                                    bool* wrote);
  std::optional<Conflict> find(size_t begin, size_t end, bool with_reads, Agent agent, const VectorClock& clock) const;
  // Makes `offset` a segment boundary (0 < offset < bytes_).
  void split_at(size_t offset);

  size_t bytes_;
  std::map<size_t, Segment> segments_;  // by first byte; they cover [0, bytes_) without gaps
};

}  // namespace emu
}  // namespace parity
