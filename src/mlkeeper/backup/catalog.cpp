#include "mlkeeper/backup/catalog.hpp"

#include <algorithm>
#include <regex>
#include <set>
#include <system_error>

#include "mlkeeper/backup/checksums.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::backup {
namespace {

const std::regex& archive_re() {
    static const std::regex re(R"(^models_backup_(\d{8}_\d{6})(_\d+)?\.tar\.(zst|gz)(\.age)?$)");
    return re;
}

constexpr std::string_view kManifestSuffix = ".manifest.json";

}  // namespace

bool is_archive_name(std::string_view name) {
    return std::regex_match(name.begin(), name.end(), archive_re());
}

std::optional<std::chrono::system_clock::time_point> archive_name_time(std::string_view name) {
    std::match_results<std::string_view::const_iterator> m;
    if (!std::regex_match(name.begin(), name.end(), m, archive_re())) {
        return std::nullopt;
    }
    return util::parse_filename_timestamp(m[1].str());
}

std::vector<std::string> CatalogEntry::depends_on() const {
    return manifest ? manifest->depends_on : std::vector<std::string>{};
}

std::vector<CatalogEntry> list_archives(const std::filesystem::path& dest) {
    std::vector<CatalogEntry> out;
    for (const auto& de : std::filesystem::directory_iterator(dest)) {
        auto name = de.path().filename().string();
        std::smatch m;
        if (!std::regex_match(name, m, archive_re())) {
            continue;
        }
        std::error_code ec;
        if (!de.is_regular_file(ec)) {
            continue;
        }
        CatalogEntry e;
        e.path = de.path();
        e.name = name;
        e.size = de.file_size(ec);
        if (auto t = util::parse_filename_timestamp(m[1].str())) {
            e.created = *t;
        }
        try {
            e.manifest = read_manifest_header(manifest_path_for(e.path));
            if (auto t = util::parse_iso8601_utc(e.manifest->created_at)) {
                e.created = *t;
            }
        } catch (const std::exception& err) {
            e.manifest_error = err.what();
        }
        out.push_back(std::move(e));
    }
    std::sort(out.begin(), out.end(), [](const CatalogEntry& a, const CatalogEntry& b) {
        return a.created != b.created ? a.created < b.created : a.name < b.name;
    });
    return out;
}

Housekeeping tidy_destination(const std::filesystem::path& dest) {
    Housekeeping h;
    std::vector<std::filesystem::path> temps, manifests;
    std::set<std::string> archives;
    for (const auto& de : std::filesystem::directory_iterator(dest)) {
        auto name = de.path().filename().string();
        // AtomicFileWriter temp names: ".<final name>.tmp.<random>"
        bool ours = name.starts_with(".models_backup_") || name.starts_with(".checksums.txt");
        if (ours && name.find(".tmp.") != std::string::npos) {
            temps.push_back(de.path());
        } else if (is_archive_name(name)) {
            archives.insert(name);
        } else if (name.ends_with(kManifestSuffix) &&
                   is_archive_name(name.substr(0, name.size() - kManifestSuffix.size()))) {
            manifests.push_back(de.path());
        }
    }
    for (const auto& t : temps) {
        std::error_code ec;
        if (std::filesystem::remove(t, ec)) {
            ++h.temps_removed;
        }
    }
    auto sums_file = dest / "checksums.txt";
    auto sums = read_checksums(sums_file);
    for (const auto& mf : manifests) {
        auto name = mf.filename().string();
        auto archive = name.substr(0, name.size() - kManifestSuffix.size());
        if (!archives.contains(archive)) {
            std::error_code ec;
            if (std::filesystem::remove(mf, ec)) {
                ++h.orphan_manifests_removed;
            }
            continue;
        }
        if (!sums.contains(archive)) {
            try {
                auto m = read_manifest_header(mf);
                upsert_checksum(sums_file, archive, m.archive_sha256);
                ++h.checksums_added;
            } catch (const std::exception&) {
                // A corrupt manifest is reported by verify and list, not here.
            }
        }
    }
    return h;
}

void delete_archive(const std::filesystem::path& dest, const std::string& name) {
    auto archive = dest / name;
    // Checksum line and manifest first: a crash midway leaves an archive
    // without a manifest (still listed, restorable) rather than a dangling line.
    remove_checksum(dest / "checksums.txt", name);
    std::filesystem::remove(manifest_path_for(archive));
    std::filesystem::remove(archive);
}

}  // namespace mlk::backup
