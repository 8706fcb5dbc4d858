#include "mlkeeper/backup/restore.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <map>
#include <optional>
#include <set>
#include <system_error>

#include "mlkeeper/backup/manifest.hpp"
#include "mlkeeper/backup/restore_staging.hpp"
#include "mlkeeper/backup/tar_reader.hpp"
#include "mlkeeper/util/sha256.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::backup {
namespace {

namespace fs = std::filesystem;
using Kind = RestoreError::Kind;

std::string strip_slash(std::string p) {
    while (p.size() > 1 && p.back() == '/') {
        p.pop_back();
    }
    return p;
}

bool selected(const std::vector<std::string>& patterns, const std::string& path) {
    if (patterns.empty()) {
        return true;
    }
    for (const auto& p : patterns) {
        // A match on the path or on any of its parents selects it.
        for (std::size_t end = path.size(); end != std::string::npos && end > 0;
             end = path.rfind('/', end - 1)) {
            if (::fnmatch(p.c_str(), path.substr(0, end).c_str(), 0) == 0) {
                return true;
            }
            if (end == 0) {
                break;
            }
        }
    }
    return false;
}

class DiskWriter {
  public:
    explicit DiskWriter(Overwrite overwrite) : a_(archive_write_disk_new()) {
        int flags = ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                    ARCHIVE_EXTRACT_SECURE_NODOTDOT;
        if (::geteuid() == 0) {
            flags |= ARCHIVE_EXTRACT_OWNER;
        }
        flags |=
            overwrite == Overwrite::kYes ? ARCHIVE_EXTRACT_UNLINK : ARCHIVE_EXTRACT_NO_OVERWRITE;
        archive_write_disk_set_options(a_, flags);
        archive_write_disk_set_standard_lookup(a_);
    }
    ~DiskWriter() { archive_write_free(a_); }
    DiskWriter(const DiskWriter&) = delete;
    DiskWriter& operator=(const DiskWriter&) = delete;

    void header(archive_entry* e, const std::string& path) {
        if (archive_write_header(a_, e) < ARCHIVE_WARN) {
            throw RestoreError(Kind::kRefused, fmt::format("cannot restore {}: {}", path, error()));
        }
    }
    void data(const void* buf, std::size_t n, std::int64_t offset, const std::string& path) {
        // libarchive reports a failed write() (a full disk, EIO) as ARCHIVE_WARN, so anything
        // but ARCHIVE_OK is a failure here.
        if (archive_write_data_block(a_, buf, n, offset) != ARCHIVE_OK) {
            const int err = archive_errno(a_);
            throw std::system_error(err != 0 ? err : EIO, std::generic_category(),
                                    fmt::format("cannot write {}", path));
        }
    }
    void finish_entry(const std::string& path) {
        if (archive_write_finish_entry(a_) < ARCHIVE_WARN) {
            throw std::runtime_error(fmt::format("cannot finish {}: {}", path, error()));
        }
    }
    void close() {
        if (archive_write_close(a_) < ARCHIVE_WARN) {
            throw std::runtime_error(fmt::format("cannot set directory times: {}", error()));
        }
    }

  private:
    std::string error() const {
        const char* m = archive_error_string(a_);
        return m != nullptr ? m : "libarchive error";
    }
    struct archive* a_;
};

}  // namespace

bool is_safe_relative(std::string_view path) {
    if (path.empty() || path.front() == '/') {
        return false;
    }
    for (const auto& part : util::split(path, '/')) {
        if (part == "..") {
            return false;
        }
    }
    return true;
}

bool link_stays_inside(std::string_view link_path, std::string_view target) {
    if (target.empty() || target.front() == '/') {
        return false;
    }
    auto parts = util::split(link_path, '/');
    parts.pop_back();  // the link's own name
    std::vector<std::string> stack;
    for (const auto& p : parts) {
        if (!p.empty() && p != ".") {
            stack.push_back(p);
        }
    }
    for (const auto& p : util::split(target, '/')) {
        if (p.empty() || p == ".") {
            continue;
        }
        if (p == "..") {
            if (stack.empty()) {
                return false;
            }
            stack.pop_back();
        } else {
            stack.push_back(p);
        }
    }
    return true;
}

RestoreResult restore_archive(const RestoreOptions& o) {
    auto started = std::chrono::steady_clock::now();
    RestoreResult res;
    std::optional<Manifest> manifest;
    try {
        manifest = read_manifest(manifest_path_for(o.archive));
    } catch (const std::system_error& e) {
        if (e.code().value() != ENOENT) {
            throw;
        }
    }
    res.verified = manifest.has_value();
    const std::string main_name = o.archive.filename().string();
    std::optional<ManifestIndex> index;
    if (manifest) {
        index.emplace(*manifest);
    }

    // Everything is written into a staging directory inside the target and moved into place
    // only once every file has been checked, so a failed restore leaves the target as it was.
    StagingDir staging(o.to);
    const fs::path& root = staging.target();
    const fs::path& stage = staging.path();

    auto check_safe = [&](const std::string& path, EntryType type, const std::string& target) {
        if (!is_safe_relative(path)) {
            throw RestoreError(Kind::kRefused,
                               fmt::format("refusing unsafe path \"{}\" in {}", path, main_name));
        }
        if (type == EntryType::kHardlink && !is_safe_relative(target)) {
            throw RestoreError(Kind::kRefused,
                               fmt::format("refusing hard link {} -> \"{}\": it points outside {}",
                                           path, target, root.string()));
        }
        if (type == EntryType::kSymlink && o.external_links == ExternalLinks::kRefuse &&
            !link_stays_inside(path, target)) {
            throw RestoreError(
                Kind::kRefused,
                fmt::format("refusing symlink {} -> \"{}\": it points outside {} (use "
                            "--allow-external-links if that is intended)",
                            path, target, root.string()));
        }
    };

    // A selected hard link needs the file it shares, even when that file
    // was not selected itself.
    std::set<std::string> link_targets;
    if (manifest) {
        for (const auto& e : manifest->entries) {
            if (e.type == EntryType::kHardlink && selected(o.patterns, e.path)) {
                link_targets.insert(e.target);
            }
        }
    }
    auto wanted = [&](const std::string& path) {
        return selected(o.patterns, path) || link_targets.contains(path);
    };

    // Plan: which archives, and refuse before writing anything.
    std::map<std::string, std::set<std::string>> from_older;  // archive -> paths
    if (manifest) {
        for (const auto& e : manifest->entries) {
            if (!wanted(e.path)) {
                continue;
            }
            check_safe(e.path, e.type, e.target);
            if (e.stored_in) {
                from_older[*e.stored_in].insert(e.path);
            }
            if (o.overwrite == Overwrite::kNo) {
                struct stat st {};
                auto dest = root / e.path;
                if (::lstat(dest.c_str(), &st) == 0 &&
                    !(e.type == EntryType::kDir && S_ISDIR(st.st_mode))) {
                    throw RestoreError(
                        Kind::kRefused,
                        fmt::format("refusing to overwrite existing {} (use --overwrite)",
                                    dest.string()));
                }
            }
        }
        for (const auto& [name, paths] : from_older) {
            if (!fs::exists(o.archive.parent_path() / name)) {
                throw RestoreError(Kind::kCorrupt,
                                   fmt::format("{} needs {} for {} file(s), but it is missing",
                                               main_name, name, paths.size()));
            }
        }
    }

    DiskWriter disk(o.overwrite);
    struct DirTime {
        fs::path path;
        std::int64_t sec;
        long nsec;
    };
    std::vector<DirTime> dir_times;
    std::set<std::string> restored;
    auto extract = [&](const fs::path& file, bool is_main) {
        const std::string name = file.filename().string();
        res.archives_read.push_back(name);
        TarReader reader(file, o.keys);
        const auto* wanted_here = is_main ? nullptr : &from_older[name];
        while (archive_entry* e = reader.next()) {
            std::string path = strip_slash(archive_entry_pathname(e));
            const ManifestEntry* want = index ? index->find(path) : nullptr;
            if (!is_main) {
                if (!wanted_here->contains(path) || restored.contains(path)) {
                    continue;
                }
            } else if (index && (want == nullptr || want->stored_in)) {
                throw RestoreError(
                    Kind::kCorrupt,
                    fmt::format("unexpected entry {} in {}: not in its manifest", path, name));
            }
            if (!wanted(path)) {
                continue;
            }
            EntryType type = archive_entry_hardlink(e) != nullptr    ? EntryType::kHardlink
                             : archive_entry_filetype(e) == AE_IFDIR ? EntryType::kDir
                             : archive_entry_filetype(e) == AE_IFLNK ? EntryType::kSymlink
                                                                     : EntryType::kFile;
            std::string target = type == EntryType::kHardlink  ? archive_entry_hardlink(e)
                                 : type == EntryType::kSymlink ? archive_entry_symlink(e)
                                                               : "";
            check_safe(path, type, target);
            auto ft = archive_entry_filetype(e);
            if (type != EntryType::kHardlink && ft != AE_IFREG && ft != AE_IFDIR &&
                ft != AE_IFLNK) {
                throw RestoreError(Kind::kRefused, fmt::format("refusing special file {}", path));
            }
            auto dest = stage / path;
            archive_entry_copy_pathname(e, dest.c_str());
            if (type == EntryType::kHardlink) {
                archive_entry_copy_hardlink(e, (stage / target).c_str());
            }
            if (type == EntryType::kDir) {
                dir_times.push_back(
                    {root / path, archive_entry_mtime(e), archive_entry_mtime_nsec(e)});
            }
            disk.header(e, path);
            ++res.entries;
            restored.insert(path);
            if (type == EntryType::kFile) {
                util::Sha256 sha;
                std::uint64_t pos = 0;
                const void* buf = nullptr;
                std::size_t n = 0;
                std::int64_t off = 0;
                static const std::string zeros(1 << 20, '\0');
                while (reader.read_block(&buf, &n, &off)) {
                    for (auto gap = static_cast<std::uint64_t>(off); pos < gap;) {
                        auto k = std::min<std::uint64_t>(gap - pos, zeros.size());
                        sha.update(zeros.data(), k);
                        pos += k;
                    }
                    sha.update(buf, n);
                    pos += n;
                    disk.data(buf, n, off, path);
                }
                auto size = static_cast<std::uint64_t>(archive_entry_size(e));
                for (; pos < size;) {
                    auto k = std::min<std::uint64_t>(size - pos, zeros.size());
                    sha.update(zeros.data(), k);
                    pos += k;
                }
                disk.finish_entry(path);
                ++res.files;
                res.bytes += pos;
                if (want != nullptr && (pos != want->size || sha.finish_hex() != want->sha256)) {
                    throw RestoreError(
                        Kind::kCorrupt,
                        fmt::format("{} from {} does not match its manifest (size or "
                                    "SHA-256); nothing was restored",
                                    path, name));
                }
            } else {
                disk.finish_entry(path);
            }
        }
        auto sha = reader.finish();
        if (is_main && manifest && sha != manifest->archive_sha256) {
            throw RestoreError(Kind::kCorrupt,
                               fmt::format("{} does not match its recorded SHA-256", name));
        }
    };

    try {
        // Older archives first: a hard link in the newest archive may point
        // at a file whose content lives in an older one.
        for (const auto& [name, paths] : from_older) {
            extract(o.archive.parent_path() / name, false);
        }
        extract(o.archive, true);
    } catch (const RestoreError&) {
        throw;
    } catch (const std::system_error&) {
        throw;
    } catch (const std::exception& e) {
        throw RestoreError(Kind::kCorrupt, e.what());
    }
    disk.close();
    if (manifest) {
        for (const auto& e : manifest->entries) {
            if (wanted(e.path) && !restored.contains(e.path)) {
                throw RestoreError(
                    Kind::kCorrupt,
                    fmt::format("missing entry {}: in the manifest but in no archive", e.path));
            }
        }
    }
    staging.commit(o.overwrite);
    // Directory times last, deepest first: writing files into a directory
    // (also one that existed before) changes its mtime.
    std::sort(dir_times.begin(), dir_times.end(), [](const DirTime& a, const DirTime& b) {
        return a.path.native().size() > b.path.native().size();
    });
    for (const auto& d : dir_times) {
        struct timespec ts[2] = {{d.sec, d.nsec}, {d.sec, d.nsec}};
        (void)::utimensat(AT_FDCWD, d.path.c_str(), ts, AT_SYMLINK_NOFOLLOW);
    }
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return res;
}

}  // namespace mlk::backup
