#include "mlkeeper/sched/unit_export.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"
#include "support/temp_dir.hpp"

namespace mlk::sched {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;

// ---------------------------------------------------------------------------------------------
// helpers

struct Shell {
    int rc = -1;
    std::string out;  // stdout and stderr together
};

// A /bin/sh command line, bounded by timeout(1) so no test can hang.
Shell sh(const std::string& cmd, int limit_s = 60) {
    std::string full = "timeout -k 5 " + std::to_string(limit_s) + " /bin/sh -c " +
                       util::shell_quote(cmd) + " 2>&1";
    FILE* p = ::popen(full.c_str(), "r");
    if (p == nullptr) {
        return {-1, "popen failed"};
    }
    Shell r;
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
        r.out.append(buf, n);
    }
    int status = ::pclose(p);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

bool have(const std::string& program) {
    return sh("command -v " + program + " >/dev/null").rc == 0;
}

std::optional<std::string> croniter_python() {
    for (const char* py : {"python3", "/usr/bin/python3"}) {
        if (sh(std::string(py) + " -c 'import croniter'").rc == 0) {
            return std::string(py);
        }
    }
    return std::nullopt;
}

std::vector<std::string> lines_of(const std::string& s) {
    auto v = util::split(s, '\n');
    if (!v.empty() && v.back().empty()) {
        v.pop_back();
    }
    return v;
}

bool has_line(const std::string& content, const std::string& line) {
    auto v = lines_of(content);
    return std::find(v.begin(), v.end(), line) != v.end();
}

std::vector<std::string> lines_starting(const std::string& content, const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& l : lines_of(content)) {
        if (l.rfind(prefix, 0) == 0) {
            out.push_back(l);
        }
    }
    return out;
}

const std::string& content_of(const std::vector<UnitFile>& units, const std::string& name) {
    for (const auto& u : units) {
        if (u.filename == name) {
            return u.content;
        }
    }
    throw std::runtime_error("no unit " + name);
}

ExportOptions seed_options() {
    ExportOptions o;
    o.config = "/etc/mlkeeper/mlkeeper.toml";
    o.writes["backup"] = {"/backup/models", "/var/lib/mlkeeper", "/var/log/mlkeeper"};
    o.writes["gpu"] = {"/var/lib/mlkeeper", "/var/log/mlkeeper"};
    o.writes["cleanup"] = {"/opt/ml/experiments", "/opt/ml/checkpoints", "/var/lib/mlkeeper",
                           "/var/log/mlkeeper"};
    o.writes["maintain"] = {"/backup/models", "/opt/ml/experiments", "/opt/ml/checkpoints",
                            "/var/lib/mlkeeper", "/var/log/mlkeeper"};
    o.reads["backup"] = {"/opt/ml/models"};
    o.alert_writes = {"/var/lib/mlkeeper", "/var/log/mlkeeper"};
    return o;
}

JobSpec make_job(std::string name, std::string schedule,
                 ScheduleKind kind = ScheduleKind::kCalendar) {
    JobSpec j;
    j.name = name;
    j.builtin = "health";
    j.description = "test job " + name;
    j.schedule = std::move(schedule);
    j.schedule_kind = kind;
    return j;
}

template <typename Fn>
std::string config_error_of(Fn fn) {
    try {
        fn();
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no ConfigError)";
}

void make_executable(const fs::path& p, const std::string& content) {
    {
        std::ofstream out(p);
        out << content;
    }
    fs::permissions(p, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec);
}

// ---------------------------------------------------------------------------------------------
// systemd quoting

TEST(SystemdQuote, PlainWordsStayAsTheyAre) {
    EXPECT_EQ(systemd_quote("/usr/bin/mlkeeper"), "/usr/bin/mlkeeper");
    EXPECT_EQ(systemd_quote("--config"), "--config");
    EXPECT_EQ(systemd_quote("key=value,x:y"), "key=value,x:y");
    EXPECT_EQ(systemd_quote("ünïcode"), "ünïcode");
    EXPECT_EQ(systemd_quote("unit=%i", Specifiers::kKeep), "unit=%i");
}

TEST(SystemdQuote, EscapesSpecifiersVariablesQuotesAndControls) {
    EXPECT_EQ(systemd_quote("100%"), "100%%");
    EXPECT_EQ(systemd_quote("%h"), "%%h");
    EXPECT_EQ(systemd_quote("$HOME"), "$$HOME");
    EXPECT_EQ(systemd_quote("${X}"), "$${X}");
    EXPECT_EQ(systemd_quote("a b"), "\"a b\"");
    EXPECT_EQ(systemd_quote(""), "\"\"");
    EXPECT_EQ(systemd_quote(";"), "\";\"");
    EXPECT_EQ(systemd_quote("a;b"), "a;b");
    EXPECT_EQ(systemd_quote("it's"), "\"it's\"");
    EXPECT_EQ(systemd_quote("say \"hi\""), "\"say \\\"hi\\\"\"");
    EXPECT_EQ(systemd_quote("back\\slash"), "\"back\\\\slash\"");
    EXPECT_EQ(systemd_quote("new\nline\ttab\r"), "\"new\\nline\\ttab\\r\"");
    EXPECT_EQ(systemd_quote(std::string("\x01", 1)), "\"\\x01\"");
    EXPECT_EQ(systemd_quote("%i failed", Specifiers::kKeep), "\"%i failed\"");
}

// systemd's own word splitter (libsystemd-shared, the code behind ExecStart= parsing) must give
// back exactly the words we quoted. The flag values are those of systemd 252's
// extract_first_word(), so the check only runs against that version.
TEST(SystemdQuote, RoundTripsThroughSystemdsOwnParser) {
    void* lib = nullptr;
    for (const char* path : {"/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so",
                             "/usr/lib/aarch64-linux-gnu/systemd/libsystemd-shared-252.so",
                             "/usr/lib/systemd/libsystemd-shared-252.so"}) {
        if ((lib = ::dlopen(path, RTLD_NOW | RTLD_LOCAL)) != nullptr) {
            break;
        }
    }
    if (lib == nullptr) {
        GTEST_SKIP() << "libsystemd-shared-252.so not found";
    }
    using Extract = int (*)(const char**, char**, const char*, int);
    auto extract = reinterpret_cast<Extract>(::dlsym(lib, "extract_first_word"));
    ASSERT_NE(extract, nullptr);
    constexpr int kCunescape = 1 << 1;  // EXTRACT_CUNESCAPE in 252
    constexpr int kUnquote = 1 << 5;    // EXTRACT_UNQUOTE in 252

    const std::vector<std::string> words = {"/opt/my tools/run",
                                            "plain",
                                            "a b",
                                            "it's",
                                            "say \"hi\"",
                                            "$HOME",
                                            "${X}",
                                            "100%",
                                            ";",
                                            "back\\slash\\",
                                            "new\nline",
                                            "tab\t",
                                            "",
                                            "ünï",
                                            std::string("\x01\x7f", 2),
                                            "'single'",
                                            "\"double\""};
    std::string line;
    for (const auto& w : words) {
        line += (line.empty() ? "" : " ") + systemd_quote(w);
    }
    std::vector<std::string> parsed;
    const char* p = line.c_str();
    for (;;) {
        char* word = nullptr;
        int r = extract(&p, &word, nullptr, kCunescape | kUnquote);
        ASSERT_GE(r, 0) << line;
        if (r == 0) {
            break;
        }
        // What systemd does next: specifiers ("%%" -> "%"), then variables ("$$" -> "$").
        std::string s = word;
        std::free(word);
        for (const auto& [from, to] :
             {std::pair<std::string, std::string>{"%%", "%"}, {"$$", "$"}}) {
            for (std::size_t at = 0; (at = s.find(from, at)) != std::string::npos;
                 at += to.size()) {
                s.replace(at, from.size(), to);
            }
        }
        parsed.push_back(s);
    }
    ::dlclose(lib);
    EXPECT_EQ(parsed, words) << line;
}

// ---------------------------------------------------------------------------------------------
// systemd units

TEST(SystemdUnits, OneServiceAndTimerPerJobPlusTheAlertTemplate) {
    auto units = systemd_units(default_jobs(), seed_options());
    std::vector<std::string> names;
    for (const auto& u : units) {
        names.push_back(u.filename);
    }
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names,
              (std::vector<std::string>{
                  "mlkeeper-alert@.service", "mlkeeper-backup.service", "mlkeeper-backup.timer",
                  "mlkeeper-cleanup.service", "mlkeeper-cleanup.timer", "mlkeeper-gpu.service",
                  "mlkeeper-gpu.timer", "mlkeeper-maintain.service", "mlkeeper-maintain.timer"}));
    for (const auto& u : units) {
        EXPECT_THAT(u.content, HasSubstr("# Generated by `mlkeeper schedule export`"))
            << u.filename;
        if (u.filename.ends_with(".service")) {
            // Timer-activated: an [Install] section would also run them at boot.
            EXPECT_THAT(u.content, Not(HasSubstr("[Install]"))) << u.filename;
            EXPECT_TRUE(has_line(u.content, "Type=oneshot")) << u.filename;
        }
    }
}

TEST(SystemdUnits, BackupServiceHasTheSeedSettingsAndTheSandbox) {
    auto units = systemd_units(default_jobs(), seed_options());
    const auto& s = content_of(units, "mlkeeper-backup.service");
    for (const char* line : {
             "Description=mlkeeper backup: ML model backup",
             "Wants=network-online.target",
             "After=network-online.target",
             "OnFailure=mlkeeper-alert@%n.service",
             "StartLimitIntervalSec=11400",
             "StartLimitBurst=3",
             "Type=oneshot",
             "User=mlkeeper",
             "Group=mlkeeper",
             "ExecStart=/usr/bin/mlkeeper --config /etc/mlkeeper/mlkeeper.toml backup",
             "MemoryMax=2G",
             "CPUQuota=50%",
             "Restart=on-failure",
             "RestartSec=300",
             "ProtectSystem=strict",
             "ReadWritePaths=-/backup/models -/var/lib/mlkeeper -/var/log/mlkeeper",
             "ProtectHome=yes",
             "PrivateTmp=yes",
             "NoNewPrivileges=yes",
             "ProtectKernelTunables=yes",
             "ProtectKernelModules=yes",
             "ProtectControlGroups=yes",
             "RestrictSUIDSGID=yes",
             "LockPersonality=yes",
         }) {
        EXPECT_TRUE(has_line(s, line)) << "missing \"" << line << "\" in\n" << s;
    }
    // Things the seed units had that are wrong for a timer-driven job.
    EXPECT_THAT(s, Not(HasSubstr("MemoryLimit=")));  // cgroup v1 name
    EXPECT_THAT(s, Not(HasSubstr("WantedBy=multi-user.target")));
    EXPECT_TRUE(lines_starting(s, "PrivateDevices=").empty());  // GPU jobs need /dev/nvidia*
    EXPECT_TRUE(lines_starting(s, "TimeoutStartSec=").empty());
    EXPECT_TRUE(lines_starting(s, "Nice=").empty());
    EXPECT_TRUE(lines_starting(s, "IOScheduling").empty());
}

TEST(SystemdUnits, TimersHaveTheSeedSchedules) {
    auto units = systemd_units(default_jobs(), seed_options());
    struct Want {
        const char* unit;
        const char* on_calendar;
        const char* delay;  // nullptr: no RandomizedDelaySec=
    };
    for (const auto& w : {Want{"mlkeeper-backup.timer", "*-*-* 02:00:00", "600"},
                          Want{"mlkeeper-gpu.timer", "*:0/5", nullptr},
                          Want{"mlkeeper-cleanup.timer", "Sun 03:00", "1800"},
                          Want{"mlkeeper-maintain.timer", "Sun 01:00", "1800"}}) {
        const auto& t = content_of(units, w.unit);
        EXPECT_EQ(lines_starting(t, "OnCalendar="),
                  std::vector<std::string>{std::string("OnCalendar=") + w.on_calendar})
            << t;
        EXPECT_EQ(lines_starting(t, "RandomizedDelaySec="),
                  w.delay ? std::vector<std::string>{std::string("RandomizedDelaySec=") + w.delay}
                          : std::vector<std::string>{})
            << t;
        EXPECT_TRUE(has_line(t, "Persistent=true")) << t;
        EXPECT_TRUE(has_line(t, "AccuracySec=1min")) << t;
        EXPECT_TRUE(has_line(t, "[Install]")) << t;
        EXPECT_TRUE(has_line(t, "WantedBy=timers.target")) << t;
        // The seeds' Requires= on the service started the job whenever the timer was started.
        EXPECT_THAT(t, Not(HasSubstr("Requires=")));
    }
}

TEST(SystemdUnits, MaintainIsOrderedAfterTheOtherJobsButPullsNothingIn) {
    auto units = systemd_units(default_jobs(), seed_options());
    const auto& m = content_of(units, "mlkeeper-maintain.service");
    auto after = lines_starting(m, "After=");
    ASSERT_EQ(after.size(), 1u) << m;
    for (const char* u : {"mlkeeper-backup.service", "mlkeeper-gpu.service",
                          "mlkeeper-cleanup.service", "network-online.target"}) {
        EXPECT_THAT(after[0], HasSubstr(u));
    }
    EXPECT_THAT(after[0], Not(HasSubstr("mlkeeper-maintain.service")));
    EXPECT_EQ(lines_starting(m, "Wants="), std::vector<std::string>{"Wants=network-online.target"});
    EXPECT_THAT(m, Not(HasSubstr("Requires=")));
    EXPECT_TRUE(has_line(m, "TimeoutStartSec=3600"));
    EXPECT_TRUE(lines_starting(m, "Restart=").empty());
    // Only maintain orders itself against other jobs, so no ordering cycle can form.
    for (const char* other :
         {"mlkeeper-backup.service", "mlkeeper-gpu.service", "mlkeeper-cleanup.service"}) {
        for (const auto& a : lines_starting(content_of(units, other), "After=")) {
            EXPECT_THAT(a, Not(HasSubstr("mlkeeper-"))) << other;
        }
    }
}

TEST(SystemdUnits, GpuJobWaitsForPersistencedAndNeverRetries) {
    auto units = systemd_units(default_jobs(), seed_options());
    const auto& g = content_of(units, "mlkeeper-gpu.service");
    EXPECT_TRUE(has_line(g, "After=network-online.target nvidia-persistenced.service")) << g;
    EXPECT_TRUE(has_line(g, "ReadWritePaths=-/var/lib/mlkeeper -/var/log/mlkeeper")) << g;
    EXPECT_TRUE(lines_starting(g, "Restart").empty()) << g;
    EXPECT_TRUE(lines_starting(g, "StartLimit").empty()) << g;
    EXPECT_TRUE(lines_starting(g, "CPUQuota=").empty()) << g;
}

TEST(SystemdUnits, AlertTemplateSendsAnAlertNamingTheFailedUnit) {
    auto units = systemd_units(default_jobs(), seed_options());
    const auto& a = content_of(units, "mlkeeper-alert@.service");
    EXPECT_TRUE(has_line(
        a,
        "ExecStart=/usr/bin/mlkeeper --config /etc/mlkeeper/mlkeeper.toml alert send --key "
        "unit_failed_%i --severity critical --summary \"%i failed\" --check \"systemd OnFailure\" "
        "--action \"Read journalctl -u %i, fix the cause, then systemctl reset-failed %i\" "
        "--field unit=%i"))
        << a;
    EXPECT_TRUE(has_line(a, "ReadWritePaths=-/var/lib/mlkeeper -/var/log/mlkeeper")) << a;
    EXPECT_TRUE(has_line(a, "User=mlkeeper")) << a;
    EXPECT_TRUE(lines_starting(a, "OnFailure=").empty()) << a;  // no alert loops
    EXPECT_TRUE(has_line(a, "After=network-online.target")) << a;
}

TEST(SystemdUnits, NoAlertHookWhenNoJobAlerts) {
    auto jobs = default_jobs();
    for (auto& j : jobs) {
        j.alert_on_failure = j.name == "gpu";
    }
    auto units = systemd_units(jobs, seed_options());
    EXPECT_TRUE(lines_starting(content_of(units, "mlkeeper-backup.service"), "OnFailure=").empty());
    EXPECT_FALSE(lines_starting(content_of(units, "mlkeeper-gpu.service"), "OnFailure=").empty());
    EXPECT_NO_THROW(content_of(units, "mlkeeper-alert@.service"));
    for (auto& j : jobs) {
        j.alert_on_failure = false;
    }
    units = systemd_units(jobs, seed_options());
    EXPECT_EQ(units.size(), 8u);
    EXPECT_THROW(content_of(units, "mlkeeper-alert@.service"), std::runtime_error);
}

TEST(SystemdUnits, OfflineJobsDoNotWaitForTheNetwork) {
    auto o = seed_options();
    o.offline_jobs = {"cleanup"};
    auto units = systemd_units(default_jobs(), o);
    const auto& c = content_of(units, "mlkeeper-cleanup.service");
    EXPECT_THAT(c, Not(HasSubstr("network-online")));
    EXPECT_THAT(content_of(units, "mlkeeper-backup.service"), HasSubstr("network-online"));
}

TEST(SystemdUnits, SandboxFollowsThePathsAJobUses) {
    auto o = seed_options();
    o.reads["backup"] = {"/home/mluser/models"};
    o.writes["cleanup"] = {"/tmp/ml-scratch",   "/var/lib/mlkeeper/", "/var//log/mlkeeper",
                           "/var/lib/mlkeeper", "/srv/a dir",         "/srv/100%"};
    auto units = systemd_units(default_jobs(), o);
    const auto& b = content_of(units, "mlkeeper-backup.service");
    EXPECT_TRUE(has_line(b, "ProtectHome=read-only")) << b;
    EXPECT_TRUE(has_line(b, "PrivateTmp=yes")) << b;
    const auto& c = content_of(units, "mlkeeper-cleanup.service");
    EXPECT_TRUE(has_line(c, "ProtectHome=yes")) << c;
    EXPECT_TRUE(has_line(c, "PrivateTmp=no")) << c;
    // Normalized, sorted, without duplicates; quoted when needed; '%' escaped.
    EXPECT_TRUE(has_line(c,
                         "ReadWritePaths=-/srv/100%% \"-/srv/a dir\" -/tmp/ml-scratch "
                         "-/var/lib/mlkeeper -/var/log/mlkeeper"))
        << c;
    // The program and the config file must stay visible as well.
    o = seed_options();
    o.config = "/home/ops/mlkeeper.toml";
    o.binary = "/tmp/build/mlkeeper";
    units = systemd_units(default_jobs(), o);
    for (const char* name : {"mlkeeper-gpu.service", "mlkeeper-alert@.service"}) {
        EXPECT_TRUE(has_line(content_of(units, name), "ProtectHome=read-only")) << name;
        EXPECT_TRUE(has_line(content_of(units, name), "PrivateTmp=no")) << name;
    }
    auto cmd = make_job("cmd", "daily");
    cmd.kind = TaskKind::kCommand;
    cmd.argv = {"/home/ops/bin/sync"};
    units = systemd_units({cmd}, ExportOptions{});
    EXPECT_TRUE(has_line(content_of(units, "mlkeeper-cmd.service"), "ProtectHome=read-only"));
    EXPECT_TRUE(has_line(content_of(units, "mlkeeper-alert@.service"), "ProtectHome=yes"));
    // A job with no written paths gets none.
    o = seed_options();
    o.writes.erase("gpu");
    units = systemd_units(default_jobs(), o);
    EXPECT_TRUE(
        lines_starting(content_of(units, "mlkeeper-gpu.service"), "ReadWritePaths=").empty());
}

TEST(SystemdUnits, PriorityAndLimitLines) {
    auto a = make_job("a", "daily");
    a.nice = 10;
    a.io_class = IoClass::kBestEffort;
    a.io_level = 7;
    a.memory_max = 1536ull << 20;
    a.cpu_quota_percent = 150;
    auto b = make_job("b", "daily");
    b.nice = -5;
    b.io_class = IoClass::kIdle;
    b.memory_max = 1000;
    auto c = make_job("c", "daily");
    c.io_class = IoClass::kRealtime;
    c.io_level = 0;
    c.memory_max = 3ull << 40;
    auto units = systemd_units({a, b, c}, ExportOptions{});
    const auto& sa = content_of(units, "mlkeeper-a.service");
    EXPECT_TRUE(has_line(sa, "Nice=10"));
    EXPECT_TRUE(has_line(sa, "IOSchedulingClass=best-effort"));
    EXPECT_TRUE(has_line(sa, "IOSchedulingPriority=7"));
    EXPECT_TRUE(has_line(sa, "MemoryMax=1536M"));
    EXPECT_TRUE(has_line(sa, "CPUQuota=150%"));
    EXPECT_TRUE(has_line(sa, "ExecStart=/usr/bin/mlkeeper health"));  // no --config: default
    const auto& sb = content_of(units, "mlkeeper-b.service");
    EXPECT_TRUE(has_line(sb, "Nice=-5"));
    EXPECT_TRUE(has_line(sb, "IOSchedulingClass=idle"));
    EXPECT_TRUE(lines_starting(sb, "IOSchedulingPriority=").empty());
    EXPECT_TRUE(has_line(sb, "MemoryMax=1000"));
    const auto& sc = content_of(units, "mlkeeper-c.service");
    EXPECT_TRUE(has_line(sc, "IOSchedulingClass=realtime"));
    EXPECT_TRUE(has_line(sc, "IOSchedulingPriority=0"));
    EXPECT_TRUE(has_line(sc, "MemoryMax=3T"));
}

TEST(SystemdUnits, CommandJobsRunTheirArgvAndExtraArgsFollowTheTask) {
    auto cmd = make_job("sync", "hourly");
    cmd.kind = TaskKind::kCommand;
    cmd.argv = {"/usr/local/bin/sync-models", "--to", "s3://bucket/models"};
    auto extra = make_job("deep", "weekly");
    extra.builtin = "health";
    extra.argv = {"--no-network", "--json"};
    auto o = seed_options();
    auto units = systemd_units({cmd, extra}, o);
    EXPECT_TRUE(has_line(content_of(units, "mlkeeper-sync.service"),
                         "ExecStart=/usr/local/bin/sync-models --to s3://bucket/models"));
    EXPECT_TRUE(has_line(content_of(units, "mlkeeper-deep.service"),
                         "ExecStart=/usr/bin/mlkeeper --config /etc/mlkeeper/mlkeeper.toml health "
                         "--no-network --json"));
    EXPECT_EQ(job_argv(extra, o), (std::vector<std::string>{"/usr/bin/mlkeeper", "--config",
                                                            "/etc/mlkeeper/mlkeeper.toml", "health",
                                                            "--no-network", "--json"}));
}

TEST(SystemdUnits, CronJobsBecomeOnCalendarLines) {
    auto a = make_job("a", "*/10 * * * *", ScheduleKind::kCron);
    auto b = make_job("b", "0 9 1 * mon-fri", ScheduleKind::kCron);
    auto units = systemd_units({a, b}, ExportOptions{});
    EXPECT_EQ(lines_starting(content_of(units, "mlkeeper-a.timer"), "OnCalendar="),
              std::vector<std::string>{"OnCalendar=*-*-* *:00/10:00"});
    EXPECT_EQ(lines_starting(content_of(units, "mlkeeper-b.timer"), "OnCalendar="),
              (std::vector<std::string>{"OnCalendar=Mon..Fri *-*-* 09:00:00",
                                        "OnCalendar=*-*-01 09:00:00"}));
    auto reboot = make_job("r", "@reboot", ScheduleKind::kCron);
    EXPECT_THAT(config_error_of([&] { systemd_units({reboot}, ExportOptions{}); }),
                HasSubstr("schedule.jobs.r: cron expression \"@reboot\""));
}

TEST(SystemdUnits, Systemd254GetsRestartModeDirect) {
    auto o = seed_options();
    auto old_units = systemd_units(default_jobs(), o);
    EXPECT_TRUE(
        lines_starting(content_of(old_units, "mlkeeper-backup.service"), "RestartMode=").empty());
    o.systemd_version = 254;
    auto units = systemd_units(default_jobs(), o);
    EXPECT_TRUE(has_line(content_of(units, "mlkeeper-backup.service"), "RestartMode=direct"));
    EXPECT_TRUE(lines_starting(content_of(units, "mlkeeper-gpu.service"), "RestartMode=").empty());
}

// ---------------------------------------------------------------------------------------------
// retries -> start rate limit

std::pair<std::string, std::string> start_limit_lines(const JobSpec& j) {
    auto units = systemd_units({j}, ExportOptions{});
    const auto& s = content_of(units, "mlkeeper-" + j.name + ".service");
    auto i = lines_starting(s, "StartLimitIntervalSec=");
    auto b = lines_starting(s, "StartLimitBurst=");
    return {i.empty() ? "" : i[0], b.empty() ? "" : b[0]};
}

TEST(StartLimit, StaysBelowTheGapBetweenRuns) {
    auto g = make_job("gpu", "*:0/5");
    g.retries = 2;
    g.retry_delay = seconds(30);
    // Every 5 min: the window is 300 s - 60 s of AccuracySec, not 2 x 30 s + 3 h of runs.
    EXPECT_EQ(start_limit_lines(g), std::make_pair(std::string("StartLimitIntervalSec=240"),
                                                   std::string("StartLimitBurst=3")));
    g.randomized_delay = seconds(100);
    EXPECT_EQ(start_limit_lines(g).first, "StartLimitIntervalSec=140");
}

TEST(StartLimit, CoversEveryAttemptWhenATimeoutBoundsThem) {
    auto b = make_job("backup", "*-*-* 02:00:00");
    b.retries = 2;
    b.retry_delay = seconds(300);
    b.timeout = seconds(600);
    // 2 x 300 s of delay + 3 x (600 s + 90 s of stop time).
    EXPECT_EQ(start_limit_lines(b).first, "StartLimitIntervalSec=2670");
    b.timeout = seconds(0);  // assume an hour per failing run
    EXPECT_EQ(start_limit_lines(b).first, "StartLimitIntervalSec=11400");
}

TEST(StartLimit, UnknownGapKeepsTheFullWindow) {
    auto j = make_job("odd", "*-*-* 02:00:30");  // seconds: beyond the cron subset
    j.retries = 1;
    j.retry_delay = seconds(60);
    EXPECT_EQ(start_limit_lines(j).first, "StartLimitIntervalSec=7260");
}

TEST(StartLimit, RareOrNeverElapsingSchedulesAreNotCapped) {
    auto leap = make_job("leap", "0 0 29 2 *", ScheduleKind::kCron);  // every 4 years
    leap.retries = 1;
    leap.retry_delay = seconds(60);
    EXPECT_EQ(start_limit_lines(leap).first, "StartLimitIntervalSec=7260");
    auto never = make_job("never", "*-02-30 00:00");
    never.retries = 1;
    never.retry_delay = seconds(60);
    EXPECT_EQ(start_limit_lines(never).first, "StartLimitIntervalSec=7260");
    // Cron's day OR: the 13th or any Friday, so two runs can be a day apart.
    auto either = make_job("either", "0 0 13 * 5", ScheduleKind::kCron);
    either.retries = 1;
    either.retry_delay = seconds(60);
    // min(60 + 2 x 3600, 86400 - 60 - 3600)
    EXPECT_EQ(start_limit_lines(either).first, "StartLimitIntervalSec=7260");
    either.retries = 20;
    either.retry_delay = seconds(3600);
    EXPECT_EQ(start_limit_lines(either).first, "StartLimitIntervalSec=82740");
}

TEST(StartLimit, RetriesThatCannotFitBetweenRunsAreRejected) {
    auto g = make_job("gpu", "*:0/5");
    g.retries = 8;
    g.retry_delay = seconds(30);
    EXPECT_THAT(config_error_of([&] { systemd_units({g}, ExportOptions{}); }),
                HasSubstr("schedule.jobs.gpu: 8 x 30 s of retry delay do not fit"));
    auto c = make_job("c", "*/2 * * * *", ScheduleKind::kCron);
    c.retries = 1;
    c.retry_delay = seconds(60);
    EXPECT_THAT(config_error_of([&] { systemd_units({c}, ExportOptions{}); }),
                HasSubstr("do not fit between two runs (120 s apart"));
}

// ---------------------------------------------------------------------------------------------
// validation

TEST(Validation, BadJobsAreConfigErrors) {
    auto run = [](JobSpec j) {
        return config_error_of([&] { systemd_units({j}, ExportOptions{}); });
    };
    auto j = make_job("ok", "daily");
    EXPECT_EQ(run(j), "(no ConfigError)");
    auto bad = j;
    bad.name = "Bad Name";
    EXPECT_THAT(run(bad), HasSubstr("job names may only use"));
    bad = j;
    bad.name = "";
    EXPECT_THAT(run(bad), HasSubstr("job names may only use"));
    bad = j;
    bad.description = "two\nlines";
    EXPECT_THAT(run(bad), HasSubstr("schedule.jobs.ok: the description must be one line"));
    bad = j;
    bad.schedule = "daily\n[Service]";
    EXPECT_THAT(run(bad), HasSubstr("the schedule must be one non-empty line"));
    bad = j;
    bad.schedule = "  ";
    EXPECT_THAT(run(bad), HasSubstr("the schedule must be one non-empty line"));
    bad = j;
    bad.builtin = "back up";
    EXPECT_THAT(run(bad), HasSubstr("is not a built-in task name"));
    bad = j;
    bad.kind = TaskKind::kCommand;
    EXPECT_THAT(run(bad), HasSubstr("needs a program"));
    bad.argv = {"bin/relative"};
    EXPECT_THAT(run(bad), HasSubstr("must be an absolute path or a bare name"));
    bad = j;
    bad.nice = 20;
    EXPECT_THAT(run(bad), HasSubstr("nice 20 is outside -20..19"));
    bad = j;
    bad.io_level = 8;
    EXPECT_THAT(run(bad), HasSubstr("ionice level 8"));
    bad = j;
    bad.cpu_quota_percent = 0;
    EXPECT_THAT(run(bad), HasSubstr("CPU quota"));
    bad = j;
    bad.memory_max = 0;
    EXPECT_THAT(run(bad), HasSubstr("memory limit"));
    bad = j;
    bad.retries = -1;
    EXPECT_THAT(run(bad), HasSubstr("retries cannot be negative"));
    bad = j;
    bad.retries = 1;
    bad.retry_delay = seconds(0);
    EXPECT_THAT(run(bad), HasSubstr("retry delay"));
    EXPECT_THAT(config_error_of([&] {
                    systemd_units({j, j}, ExportOptions{});
                }),
                HasSubstr("schedule.jobs.ok: defined twice"));
}

TEST(Validation, BadOptionsAreUsageErrors) {
    auto jobs = default_jobs();
    auto o = seed_options();
    o.binary = "mlkeeper";
    EXPECT_THROW(systemd_units(jobs, o), UsageError);
    EXPECT_THROW(crontab(jobs, o), UsageError);
    o = seed_options();
    o.config = "etc/mlkeeper.toml";
    EXPECT_THROW(systemd_units(jobs, o), UsageError);
    o = seed_options();
    o.user = "ml keeper";
    EXPECT_THROW(systemd_units(jobs, o), UsageError);
    o = seed_options();
    o.group = "";
    EXPECT_THROW(systemd_units(jobs, o), UsageError);
    o = seed_options();
    o.writes["backup"] = {"relative/dir"};
    EXPECT_THROW(systemd_units(jobs, o), UsageError);
    o = seed_options();
    o.alert_writes = {"/var/lib/x\ny"};
    EXPECT_THROW(systemd_units(jobs, o), UsageError);
    o = seed_options();
    o.log_dir = "logs";
    EXPECT_THROW(crontab(jobs, o), UsageError);
    o = seed_options();
    o.mailto = "a\nb";
    EXPECT_THROW(crontab(jobs, o), UsageError);
}

// ---------------------------------------------------------------------------------------------
// systemd-analyze verify

TEST(SystemdAnalyze, VerifyAcceptsTheExportedUnits) {
    if (!have("systemd-analyze")) {
        GTEST_SKIP() << "systemd-analyze not installed";
    }
    mlk::testing::TempDir t;
    fs::create_directories(t / "bin");
    fs::create_directories(t / "units");
    // verify checks that ExecStart's program exists and is executable.
    auto bin = t / "bin" / "mlkeeper";
    make_executable(bin, "#!/bin/sh\nexit 0\n");

    auto jobs = default_jobs();
    auto sync = make_job("sync", "0 9 1 * mon-fri", ScheduleKind::kCron);
    sync.kind = TaskKind::kCommand;
    sync.argv = {bin.native(), "a b", "it's", "100%", "$HOME", ";", "", "say \"hi\"", "x\\y"};
    sync.retries = 1;
    sync.retry_delay = seconds(60);
    sync.nice = 5;
    sync.io_class = IoClass::kIdle;
    sync.memory_max = 512ull << 20;
    jobs.push_back(sync);
    auto hourly = make_job("hourly-health", "@hourly", ScheduleKind::kCron);
    hourly.io_class = IoClass::kBestEffort;
    hourly.io_level = 6;
    hourly.nice = -5;
    hourly.timeout = seconds(120);
    jobs.push_back(hourly);

    ExportOptions o = seed_options();  // User=mlkeeper need not exist for verify
    o.binary = bin;
    o.config = t / "etc" / "mlkeeper.toml";
    o.writes["sync"] = {"/srv/model sync", "/home/mluser/cache", "/tmp/sync"};
    o.offline_jobs = {"hourly-health"};
    std::string files;
    for (const auto& u : systemd_units(jobs, o)) {
        std::ofstream(t / "units" / u.filename) << u.content;
        files += " " + util::shell_quote(u.filename);
    }
    // The template checked as the instance OnFailure= starts.
    files += " mlkeeper-alert@mlkeeper-backup.service.service";
    auto r = sh("cd " + util::shell_quote((t / "units").native()) +
                " && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no" + files);
    std::cout << "systemd-analyze verify (" << files << "): exit " << r.rc << ", output: [" << r.out
              << "]\n";
    EXPECT_EQ(r.rc, 0) << r.out;
    EXPECT_EQ(r.out, "") << "verify printed warnings";

    // The same check notices a problem, so the empty output above means something.
    std::ofstream(t / "units" / "mlkeeper-bad.service")
        << content_of(systemd_units({make_job("bad", "daily")}, o), "mlkeeper-bad.service")
        << "CPUQuota=lots\n";
    auto bad = sh("cd " + util::shell_quote((t / "units").native()) +
                  " && systemd-analyze verify --man=no mlkeeper-bad.service");
    EXPECT_THAT(bad.out, HasSubstr("Invalid CPU quota 'lots'")) << bad.out;
}

// ---------------------------------------------------------------------------------------------
// cron -> OnCalendar

TEST(CronToOnCalendar, CommonForms) {
    const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
        {"*/5 * * * *", {"*-*-* *:00/5:00"}},
        {"0 2 * * *", {"*-*-* 02:00:00"}},
        {"0 3 * * 0", {"Sun *-*-* 03:00:00"}},
        {"0 3 * * 7", {"Sun *-*-* 03:00:00"}},
        {"0 3 * * SUN", {"Sun *-*-* 03:00:00"}},
        {"30 * * * *", {"*-*-* *:30:00"}},
        {"* * * * *", {"*-*-* *:*:00"}},
        {"0 */6 * * *", {"*-*-* 00/6:00:00"}},
        {"0 9 * * 1-5", {"Mon..Fri *-*-* 09:00:00"}},
        {"0 9 * * mon-fri", {"Mon..Fri *-*-* 09:00:00"}},
        {"0 10 * * 1,3,5", {"Mon,Wed,Fri *-*-* 10:00:00"}},
        {"0 0 * * fri-sun", {"Fri..Sun *-*-* 00:00:00"}},
        {"0 0 * * 5-0", {"Fri..Sun *-*-* 00:00:00"}},
        {"0 0 * * 6,0", {"Sat,Sun *-*-* 00:00:00"}},
        {"0 0 * * 0-6", {"*-*-* 00:00:00"}},
        {"0 0 1 * *", {"*-*-01 00:00:00"}},
        {"0 0 1 1,4,7,10 *", {"*-01/3-01 00:00:00"}},
        {"0 0 1 1,7 *", {"*-01,07-01 00:00:00"}},
        {"0 0 1 */3 *", {"*-01/3-01 00:00:00"}},
        {"0 0 1 jan,JUL *", {"*-01,07-01 00:00:00"}},
        {"15,45 8-18 * * *", {"*-*-* 08..18:15,45:00"}},
        {"5-59/10 * * * *", {"*-*-* *:05/10:00"}},
        {"5/10 * * * *", {"*-*-* *:05/10:00"}},
        {"0-30/10 * * * *", {"*-*-* *:00,10,20,30:00"}},
        {"0 0 */2 * *", {"*-*-01/2 00:00:00"}},
        {"0 0 1-31 * 1", {"Mon *-*-* 00:00:00"}},
        {"  0   2 * *   *  ", {"*-*-* 02:00:00"}},
        {"@daily", {"*-*-* 00:00:00"}},
        {"@midnight", {"*-*-* 00:00:00"}},
        {"@hourly", {"*-*-* *:00:00"}},
        {"@weekly", {"Sun *-*-* 00:00:00"}},
        {"@monthly", {"*-*-01 00:00:00"}},
        {"@yearly", {"*-01-01 00:00:00"}},
        {"@annually", {"*-01-01 00:00:00"}},
        // Vixie: both day fields restricted -> either matches; systemd ORs OnCalendar= lines.
        {"0 9 1 * mon-fri", {"Mon..Fri *-*-* 09:00:00", "*-*-01 09:00:00"}},
        {"0 0 */2 * 1", {"Mon *-*-* 00:00:00", "*-*-01/2 00:00:00"}},
        {"0 0 13 * 5", {"Fri *-*-* 00:00:00", "*-*-13 00:00:00"}},
        {"0 0 13 2 5", {"Fri *-02-* 00:00:00", "*-02-13 00:00:00"}},
    };
    for (const auto& [cron, want] : cases) {
        EXPECT_EQ(cron_to_on_calendar(cron), want) << cron;
    }
}

TEST(CronToOnCalendar, RejectsWhatItCannotConvert) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"@reboot", "no calendar equivalent"},
        {"@every_5m", "unknown macro"},
        {"", "expected 5 fields"},
        {"0 0 * *", "expected 5 fields"},
        {"0 0 0 * * *", "expected 5 fields"},
        {"60 * * * *", "minute field \"60\": 60 is out of range 0-59"},
        {"* 24 * * *", "hour field"},
        {"* * 0 * *", "day-of-month field"},
        {"* * 32 * *", "day-of-month field"},
        {"* * * 13 *", "month field"},
        {"* * * * 8", "day-of-week field"},
        {"*/0 * * * *", "step"},
        {"*/x * * * *", "step"},
        {"5-1 * * * *", "runs backwards"},
        {"L * * * *", "not a valid value"},
        {"0 0 L * *", "not a valid value"},
        {"0 0 15W * *", "not a valid value"},
        {"0 0 * * 1#2", "not a valid value"},
        {"H * * * *", "not a valid value"},
        {"1,,2 * * * *", "empty list element"},
        {"0 0 * * mon-", "not a valid value"},
        {"0 0 * foo *", "not a valid value"},
        {"0 0 * * monday", "not a valid value"},
    };
    for (const auto& [cron, why] : cases) {
        const std::string& expr = cron;  // clang 14 cannot capture structured bindings
        std::string err = config_error_of([&] { cron_to_on_calendar(expr); });
        EXPECT_THAT(err, HasSubstr("cron expression \"" + cron + "\"")) << cron;
        EXPECT_THAT(err, HasSubstr(why)) << cron;
    }
}

// ---------------------------------------------------------------------------------------------
// OnCalendar -> cron

TEST(CalendarToCron, CommonForms) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"*-*-* 02:00:00", "0 2 * * *"},
        {"*:0/5", "*/5 * * * *"},
        {"Sun 03:00", "0 3 * * 0"},
        {"Sun 01:00", "0 1 * * 0"},
        {"minutely", "* * * * *"},
        {"hourly", "0 * * * *"},
        {"daily", "0 0 * * *"},
        {"Daily", "0 0 * * *"},
        {"weekly", "0 0 * * 1"},
        {"monthly", "0 0 1 * *"},
        {"yearly", "0 0 1 1 *"},
        {"annually", "0 0 1 1 *"},
        {"quarterly", "0 0 1 */3 *"},
        {"semiannually", "0 0 1 1,7 *"},
        {"*-*-01 00:00", "0 0 1 * *"},
        {"Mon..Fri 09:00", "0 9 * * 1-5"},
        {"Mon-Fri 9:00", "0 9 * * 1-5"},
        {"mon..fri 09:00", "0 9 * * 1-5"},
        {"Monday 1:00", "0 1 * * 1"},
        {"Mon,Wed,Fri 10:00", "0 10 * * 1,3,5"},
        {"Tue,Thu 14:00", "0 14 * * 2,4"},
        {"Sat,Sun 12:00", "0 12 * * 0,6"},
        {"Fri..Sun 1:00", "0 1 * * 0,5,6"},
        {"Mon..Sun 5:00", "0 5 * * *"},
        {"*:30", "30 * * * *"},
        {"0/6:00", "0 */6 * * *"},
        {"*-*-1/2 0:0", "0 0 1-31/2 * *"},
        {"*-1/3-1 06:30", "30 6 1 */3 *"},
        {"*-*-* 8..18:15,45", "15,45 8-18 * * *"},
        {"*-*-* *:5/10:00", "5-59/10 * * * *"},
        {"*-*-* 9..17/2:00", "0 9,11,13,15,17 * * *"},
        {"*-*-* 02:00:00.000", "0 2 * * *"},
        {"*-02-29 12:00", "0 12 29 2 *"},
        {"12-25", "0 0 25 12 *"},
        {"Mon *-*-*", "0 0 * * 1"},
        {"Mon *-*-1..31 03:00", "0 3 * * 1"},
        {"*-*-* *:*", "* * * * *"},
    };
    for (const auto& [cal, want] : cases) {
        EXPECT_EQ(calendar_to_cron(cal), want) << cal;
    }
}

TEST(CalendarToCron, RejectsWhatCronCannotExpress) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"*-*-* 02:00:30", "seconds \"30\""},
        {"*:*:*", "seconds"},
        {"*-*-* *:*:0/30", "seconds"},
        {"*-*-* 02:00:00.5", "seconds"},
        {"2025-*-* 00:00", "year \"2025\""},
        {"2025-01-01", "year"},
        {"*-02~01", "'~'"},
        {"*-*~07/1", "'~'"},
        {"*-*-* 00:00 UTC", "time zone \"UTC\""},
        {"daily Europe/Berlin", "time zone \"Europe/Berlin\""},
        {"Sat *-*-1..7 18:00", "both the weekday and the day of the month"},
        {"Mon *-*-01", "both the weekday and the day of the month"},
        {"@1700000000", "@EPOCH"},
        {"", "empty"},
        {"*:*/5", "not valid; write 0/5"},
        {"*-13-01", "outside 1..12"},
        {"*-*-32", "outside 1..31"},
        {"*-*-* 24:00", "outside 0..23"},
        {"*:60", "outside 0..59"},
        {"*-*-5..3", "runs backwards"},
        {"Funday 10:00", "not a weekday list"},
        {"Sun..Mon", "not a weekday list"},
        {"*-*-* 1:2:3:4", "not a time"},
        {"1-2-3-4", "not a date"},
        {"*:0/0", "bad repetition"},
        {"*-*-* 0x10:00", "not a valid hour"},
    };
    for (const auto& [cal, why] : cases) {
        const std::string& expr = cal;  // clang 14 cannot capture structured bindings
        std::string err = config_error_of([&] { calendar_to_cron(expr); });
        EXPECT_THAT(err, HasSubstr("calendar expression \"" + cal + "\"")) << cal;
        EXPECT_THAT(err, HasSubstr(why)) << cal;
    }
}

// ---------------------------------------------------------------------------------------------
// Both conversions checked against the real implementations: systemd-analyze for OnCalendar,
// croniter for cron, over the same instants.

constexpr int kIterations = 25;
const char* const kBase = "2024-01-01 00:00:00";

struct Elapses {
    std::string normalized;
    std::vector<std::string> times;  // "2024-01-01 00:05:00"
};

Elapses systemd_elapses(const std::string& expr) {
    auto r = sh("TZ=UTC systemd-analyze calendar --iterations=" + std::to_string(kIterations) +
                " --base-time=" + util::shell_quote(std::string(kBase) + " UTC") + " " +
                util::shell_quote(expr));
    Elapses e;
    if (r.rc != 0) {
        e.normalized = "FAILED: " + r.out;
        return e;
    }
    for (const auto& line : lines_of(r.out)) {
        auto t = std::string(util::trim(line));
        if (t.rfind("Normalized form: ", 0) == 0) {
            e.normalized = t.substr(17);
        } else if (t.rfind("Next elapse: ", 0) == 0 || t.rfind("Iter. #", 0) == 0) {
            auto colon = t.find(": ");
            std::string stamp = t.substr(colon + 2);  // "Mon 2024-01-01 00:05:00 UTC"
            e.times.push_back(stamp.substr(4, 19));
        }
    }
    return e;
}

std::vector<std::vector<std::string>> croniter_elapses(const std::string& python,
                                                       const std::vector<std::string>& exprs) {
    std::string script =
        "import sys, datetime, croniter\n"
        "base = datetime.datetime(2024, 1, 1)\n"
        "for e in sys.argv[2:]:\n"
        "    it = croniter.croniter(e, base)\n"
        "    print('|'.join(it.get_next(datetime.datetime).strftime('%Y-%m-%d %H:%M:%S')\n"
        "                   for _ in range(int(sys.argv[1]))))\n";
    std::string cmd =
        python + " -c " + util::shell_quote(script) + " " + std::to_string(kIterations);
    for (const auto& e : exprs) {
        cmd += " " + util::shell_quote(e);
    }
    auto r = sh(cmd);
    std::vector<std::vector<std::string>> out;
    if (r.rc != 0) {
        ADD_FAILURE() << "croniter failed: " << r.out;
        return out;
    }
    for (const auto& line : lines_of(r.out)) {
        out.push_back(util::split(line, '|'));
    }
    return out;
}

TEST(ScheduleConversion, CronToOnCalendarAgreesWithSystemdAndCroniter) {
    auto python = croniter_python();
    if (!have("systemd-analyze") || !python) {
        GTEST_SKIP() << "needs systemd-analyze and python3-croniter";
    }
    const std::vector<std::string> exprs = {
        "*/5 * * * *",      "0 2 * * *",      "0 3 * * 0",       "0 3 * * 7",       "0 */6 * * *",
        "0 9 * * mon-fri",  "0 10 * * 1,3,5", "0 0 * * fri-sun", "0 0 1 * *",       "0 0 1 */3 *",
        "15,45 8-18 * * *", "5/10 * * * *",   "0 0 */2 * *",     "0 9 1 * mon-fri", "0 0 */2 * 1",
        "0 0 13 * 5",       "0 0 31 * *",     "0 0 29 2 *",      "7 3-5 */7 * *",   "0 12 * 2 1",
        "0 0 1,15 * 3",     "30 4 1-7 * sat", "@weekly",         "@monthly",        "0 0 1-31 * 1",
        "0 0 * * 0-6",      "0-30/10 1 * * *"};
    auto cron_times = croniter_elapses(*python, exprs);
    ASSERT_EQ(cron_times.size(), exprs.size());
    for (std::size_t i = 0; i < exprs.size(); ++i) {
        std::vector<std::string> merged;
        for (const auto& line : cron_to_on_calendar(exprs[i])) {
            auto e = systemd_elapses(line);
            // We emit systemd's normalized form, so systemd must give back the same text.
            EXPECT_EQ(e.normalized, line) << exprs[i];
            merged.insert(merged.end(), e.times.begin(), e.times.end());
        }
        std::sort(merged.begin(), merged.end());
        merged.erase(std::unique(merged.begin(), merged.end()), merged.end());
        merged.resize(std::min<std::size_t>(merged.size(), kIterations));
        EXPECT_EQ(merged, cron_times[i]) << exprs[i];
    }
}

TEST(ScheduleConversion, CalendarToCronAgreesWithSystemdAndCroniter) {
    auto python = croniter_python();
    if (!have("systemd-analyze") || !python) {
        GTEST_SKIP() << "needs systemd-analyze and python3-croniter";
    }
    const std::vector<std::string> cals = {"*-*-* 02:00:00",  "*:0/5",
                                           "Sun 03:00",       "Sun 01:00",
                                           "hourly",          "daily",
                                           "weekly",          "monthly",
                                           "quarterly",       "semiannually",
                                           "yearly",          "*-*-01 00:00",
                                           "Mon..Fri 09:00",  "Mon,Wed,Fri 10:00",
                                           "Fri..Sun 1:00",   "*:30",
                                           "0/6:00",          "*-*-1/2 0:0",
                                           "*-1/3-1 06:30",   "*-*-* 8..18:15,45",
                                           "*-*-* *:5/10:00", "*-*-* 9..17/2:00",
                                           "*-02-29 12:00",   "*-*-31 23:59"};
    std::vector<std::string> crons;
    for (const auto& c : cals) {
        crons.push_back(calendar_to_cron(c));
    }
    auto cron_times = croniter_elapses(*python, crons);
    ASSERT_EQ(cron_times.size(), cals.size());
    for (std::size_t i = 0; i < cals.size(); ++i) {
        auto e = systemd_elapses(cals[i]);
        EXPECT_EQ(e.times, cron_times[i]) << cals[i] << " -> " << crons[i];
    }
}

// ---------------------------------------------------------------------------------------------
// crontab

TEST(Crontab, EquivalentToTheSeedCrontab) {
    auto text = crontab(default_jobs(), seed_options());
    for (const char* line : {
             "SHELL=/bin/sh",
             "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "MAILTO=root",
             "0 2 * * * mlkeeper sleep $(($(od -An -N4 -tu4 /dev/urandom) \\% 600)) && flock -n "
             "/run/lock/mlkeeper-backup.lock /usr/bin/mlkeeper --config "
             "/etc/mlkeeper/mlkeeper.toml backup >> /var/log/mlkeeper/backup.log 2>&1",
             "*/5 * * * * mlkeeper flock -n /run/lock/mlkeeper-gpu.lock /usr/bin/mlkeeper "
             "--config /etc/mlkeeper/mlkeeper.toml gpu >> /var/log/mlkeeper/gpu.log 2>&1",
             "0 3 * * 0 mlkeeper sleep $(($(od -An -N4 -tu4 /dev/urandom) \\% 1800)) && flock -n "
             "/run/lock/mlkeeper-cleanup.lock /usr/bin/mlkeeper --config "
             "/etc/mlkeeper/mlkeeper.toml cleanup >> /var/log/mlkeeper/cleanup.log 2>&1",
             "0 1 * * 0 mlkeeper sleep $(($(od -An -N4 -tu4 /dev/urandom) \\% 1800)) && flock -n "
             "/run/lock/mlkeeper-maintain.lock timeout -k 90 3600 /usr/bin/mlkeeper --config "
             "/etc/mlkeeper/mlkeeper.toml maintain >> /var/log/mlkeeper/maintain.log 2>&1",
             "# Not enforced by cron: catch-up of runs missed while down (Persistent=), "
             "MemoryMax=2G, CPUQuota=50%, 2 retries",
         }) {
        EXPECT_TRUE(has_line(text, line)) << "missing\n" << line << "\nin\n" << text;
    }
}

TEST(Crontab, EveryLineIsAValidCronDEntry) {
    auto jobs = default_jobs();
    auto extra = make_job("nightly", "0 9 1 * mon-fri", ScheduleKind::kCron);
    extra.nice = 10;
    extra.io_class = IoClass::kBestEffort;
    extra.io_level = 7;
    jobs.push_back(extra);
    jobs.push_back(make_job("quarterly", "quarterly"));
    auto text = crontab(jobs, seed_options());
    std::vector<std::string> schedules;
    for (const auto& line : lines_of(text)) {
        if (line.empty() || line[0] == '#') {
            continue;
        }
        if (line.find('=') != std::string::npos && line.find(' ') == std::string::npos) {
            continue;  // SHELL=, PATH=, MAILTO=
        }
        auto f = util::split_ws(line);
        ASSERT_GE(f.size(), 8u) << line;
        EXPECT_EQ(f[5], "mlkeeper") << line;
        // cron turns a bare '%' into a newline: every one must be escaped.
        for (std::size_t i = line.find('%'); i != std::string::npos; i = line.find('%', i + 1)) {
            EXPECT_EQ(line[i - 1], '\\') << line;
        }
        EXPECT_THAT(line, HasSubstr(" flock -n /run/lock/mlkeeper-"));
        EXPECT_TRUE(line.ends_with(".log 2>&1")) << line;
        schedules.push_back(util::join(std::vector<std::string>(f.begin(), f.begin() + 5), " "));
    }
    ASSERT_EQ(schedules.size(), jobs.size());
    EXPECT_EQ(schedules[4], "0 9 1 * 1-5");
    EXPECT_EQ(schedules[5], "0 0 1 */3 *");
    EXPECT_TRUE(has_line(text,
                         "0 9 1 * 1-5 mlkeeper flock -n /run/lock/mlkeeper-nightly.lock "
                         "nice -n 10 ionice -c 2 -n 7 /usr/bin/mlkeeper --config "
                         "/etc/mlkeeper/mlkeeper.toml health >> "
                         "/var/log/mlkeeper/nightly.log 2>&1"))
        << text;

    auto python = croniter_python();
    if (!python) {
        GTEST_SKIP() << "python3-croniter not installed";
    }
    std::string cmd = *python +
                      " -c 'import sys, croniter\nfor e in sys.argv[1:]:\n"
                      "    assert croniter.croniter.is_valid(e), e\n    croniter.croniter(e)\n"
                      "print(\"ok\")'";
    for (const auto& s : schedules) {
        cmd += " " + util::shell_quote(s);
    }
    auto r = sh(cmd);
    EXPECT_EQ(r.rc, 0) << r.out;
    EXPECT_EQ(r.out, "ok\n");
}

// Runs each line's command the way cron would: '\%' becomes '%', then /bin/sh -c.
TEST(Crontab, LinesRunUnderShWithLockLogAndDelay) {
    if (!have("flock") || !have("od") || !have("timeout")) {
        GTEST_SKIP() << "needs flock, od and timeout";
    }
    mlk::testing::TempDir t;
    fs::create_directories(t / "lock");
    fs::create_directories(t / "log");
    auto bin = t / "fake mlkeeper";
    auto args_file = t / "args";
    make_executable(bin, "#!/bin/sh\nprintf '%s\\n' \"$@\" > " +
                             util::shell_quote(args_file.native()) + "\necho ran\n");

    auto builtin = make_job("backup", "daily");
    builtin.builtin = "backup";
    builtin.randomized_delay = seconds(1);
    builtin.timeout = seconds(30);
    builtin.nice = 5;
    auto cmd = make_job("cmd", "*/5 * * * *", ScheduleKind::kCron);
    cmd.kind = TaskKind::kCommand;
    cmd.argv = {bin.native(), "it's", "100%", "a b", "$HOME", "", "*"};
    ExportOptions o;
    o.binary = bin;
    o.config = "/etc/mlkeeper/x.toml";
    o.lock_dir = t / "lock";
    o.log_dir = t / "log";
    auto text = crontab({builtin, cmd}, o);

    std::map<std::string, std::vector<std::string>> want = {
        {"backup", {"--config", "/etc/mlkeeper/x.toml", "backup"}},
        {"cmd", {"it's", "100%", "a b", "$HOME", "", "*"}},
    };
    int ran = 0;
    for (const auto& line : lines_of(text)) {
        if (line.empty() || line[0] == '#' || line.find("=") < line.find(' ')) {
            continue;
        }
        // The command is everything after the 5 schedule fields and the user.
        std::size_t pos = 0;
        for (int i = 0; i < 6; ++i) {
            pos = line.find(' ', line.find_first_not_of(' ', pos));
        }
        std::string command = line.substr(line.find_first_not_of(' ', pos));
        for (std::size_t at = 0; (at = command.find("\\%", at)) != std::string::npos; ++at) {
            command.replace(at, 2, "%");
        }
        std::string name =
            command.find("mlkeeper-backup.lock") != std::string::npos ? "backup" : "cmd";
        fs::remove(args_file);
        auto r = sh(command, 30);
        ASSERT_EQ(r.rc, 0) << command << "\n" << r.out;
        EXPECT_EQ(r.out, "");  // all output goes to the log
        auto got = lines_of(mlk::testing::slurp(args_file));
        EXPECT_EQ(got, want.at(name)) << command;
        EXPECT_EQ(mlk::testing::slurp(t / "log" / (name + ".log")), "ran\n");

        // While another run holds the lock, the line does nothing (flock -n fails at once).
        int fd =
            ::open((t / "lock" / ("mlkeeper-" + name + ".lock")).c_str(), O_RDWR | O_CREAT, 0600);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::flock(fd, LOCK_EX), 0);
        fs::remove(args_file);
        auto busy = sh(command, 30);
        EXPECT_NE(busy.rc, 0);
        EXPECT_FALSE(fs::exists(args_file)) << "ran despite the lock";
        ::close(fd);
        ++ran;
    }
    EXPECT_EQ(ran, 2);
}

TEST(Crontab, CronJobsAreNormalizedAndRebootIsKept) {
    auto a = make_job("a", "0 0 */2 * mon", ScheduleKind::kCron);
    auto b = make_job("b", "@reboot", ScheduleKind::kCron);
    auto c = make_job("c", "5/10 * * * *", ScheduleKind::kCron);
    auto d = make_job("d", "@daily", ScheduleKind::kCron);
    auto text = crontab({a, b, c, d}, ExportOptions{});
    // "*/2" would make cronie AND the day fields; croniter and we OR them when both restrict.
    EXPECT_FALSE(lines_starting(text, "0 0 1-31/2 * 1 mlkeeper ").empty()) << text;
    EXPECT_FALSE(lines_starting(text, "@reboot mlkeeper ").empty()) << text;
    EXPECT_FALSE(lines_starting(text, "5-59/10 * * * * mlkeeper ").empty()) << text;
    EXPECT_FALSE(lines_starting(text, "0 0 * * * mlkeeper ").empty()) << text;
}

TEST(Crontab, MailtoEmptyMeansNoMail) {
    ExportOptions o;
    o.mailto = "";
    EXPECT_TRUE(has_line(crontab(default_jobs(), o), "MAILTO=\"\""));
    o.mailto = "ml-ops@company.com";
    EXPECT_TRUE(has_line(crontab(default_jobs(), o), "MAILTO=ml-ops@company.com"));
}

TEST(Crontab, WhatCronCannotExpressIsAnError) {
    EXPECT_THAT(
        config_error_of([] { crontab({make_job("x", "*-*-* 02:00:30")}, ExportOptions{}); }),
        HasSubstr("schedule.jobs.x: calendar expression \"*-*-* 02:00:30\": seconds"));
    EXPECT_THAT(
        config_error_of([] { crontab({make_job("y", "Sat *-*-1..7 18:00")}, ExportOptions{}); }),
        HasSubstr("schedule.jobs.y: "));
    auto bs = make_job("bs", "daily");
    bs.kind = TaskKind::kCommand;
    bs.argv = {"/bin/echo", "a\\b"};
    EXPECT_THAT(config_error_of([&] { crontab({bs}, ExportOptions{}); }),
                HasSubstr("schedule.jobs.bs: \"a\\b\": a backslash"));
    auto nl = bs;
    nl.argv = {"/bin/echo", "a\tb"};
    EXPECT_THAT(config_error_of([&] { crontab({nl}, ExportOptions{}); }),
                HasSubstr("control characters"));
    auto longcmd = bs;
    longcmd.argv = {"/bin/echo", std::string(1000, 'x')};
    EXPECT_THAT(config_error_of([&] { crontab({longcmd}, ExportOptions{}); }),
                HasSubstr("Vixie cron cuts commands"));
    // systemd has none of these limits.
    longcmd.name = "longcmd";
    EXPECT_NO_THROW(systemd_units({bs, longcmd}, ExportOptions{}));
}

TEST(CronQuote, ShellWordsWithEscapedPercent) {
    EXPECT_EQ(cron_quote("plain-word_1.2:/x=y,z@h+"), "plain-word_1.2:/x=y,z@h+");
    EXPECT_EQ(cron_quote(""), "''");
    EXPECT_EQ(cron_quote("a b"), "'a b'");
    EXPECT_EQ(cron_quote("it's"), "'it'\"'\"'s'");
    EXPECT_EQ(cron_quote("100%"), "'100\\%'");
    EXPECT_EQ(cron_quote("$HOME"), "'$HOME'");
    EXPECT_EQ(cron_quote("*"), "'*'");
    EXPECT_THROW(cron_quote("a\\b"), ConfigError);
    EXPECT_THROW(cron_quote("a\nb"), ConfigError);
    EXPECT_THROW(cron_quote(std::string("\x7f", 1)), ConfigError);
}

}  // namespace
}  // namespace mlk::sched
