#include "mlkeeper/health/system_checks.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <set>
#include <sstream>

#include <fmt/format.h>

namespace mlk::health {
namespace {

// Small /proc files: one read(2) each, no iostreams.
std::optional<std::string> slurp(const std::filesystem::path& p) {
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return std::nullopt;
    }
    std::string out;
    std::array<char, 8192> buf{};
    for (;;) {
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        out.append(buf.data(), static_cast<std::size_t>(n));
    }
    ::close(fd);
    return out;
}

std::string decode_octal(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() &&
            std::isdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isdigit(static_cast<unsigned char>(s[i + 2])) &&
            std::isdigit(static_cast<unsigned char>(s[i + 3]))) {
            out +=
                static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

std::string pct(double v) {
    return fmt::format("{:.1f}%", v);
}

void set_perf(CheckResult& r, double value, const Thresholds& t, Status s) {
    r.value = value;
    r.unit = "%";
    r.warn = t.warn;
    r.crit = t.crit;
    r.min = 0;
    r.max = 100;
    r.threshold = s == Status::kFail ? t.crit : t.warn;
}

std::string format_uptime(double secs) {
    auto total = static_cast<long long>(secs);
    long long days = total / 86400, hours = total % 86400 / 3600, mins = total % 3600 / 60;
    if (days > 0) {
        return fmt::format("{} day{} {}:{:02}", days, days == 1 ? "" : "s", hours, mins);
    }
    return fmt::format("{}:{:02}", hours, mins);
}

}  // namespace

std::vector<MountEntry> parse_mounts(const std::string& text) {
    std::vector<MountEntry> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        MountEntry e;
        if (ls >> e.device >> e.mount_point >> e.fs_type) {
            e.device = decode_octal(e.device);
            e.mount_point = decode_octal(e.mount_point);
            out.push_back(std::move(e));
        }
    }
    return out;
}

bool is_pseudo_fs(const std::string& fs_type) {
    static const std::set<std::string, std::less<>> kPseudo = {
        "proc",        "sysfs",      "tmpfs",      "devtmpfs",  "devpts",     "overlay",
        "cgroup",      "cgroup2",    "securityfs", "pstore",    "debugfs",    "tracefs",
        "configfs",    "fusectl",    "mqueue",     "hugetlbfs", "bpf",        "autofs",
        "binfmt_misc", "nsfs",       "squashfs",   "efivarfs",  "rpc_pipefs", "selinuxfs",
        "ramfs",       "fuse.lxcfs", "nfsd",       "ramfs",     "iso9660",    "fuse.gvfsd-fuse",
        "fuse.portal", "aufs",       "shm",        "none"};
    return kPseudo.contains(fs_type);
}

std::vector<CheckResult> check_filesystem(const std::string& mount_point, const DiskOptions& opts) {
    std::vector<CheckResult> out;
    struct statvfs st {};
    if (::statvfs(mount_point.c_str(), &st) != 0) {
        out.push_back(
            error_result("Disk usage " + mount_point, "disk_" + mount_point, "disk",
                         fmt::format("cannot statvfs {}: {}", mount_point, std::strerror(errno))));
        return out;
    }
    // df's formula: reserved blocks count neither as used nor as available.
    const double used = static_cast<double>(st.f_blocks - st.f_bfree);
    const double denom = used + static_cast<double>(st.f_bavail);
    if (st.f_blocks > 0 && denom > 0) {
        double usage = used / denom * 100.0;
        CheckResult r;
        r.check = "Disk usage " + mount_point;
        r.key = "disk_" + mount_point;
        r.category = "disk";
        r.status = grade(usage, opts.usage);
        const double frsize = static_cast<double>(st.f_frsize);
        r.message = fmt::format("Disk usage {}: {} ({:.1f} GiB free)", mount_point, pct(usage),
                                static_cast<double>(st.f_bavail) * frsize / (1024.0 * 1024 * 1024));
        set_perf(r, usage, opts.usage, r.status);
        r.metrics.push_back({"disk_used_ratio",
                             {{"mountpoint", mount_point}},
                             usage / 100.0,
                             "Used share of the filesystem as df computes it"});
        r.metrics.push_back({"disk_avail_bytes",
                             {{"mountpoint", mount_point}},
                             static_cast<double>(st.f_bavail) * frsize,
                             "Bytes available to unprivileged users"});
        out.push_back(std::move(r));
    }
    // Filesystems without fixed inode tables (btrfs, some FUSE) report 0.
    if (st.f_files > 0) {
        const double iused = static_cast<double>(st.f_files - st.f_ffree);
        double usage = iused / static_cast<double>(st.f_files) * 100.0;
        CheckResult r;
        r.check = "Inode usage " + mount_point;
        r.key = "inodes_" + mount_point;
        r.category = "disk";
        r.status = grade(usage, opts.inodes);
        r.message = fmt::format("Inode usage {}: {} ({} of {} used)", mount_point, pct(usage),
                                st.f_files - st.f_ffree, st.f_files);
        set_perf(r, usage, opts.inodes, r.status);
        r.metrics.push_back({"inodes_used_ratio",
                             {{"mountpoint", mount_point}},
                             usage / 100.0,
                             "Used share of the filesystem's inodes"});
        out.push_back(std::move(r));
    }
    return out;
}

std::vector<CheckResult> check_disks(const HealthEnv& env, const DiskOptions& opts) {
    auto text = slurp(env.proc_root / "self/mounts");
    if (!text) {
        return {error_result("Disk usage", "disk", "disk",
                             "cannot read " + (env.proc_root / "self/mounts").string())};
    }
    std::vector<CheckResult> out;
    std::set<dev_t> seen;
    std::set<std::string> seen_paths;
    for (const auto& m : parse_mounts(*text)) {
        const bool included = contains(opts.include_mounts, m.mount_point) ||
                              contains(opts.include_fstypes, m.fs_type);
        if ((!included && is_pseudo_fs(m.fs_type)) ||
            contains(opts.exclude_mounts, m.mount_point) || seen_paths.contains(m.mount_point)) {
            continue;
        }
        struct stat sb {};
        if (::stat(m.mount_point.c_str(), &sb) == 0) {
            if (!seen.insert(sb.st_dev).second) {
                continue;  // bind mount or second mount of a filesystem already checked
            }
        }
        seen_paths.insert(m.mount_point);
        auto rs = check_filesystem(m.mount_point, opts);
        std::move(rs.begin(), rs.end(), std::back_inserter(out));
    }
    // Configured mount points missing from the table are a problem worth showing.
    for (const auto& want : opts.include_mounts) {
        if (!seen_paths.contains(want)) {
            out.push_back(error_result("Disk usage " + want, "disk_" + want, "disk",
                                       want + " is not a mounted filesystem"));
        }
    }
    if (out.empty()) {  // containers: only overlay; the root still matters
        return check_filesystem("/", opts);
    }
    return out;
}

std::vector<CheckResult> check_memory(const HealthEnv& env, const MemoryOptions& opts) {
    auto path = env.proc_root / "meminfo";
    auto text = slurp(path);
    if (!text) {
        return {error_result("Memory usage", "memory", "memory", "cannot read " + path.string())};
    }
    std::optional<double> total, avail, free_kb, buffers, cached, swap_total, swap_free;
    std::istringstream in(*text);
    std::string name;
    double kb = 0;
    std::string unit_rest;
    while (in >> name >> kb) {
        std::getline(in, unit_rest);
        if (name == "MemTotal:")
            total = kb;
        else if (name == "MemAvailable:")
            avail = kb;
        else if (name == "MemFree:")
            free_kb = kb;
        else if (name == "Buffers:")
            buffers = kb;
        else if (name == "Cached:")
            cached = kb;
        else if (name == "SwapTotal:")
            swap_total = kb;
        else if (name == "SwapFree:")
            swap_free = kb;
    }
    if (!avail && free_kb) {  // kernels before 3.14
        avail = *free_kb + buffers.value_or(0) + cached.value_or(0);
    }
    std::vector<CheckResult> out;
    if (!total || !avail || *total <= 0) {
        out.push_back(error_result("Memory usage", "memory", "memory",
                                   "no MemTotal/MemAvailable in " + path.string()));
    } else {
        double usage = (*total - *avail) / *total * 100.0;
        CheckResult r;
        r.check = "Memory usage";
        r.key = "memory";
        r.category = "memory";
        r.status = grade(usage, opts.memory);
        r.message = fmt::format("Memory usage: {} ({:.1f} GiB available of {:.1f} GiB)", pct(usage),
                                *avail / 1048576.0, *total / 1048576.0);
        set_perf(r, usage, opts.memory, r.status);
        r.metrics.push_back({"memory_used_ratio",
                             {},
                             usage / 100.0,
                             "Share of memory not available (MemTotal - MemAvailable)"});
        out.push_back(std::move(r));
    }
    CheckResult s;
    s.check = "Swap usage";
    s.key = "swap";
    s.category = "memory";
    if (!swap_total || *swap_total <= 0) {
        s.message = "Swap usage: no swap configured";
    } else {
        double usage = (*swap_total - swap_free.value_or(*swap_total)) / *swap_total * 100.0;
        s.status = grade(usage, opts.swap);
        s.message =
            fmt::format("Swap usage: {} of {:.1f} GiB", pct(usage), *swap_total / 1048576.0);
        set_perf(s, usage, opts.swap, s.status);
        s.metrics.push_back({"swap_used_ratio", {}, usage / 100.0, "Used share of swap"});
    }
    out.push_back(std::move(s));
    return out;
}

unsigned online_cpus(const HealthEnv& env) {
    if (auto text = slurp(env.sys_root / "devices/system/cpu/online")) {
        unsigned count = 0;
        std::istringstream in(*text);
        std::string range;
        bool ok = true;
        while (std::getline(in, range, ',')) {
            unsigned a = 0, b = 0;
            if (std::sscanf(range.c_str(), "%u-%u", &a, &b) == 2 && b >= a) {
                count += b - a + 1;
            } else if (std::sscanf(range.c_str(), "%u", &a) == 1) {
                count += 1;
            } else {
                ok = false;
            }
        }
        if (ok && count > 0) {
            return count;
        }
    }
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<unsigned>(n) : 1;
}

CheckResult check_cpu_load(const HealthEnv& env, const Thresholds& per_cpu_pct) {
    auto path = env.proc_root / "loadavg";
    auto text = slurp(path);
    double l1 = 0, l5 = 0, l15 = 0;
    if (!text || std::sscanf(text->c_str(), "%lf %lf %lf", &l1, &l5, &l15) != 3) {
        return error_result("CPU load", "cpu_load", "cpu", "cannot read " + path.string());
    }
    const unsigned cpus = online_cpus(env);
    const double per_cpu = l1 / cpus * 100.0;
    CheckResult r;
    r.check = "CPU load";
    r.key = "cpu_load";
    r.category = "cpu";
    r.status = grade(per_cpu, per_cpu_pct);
    r.message = fmt::format("CPU load: {:.2f} {:.2f} {:.2f} on {} CPU{} ({:.0f}% of capacity)", l1,
                            l5, l15, cpus, cpus == 1 ? "" : "s", per_cpu);
    r.value = per_cpu;
    r.unit = "%";
    r.warn = per_cpu_pct.warn;
    r.crit = per_cpu_pct.crit;
    r.min = 0;
    r.threshold = r.status == Status::kFail ? per_cpu_pct.crit : per_cpu_pct.warn;
    for (auto [period, v] : {std::pair{"1m", l1}, {"5m", l5}, {"15m", l15}}) {
        r.metrics.push_back({"load_average", {{"period", period}}, v, "Load average"});
    }
    r.metrics.push_back({"cpus", {}, static_cast<double>(cpus), "Online CPUs"});
    return r;
}

CheckResult check_uptime(const HealthEnv& env) {
    auto path = env.proc_root / "uptime";
    auto text = slurp(path);
    double secs = 0;
    if (!text || std::sscanf(text->c_str(), "%lf", &secs) != 1) {
        return error_result("Uptime", "uptime", "uptime", "cannot read " + path.string());
    }
    CheckResult r;
    r.check = "Uptime";
    r.key = "uptime";
    r.category = "uptime";
    r.message = "Uptime: " + format_uptime(secs);
    r.value = secs;
    r.unit = "s";
    r.min = 0;
    r.metrics.push_back({"uptime_seconds", {}, secs, "Seconds since boot"});
    return r;
}

CheckResult check_reboot_required(const HealthEnv& env) {
    CheckResult r;
    r.check = "Reboot required";
    r.key = "reboot_required";
    r.category = "uptime";
    std::error_code ec;
    const bool required = std::filesystem::exists(env.reboot_required_file, ec);
    r.value = required ? 1 : 0;
    r.unit = "";
    r.metrics.push_back({"reboot_required",
                         {},
                         required ? 1.0 : 0.0,
                         "1 while the reboot-required flag file exists"});
    if (!required) {
        r.message = "No reboot required";
        return r;
    }
    r.status = Status::kWarn;
    r.threshold = 0;
    std::string pkgs;
    if (auto text = slurp(env.reboot_required_file.string() + ".pkgs")) {
        std::istringstream in(*text);
        std::string p;
        while (in >> p) {
            pkgs += (pkgs.empty() ? "" : ", ") + p;
        }
    }
    r.message = "Reboot required" + (pkgs.empty() ? std::string() : " (" + pkgs + ")");
    return r;
}

std::optional<std::uint64_t> read_oom_kill_counter(const HealthEnv& env) {
    auto text = slurp(env.proc_root / "vmstat");
    if (!text) {
        return std::nullopt;
    }
    std::istringstream in(*text);
    std::string name;
    std::uint64_t v = 0;
    while (in >> name >> v) {
        if (name == "oom_kill") {
            return v;
        }
    }
    return std::nullopt;
}

CheckResult check_oom(const HealthEnv& env, std::optional<std::uint64_t> previous,
                      std::optional<std::uint64_t>* current) {
    auto now = read_oom_kill_counter(env);
    if (current) {
        *current = now;
    }
    if (!now) {
        return skipped_result("OOM kills", "oom_kills", "system",
                              "no oom_kill counter in " + (env.proc_root / "vmstat").string() +
                                  " (kernel older than 4.13)");
    }
    const bool since_last = previous && *previous <= *now;
    const std::uint64_t delta = since_last ? *now - *previous : *now;
    CheckResult r;
    r.check = "OOM kills";
    r.key = "oom_kills";
    r.category = "system";
    r.value = static_cast<double>(delta);
    r.unit = "count";
    r.threshold = 0;
    r.warn = 0;
    r.min = 0;
    r.status = delta > 0 ? Status::kWarn : Status::kPass;
    const char* when = since_last ? "since the last run"
                       : previous ? "since boot (rebooted)"
                                  : "since boot";
    r.message = fmt::format("OOM kills: {} {}", delta, when);
    r.metrics.push_back({"oom_kills_total",
                         {},
                         static_cast<double>(*now),
                         "OOM kills since boot (the kernel's oom_kill counter)",
                         core::MetricType::kCounter});
    return r;
}

}  // namespace mlk::health
