// util/atomic_file.cpp — temp file + fsync + rename, so a crash never leaves a half-written file.
#include "util/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "parity/error.h"

namespace parity {
namespace {

void write_all(int fd, const void* data, size_t bytes, const std::string& tmp) {
  const auto* p = static_cast<const unsigned char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd, p, bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorKind::io, fmt::format("cannot write '{}': {}", tmp, std::strerror(errno)));
    }
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

std::string folder_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

void write_file_atomically(const std::string& path, const std::vector<ByteRange>& content) {
  static std::atomic<unsigned> counter{0};
  const std::string tmp = fmt::format("{}.tmp-{}-{}", path, static_cast<long>(::getpid()), counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    throw Error(ErrorKind::io, fmt::format("cannot write '{}': cannot create '{}': {}", path, tmp, std::strerror(errno)));
  bool open = true;
  try {
    for (const ByteRange& r : content) write_all(fd, r.data, r.bytes, tmp);
    if (::fsync(fd) != 0) throw Error(ErrorKind::io, fmt::format("cannot fsync '{}': {}", tmp, std::strerror(errno)));
    open = false;  // close releases the descriptor even when it reports an error
    if (::close(fd) != 0) throw Error(ErrorKind::io, fmt::format("cannot close '{}': {}", tmp, std::strerror(errno)));
  } catch (...) {
    if (open) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(ErrorKind::io, fmt::format("cannot write '{}': rename from '{}' failed: {}", path, tmp, std::strerror(err)));
  }
  // Make the rename itself durable; failure here loses nothing already on disk.
  const int dir = ::open(folder_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace parity
