// tools/main.cpp — the `parity` command line: parses arguments with CLI11 and dispatches to
// the subcommands (info, train, eval, prune, infer, check, bench, summary, plot, export); maps parity errors to a message and a non-zero exit.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "parity/parity.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"parity: one op graph for CNNs, run by interchangeable backends that are checked against each other"};
  app.set_version_flag("--version", std::string(parity::version()));
  app.require_subcommand(1);
  std::function<int()> run;
  parity::tools::add_info_command(app, run);
  parity::tools::add_train_command(app, run);
  parity::tools::add_eval_command(app, run);
  parity::tools::add_prune_command(app, run);
  parity::tools::add_infer_command(app, run);
  parity::tools::add_check_command(app, run);
  parity::tools::add_sweep_command(app, run);
#ifdef PARITY_HAVE_BENCH
  parity::tools::add_bench_command(app, run);
#endif
  parity::tools::add_summary_command(app, run);
  parity::tools::add_plot_command(app, run);
#ifdef PARITY_HAVE_ONNX_EXPORT
  parity::tools::add_export_command(app, run);
#endif
  auto known = [&app](const std::string& name) {
    for (const CLI::App* sub : app.get_subcommands({}))
      if (sub->get_name() == name) return true;
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !known(argv[1])) {
    std::vector<std::string> names;
    for (const CLI::App* sub : app.get_subcommands({})) names.push_back(sub->get_name());
    fmt::print(stderr, "parity: unknown command '{}': choose one of {} (see parity --help)\n", argv[1],
               fmt::join(names, ", "));
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return run();
  } catch (const parity::Error& e) {
    fmt::print(stderr, "parity: {}: {}\n", parity::to_string(e.kind()), e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "parity: unexpected error: {}\n", e.what());
    return 1;
  }
}
