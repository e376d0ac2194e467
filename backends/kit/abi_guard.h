// backends/kit/abi_guard.h — the ABI edge every backend shares, built in or plugin: a failure as
// status + message, message copying into C buffers, and the wrapper that keeps any exception
// from crossing a table function. Header-only plain C++ (plugins link nothing of libparity, and
// this compiles under g++, hipcc and nvcc alike).
#pragma once

#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "parity/plugin.h"

namespace parity {
namespace kit {

// A failure with the status it must cross the ABI as.
struct AbiError : std::runtime_error {
  AbiError(parity_status s, const std::string& m) : std::runtime_error(m), status(s) {}
  parity_status status;
};

[[noreturn]] inline void abi_fail(parity_status status, const std::string& message) {
  throw AbiError(status, message);
}

// Copies a message into a C buffer, NUL-terminated and truncated to fit.
inline void copy_message(char* dst, size_t capacity, const std::string& message) {
  if (!dst || capacity == 0) return;
  const size_t n = message.size() < capacity - 1 ? message.size() : capacity - 1;
  std::memcpy(dst, message.data(), n);
  dst[n] = '\0';
}

// Fills `err` (when given) and returns `status`.
inline parity_status report(parity_error* err, parity_status status, const std::string& message) {
  if (err) {
    err->status = status;
    copy_message(err->message, sizeof err->message, message);
  }
  return status;
}

// Runs one table function's body; nothing thrown leaves it. `prefix` starts the messages the
// guard writes itself; `translate(const std::exception&, parity_status&, std::string&)` decides
// the status and message of any other std::exception, which is where a backend's own error
// types (parity::Error in libparity, a failed kernel launch in a plugin) are told apart.
template <class Body, class Translate>
parity_status guarded(parity_error* err, const std::string& prefix, Body&& body, Translate&& translate) {
  try {
    body();
    return PARITY_OK;
  } catch (const AbiError& e) {
    return report(err, e.status, e.what());
  } catch (const std::bad_alloc&) {
    return report(err, PARITY_STATUS_OUT_OF_MEMORY, prefix + "out of host memory");
  } catch (const std::exception& e) {
    parity_status status = PARITY_STATUS_INTERNAL;
    std::string message = e.what();
    translate(e, status, message);
    return report(err, status, message);
  } catch (...) {
    return report(err, PARITY_STATUS_INTERNAL, prefix + "an exception that is not a std::exception");
  }
}

}  // namespace kit
}  // namespace parity
