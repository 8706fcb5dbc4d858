// `mlkeeper restore ARCHIVE --to DIR`: safe, verified restore.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <optional>

#include "mlkeeper/backup/encryption.hpp"
#include "mlkeeper/backup/offsite.hpp"
#include "mlkeeper/backup/restore.hpp"
#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/cli/s3_support.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cli {

Command restore_command() {
    return Command{
        "restore", "Restore a backup (all or some paths) into a directory",
        "/var/log/ml-backup.log", Record::kYes, [](CLI::App& app, FlagBindings&) {
            struct Opts {
                std::string archive, to, download_dir;
                std::vector<std::string> paths;
                bool overwrite = false, external = false, json = false;
            };
            auto o = std::make_shared<Opts>();
            app.add_option("ARCHIVE", o->archive, "Archive to restore: a file or s3://BUCKET/KEY")
                ->required();
            app.add_option("--download-dir", o->download_dir,
                           "Where an s3:// archive is downloaded to (default: beside --to; "
                           "removed afterwards)")
                ->type_name("DIR");
            app.add_option("--to", o->to, "Directory to restore into")
                ->required()
                ->type_name("DIR");
            app.add_option("--path", o->paths,
                           "Only paths matching this pattern (repeatable; e.g. 'models/resnet*')")
                ->type_name("PATTERN");
            app.add_flag("--overwrite", o->overwrite, "Replace files that already exist");
            app.add_flag("--allow-external-links", o->external,
                         "Restore symlinks that point outside the target directory");
            app.add_flag("--json", o->json, "Print the result as JSON");
            app.footer(R"(
An incremental archive is restored as the whole tree it describes: unchanged
files come from the earlier archives of its chain, which must sit beside it.
Every file's SHA-256 is checked against the manifest while it is written.
Paths that are absolute, contain "..", or would be written through a symlink
are refused, and so are links that point outside DIR.

An s3:// archive is downloaded first (ranged GETs in parallel for large ones), with
the archives of its chain, and each download's SHA-256 is checked against the
manifest uploaded with it before anything is restored.

Exit codes: 0 restored, 1 refused or failed, 2 the archive does not match its manifest.

Examples:
  mlkeeper restore /backup/models/models_backup_20261122_020000.tar.zst --to /tmp/restore
  mlkeeper restore ARCHIVE --to /opt/ml --path 'models/resnet50' --overwrite
  mlkeeper restore s3://my-ml-backups/models/gpu01/models_backup_20261122_020000.tar.zst \
      --to /tmp/restore)");
            Handler h;
            h.run = [o](Context& ctx) {
                backup::RestoreOptions opts;
                opts.archive = o->archive;
                opts.to = o->to;
                opts.patterns = o->paths;
                opts.overwrite = o->overwrite ? backup::Overwrite::kYes : backup::Overwrite::kNo;
                opts.external_links =
                    o->external ? backup::ExternalLinks::kAllow : backup::ExternalLinks::kRefuse;
                opts.progress = o->json ? util::ProgressMode::kNever : util::ProgressMode::kAuto;
                const crypto::DecryptWith keys = backup::decryption_from_config(ctx.config());
                opts.keys = &keys;
                backup::RestoreResult r;
                std::optional<DownloadDir> scratch;
                nlohmann::json downloaded = nullptr;
                if (auto loc = storage::s3::parse_s3_url(o->archive)) {
                    storage::s3::S3Client s3(s3_settings(ctx, loc->bucket));
                    scratch.emplace(o->download_dir.empty()
                                        ? std::filesystem::absolute(o->to).parent_path()
                                        : std::filesystem::path(o->download_dir));
                    auto fetched = backup::fetch_from_s3(s3, loc->key, scratch->path(),
                                                         opts.progress, /*with_chain=*/true);
                    opts.archive = fetched.archive;
                    downloaded = {{"archives", fetched.downloaded},
                                  {"bytes", fetched.bytes},
                                  {"seconds", fetched.seconds}};
                } else if (o->archive.starts_with("s3://")) {
                    throw UsageError("restore: \"" + o->archive +
                                     "\" is not s3://BUCKET/KEY of an archive");
                }
                try {
                    r = backup::restore_archive(opts);
                } catch (const backup::RestoreError& e) {
                    throw Error(e.kind() == backup::RestoreError::Kind::kCorrupt
                                    ? ExitCode::kCritical
                                    : ExitCode::kFailure,
                                e.what());
                }
                nlohmann::json j = {{"archive", o->archive},   {"to", o->to},
                                    {"entries", r.entries},    {"files", r.files},
                                    {"bytes", r.bytes},        {"archives_read", r.archives_read},
                                    {"verified", r.verified},  {"seconds", r.seconds},
                                    {"downloaded", downloaded}};
                ctx.summary() = j;
                auto line = fmt::format(
                    "restored {} entries ({} files, {}) from {} into {} in {:.1f}s{}", r.entries,
                    r.files, util::format_bytes(r.bytes), o->archive, o->to, r.seconds,
                    r.verified ? ", every file verified" : " (no manifest: hashes not checked)");
                std::cout << (o->json ? j.dump(2) : line) << "\n";
                spdlog::info("{}", line);
                return 0;
            };
            return h;
        }};
}

}  // namespace mlk::cli
