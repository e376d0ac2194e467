// dist/communicator.cpp — choosing a communicator by name, and the start-up check that every
// rank was started with rank 0's configuration (written once, over the interface).
#include "dist/communicator.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "parity/error.h"
#if PARITY_HAVE_MPI
#include "dist/mpi_communicator.h"
#endif

namespace parity {

std::unique_ptr<Communicator> make_communicator(const std::string& kind) {
  if (kind == "mpi") {
#if PARITY_HAVE_MPI
    return make_mpi_communicator();
#else
    throw Error(ErrorKind::backend,
                "communicator \"mpi\": this parity was built without MPI (install libopenmpi-dev, or MPICH, "
                "and configure again with -DPARITY_WITH_MPI=ON)");
#endif
  }
  throw Error(ErrorKind::invalid_argument, fmt::format("unknown communicator \"{}\": the kinds are mpi", kind));
}

namespace {

// How many differing ranks, and keys per rank, the message details: enough to act on, short
// enough to read when every rank of a large job differs.
constexpr size_t kRanksDetailed = 4;
constexpr size_t kKeysDetailed = 3;

using KeyValues = std::vector<std::pair<std::string, std::string>>;

// "key=value" lines in order; a line without '=' is a key with an empty value.
KeyValues parse_description(const std::string& description) {
  KeyValues lines;
  size_t at = 0;
  while (at < description.size()) {
    size_t end = description.find('\n', at);
    if (end == std::string::npos) end = description.size();
    std::string line = description.substr(at, end - at);
    if (!line.empty()) {
      size_t eq = line.find('=');
      if (eq == std::string::npos) {
        lines.emplace_back(line, "");
      } else {
        lines.emplace_back(line.substr(0, eq), line.substr(eq + 1));
      }
    }
    at = end + 1;
  }
  return lines;
}

const std::string* value_of(const KeyValues& lines, const std::string& key) {
  for (const auto& [k, v] : lines) {
    if (k == key) return &v;
  }
  return nullptr;
}

// Collective: `text` of rank `root` becomes `text` on every rank (its length first, so that the
// others can size their buffers).
void broadcast_text(Communicator& comm, std::string& text, int root) {
  int64_t length = static_cast<int64_t>(text.size());
  comm.broadcast(&length, sizeof length, root);
  text.resize(static_cast<size_t>(length));
  if (length > 0) comm.broadcast(text.data(), length, root);
}

// What differs between rank `rank`'s description and rank 0's, key by key.
std::string describe_difference(int rank, const std::string& theirs, const std::string& reference) {
  KeyValues their_lines = parse_description(theirs);
  KeyValues reference_lines = parse_description(reference);
  std::vector<std::string> differences;
  for (const auto& [key, reference_value] : reference_lines) {
    const std::string* their_value = value_of(their_lines, key);
    if (!their_value) {
      differences.push_back(fmt::format("rank {} was started without {}, rank 0 with {}={}", rank, key, key,
                                        reference_value));
    } else if (*their_value != reference_value) {
      differences.push_back(fmt::format("rank {} was started with {}={}, rank 0 with {}={}", rank, key,
                                        *their_value, key, reference_value));
    }
  }
  for (const auto& [key, their_value] : their_lines) {
    if (!value_of(reference_lines, key)) {
      differences.push_back(
          fmt::format("rank {} was started with {}={}, rank 0 without {}", rank, key, their_value, key));
    }
  }
  if (differences.empty()) {
    return fmt::format("rank {} has the same keys and values as rank 0 in another order or repeated", rank);
  }
  std::string text;
  for (size_t i = 0; i < std::min(differences.size(), kKeysDetailed); ++i) {
    text += (i ? "; " : "") + differences[i];
  }
  if (differences.size() > kKeysDetailed) {
    text += fmt::format(" (and {} more keys of rank {})", differences.size() - kKeysDetailed, rank);
  }
  return text;
}

}  // namespace

void check_same_configuration(Communicator& comm, const std::string& description) {
  std::string reference = comm.rank() == 0 ? description : std::string();
  broadcast_text(comm, reference, 0);

  // One slot per rank, 1 where that rank differs: the sum tells every rank which ones do (small
  // integers, exact in double).
  std::vector<double> differs(static_cast<size_t>(comm.size()), 0.0);
  differs[static_cast<size_t>(comm.rank())] = description == reference ? 0.0 : 1.0;
  comm.allreduce_sum(differs.data(), static_cast<int64_t>(differs.size()));
  std::vector<int> differing_ranks;
  for (int r = 0; r < comm.size(); ++r) {
    if (differs[static_cast<size_t>(r)] != 0.0) differing_ranks.push_back(r);
  }
  if (differing_ranks.empty()) return;

  // Each detailed rank broadcasts its own description, so that every rank can write (and throw)
  // the same message: whichever rank's output the user reads, it says what differs.
  std::string message = "the ranks were not started with the same configuration: ";
  for (size_t i = 0; i < std::min(differing_ranks.size(), kRanksDetailed); ++i) {
    int r = differing_ranks[i];
    std::string theirs = comm.rank() == r ? description : std::string();
    broadcast_text(comm, theirs, r);
    message += (i ? "; " : "") + describe_difference(r, theirs, reference);
  }
  if (differing_ranks.size() > kRanksDetailed) {
    message += fmt::format("; and {} more ranks differ", differing_ranks.size() - kRanksDetailed);
  }
  message += ". Start every rank with the same options, model and data.";
  throw Error(ErrorKind::invalid_argument, message);
}

}  // namespace parity
