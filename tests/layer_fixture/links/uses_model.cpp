// tests/layer_fixture/links/uses_model.cpp — compiled as graph/: a call up into model/ (not allowed).
#include <cstring>

int fixture_model_answer();

int fixture_graph_calls_model(const char* text) { return fixture_model_answer() + static_cast<int>(std::strlen(text)); }
