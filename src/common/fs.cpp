#include "common/fs.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "common/error.h"

namespace tinv {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path, "read error");
  return ss.str();
}

std::vector<uint8_t> read_binary_file(const std::string& path) {
  std::string s = read_text_file(path);
  return std::vector<uint8_t>(s.begin(), s.end());
}

MappedFile map_file(const std::string& path) {
  struct Mapping {
    void* addr = nullptr;
    size_t size = 0;
    ~Mapping() {
      if (addr) ::munmap(addr, size);
    }
  };
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path, "not a regular file");
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = static_cast<size_t>(st.st_size);
  if (mapping->size > 0) {
    void* addr = ::mmap(nullptr, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw Error(path, std::string("cannot map: ") + std::strerror(err));
    }
    mapping->addr = addr;
  }
  ::close(fd);
  MappedFile f;
  f.data = static_cast<const uint8_t*>(mapping->addr);
  f.size = mapping->size;
  f.owner = std::shared_ptr<const void>(mapping, mapping->addr);
  return f;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool dir_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string join_path(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (!b.empty() && b[0] == '/') return b;
  return a.back() == '/' ? a + b : a + "/" + b;
}

std::string file_stem(const std::string& path) {
  size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  size_t dot = name.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? name : name.substr(0, dot);
}

std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string strip_extension(const std::string& path) {
  auto slash = path.find_last_of('/');
  auto dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return path;
  return path.substr(0, dot);
}

void make_dirs(const std::string& dir, const std::string& where) {
  if (dir.empty()) return;
  std::error_code ec;
  if (!dir_exists(dir)) std::filesystem::create_directories(dir, ec);
  const std::string reason = ec ? ec.message() : "not a folder";
  if (where.empty()) {
    TINV_CHECK(dir_exists(dir), dir, "cannot create folder: ", reason);
    return;
  }
  TINV_CHECK(dir_exists(dir), where, "cannot create folder '", dir, "': ", reason);
  TINV_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0, where, "cannot write to '", dir, "'");
}

void check_creatable_dir(const std::string& dir, const std::string& where) {
  std::error_code ec;
  std::filesystem::path p(dir);
  while (!std::filesystem::exists(p, ec)) {  // the nearest existing ancestor
    std::filesystem::path parent = p.parent_path();
    if (parent.empty()) parent = ".";
    if (parent == p) break;
    p = parent;
  }
  TINV_CHECK(std::filesystem::is_directory(p, ec), where, "cannot create '", dir, "': '", p.string(),
             "' is not a folder");
  TINV_CHECK(::access(p.c_str(), W_OK | X_OK) == 0, where, "cannot write to '", p.string(), "'");
}

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  std::random_device rd;
  std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd() % 100000);
  try {
    write(tmp);
    // Flush to disk before the rename so a crash never leaves a truncated file under `path`.
    int fd = ::open(tmp.c_str(), O_RDONLY);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw Error(path, std::string("cannot rename temporary file: ") + std::strerror(errno));
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

void write_file_atomically(const std::string& path, const void* data, size_t size) {
  write_atomically(path, [&](const std::string& tmp) {
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw Error(path, std::string("cannot write: ") + std::strerror(errno));
    size_t n = size ? std::fwrite(data, 1, size, f) : 0;
    int err = n == size ? 0 : errno;
    if (std::fflush(f) != 0 && !err) err = errno;
    if (std::fclose(f) != 0 && !err) err = errno;
    if (n != size || err) throw Error(path, std::string("write failed: ") + std::strerror(err ? err : EIO));
  });
}

}  // namespace tinv
