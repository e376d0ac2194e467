// tests/layer_fixture/links/model_answer.cpp — compiled as model/: what the graph/ fixture calls.
int fixture_model_answer() { return 42; }
