// api/error.cpp — names of the error kinds.
#include "parity/error.h"

namespace parity {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_argument: return "invalid argument";
    case ErrorKind::shape: return "shape error";
    case ErrorKind::data: return "data error";
    case ErrorKind::io: return "i/o error";
    case ErrorKind::backend: return "backend error";
    case ErrorKind::numeric: return "numeric error";
    case ErrorKind::memory: return "out of memory";
    case ErrorKind::internal: return "internal error";
  }
  return "error";
}

}  // namespace parity
