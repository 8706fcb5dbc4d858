// An index of the files some process holds open for writing, built once per run from
// /proc/<pid>/fdinfo (flags) and /proc/<pid>/fd (stat of the link target), so cleanup never
// deletes a checkpoint or log that is still being written.
// Thread safety: immutable once built; safe to read from many threads.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <unordered_set>

namespace mlk::cleanup {

class OpenWriteIndex {
  public:
    // Scans every process under `proc_root`. Processes and fds that vanish or cannot be read
    // (another user's, without privilege) are skipped; `unreadable()` counts such processes.
    static OpenWriteIndex build(const std::filesystem::path& proc_root = "/proc");

    bool contains(dev_t dev, ino_t ino) const;
    void add(dev_t dev, ino_t ino);
    std::size_t size() const { return set_.size(); }
    std::size_t unreadable() const { return unreadable_; }

  private:
    struct Key {
        std::uint64_t dev, ino;
        bool operator==(const Key&) const = default;
    };
    struct KeyHash {
        std::size_t operator()(const Key& k) const noexcept {
            return std::hash<std::uint64_t>{}(k.ino * 0x9E3779B97F4A7C15ULL ^ k.dev);
        }
    };
    std::unordered_set<Key, KeyHash> set_;
    std::size_t unreadable_ = 0;
};

// The open flags from the text of a /proc/<pid>/fdinfo/<fd> file ("flags:\t0100002"), or -1.
long parse_fdinfo_flags(const char* text);

}  // namespace mlk::cleanup
