#include "mlkeeper/backup/create.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <atomic>
#include <cstring>
#include <optional>
#include <set>
#include <system_error>
#include <thread>
#include <vector>

#include "mlkeeper/backup/checksums.hpp"
#include "mlkeeper/backup/encryption.hpp"
#include "mlkeeper/backup/tar_writer.hpp"
#include "mlkeeper/util/atomic_file.hpp"
#include "mlkeeper/util/chunk_pipe.hpp"
#include "mlkeeper/util/host.hpp"
#include "mlkeeper/util/sha256.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::backup {
namespace {

// Compressed bytes go through SHA-256 into the temp file on a thread of
// their own, so hashing and writing the output overlap with reading,
// hashing and compressing the input. Memory: kOutChunks * kOutChunkSize.
class ThreadedHashingFileSink final : public ByteSink {
  public:
    // With `encrypt`, the bytes are encrypted (age v1) on the writer thread, so encryption
    // overlaps compression too; hash and size are then those of the encrypted file.
    ThreadedHashingFileSink(util::AtomicFileWriter& file, const crypto::EncryptTo* encrypt)
        : file_(file),
          encrypt_(encrypt),
          pipe_(kOutChunks, kOutChunkSize),
          thread_([this] { run(); }) {}
    ~ThreadedHashingFileSink() override {
        if (thread_.joinable()) {
            pipe_.close();
            thread_.join();
        }
    }
    ThreadedHashingFileSink(const ThreadedHashingFileSink&) = delete;
    ThreadedHashingFileSink& operator=(const ThreadedHashingFileSink&) = delete;

    void write(const void* data, std::size_t n) override {
        const auto* p = static_cast<const char*>(data);
        while (n > 0) {
            if (failed_.load(std::memory_order_relaxed)) {
                finish();  // rethrows the writer's error
            }
            if (!cur_) {
                cur_ = pipe_.acquire();
            }
            auto k = std::min(n, cur_->capacity - cur_->size);
            std::memcpy(cur_->data.get() + cur_->size, p, k);
            cur_->size += k;
            p += k;
            n -= k;
            if (cur_->size == cur_->capacity) {
                pipe_.push(std::move(*cur_));
                cur_.reset();
            }
        }
    }

    // Flushes, waits for the writer and rethrows its error, if any.
    void finish() {
        if (thread_.joinable()) {
            if (cur_ && cur_->size > 0) {
                pipe_.push(std::move(*cur_));
            }
            cur_.reset();
            pipe_.close();
            thread_.join();
        }
        if (error_) {
            std::rethrow_exception(error_);
        }
    }
    std::uint64_t bytes() const { return bytes_; }
    std::string finish_hex() { return sha_.finish_hex(); }
    // The encrypted file's key (after finish()), to check it without the recipients' keys.
    const std::optional<crypto::SecretBytes<crypto::kAgeFileKeySize>>& file_key() const {
        return file_key_;
    }

  private:
    // 4 MiB in flight rides out the moments the writer thread waits for a core (2 cores, 4
    // busy threads); 1 MiB made encrypted backups stall the compressor.
    static constexpr std::size_t kOutChunks = 16;
    static constexpr std::size_t kOutChunkSize = std::size_t{256} << 10;
    static constexpr std::size_t kGatherSize = std::size_t{1} << 20;

    void out(const void* data, std::size_t n) {
        sha_.update(data, n);
        file_.write(std::string_view(static_cast<const char*>(data), n));
        bytes_ += n;
    }

    // The encryptor hands over one 64 KiB chunk at a time: gather them, so the file sees writes
    // (and SHA-256 blocks) as large as an unencrypted archive's.
    void out_gathered(const void* data, std::size_t n) {
        if (gather_.size() + n > kGatherSize) {
            flush_gathered();
        }
        if (n >= kGatherSize) {
            out(data, n);
            return;
        }
        const auto* p = static_cast<const char*>(data);
        gather_.insert(gather_.end(), p, p + n);
    }
    void flush_gathered() {
        if (!gather_.empty()) {
            out(gather_.data(), gather_.size());
            gather_.clear();
        }
    }

    void fail() {
        error_ = std::current_exception();
        failed_.store(true, std::memory_order_relaxed);
    }

    void run() {
        std::optional<crypto::AgeEncryptor> age;
        if (encrypt_ != nullptr) {
            try {
                gather_.reserve(kGatherSize);
                age.emplace(*encrypt_,
                            [this](const void* p, std::size_t n) { out_gathered(p, n); });
            } catch (...) {
                fail();
            }
        }
        // After an error the loop keeps draining, so the producer never
        // waits for a buffer that would not come back.
        while (auto c = pipe_.pop()) {
            if (!error_) {
                try {
                    if (age) {
                        age->write(c->data.get(), c->size);
                    } else {
                        out(c->data.get(), c->size);
                    }
                } catch (...) {
                    fail();
                }
            }
            pipe_.release(std::move(*c));
        }
        if (age && !error_) {
            try {
                age->finish();
                flush_gathered();
                file_key_ = age->file_key();
            } catch (...) {
                fail();
            }
        }
    }

    util::AtomicFileWriter& file_;
    const crypto::EncryptTo* encrypt_;
    std::optional<crypto::SecretBytes<crypto::kAgeFileKeySize>> file_key_;
    util::ChunkPipe pipe_;
    std::optional<util::Chunk> cur_;
    util::Sha256 sha_;
    std::vector<char> gather_;  // encrypted bytes not yet written (writer thread only)
    std::uint64_t bytes_ = 0;
    std::exception_ptr error_;
    std::atomic<bool> failed_{false};
    std::thread thread_;  // last: starts after every member it uses exists
};

std::int64_t mtime_ns(const struct stat& st) {
    return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

}  // namespace

ScanResult scan_source(const std::filesystem::path& source, const Manifest* parent) {
    ScanResult r = walk_source(source);
    match_parent(r, parent);
    return r;
}

ScanResult walk_source(const std::filesystem::path& source) {
    ScanResult r;
    auto root = source.filename().empty() ? source.parent_path().filename() : source.filename();
    util::walk_tree(
        source, root.string(),
        [&](const util::WalkEntry& e) {
            const auto& st = e.st;
            if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
                r.skipped.push_back(e.rel + ": special file (socket, fifo or device) not archived");
                return util::WalkAction::kContinue;
            }
            if (S_ISREG(st.st_mode)) {
                ++r.files;
                r.bytes_total += static_cast<std::uint64_t>(st.st_size);
            }
            r.items.push_back(ScanItem{e, nullptr});
            return util::WalkAction::kContinue;
        },
        [&](const util::WalkError& err) {
            r.skipped.push_back(
                fmt::format("{}: {}", err.path.string(),
                            std::error_code(err.error, std::generic_category()).message()));
        });
    return r;
}

void match_parent(ScanResult& r, const Manifest* parent) {
    std::optional<ManifestIndex> index;
    if (parent != nullptr) {
        index.emplace(*parent);
    }
    std::set<std::string> unchanged_paths;
    r.bytes_to_read = 0;
    r.unchanged_files = 0;
    for (ScanItem& item : r.items) {
        const auto& st = item.entry.st;
        if (!S_ISREG(st.st_mode)) {
            continue;
        }
        const auto size = static_cast<std::uint64_t>(st.st_size);
        const ManifestEntry* prev = index ? index->find(item.entry.rel) : nullptr;
        // A hard link stored as a link: unchanged if the file it shares (walked earlier, in the
        // same order) is unchanged.
        const ManifestEntry* content = prev;
        if (prev != nullptr && prev->type == EntryType::kHardlink) {
            content = unchanged_paths.contains(prev->target) ? index->find(prev->target) : nullptr;
        }
        if (content != nullptr && content->type == EntryType::kFile && content->size == size &&
            content->mtime_ns == mtime_ns(st) && content->ino == st.st_ino) {
            item.unchanged = prev;
            unchanged_paths.insert(item.entry.rel);
            ++r.unchanged_files;
        } else {
            item.unchanged = nullptr;
            r.bytes_to_read += size;
        }
    }
}

std::filesystem::path next_archive_path(const std::filesystem::path& dest, Codec codec,
                                        std::chrono::system_clock::time_point now,
                                        Encrypted encrypted) {
    auto base = "models_backup_" + util::filename_timestamp(now);
    auto ext = std::string(extension(codec)) +
               (encrypted == Encrypted::kYes ? std::string(kEncryptedSuffix) : std::string());
    auto candidate = dest / (base + ext);
    for (int n = 2; std::filesystem::exists(candidate) ||
                    std::filesystem::exists(manifest_path_for(candidate));
         ++n) {
        candidate = dest / fmt::format("{}_{}{}", base, n, ext);
    }
    return candidate;
}

CreateResult create_archive(const CreateOptions& opts, const ScanResult& scan,
                            const std::filesystem::path& archive,
                            std::chrono::system_clock::time_point now) {
    auto started = std::chrono::steady_clock::now();
    CreateResult result;
    result.archive = archive;
    auto& m = result.manifest;
    m.archive = archive.filename().string();
    m.created_at = util::iso8601_utc(now);
    m.host = util::host_name();
    m.tool.version = opts.tool_version;
    m.source = std::filesystem::absolute(opts.source).lexically_normal().string();
    m.root = scan.items.empty() ? std::string() : scan.items.front().entry.rel;
    m.compression.codec = std::string(codec_name(opts.codec));
    m.compression.level = opts.level;
    m.kind = opts.kind;
    if (opts.kind == BackupKind::kIncremental) {
        m.parent = opts.parent_archive;
    }

    if (opts.encrypt != nullptr) {
        m.encryption = describe(*opts.encrypt);
    }
    util::AtomicFileWriter file(archive, 0640);
    ThreadedHashingFileSink sink(file, opts.encrypt);
    auto compressor = make_compressor(opts.codec, opts.level, opts.threads, sink);
    TarWriter tar(*compressor);
    util::Progress progress(fmt::format("backup {}", m.archive), scan.bytes_to_read, opts.progress);
    tar.set_progress([&](std::uint64_t n) {
        result.bytes_read += n;
        progress.advance(n);
    });

    m.entries.reserve(scan.items.size());
    for (const auto& item : scan.items) {
        const auto& e = item.entry;
        if (item.unchanged != nullptr && item.unchanged->type == EntryType::kHardlink) {
            ManifestEntry link;
            tar.add_hardlink(e.rel, item.unchanged->target, e.st, link);
            m.entries.push_back(std::move(link));
            continue;
        }
        if (item.unchanged != nullptr) {
            ManifestEntry kept = *item.unchanged;
            kept.mode = e.st.st_mode & 07777;
            kept.uid = e.st.st_uid;
            kept.gid = e.st.st_gid;
            if (!kept.stored_in) {
                kept.stored_in = opts.parent_archive;
            }
            m.entries.push_back(std::move(kept));
            continue;
        }
        ManifestEntry entry;
        try {
            if (tar.add(e.path.string(), e.rel, e.st, entry) == ReadOutcome::kChanged) {
                m.changed_during_backup.push_back(e.rel);
            }
        } catch (const std::system_error& err) {
            if (err.code().value() == ENOENT) {
                m.changed_during_backup.push_back(e.rel);  // vanished since the scan
                continue;
            }
            throw;
        }
        m.entries.push_back(std::move(entry));
    }
    tar.close();
    compressor->finish();
    sink.finish();
    progress.finish();

    m.archive_size = sink.bytes();
    m.archive_sha256 = sink.finish_hex();
    result.file_key = sink.file_key();
    m.totals = compute_totals(m.entries);
    m.depends_on = compute_depends_on(m);

    if (opts.verify == CreateOptions::Verify::kYes) {
        // Reading the archive back costs CPU, the fsync mostly waits for the disk: overlap them.
        // An encrypted archive is checked with the key it was just written with, so the
        // recipients' identities need not be on this machine.
        std::exception_ptr sync_error;
        std::thread syncer([&] {
            try {
                file.sync();
            } catch (...) {
                sync_error = std::current_exception();
            }
        });
        crypto::DecryptWith own;
        own.file_key = result.file_key ? &*result.file_key : nullptr;
        try {
            result.verification = verify_written(file.temp_path(), m, &own);
        } catch (...) {
            syncer.join();
            throw;
        }
        syncer.join();
        if (sync_error) {
            std::rethrow_exception(sync_error);
        }
        if (result.verification->ok) {
            m.verified_at = util::iso8601_utc(std::chrono::system_clock::now());
        }
    }

    // Manifest first: a crash before the rename below leaves only an
    // orphan manifest, which the next run removes; never an archive
    // without its manifest.
    auto manifest_file = manifest_path_for(archive);
    write_manifest(manifest_file, m, 0640);
    try {
        file.commit();
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove(manifest_file, ec);
        throw;
    }
    upsert_checksum(archive.parent_path() / "checksums.txt", m.archive, m.archive_sha256);
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return result;
}

}  // namespace mlk::backup
