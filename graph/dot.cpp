// graph/dot.cpp — writing a graph as Graphviz DOT (graph/dot.h).
#include "graph/dot.h"

#include <fmt/format.h>

#include "ops/op_rule.h"

namespace parity {
namespace {

enum class NodeRole { forward, backward, optimizer };

NodeRole role_of(const Node& n) {
  if (n.op == PARITY_OP_ADAM_STEP || n.op == PARITY_OP_SGD_STEP) return NodeRole::optimizer;
  const std::string op = ops::rule(n.op).name;
  if (op.find("_BWD") != std::string::npos || n.name.find(".bwd") != std::string::npos ||
      n.name.rfind("grad/", 0) == 0)
    return NodeRole::backward;
  return NodeRole::forward;
}

// Fill colours by NodeRole: forward blue, backward red, optimizer orange.
const char* fill_of(NodeRole role) {
  static constexpr const char* kFill[] = {"#cfe2f3", "#f4cccc", "#fce5cd"};
  return kFill[static_cast<int>(role)];
}

}  // namespace

std::string dot_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string graph_dot(const Graph& graph, const std::string& title) {
  std::string out = fmt::format(
      "digraph \"{}\" {{\n  label=\"{}\";\n  labelloc=t;\n  fontname=\"Helvetica\";\n  rankdir=TB;\n"
      "  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=8];\n",
      dot_escape(title), dot_escape(title));
  const auto& values = graph.values();
  std::vector<bool> read(values.size(), false);
  for (const Node& n : graph.nodes())
    for (int32_t in : n.inputs) read[static_cast<size_t>(in)] = true;
  for (size_t i = 0; i < values.size(); ++i) {
    const ValueInfo& v = values[i];
    if (v.kind == PARITY_VALUE_TEMP) continue;
    const bool persistent = v.kind == PARITY_VALUE_PARAM || v.kind == PARITY_VALUE_STATE;
    out += fmt::format("  v{} [shape=ellipse, style=filled, fillcolor=\"{}\", label=\"{}\\n{}\"];\n", i,
                       persistent ? "#e0e0e0" : "white", dot_escape(v.name), dot_escape(v.shape.str()));
  }
  for (size_t i = 0; i < graph.nodes().size(); ++i) {
    const Node& n = graph.nodes()[i];
    out += fmt::format("  n{} [shape=box, style=\"rounded,filled\", fillcolor=\"{}\", label=\"{}\\n{}\"];\n", i,
                       fill_of(role_of(n)), dot_escape(n.name), ops::lower_name(n.op));
  }
  for (size_t i = 0; i < graph.nodes().size(); ++i) {
    for (int32_t in : graph.nodes()[i].inputs) {
      const ValueInfo& v = values[static_cast<size_t>(in)];
      if (v.producer < 0)
        out += fmt::format("  v{} -> n{};\n", in, i);
      else
        out += fmt::format("  n{} -> n{} [label=\"{} {}\"];\n", v.producer, i, dot_escape(v.name),
                           dot_escape(v.shape.str()));
    }
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const ValueInfo& v = values[i];
    if (v.kind != PARITY_VALUE_TEMP || read[i] || v.producer < 0) continue;
    out += fmt::format("  v{} [shape=plaintext, label=\"{}\\n{}\"];\n  n{} -> v{};\n", i, dot_escape(v.name),
                       dot_escape(v.shape.str()), v.producer, i);
  }
  out += "}\n";
  return out;
}

}  // namespace parity
