// graph/plan.cpp — lowers a Graph to the C descriptors of plugin.h and plans its memory:
// each TEMP value lives from its producer to its last consumer, and values whose lifetimes do
// not overlap share arena bytes (best fit over a free list); a reshape's output takes over the
// bytes of an input that dies there.
#include <algorithm>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "parity/error.h"
#include "parity/graph.h"

namespace parity {
namespace {

constexpr int64_t kAlignment = 64;  // a cache line, and enough for any SIMD load

int64_t align_up(int64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

parity_dtype to_c(DType d) {
  switch (d) {
    case DType::f32: return PARITY_F32;
    case DType::i32: return PARITY_I32;
    case DType::i64: return PARITY_I64;
    case DType::bf16: return PARITY_BF16;
    case DType::f16: return PARITY_F16;
    case DType::u8: break;  // a storage dtype (masks in files), never a graph value's
  }
  throw Error(ErrorKind::internal, fmt::format("plan: dtype {} has no plugin ABI dtype", to_string(d)));
}

void copy_name(char (&dst)[PARITY_NAME_LEN], const std::string& src) {
  std::memset(dst, 0, PARITY_NAME_LEN);
  std::memcpy(dst, src.data(), std::min(src.size(), size_t{PARITY_NAME_LEN - 1}));
}

// Free arena ranges by offset; allocation takes the smallest range that fits, else grows the arena.
class ArenaPlanner {
 public:
  int64_t allocate(int64_t bytes) {
    bytes = align_up(std::max<int64_t>(bytes, 1));
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it)
      if (it->second >= bytes && (best == free_.end() || it->second < best->second)) best = it;
    if (best == free_.end()) {
      // Extend from a free block that ends at the arena's top, if any.
      if (!free_.empty()) {
        auto last = std::prev(free_.end());
        if (last->first + last->second == size_) {
          int64_t offset = last->first;
          free_.erase(last);
          size_ = offset + bytes;
          return offset;
        }
      }
      int64_t offset = size_;
      size_ += bytes;
      return offset;
    }
    int64_t offset = best->first;
    int64_t remaining = best->second - bytes;
    free_.erase(best);
    if (remaining > 0) free_[offset + bytes] = remaining;
    return offset;
  }

  void release(int64_t offset, int64_t bytes) {
    bytes = align_up(std::max<int64_t>(bytes, 1));
    auto it = free_.emplace(offset, bytes).first;
    auto next = std::next(it);
    if (next != free_.end() && it->first + it->second == next->first) {
      it->second += next->second;
      free_.erase(next);
    }
    if (it != free_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second == it->first) {
        prev->second += it->second;
        free_.erase(it);
      }
    }
  }

  int64_t size() const { return size_; }

 private:
  std::map<int64_t, int64_t> free_;  // offset -> bytes
  int64_t size_ = 0;
};

}  // namespace

Plan::Plan(const Graph& graph, const std::vector<std::string>& keep, const std::vector<std::string>& tight_layout) {
  const auto& values = graph.values();
  const auto& nodes = graph.nodes();
  std::vector<bool> kept(values.size(), false);
  for (const std::string& name : keep) kept[static_cast<size_t>(graph.find(name).id)] = true;

  constexpr int32_t kForever = INT32_MAX;
  std::vector<int32_t> last_use(values.size(), -1);
  for (size_t n = 0; n < nodes.size(); ++n)
    for (int32_t in : nodes[n].inputs) last_use[static_cast<size_t>(in)] = static_cast<int32_t>(n);
  for (size_t v = 0; v < values.size(); ++v) {
    if (kept[v] || values[v].kind != PARITY_VALUE_TEMP) last_use[v] = kForever;
    // A value nobody reads still needs somewhere to be written: it dies with its producer.
    if (last_use[v] < 0) last_use[v] = values[v].producer;
  }

  values_.resize(values.size());
  for (size_t v = 0; v < values.size(); ++v) {
    const ValueInfo& info = values[v];
    parity_value_desc& d = values_[v];
    std::memset(&d, 0, sizeof d);
    copy_name(d.name, info.name);
    d.dtype = to_c(info.dtype);
    d.kind = info.kind;
    d.rank = info.shape.rank();
    for (int i = 0; i < d.rank; ++i) d.dims[i] = info.shape[i];
    d.bytes = info.shape.numel() * static_cast<int64_t>(dtype_size(info.dtype));
    d.offset = -1;
    d.keep = (kept[v] || info.kind != PARITY_VALUE_TEMP) ? 1 : 0;
  }

  int64_t tight_end = 0;
  for (const std::string& name : tight_layout) {
    const auto v = static_cast<size_t>(graph.find(name).id);
    if (values[v].kind == PARITY_VALUE_PARAM || values[v].kind == PARITY_VALUE_STATE || values_[v].offset >= 0)
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("plan: '{}' cannot be placed in the tight layout (persistent or listed twice)", name));
    const auto size = static_cast<int64_t>(dtype_size(values[v].dtype));
    tight_end = (tight_end + size - 1) / size * size;
    values_[v].offset = tight_end;
    values_[v].keep = 1;
    last_use[v] = kForever;
    tight_end += values_[v].bytes;
  }
  ArenaPlanner arena;
  if (tight_end > 0) arena.allocate(tight_end);  // the tight region comes first: offset 0
  for (size_t v = 0; v < values.size(); ++v)
    if (values[v].kind == PARITY_VALUE_INPUT && values_[v].offset < 0) values_[v].offset = arena.allocate(values_[v].bytes);
  for (size_t n = 0; n < nodes.size(); ++n) {
    // A reshape whose input dies here takes over the input's bytes: the same elements under a
    // new shape, so backends have nothing to copy (the one node whose input and output share
    // bytes).
    if (nodes[n].op == PARITY_OP_RESHAPE && nodes[n].inputs.size() == 1 && nodes[n].outputs.size() == 1) {
      const auto in = static_cast<size_t>(nodes[n].inputs[0]), out = static_cast<size_t>(nodes[n].outputs[0]);
      if (values[in].kind == PARITY_VALUE_TEMP && last_use[in] == static_cast<int32_t>(n) && values_[out].offset < 0 &&
          values_[out].bytes == values_[in].bytes) {
        values_[out].offset = values_[in].offset;
        last_use[in] = -2;  // its bytes now belong to the output
      }
    }
    // Other outputs are placed before the inputs that die here are released: no node reads and
    // writes the same bytes.
    for (int32_t out : nodes[n].outputs)
      if (values_[static_cast<size_t>(out)].offset < 0)
        values_[static_cast<size_t>(out)].offset = arena.allocate(values_[static_cast<size_t>(out)].bytes);
    for (int32_t v : nodes[n].inputs) {
      auto idx = static_cast<size_t>(v);
      if (last_use[idx] == static_cast<int32_t>(n) && values[idx].kind == PARITY_VALUE_TEMP) {
        arena.release(values_[idx].offset, values_[idx].bytes);
        last_use[idx] = -2;  // released; a node may list the same input twice
      }
    }
    for (int32_t out : nodes[n].outputs) {
      auto idx = static_cast<size_t>(out);
      if (last_use[idx] == static_cast<int32_t>(n)) {
        arena.release(values_[idx].offset, values_[idx].bytes);
        last_use[idx] = -2;
      }
    }
  }
  arena_bytes_ = arena.size();

  nodes_.resize(nodes.size());
  for (size_t n = 0; n < nodes.size(); ++n) {
    const Node& node = nodes[n];
    parity_node_desc& d = nodes_[n];
    std::memset(&d, 0, sizeof d);
    copy_name(d.name, node.name);
    d.op = node.op;
    d.params = node.params;
    d.num_inputs = static_cast<int32_t>(node.inputs.size());
    d.num_outputs = static_cast<int32_t>(node.outputs.size());
    if (d.num_inputs > PARITY_MAX_NODE_INPUTS || d.num_outputs > PARITY_MAX_NODE_OUTPUTS)
      throw Error(ErrorKind::internal, fmt::format("plan: node '{}' has too many operands", node.name));
    std::copy(node.inputs.begin(), node.inputs.end(), d.inputs);
    std::copy(node.outputs.begin(), node.outputs.end(), d.outputs);
  }
}

parity_plan Plan::c_plan() const {
  parity_plan p;
  p.num_values = static_cast<int32_t>(values_.size());
  p.num_nodes = static_cast<int32_t>(nodes_.size());
  p.values = values_.data();
  p.nodes = nodes_.data();
  p.arena_bytes = arena_bytes_;
  return p;
}

int32_t Plan::value(const std::string& name) const {
  for (size_t i = 0; i < values_.size(); ++i)
    if (name == values_[i].name) return static_cast<int32_t>(i);
  throw Error(ErrorKind::invalid_argument, fmt::format("plan: no value named '{}'", name));
}

}  // namespace parity
