// graph/dot.h — a graph as Graphviz DOT text: one box per node, one ellipse per input, parameter
// and optimizer state, edges labelled with the value they carry and its shape.
#pragma once

#include <string>

#include "parity/graph.h"

namespace parity {

// Forward nodes are blue, backward nodes (the gradient rules' "<node>.bwd*" nodes, gradient sums
// and the dL/dL seed) red, optimizer updates orange; parameters and state are grey ellipses,
// inputs white. A TEMP value that no node reads (loss, correct) ends in a plain-text node so it
// shows. Names and labels are quoted and escaped, so any value name is safe.
std::string graph_dot(const Graph& graph, const std::string& title);

// `text` as the inside of a DOT double-quoted string (backslash, quote and newline escaped).
std::string dot_escape(const std::string& text);

}  // namespace parity
