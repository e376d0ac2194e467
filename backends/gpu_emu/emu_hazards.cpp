// backends/gpu_emu/emu_hazards.cpp — vector clocks and the per-allocation access history. See
// emu_hazards.h.
#include "backends/gpu_emu/emu_hazards.h"

#include <algorithm>

namespace parity {
namespace emu {

std::string agent_name(Agent agent) {
  return agent == kHostAgent ? std::string("the host") : "stream " + std::to_string(agent);
}

uint64_t VectorClock::tick(Agent agent) {
  if (agent >= epochs_.size()) epochs_.resize(agent + 1, 0);
  return ++epochs_[agent];
}

void VectorClock::join(const VectorClock& other) {
  if (other.epochs_.size() > epochs_.size()) epochs_.resize(other.epochs_.size(), 0);
  for (size_t i = 0; i < other.epochs_.size(); ++i) epochs_[i] = std::max(epochs_[i], other.epochs_[i]);
}

AccessHistory::AccessHistory(size_t bytes) : bytes_(bytes) {
  if (bytes_ > 0) segments_.emplace(0, Segment{bytes_, std::nullopt, {}});
}

const Access* AccessHistory::unordered_in(const Segment& segment, bool with_reads, Agent agent,
                                          const VectorClock& clock, bool* wrote) {
  if (segment.write && !segment.write->happens_before(agent, clock)) {
    *wrote = true;
    return &*segment.write;
  }
  if (with_reads)
    for (const Access& read : segment.reads)
      if (!read.happens_before(agent, clock)) {
        *wrote = false;
        return &read;
      }
  return nullptr;
}

std::optional<Conflict> AccessHistory::find(size_t begin, size_t end, bool with_reads, Agent agent,
                                            const VectorClock& clock) const {
  if (begin >= end) return std::nullopt;
  auto it = segments_.upper_bound(begin);
  --it;  // the segment holding `begin`: segments start at 0 and cover every byte
  for (; it != segments_.end() && it->first < end; ++it) {
    bool wrote = false;
    const Access* earlier = unordered_in(it->second, with_reads, agent, clock, &wrote);
    if (!earlier) continue;
    Conflict conflict{std::max(begin, it->first), std::min(end, it->second.end), *earlier, wrote};
    // The run of following segments where the same earlier access conflicts: one range in the message.
    for (auto next = std::next(it); next != segments_.end() && next->first < end; ++next) {
      bool next_wrote = false;
      const Access* more = unordered_in(next->second, with_reads, agent, clock, &next_wrote);
      if (!more || !more->same_access(*earlier) || next_wrote != wrote) break;
      conflict.end = std::min(end, next->second.end);
    }
    return conflict;
  }
  return std::nullopt;
}

std::optional<Conflict> AccessHistory::unordered_for_read(size_t begin, size_t end, Agent agent,
                                                          const VectorClock& clock) const {
  return find(begin, end, false, agent, clock);
}

std::optional<Conflict> AccessHistory::unordered_for_write(size_t begin, size_t end, Agent agent,
                                                           const VectorClock& clock) const {
  return find(begin, end, true, agent, clock);
}

void AccessHistory::split_at(size_t offset) {
  if (offset == 0 || offset >= bytes_) return;
  auto it = segments_.upper_bound(offset);
  --it;
  if (it->first == offset) return;
  Segment tail = it->second;  // [offset, end) keeps the same history
  it->second.end = offset;
  segments_.emplace(offset, std::move(tail));
}

void AccessHistory::record_read(size_t begin, size_t end, const Access& access) {
  if (begin >= end) return;
  split_at(begin);
  split_at(end);
  for (auto it = segments_.find(begin); it != segments_.end() && it->first < end; ++it) {
    std::vector<Access>& reads = it->second.reads;
    auto same_agent =
        std::find_if(reads.begin(), reads.end(), [&](const Access& read) { return read.agent == access.agent; });
    if (same_agent != reads.end())
      *same_agent = access;
    else
      reads.push_back(access);
  }
}

void AccessHistory::record_write(size_t begin, size_t end, const Access& access) {
  if (begin >= end) return;
  split_at(begin);
  split_at(end);
  // The write orders everything before it that it was checked against: one segment, no reads.
  segments_.erase(segments_.find(begin), segments_.lower_bound(end));
  segments_.emplace(begin, Segment{end, access, {}});
}

}  // namespace emu
}  // namespace parity
