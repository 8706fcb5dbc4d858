// `mlkeeper verify FILE...`: check archives against checksums.txt and their manifests.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <iostream>

#include "mlkeeper/backup/encryption.hpp"
#include "mlkeeper/backup/offsite.hpp"
#include "mlkeeper/backup/verify.hpp"
#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/cli/s3_support.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cli {

namespace {

const char* level_name(backup::VerifyLevel level) {
    switch (level) {
        case backup::VerifyLevel::kFull:
            return "full";
        case backup::VerifyLevel::kIntegrityOnly:
            return "integrity";
        case backup::VerifyLevel::kChecksumOnly:
            return "checksum";
    }
    return "?";
}

}  // namespace

int run_verify(const std::vector<std::string>& archives, bool json, Context& ctx) {
    int code = 0;
    nlohmann::json results = nlohmann::json::array();
    const crypto::DecryptWith keys = backup::decryption_from_config(ctx.config());
    for (const auto& a : archives) {
        const auto progress = json ? util::ProgressMode::kNever : util::ProgressMode::kAuto;
        const auto loc = storage::s3::parse_s3_url(a);
        backup::VerifyResult r;
        if (loc) {
            // The downloaded copy is checked like a local one: its SHA-256 against the uploaded
            // manifest and checksum (while fetching), then every entry.
            storage::s3::S3Client s3(s3_settings(ctx, loc->bucket));
            DownloadDir scratch(std::filesystem::temp_directory_path());
            try {
                auto fetched = backup::fetch_from_s3(s3, loc->key, scratch.path(), progress,
                                                     /*with_chain=*/false);
                r = backup::verify_archive(fetched.archive, progress, &keys);
            } catch (const Error& e) {
                if (e.code() != ExitCode::kCritical) {
                    throw;
                }
                r.ok = false;
                r.problem = e.what();
                if (r.problem.starts_with(a + ": ")) {
                    r.problem.erase(0, a.size() + 2);
                }
            }
        } else if (a.starts_with("s3://")) {
            throw UsageError("verify: \"" + a + "\" is not s3://BUCKET/KEY of an archive");
        } else {
            r = backup::verify_archive(a, progress, &keys);
        }
        results.push_back({{"archive", a},
                           {"ok", r.ok},
                           {"level", level_name(r.level)},
                           {"problem", r.problem},
                           {"entries", r.entries},
                           {"bytes", r.bytes},
                           {"archive_bytes", r.archive_bytes},
                           {"sha256", r.archive_sha256},
                           {"seconds", r.seconds}});
        if (r.ok) {
            if (r.level == backup::VerifyLevel::kFull && !loc) {
                try {
                    backup::mark_verified(a);
                } catch (const std::exception& e) {
                    spdlog::warn("verified, but could not record it in the manifest: {}", e.what());
                }
            }
            std::string line = fmt::format(
                "ok: {}: {} entries, {} checked in {:.1f}s{}", a, r.entries,
                util::format_bytes(r.bytes), r.seconds,
                r.level == backup::VerifyLevel::kFull ? ""
                : r.level == backup::VerifyLevel::kChecksumOnly
                    ? " (encrypted and no key configured: only the file's SHA-256 was checked; "
                      "set [backup] identity_file to check every file)"
                    : " (no manifest: archive integrity only, file hashes not checked)");
            if (!json) {
                std::cout << line << "\n";
            }
            spdlog::info("{}", line);
        } else {
            code = 2;
            if (!json) {
                std::cout << "FAILED: " << a << ": " << r.problem << "\n";
            }
            spdlog::error("verification failed: {}: {}", a, r.problem);
        }
    }
    if (json) {
        std::cout << results.dump(2) << "\n";
    }
    ctx.summary()["verified"] = results;
    return code;
}

Command verify_command() {
    return Command{"verify", "Verify backup archives (checksums, every file's hash)",
                   "/var/log/ml-backup.log", Record::kYes, [](CLI::App& app, FlagBindings&) {
                       struct Opts {
                           std::vector<std::string> files;
                           bool json = false;
                       };
                       auto o = std::make_shared<Opts>();
                       app.add_option("FILE", o->files,
                                      "Archives to verify: files or s3://BUCKET/KEY")
                           ->required();
                       app.add_flag("--json", o->json, "Print results as JSON");
                       app.footer(R"(
Checks each archive's SHA-256 against checksums.txt and its manifest, decompresses
every entry and checks each file's size and SHA-256. Exit 2 names the first bad entry.
An s3:// archive is downloaded to TMPDIR (and removed), its SHA-256 checked against
the manifest and checksum uploaded with it, then verified the same way.

Examples:
  mlkeeper verify /backup/models/models_backup_20261122_020000.tar.zst
  mlkeeper verify /backup/models/*.tar.zst --json
  mlkeeper verify s3://my-ml-backups/models/gpu01/models_backup_20261122_020000.tar.zst)");
                       Handler h;
                       h.run = [o](Context& ctx) { return run_verify(o->files, o->json, ctx); };
                       return h;
                   }};
}

}  // namespace mlk::cli
