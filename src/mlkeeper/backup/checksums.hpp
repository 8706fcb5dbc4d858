// checksums.txt in a backup destination: one "<sha256>  <archive name>" line per archive in the
// format of GNU sha256sum, so `cd dest && sha256sum -c checksums.txt` checks every archive.
// Thread safety: the functions share no state. upsert/remove read, change and atomically
// replace the file, so concurrent updates of one file (threads or processes) can lose one of
// them: callers serialize updates (the backup command holds the destination's lock).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "mlkeeper/util/atomic_file.hpp"
#include "mlkeeper/util/fs_ops.hpp"

namespace mlk::backup {

inline constexpr std::string_view kChecksumsFileName = "checksums.txt";

// The line sha256sum writes for `name`, with its '\n': "<hex>  <name>\n". A name holding '\\',
// '\n' or '\r' is escaped as GNU coreutils does ("\\\\", "\\n", "\\r") and the line starts with
// '\\'. The hex is written in lower case. Throws std::invalid_argument for a hash that is not 64
// hex digits or a name that is empty or holds a NUL byte (sha256sum could not name that file).
std::string format_checksum_line(std::string_view name, std::string_view sha256_hex);

// name -> lower-case hex. Reads what `sha256sum -c` reads: "<hex>  <name>", "<hex> *<name>"
// (binary mode), "SHA256 (<name>) = <hex>" (--tag), each optionally escaped with a leading '\\';
// CRLF line ends; blank lines and '#' comments are skipped. A missing file gives an empty map.
// Throws std::runtime_error "<file>:<line>: <problem>" for a malformed line or for one name
// listed twice with different hashes, std::system_error naming the file if it cannot be read.
std::map<std::string, std::string> read_checksums(const std::filesystem::path& file,
                                                  const util::FsOps& ops = util::real_fs_ops());

// Sets or replaces the line for `name` (every line for it, should it appear more than once: the
// first keeps its place, the others go) and atomically rewrites the file, keeping all other
// lines, comments included, byte for byte and in order; a new name is appended. Creates the file
// (mode 0644) if missing; an existing file keeps its permission bits. Does not write when the
// line is already there. Throws like format_checksum_line() and read_checksums(), and
// std::system_error naming the path if the write fails (the old file is then untouched).
void upsert_checksum(const std::filesystem::path& file, const std::string& name,
                     const std::string& sha256_hex, const util::FsOps& ops = util::real_fs_ops(),
                     util::Durability durability = util::Durability::kFsync);

// Removes every line for `name` (for retention), rewriting the file atomically; a name that is
// not listed, or a missing file, is not an error and writes nothing. Throws like upsert_checksum.
void remove_checksum(const std::filesystem::path& file, const std::string& name,
                     const util::FsOps& ops = util::real_fs_ops(),
                     util::Durability durability = util::Durability::kFsync);

}  // namespace mlk::backup
