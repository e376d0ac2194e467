// tests/layer_fixture/links/uses_graph.cpp — compiled as model/: a call down into graph/ (allowed).
int fixture_graph_calls_model(const char* text);

int fixture_model_calls_graph() { return fixture_graph_calls_model("model"); }
