// backends/kit/persistent_store.h — PARAM and STATE values shared by name between the
// executables compiled with share_with: the lookup and shape check once, the storage (a host
// vector, an aligned arena, a device buffer) the backend's own Entry type.
#pragma once

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "parity/plugin.h"

namespace parity {
namespace kit {

inline bool is_persistent(parity_value_kind kind) { return kind == PARITY_VALUE_PARAM || kind == PARITY_VALUE_STATE; }

inline bool same_dtype_and_shape(const parity_value_desc& a, const parity_value_desc& b) {
  if (a.dtype != b.dtype || a.rank != b.rank) return false;
  for (int32_t i = 0; i < a.rank; ++i)
    if (a.dims[i] != b.dims[i]) return false;
  return true;
}

// One instance's persistent values by name. Entries never move once made, so what a backend
// keeps of one (a pointer into it) stays valid while any executable holds the store.
template <class Entry>
class PersistentStore {
 public:
  // The entry of value v: made by `make()` (a std::shared_ptr<Entry>) on first sight, else the
  // existing one, which must have v's dtype and shape; if not, `mismatch(kept)` throws the
  // backend's error (kept: the descriptor the entry was made from).
  template <class Make, class Mismatch>
  std::shared_ptr<Entry> bind(const parity_value_desc& v, Make&& make, Mismatch&& mismatch) {
    const std::string name(v.name, strnlen(v.name, sizeof v.name));
    auto it = entries_.find(name);
    if (it == entries_.end()) return entries_.emplace(name, Kept{v, make()}).first->second.entry;
    if (!same_dtype_and_shape(it->second.desc, v)) mismatch(static_cast<const parity_value_desc&>(it->second.desc));
    return it->second.entry;
  }

  // Whether a value of v's name is already stored (bind would reuse it rather than make one).
  bool holds(const parity_value_desc& v) const {
    return entries_.count(std::string(v.name, strnlen(v.name, sizeof v.name))) != 0;
  }
  // Calls f(const Entry&) for each entry, in name order.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [name, kept] : entries_) f(*kept.entry);
  }

 private:
  struct Kept {
    parity_value_desc desc;
    std::shared_ptr<Entry> entry;
  };
  std::map<std::string, Kept> entries_;
};

}  // namespace kit
}  // namespace parity
