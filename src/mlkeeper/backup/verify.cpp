#include "mlkeeper/backup/verify.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <fmt/format.h>
#include <optional>
#include <set>
#include <string_view>
#include <system_error>

#include "mlkeeper/backup/checksums.hpp"
#include "mlkeeper/backup/encryption.hpp"
#include "mlkeeper/backup/manifest.hpp"
#include "mlkeeper/backup/tar_reader.hpp"
#include "mlkeeper/util/sha256.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::backup {
namespace {

std::optional<EntryType> type_of(archive_entry* e) {
    if (archive_entry_hardlink(e) != nullptr) {
        return EntryType::kHardlink;
    }
    switch (archive_entry_filetype(e)) {
        case AE_IFREG:
            return EntryType::kFile;
        case AE_IFDIR:
            return EntryType::kDir;
        case AE_IFLNK:
            return EntryType::kSymlink;
        default:
            return std::nullopt;
    }
}

std::string strip_slash(std::string p) {
    while (p.size() > 1 && p.back() == '/') {
        p.pop_back();
    }
    return p;
}

// Checks every entry against the manifest; returns the first problem or "".
std::string check_entries(TarReader& reader, const Manifest& m, VerifyResult& r,
                          util::Progress& progress, std::string& current) {
    ManifestIndex index(m);
    std::set<std::string> seen;
    while (archive_entry* e = reader.next()) {
        std::string path = strip_slash(archive_entry_pathname(e));
        current = path;
        ++r.entries;
        const ManifestEntry* want = index.find(path);
        if (want == nullptr) {
            return fmt::format("unexpected entry {}: not in the manifest", path);
        }
        if (want->stored_in) {
            return fmt::format("unexpected entry {}: the manifest says it is stored in {}", path,
                               *want->stored_in);
        }
        if (!seen.insert(path).second) {
            return fmt::format("entry {} appears twice", path);
        }
        auto type = type_of(e);
        if (!type || *type != want->type) {
            return fmt::format("entry {} is a {} but the manifest says {}", path,
                               type ? to_string(*type) : "special file", to_string(want->type));
        }
        if (*type == EntryType::kSymlink || *type == EntryType::kHardlink) {
            const char* t =
                *type == EntryType::kSymlink ? archive_entry_symlink(e) : archive_entry_hardlink(e);
            if (t == nullptr || want->target != t) {
                return fmt::format("entry {} links to {} but the manifest says {}", path,
                                   t != nullptr ? t : "nothing", want->target);
            }
        }
        if (*type != EntryType::kFile) {
            continue;
        }
        util::Sha256 sha;
        auto n = reader.read_data(want->size, [&](const char* p, std::size_t k) {
            sha.update(p, k);
            progress.advance(k);
        });
        r.bytes += n;
        if (n != want->size) {
            return fmt::format("entry {} has {} bytes but the manifest says {}", path, n,
                               want->size);
        }
        if (auto got = sha.finish_hex(); got != want->sha256) {
            return fmt::format("entry {} is corrupt: SHA-256 {} but the manifest says {}", path,
                               got, want->sha256);
        }
    }
    for (const auto& want : m.entries) {
        if (!want.stored_in && !seen.contains(want.path)) {
            return fmt::format("missing entry {}: listed in the manifest but not in the archive",
                               want.path);
        }
    }
    return {};
}

// Checks the archive file `file` (named `name`) against `manifest` (may be null: integrity only)
// and the expected SHA-256 (`expected`, named `expected_from` in messages). RawHash::kSkip leaves
// the file's SHA-256 uncomputed and takes `expected` as it.
VerifyResult check_file(const std::filesystem::path& file, const std::string& name,
                        const Manifest* manifest, const std::optional<std::string>& expected,
                        std::string_view expected_from, util::ProgressMode mode,
                        const crypto::DecryptWith* keys, VerifyResult r,
                        std::chrono::steady_clock::time_point started,
                        RawHash raw_hash = RawHash::kCompute) {
    auto done = [&](std::string problem) {
        r.ok = problem.empty();
        r.problem = std::move(problem);
        r.seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        return r;
    };
    std::uint64_t total = manifest ? manifest->totals.stored_bytes : 0;
    util::Progress progress(fmt::format("verify {}", name), total, mode);
    std::string problem;
    std::string current;
    try {
        std::optional<TarReader> opened;
        try {
            opened.emplace(file, keys, name, raw_hash);
        } catch (const NoKeyError&) {
            // Without the key only the outer checksum can be checked.
            r.level = VerifyLevel::kChecksumOnly;
            r.archive_sha256 = util::sha256_file_hex(file);
            r.archive_bytes = std::filesystem::file_size(file);
            progress.finish();
            if (!expected) {
                return done(
                    fmt::format("{} is encrypted, has no manifest or checksum line, and "
                                "no key is configured: nothing could be checked",
                                name));
            }
            if (r.archive_sha256 != *expected) {
                return done(fmt::format("{} is corrupt: SHA-256 {} but {} says {}", name,
                                        r.archive_sha256, expected_from, *expected));
            }
            return done("");
        }
        TarReader& reader = *opened;
        if (manifest) {
            problem = check_entries(reader, *manifest, r, progress, current);
        } else {
            while (archive_entry* e = reader.next()) {
                ++r.entries;
                current = archive_entry_pathname(e);
                auto size = archive_entry_size(e);
                r.bytes +=
                    reader.read_data(size > 0 ? static_cast<std::uint64_t>(size) : 0,
                                     [&](const char*, std::size_t k) { progress.advance(k); });
            }
        }
        if (!problem.empty()) {
            return done(problem);
        }
        r.archive_sha256 = reader.finish();
        r.archive_bytes = reader.raw_bytes();
        if (raw_hash == RawHash::kSkip && expected) {
            r.archive_sha256 = *expected;
        }
    } catch (const std::system_error& e) {
        return done(e.what());
    } catch (const std::exception& e) {
        return done(fmt::format(
            "{} is corrupt{}: {}", name,
            current.empty() ? std::string() : fmt::format(" at or after entry {}", current),
            e.what()));
    }
    progress.finish();
    if (expected && r.archive_sha256 != *expected) {
        return done(fmt::format("{} is corrupt: SHA-256 {} but {} says {}", name, r.archive_sha256,
                                expected_from, *expected));
    }
    if (manifest && r.archive_bytes != manifest->archive_size) {
        return done(fmt::format("{} has {} bytes but the manifest says {}", name, r.archive_bytes,
                                manifest->archive_size));
    }
    return done({});
}

}  // namespace

VerifyResult verify_archive(const std::filesystem::path& archive, util::ProgressMode mode,
                            const crypto::DecryptWith* keys) {
    auto started = std::chrono::steady_clock::now();
    VerifyResult r;
    auto fail = [&](std::string problem) {
        r.ok = false;
        r.problem = std::move(problem);
        r.seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        return r;
    };
    auto name = archive.filename().string();
    std::optional<Manifest> manifest;
    try {
        manifest = read_manifest(manifest_path_for(archive));
    } catch (const std::system_error& e) {
        if (e.code().value() != ENOENT) {
            return fail(e.what());
        }
        r.level = VerifyLevel::kIntegrityOnly;
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    std::optional<std::string> listed;
    try {
        auto sums = read_checksums(archive.parent_path() / "checksums.txt");
        if (auto it = sums.find(name); it != sums.end()) {
            listed = it->second;
        }
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    if (manifest && listed && *listed != manifest->archive_sha256) {
        return fail(fmt::format("checksums.txt and the manifest disagree about {}", name));
    }
    auto expected = manifest ? std::optional(manifest->archive_sha256) : listed;
    return check_file(archive, name, manifest ? &*manifest : nullptr, expected,
                      manifest ? "the manifest" : "checksums.txt", mode, keys, r, started);
}

VerifyResult verify_written(const std::filesystem::path& file, const Manifest& manifest,
                            const crypto::DecryptWith* keys) {
    // An encrypted archive that decrypts whole has had every byte authenticated: the header by
    // its HMAC, the payload nonce through the payload key, each chunk by its Poly1305 tag, the end
    // by the final-chunk flag (data after it is an error). The file is therefore the bytes the
    // encryptor produced, which are the bytes hashed for the manifest while writing: hashing it
    // again (0.6 s of CPU per GB) would check nothing more.
    const auto raw_hash =
        keys != nullptr && is_encrypted_name(manifest.archive) ? RawHash::kSkip : RawHash::kCompute;
    return check_file(file, manifest.archive, &manifest, manifest.archive_sha256, "the manifest",
                      util::ProgressMode::kNever, keys, VerifyResult{},
                      std::chrono::steady_clock::now(), raw_hash);
}

void mark_verified(const std::filesystem::path& archive) {
    auto file = manifest_path_for(archive);
    auto m = read_manifest(file);
    m.verified_at = util::iso8601_utc(std::chrono::system_clock::now());
    write_manifest(file, m);
}

}  // namespace mlk::backup
