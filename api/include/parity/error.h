// parity/error.h — the exception types the C++ API throws; each message names what is wrong.
#pragma once

#include <stdexcept>
#include <string>

namespace parity {

// What kind of thing went wrong; the CLI maps these to exit codes and the plugin ABI to
// status values.
enum class ErrorKind {
  invalid_argument,  // a nonsensical option or parameter (batch 0, negative lr, unknown name)
  shape,             // a tensor or graph shape that breaks an op's rule
  data,              // a corrupt or inconsistent input file (IDX, safetensors)
  io,                // a file that cannot be opened, read or written
  backend,           // a backend that is unavailable or failed
  numeric,           // a computation that went non-finite (NaN loss)
  memory,            // a plan that needs more memory than the machine has (refused before allocating)
  internal,          // a broken invariant inside parity: a bug
};

const char* to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace parity
