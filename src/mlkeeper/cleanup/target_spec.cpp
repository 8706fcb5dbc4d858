#include "mlkeeper/cleanup/target_spec.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <stdexcept>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cleanup {

std::string_view to_string(DeleteMode m) {
    switch (m) {
        case DeleteMode::kFiles:
            return "files";
        case DeleteMode::kRuns:
            return "runs";
        case DeleteMode::kBoth:
            return "both";
    }
    return "files";
}

std::string TargetSpec::display_path() const {
    return entry_glob.empty() ? root.string() : (root / entry_glob).string();
}

bool matches_any(const std::vector<std::string>& patterns, const char* name) {
    for (const auto& p : patterns) {
        if (::fnmatch(p.c_str(), name, 0) == 0) {
            return true;
        }
    }
    return false;
}

namespace {

bool has_glob(std::string_view s) {
    return s.find_first_of("*?[") != std::string_view::npos;
}

// Splits on unquoted whitespace; "..." groups (quotes removed). Throws on an open quote.
std::vector<std::string> tokenize(std::string_view text) {
    std::vector<std::string> out;
    std::string cur;
    bool in_quote = false, have = false;
    for (char c : text) {
        if (c == '"') {
            in_quote = !in_quote;
            have = true;
        } else if (!in_quote && (c == ' ' || c == '\t')) {
            if (have) {
                out.push_back(cur);
            }
            cur.clear();
            have = false;
        } else {
            cur += c;
            have = true;
        }
    }
    if (in_quote) {
        throw std::invalid_argument("unterminated double quote");
    }
    if (have) {
        out.push_back(cur);
    }
    return out;
}

const std::vector<std::string> kFields = {"name",     "path",   "retention", "pattern",
                                          "min_size", "delete", "enabled"};

}  // namespace

std::pair<std::filesystem::path, std::string> split_target_path(std::string_view path) {
    if (path.empty() || path[0] != '/') {
        throw std::invalid_argument("path \"" + std::string(path) +
                                    "\" must be absolute (start with /)");
    }
    std::string p(path);
    while (p.size() > 1 && p.back() == '/') {
        p.pop_back();
    }
    auto slash = p.rfind('/');
    std::string dir = slash == 0 ? "/" : p.substr(0, slash);
    std::string last = p.substr(slash + 1);
    if (has_glob(dir)) {
        throw std::invalid_argument("path \"" + std::string(path) +
                                    "\": glob characters are allowed only in the last component");
    }
    if (!has_glob(last)) {
        return {std::filesystem::path(p), ""};
    }
    if (last == "." || last == "..") {
        throw std::invalid_argument("path \"" + std::string(path) + "\" ends in " + last);
    }
    return {std::filesystem::path(dir), last};
}

TargetItem parse_target_item(std::string_view text, std::size_t index) {
    const std::string where = "cleanup.targets item " + std::to_string(index + 1) + " (\"" +
                              std::string(util::trim(text)) + "\"): ";
    TargetItem item;
    std::set<std::string> seen;
    try {
        for (const auto& tok : tokenize(text)) {
            auto eq = tok.find('=');
            if (eq == std::string::npos || eq == 0) {
                throw std::invalid_argument("expected key=value, got \"" + tok + "\"");
            }
            std::string key = tok.substr(0, eq), val = tok.substr(eq + 1);
            if (std::find(kFields.begin(), kFields.end(), key) == kFields.end()) {
                auto hint = util::closest_match(key, kFields);
                throw std::invalid_argument("unknown field \"" + key + "\"" +
                                            (hint ? " (did you mean \"" + *hint + "\"?)" : "") +
                                            "; fields: name path retention pattern min_size "
                                            "delete enabled");
            }
            if (!seen.insert(key).second) {
                throw std::invalid_argument("field \"" + key + "\" given twice");
            }
            if (val.empty()) {
                throw std::invalid_argument("field \"" + key + "\" is empty");
            }
            if (key == "name") {
                for (char c : val) {
                    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
                        throw std::invalid_argument("name \"" + val +
                                                    "\" may hold only letters, digits, - and _");
                    }
                }
                item.name = val;
            } else if (key == "path") {
                split_target_path(val);  // validates
                item.path = val;
            } else if (key == "retention") {
                item.retention = util::parse_duration(val, util::DurationUnit::kDays);
            } else if (key == "pattern") {
                std::vector<std::string> pats;
                for (auto& p : util::split(val, ',')) {
                    if (p.empty() || p.find('/') != std::string::npos) {
                        throw std::invalid_argument("pattern \"" + val +
                                                    "\": each comma-separated pattern must be a "
                                                    "non-empty file name glob without /");
                    }
                    pats.push_back(p);
                }
                item.patterns = pats;
            } else if (key == "min_size") {
                item.min_size = util::parse_size(val);
            } else if (key == "delete") {
                if (val == "files") {
                    item.mode = DeleteMode::kFiles;
                } else if (val == "runs") {
                    item.mode = DeleteMode::kRuns;
                } else if (val == "both") {
                    item.mode = DeleteMode::kBoth;
                } else {
                    throw std::invalid_argument("delete=\"" + val +
                                                "\" must be files, runs or both");
                }
            } else if (key == "enabled") {
                item.enabled = util::parse_bool(val);
                if (!item.enabled) {
                    throw std::invalid_argument("enabled=\"" + val + "\" must be true or false");
                }
            }
        }
    } catch (const std::invalid_argument& e) {
        throw ConfigError(where + e.what());
    }
    if (item.name.empty()) {
        throw ConfigError(where +
                          "missing name=... (a new name adds a target; experiments, "
                          "checkpoints, logs or temp change a default one)");
    }
    return item;
}

std::vector<TargetSpec> merge_targets(std::vector<TargetSpec> defaults,
                                      const std::vector<std::string>& items) {
    std::set<std::string> names;
    for (std::size_t i = 0; i < items.size(); ++i) {
        TargetItem it = parse_target_item(items[i], i);
        if (!names.insert(it.name).second) {
            throw ConfigError("cleanup.targets item " + std::to_string(i + 1) + ": target \"" +
                              it.name + "\" is defined twice");
        }
        auto t = std::find_if(defaults.begin(), defaults.end(),
                              [&](const TargetSpec& s) { return s.name == it.name; });
        if (t == defaults.end()) {
            if (!it.path || !it.retention) {
                throw ConfigError("cleanup.targets item " + std::to_string(i + 1) +
                                  ": new target \"" + it.name +
                                  "\" needs path=... and retention=... (no guessing what to "
                                  "delete)");
            }
            defaults.push_back(TargetSpec{});
            t = std::prev(defaults.end());
            t->name = it.name;
        }
        if (it.path) {
            auto [root, glob] = split_target_path(*it.path);
            t->root = root;
            t->entry_glob = glob;
        }
        if (it.retention) {
            t->retention = *it.retention;
        }
        if (it.patterns) {
            t->patterns = *it.patterns;
        }
        if (it.min_size) {
            t->min_size = *it.min_size;
        }
        if (it.mode) {
            t->mode = *it.mode;
        }
        if (it.enabled) {
            t->enabled = *it.enabled;
        }
    }
    return defaults;
}

std::vector<TargetSpec> build_targets(const core::Config& cfg) {
    std::vector<TargetSpec> d(4);
    // Experiments go as whole runs: deleting single old files (a config written on day one)
    // out of a run that is still training would break it.
    d[0] = {"experiments",
            cfg.path("cleanup.experiments_dir"),
            "*",
            cfg.duration("cleanup.experiments_retention"),
            {"*"},
            0,
            DeleteMode::kRuns,
            true};
    d[1] = {"checkpoints",
            cfg.path("cleanup.checkpoints_dir"),
            "*",
            cfg.duration("cleanup.checkpoints_retention"),
            {"*"},
            0,
            DeleteMode::kFiles,
            true};
    d[2] = {
        "logs", cfg.path("cleanup.logs_dir"), "ml-*", cfg.duration("cleanup.logs_retention"), {"*"},
        0,      DeleteMode::kFiles,           true};
    // The seeds clean /tmp/ml-* "always": retention 0, still subject to min_age and the
    // open-file check, so a running job's scratch files survive.
    d[3] = {"temp",
            cfg.path("cleanup.temp_dir"),
            "ml-*",
            cfg.duration("cleanup.temp_retention"),
            {"*"},
            0,
            DeleteMode::kBoth,
            true};
    return merge_targets(std::move(d), cfg.list("cleanup.targets"));
}

}  // namespace mlk::cleanup
