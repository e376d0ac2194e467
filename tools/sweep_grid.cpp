// tools/sweep_grid.cpp — the grid of `parity sweep` (tools/sweep_grid.h).
#include "tools/sweep_grid.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "parity/error.h"

namespace parity::tools {
namespace {

std::vector<std::string> split_items(const std::string& text, const std::string& flag) {
  std::vector<std::string> items;
  size_t start = 0;
  for (;;) {
    const size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (item.empty())
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("{} '{}': an empty item; give comma-separated values such as 1,2,3", flag, text));
    items.push_back(item);
    if (comma == std::string::npos) return items;
    start = comma + 1;
  }
}

template <typename T>
void refuse_repeats(const std::vector<T>& values, const std::vector<std::string>& items, const std::string& flag) {
  for (size_t i = 0; i < values.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (values[i] == values[j])
        throw Error(ErrorKind::invalid_argument,
                    fmt::format("{}: '{}' and '{}' are the same value; list each once", flag, items[j], items[i]));
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

}  // namespace

std::vector<float> parse_lr_list(const std::string& text, const std::string& flag) {
  const std::vector<std::string> items = split_items(text, flag);
  std::vector<float> values;
  for (const std::string& item : items) {
    size_t used = 0;
    float value = 0;
    try {
      value = std::stof(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || !std::isfinite(value) || !(value > 0.0f))
      throw Error(ErrorKind::invalid_argument, fmt::format("{}: '{}' is not a finite learning rate > 0", flag, item));
    values.push_back(value);
  }
  refuse_repeats(values, items, flag);
  return values;
}

std::vector<int64_t> parse_batch_list(const std::string& text, const std::string& flag) {
  const std::vector<std::string> items = split_items(text, flag);
  std::vector<int64_t> values;
  for (const std::string& item : items) {
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || value < 1)
      throw Error(ErrorKind::invalid_argument, fmt::format("{}: '{}' is not a batch size >= 1", flag, item));
    values.push_back(value);
  }
  refuse_repeats(values, items, flag);
  return values;
}

std::vector<std::string> parse_optimizer_list(const std::string& text, const std::string& flag) {
  const std::vector<std::string> items = split_items(text, flag);
  for (const std::string& item : items)
    if (item != "adam" && item != "sgd")
      throw Error(ErrorKind::invalid_argument, fmt::format("{}: '{}' is not an optimizer: choose adam or sgd", flag, item));
  refuse_repeats(items, items, flag);
  return items;
}

std::vector<SweepConfig> sweep_grid(const std::vector<std::string>& optimizers, const std::vector<float>& lrs,
                                    const std::vector<int64_t>& batches) {
  std::vector<SweepConfig> grid;
  for (const std::string& optimizer : optimizers)
    for (float lr : lrs)
      for (int64_t batch : batches) grid.push_back({static_cast<int>(grid.size()), optimizer, lr, batch});
  return grid;
}

std::string run_name(const SweepConfig& c, size_t runs) {
  const int digits = static_cast<int>(std::to_string(std::max<size_t>(runs, 1)).size());
  return fmt::format("run{:0{}}-{}-lr{}-batch{}", c.index + 1, std::max(digits, 2), c.optimizer, c.lr, c.batch);
}

std::vector<SweepResult> rank_by_validation(std::vector<SweepResult> results) {
  std::stable_sort(results.begin(), results.end(), [](const SweepResult& a, const SweepResult& b) {
    if (a.failed != b.failed) return !a.failed;
    if (a.failed) return a.config.index < b.config.index;
    if (a.val_accuracy != b.val_accuracy) return a.val_accuracy > b.val_accuracy;
    if (a.val_loss != b.val_loss) return a.val_loss < b.val_loss;
    return a.config.index < b.config.index;
  });
  return results;
}

std::string sweep_table(const std::vector<SweepResult>& ranked) {
  std::vector<std::vector<std::string>> rows = {
      {"rank", "run", "optimizer", "lr", "batch", "val loss", "val acc", "test acc", "time"}};
  for (size_t i = 0; i < ranked.size(); ++i) {
    const SweepResult& r = ranked[i];
    std::vector<std::string> row = {std::to_string(i + 1), std::to_string(r.config.index + 1), r.config.optimizer,
                                    fmt::format("{}", r.config.lr), std::to_string(r.config.batch)};
    if (r.failed) {
      row.insert(row.end(), {"-", "-", "-", fmt::format("{:.1f} s", r.seconds), "failed: " + r.error});
    } else {
      row.insert(row.end(), {fmt::format("{:.4f}", r.val_loss), fmt::format("{:.2f}%", 100 * r.val_accuracy),
                             fmt::format("{:.2f}%", 100 * r.test_accuracy), fmt::format("{:.1f} s", r.seconds)});
    }
    rows.push_back(row);
  }
  std::vector<size_t> width(rows.front().size(), 0);
  for (const auto& row : rows)
    for (size_t c = 0; c < width.size() && c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::string text;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      if (c > 0) line += "  ";
      const bool numeric = c != 2 && c < width.size();  // the optimizer is text; everything else aligns right
      if (c >= width.size()) line += row[c];
      else if (numeric) line += fmt::format("{:>{}}", row[c], width[c]);
      else line += fmt::format("{:<{}}", row[c], width[c]);
    }
    line.erase(line.find_last_not_of(' ') + 1);
    text += line + "\n";
  }
  return text;
}

std::string sweep_csv(const std::vector<SweepResult>& ranked, const SweepSettings& s) {
  std::string text =
      "rank,run,model,optimizer,lr,batch,epochs,val_split,seed,limit,status,val_loss,val_accuracy,test_loss,"
      "test_accuracy,train_loss,train_accuracy,steps,seconds,metrics_file,error\n";
  for (size_t i = 0; i < ranked.size(); ++i) {
    const SweepResult& r = ranked[i];
    text += fmt::format("{},{},{},{},{},{},{},{},{},{},{},", i + 1, r.config.index + 1, csv_field(s.model),
                        r.config.optimizer, r.config.lr, r.config.batch, s.epochs, s.val_split, s.seed, s.limit,
                        r.failed ? "failed" : "ok");
    if (r.failed)
      text += ",,,,,,";
    else
      text += fmt::format("{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},", r.val_loss, r.val_accuracy, r.test_loss,
                          r.test_accuracy, r.train_loss, r.train_accuracy);
    text += fmt::format("{},{:.3f},{},{}\n", r.failed ? std::string() : std::to_string(r.steps), r.seconds,
                        csv_field(r.metrics_file), csv_field(r.error));
  }
  return text;
}

}  // namespace parity::tools
