#include "mlkeeper/cleanup/aggressive.hpp"

#include <unistd.h>

#include <regex>
#include <system_error>

#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cleanup {

std::string_view to_string(StepStatus s) {
    switch (s) {
        case StepStatus::kRan:
            return "ran";
        case StepStatus::kWouldRun:
            return "would run";
        case StepStatus::kSkipped:
            return "skipped";
        case StepStatus::kFailed:
            return "failed";
    }
    return "failed";
}

std::filesystem::path find_in_path(const std::string& tool, const std::string& path_env) {
    for (const auto& dir : util::split(path_env, ':')) {
        if (dir.empty()) {
            continue;
        }
        std::filesystem::path p = std::filesystem::path(dir) / tool;
        if (::access(p.c_str(), X_OK) == 0) {
            return p;
        }
    }
    return {};
}

std::uint64_t parse_docker_reclaimed(const std::string& out) {
    static const std::regex re(R"(Total reclaimed space:\s*([0-9.]+\s*[A-Za-z]*))");
    std::smatch m;
    if (!std::regex_search(out, m, re)) {
        return 0;
    }
    try {
        return util::parse_size(m[1].str());
    } catch (const std::invalid_argument&) {
        return 0;
    }
}

std::uint64_t tree_bytes(const std::filesystem::path& dir) {
    std::uint64_t total = 0;
    std::error_code ec;
    for (std::filesystem::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
         it.increment(ec)) {
        std::error_code e2;
        if (it->is_regular_file(e2) && !it->is_symlink(e2)) {
            total += it->file_size(e2);
        }
    }
    return total;
}

namespace {

StepResult run_step(const AggressiveOptions& o, const std::string& name,
                    const std::vector<std::string>& argv, const std::filesystem::path& measure) {
    StepResult r;
    r.name = name;
    r.command = util::shell_join(argv);
    auto find = o.find_tool ? o.find_tool : [](const std::string& t) {
        const char* p = ::getenv("PATH");
        return find_in_path(t, p ? p : "/usr/local/bin:/usr/bin:/bin");
    };
    std::filesystem::path tool = find(argv[0]);
    if (tool.empty()) {
        r.status = StepStatus::kSkipped;
        r.note = argv[0] + " not installed";
        return r;
    }
    if (o.dry_run == DryRun::kYes) {
        r.status = StepStatus::kWouldRun;
        return r;
    }
    std::uint64_t before = measure.empty() ? 0 : tree_bytes(measure);
    std::vector<std::string> full = argv;
    full[0] = tool.string();
    util::RunOptions ro;
    ro.timeout = o.timeout;
    util::RunResult rr = o.run(full, ro);
    if (!rr.ok()) {
        r.status = StepStatus::kFailed;
        switch (rr.kind) {
            case util::ExitKind::kTimedOut:
                r.note = "timed out after " + util::format_duration(o.timeout);
                break;
            case util::ExitKind::kFailedToStart:
                r.note = "could not start: " + rr.error;
                break;
            default:
                r.note = "exit " + std::to_string(rr.exit_code) + ": " +
                         std::string(util::trim(rr.err.substr(0, 300)));
        }
        return r;
    }
    r.status = StepStatus::kRan;
    if (!measure.empty()) {
        std::uint64_t after = tree_bytes(measure);
        r.freed = before > after ? before - after : 0;
    } else {
        r.freed = parse_docker_reclaimed(rr.out);
    }
    return r;
}

}  // namespace

std::vector<StepResult> run_external_steps(const AggressiveOptions& opts) {
    std::vector<StepResult> out;
    out.push_back(run_step(opts, "docker",
                           {"docker", "image", "prune", "-a", "-f", "--filter", "until=168h"}, {}));
    out.push_back(run_step(opts, "apt", {"apt-get", "clean"}, opts.apt_cache));
    return out;
}

std::vector<TargetSpec> aggressive_targets(const std::filesystem::path& temp_dir,
                                           const std::map<std::string, std::string>& env) {
    auto get = [&](const char* k) {
        auto it = env.find(k);
        return it == env.end() ? std::string() : it->second;
    };
    std::filesystem::path pip;
    if (!get("PIP_CACHE_DIR").empty()) {
        pip = get("PIP_CACHE_DIR");
    } else if (!get("XDG_CACHE_HOME").empty()) {
        pip = std::filesystem::path(get("XDG_CACHE_HOME")) / "pip";
    } else if (!get("HOME").empty()) {
        pip = std::filesystem::path(get("HOME")) / ".cache" / "pip";
    }
    std::vector<TargetSpec> t;
    if (pip.is_absolute()) {
        t.push_back(TargetSpec{
            "pip-cache", pip, "", std::chrono::seconds(0), {"*"}, 0, DeleteMode::kFiles, true});
    }
    t.push_back(TargetSpec{
        "tmp-old", temp_dir, "", std::chrono::hours(24 * 3), {"*"}, 0, DeleteMode::kFiles, true});
    return t;
}

}  // namespace mlk::cleanup
