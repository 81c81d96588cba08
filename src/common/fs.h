// File helpers: whole-file reads with clear errors, and atomic writes (temp file + rename).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tinv {

std::string read_text_file(const std::string& path);
std::vector<uint8_t> read_binary_file(const std::string& path);
// A read-only memory mapping of a whole file; `owner` keeps it alive (views may share it).
struct MappedFile {
  std::shared_ptr<const void> owner;
  const uint8_t* data = nullptr;
  size_t size = 0;
};
// Maps a regular file. Throws tinv::Error naming the file if it cannot be opened or mapped.
MappedFile map_file(const std::string& path);

bool file_exists(const std::string& path);
bool dir_exists(const std::string& path);
std::string join_path(const std::string& a, const std::string& b);
std::string file_stem(const std::string& path);        // "a/b/cat.pt" -> "cat"
std::string parent_dir(const std::string& path);       // "a/b/cat.pt" -> "a/b"
std::string strip_extension(const std::string& path);  // "a/b/cat.pt" -> "a/b/cat"; "a.b/c" as is
// Creates `dir` and its missing parents (nothing for "" or an existing folder). Throws
// tinv::Error if it cannot: Error(dir, "cannot create folder: <reason>"), or, when `where`
// (an option such as "--out") is given, Error(where, "cannot create folder '<dir>': <reason>");
// with `where`, a folder it cannot write into also throws Error(where, "cannot write to '<dir>'").
void make_dirs(const std::string& dir, const std::string& where = "");

// Checks, before any work is done, that `dir` could be created and written: its nearest existing
// ancestor (the folder itself when it exists) is a folder this process can write into. Throws
// Error(where, "cannot create '<dir>': '<ancestor>' is not a folder") or
// Error(where, "cannot write to '<ancestor>'"). Creates nothing.
void check_creatable_dir(const std::string& dir, const std::string& where);

// Calls write(tmp_path) to produce the file under a temporary name next to `path`, then
// renames it over `path`. On any failure the temporary file is removed and `path` is untouched.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);
// Writes bytes atomically; throws tinv::Error naming the file on failure (e.g. disk full).
void write_file_atomically(const std::string& path, const void* data, size_t size);

}  // namespace tinv
