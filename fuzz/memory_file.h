// fuzz/memory_file.h — a fuzzer's bytes as a file with a path (memfd_create), for readers that take a
// path: nothing is written to disk and the file is rewritten in place for each input.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

class MemoryFile {
 public:
  MemoryFile() : fd_(::memfd_create("parity-fuzz", 0)) {
    if (fd_ < 0) fail("memfd_create");
  }
  MemoryFile(const uint8_t* data, size_t size) : MemoryFile() { set(data, size); }
  ~MemoryFile() { ::close(fd_); }
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;

  // The whole content becomes these bytes.
  void set(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0) fail("ftruncate");
    for (size_t done = 0; done < size;) {
      const ssize_t wrote = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (wrote <= 0) fail("pwrite");
      done += static_cast<size_t>(wrote);
    }
  }
  // A path that opens this file afresh (its own offset), as a reader's fopen or gzopen does.
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  // A harness failure, not a finding in the parser: stop loudly.
  [[noreturn]] static void fail(const char* call) {
    std::perror(call);
    std::abort();
  }
  int fd_;
};
