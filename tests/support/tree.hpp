// Builds model-like directory trees for tests and takes snapshots of trees
// (type, mode, size, content hash, mtime, link target, hard-link groups) so
// two trees can be compared exactly. Thread safety: stateless.
#pragma once

#include <filesystem>
#include <map>
#include <string>

namespace mlk::testing {

// A small tree under `dir/name` with the awkward cases: nested dirs, an
// empty dir, a symlink (relative and dangling), a hard link, a sparse file,
// an executable, a read-only file, spaces, unicode and a >100-byte name.
std::filesystem::path make_model_tree(const std::filesystem::path& dir, const std::string& name);

// path (relative to root's parent, starting with root's name) -> description
std::map<std::string, std::string> snapshot(const std::filesystem::path& root);

// Writes `n` bytes of deterministic pseudo-random data.
void write_random_file(const std::filesystem::path& p, std::size_t n, unsigned seed);

}  // namespace mlk::testing
