// Black-box tests of what the Debian package installs besides the binary: the logrotate
// configuration (accepted by logrotate, the seeds' policy for every log file mlkeeper writes, and
// no line lost when an agent's log is rotated under it), the committed units and crontab (equal
// to a fresh `schedule export`, accepted by systemd-analyze), the man page and bash completion
// generated at build time, and the .deb's install/remove cycle. Each check that needs a tool
// skips when the tool is missing; the .deb cycle runs only as the ctest test packaging_deb
// (MLK_TEST_DEB=1, RUN_SERIAL), as root, because it installs the package on this machine.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "mlkeeper/util/process.hpp"
#include "support/mlkeeper_runner.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace mlk::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const fs::path kSource = MLK_SOURCE_DIR;
const fs::path kBuild = fs::path(MLK_BINARY).parent_path();
constexpr const char* kPostrotate = "systemctl reload mlkeeper-agent.service";

bool have(const std::string& program) {
    return util::run_process({"/bin/sh", "-c", "command -v " + program}).ok();
}

util::RunResult run(const std::vector<std::string>& argv, std::chrono::seconds limit = 60s) {
    util::RunOptions o;
    o.timeout = limit;
    return util::run_process(argv, o);
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        out.push_back(line);
    }
    return out;
}

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t");
    const auto e = s.find_last_not_of(" \t");
    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// logrotate's configuration as file -> its directives ("daily", "rotate 30", "postrotate:CMD").
std::map<std::string, std::vector<std::string>> parse_logrotate(const std::string& text) {
    std::map<std::string, std::vector<std::string>> out;
    std::vector<std::string> files, body;
    bool in_stanza = false, in_script = false;
    for (const auto& raw : lines_of(text)) {
        const auto line = trim(raw);
        if (line.empty() || line[0] == '#') {
            continue;
        }
        if (in_script) {
            if (line == "endscript") {
                in_script = false;
            } else {
                body.push_back("postrotate:" + line);
            }
        } else if (!in_stanza && line.back() == '{') {
            std::istringstream names(line.substr(0, line.size() - 1));
            files.clear();
            for (std::string f; names >> f;) {
                files.push_back(f);
            }
            body.clear();
            in_stanza = true;
        } else if (in_stanza && line == "}") {
            for (const auto& f : files) {
                EXPECT_EQ(out.count(f), 0u) << f << " is named twice (logrotate refuses that)";
                out[f] = body;
            }
            in_stanza = false;
        } else if (in_stanza && line == "postrotate") {
            in_script = true;
        } else if (in_stanza) {
            body.push_back(line);
        } else {
            ADD_FAILURE() << "directive outside a stanza: " << line;
        }
    }
    EXPECT_FALSE(in_stanza || in_script) << "unterminated stanza";
    return out;
}

bool has(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

// The packaged logrotate file pointed at a test directory: /var/log/mlkeeper/X -> dir/X,
// /var/log/X -> dir/seed/X, no `su` (the mlkeeper account need not exist here) and `postrotate`
// sending `postrotate_cmd` instead of reloading the systemd unit.
std::string test_logrotate_config(const fs::path& dir, const std::string& postrotate_cmd) {
    const auto text = slurp(kSource / "packaging/logrotate/mlkeeper");
    std::string out;
    int replaced = 0;
    for (auto line : lines_of(text)) {
        if (trim(line).rfind("su ", 0) == 0) {
            continue;
        }
        if (line.find(kPostrotate) != std::string::npos) {
            line = "        " + postrotate_cmd;
            ++replaced;
        }
        line = std::regex_replace(line, std::regex("/var/log/mlkeeper/"), dir.string() + "/");
        line = std::regex_replace(line, std::regex("/var/log/"), (dir / "seed").string() + "/");
        out += line + "\n";
    }
    EXPECT_GE(replaced, 1) << "no postrotate line with '" << kPostrotate << "'";
    return out;
}

fs::path write_private(const fs::path& path, const std::string& text) {
    std::ofstream(path) << text;
    // logrotate (as root) ignores configuration files others may write.
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                              fs::perms::others_read);
    return path;
}

// A setting's effective value; an empty `file`: the built-in default.
nlohmann::json config_value(const MlkeeperRunner& mk, const fs::path& file, const char* section,
                            const char* key) {
    std::vector<std::string> args{"config", "show", "--json"};
    if (!file.empty()) {
        args.insert(args.begin(), {"--config", file.string()});
    }
    const auto r = mk.run(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out)["settings"][section][key]["value"];
}

// ---- logrotate --------------------------------------------------------------------------------

TEST(Packaging, LogrotateCoversEveryLogWithTheSeedsPolicy) {
    const auto conf = parse_logrotate(slurp(kSource / "packaging/logrotate/mlkeeper"));
    struct Policy {
        std::string period;
        int keep;
        bool compressed;
    };
    const Policy daily30{"daily", 30, true}, daily14{"daily", 14, true}, weekly8{"weekly", 8, true},
        monthly12{"monthly", 12, true}, csv{"weekly", 12, false};
    // The seed scripts' files, which mlkeeper writes as root without [log] log_file
    // (docs/CONFIG.md), and gpu.metrics_file's default.
    std::map<std::string, Policy> want{
        {"/var/log/ml-backup.log", daily30},        {"/var/log/gpu-monitor.log", daily30},
        {"/var/log/ml-health-check.log", daily14},  {"/var/log/ml-cleanup.log", weekly8},
        {"/var/log/ml-maintenance.log", monthly12}, {"/var/log/gpu-metrics.csv", csv}};
    // The packaged configuration's log file and metrics CSV.
    MlkeeperRunner mk;
    const auto packaged = kSource / "packaging/mlkeeper.toml";
    want[config_value(mk, packaged, "log", "log_file").get<std::string>()] = daily30;
    want[config_value(mk, packaged, "gpu", "metrics_file").get<std::string>()] = csv;
    EXPECT_EQ(config_value(mk, {}, "gpu", "metrics_file"), "/var/log/gpu-metrics.csv");
    // Where the crontab's jobs append their output.
    const std::map<std::string, Policy> by_job{{"backup", daily30},
                                               {"gpu", daily30},
                                               {"health", daily14},
                                               {"cleanup", weekly8},
                                               {"maintain", monthly12}};
    const auto cron = slurp(kSource / "packaging/cron/mlkeeper");
    const std::regex appended(R"(>> (/\S+/([a-z]+)\.log) 2>&1)");
    int cron_logs = 0;
    for (std::sregex_iterator it(cron.begin(), cron.end(), appended), end; it != end; ++it) {
        ASSERT_TRUE(by_job.count((*it)[2])) << (*it)[0];
        want[(*it)[1]] = by_job.at((*it)[2]);
        ++cron_logs;
    }
    EXPECT_EQ(cron_logs, 4) << cron;
    for (const auto& job : {"health"}) {  // a job the crontab may get
        want["/var/log/mlkeeper/" + std::string(job) + ".log"] = by_job.at(job);
    }

    for (const auto& [file, policy] : want) {
        SCOPED_TRACE(file);
        ASSERT_TRUE(conf.count(file)) << "not rotated";
        const auto& d = conf.at(file);
        EXPECT_TRUE(has(d, policy.period));
        EXPECT_TRUE(has(d, "rotate " + std::to_string(policy.keep)));
        EXPECT_TRUE(has(d, policy.compressed ? "compress" : "nocompress"));
        if (policy.compressed) {
            EXPECT_TRUE(has(d, "delaycompress"));  // a writer may still finish its lines in .1
        }
        EXPECT_TRUE(has(d, "missingok"));
        EXPECT_TRUE(has(d, "create"));
        EXPECT_FALSE(has(d, "copytruncate"));
    }
    // Every file an agent may hold open gets the reload; the package's directory is rotated as
    // the mlkeeper user.
    const auto log_file = config_value(mk, packaged, "log", "log_file").get<std::string>();
    for (const auto& [file, d] : conf) {
        SCOPED_TRACE(file);
        EXPECT_TRUE(want.count(file)) << "rotated, but not a file mlkeeper writes";
        const bool reload = std::any_of(d.begin(), d.end(), [](const std::string& s) {
            return s.find(kPostrotate) != std::string::npos;
        });
        const bool seed_log =
            file.rfind("/var/log/mlkeeper/", 0) != 0 && fs::path(file).extension() == ".log";
        EXPECT_EQ(reload, file == log_file || seed_log);
        EXPECT_EQ(has(d, "su mlkeeper mlkeeper"), file.rfind("/var/log/mlkeeper/", 0) == 0);
    }
}

TEST(Packaging, LogrotateAcceptsTheConfiguration) {
    if (!have("logrotate")) {
        GTEST_SKIP() << "logrotate not installed";
    }
    TempDir dir;
    fs::create_directories(dir / "seed");
    const auto conf =
        write_private(dir / "logrotate.conf", test_logrotate_config(dir.path(), "true"));
    std::ofstream(dir / "mlkeeper.log") << "a line\n";
    std::ofstream(dir / "gpu-metrics.csv") << "timestamp,gpu\n1,0\n";
    const auto r = run({"logrotate", "-d", "-s", (dir / "state").string(), conf.string()});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(r.err.find("error"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("considering log " + (dir / "mlkeeper.log").string()), std::string::npos)
        << r.err;

    // It fails on a broken file, so the checks above can fail too.
    const auto broken = write_private(dir / "broken.conf", "/x/y.log {\n    rotate x\n}\n");
    const auto b = run({"logrotate", "-d", "-s", (dir / "state").string(), broken.string()});
    EXPECT_TRUE(b.exit_code != 0 || b.err.find("error") != std::string::npos) << b.err;
}

// The agent writes its log file while logrotate renames it twice (-f); the postrotate script
// sends it SIGHUP. Every run the run log knows must be in the log files afterwards: the agent's
// own "starting"/"succeeded" lines and the line each job appends itself.
TEST(Packaging, ForcedRotationUnderARunningAgentLosesNoLines) {
    if (!have("logrotate") || !have("gzip")) {
        GTEST_SKIP() << "logrotate or gzip not installed";
    }
    MlkeeperRunner mk;
    const auto logs = mk.dir() / "logs";
    fs::create_directories(logs / "seed");
    const auto log = logs / "mlkeeper.log";
    const auto config = mk.dir().write(
        "mlkeeper.toml", "[log]\nlog_file = \"" + log.string() +
                             "\"\n\n[schedule]\ndefault_jobs = false\nstop_timeout = 2\n\n"
                             "[schedule.jobs.tick]\ncommand = [\"/bin/sh\", \"-c\", "
                             "\"echo tick-run-$MLKEEPER_RUN_ID >> " +
                             log.string() + "\"]\non_calendar = \"*:*:*\"\npersistent = false\n");
    util::RunOptions o;
    o.kill_grace = 5000ms;
    auto agent = util::Subprocess::start(mk.command_line({"--config", config.string(), "agent"}), o,
                                         util::Subprocess::Output::kToFile, mk.dir() / "agent.out");
    const auto conf =
        write_private(mk.dir() / "logrotate.conf",
                      test_logrotate_config(logs, "kill -HUP " + std::to_string(agent.pid())));

    auto finished_runs = [&] {
        const auto r = mk.run({"schedule", "history", "-n", "10000", "--json"});
        auto j = nlohmann::json::parse(r.out, nullptr, false);
        int n = 0;
        for (const auto& run : j.is_array() ? j : nlohmann::json::array()) {
            n += run["outcome"].is_string() ? 1 : 0;
        }
        return n;
    };
    auto rotate = [&] {
        const auto r =
            run({"logrotate", "-f", "-s", (mk.dir() / "lr.state").string(), conf.string()});
        EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    };
    ASSERT_TRUE(testing::wait_until([&] { return finished_runs() >= 3; }, 30s))
        << slurp(mk.dir() / "agent.out");
    rotate();
    ASSERT_TRUE(testing::wait_until([&] { return finished_runs() >= 6; }, 30s));
    rotate();
    ASSERT_TRUE(testing::wait_until([&] { return finished_runs() >= 9; }, 30s));
    agent.terminate(10s);

    ASSERT_TRUE(fs::exists(logs / "mlkeeper.log.1"));
    ASSERT_TRUE(fs::exists(logs / "mlkeeper.log.2.gz")) << "delaycompress, then compress";
    const auto current = slurp(log);
    const auto gz = run({"gzip", "-dc", (logs / "mlkeeper.log.2.gz").string()});
    ASSERT_EQ(gz.exit_code, 0) << gz.err;
    const auto all = gz.out + slurp(logs / "mlkeeper.log.1") + current;

    auto count = [](const std::string& text, const std::string& what) {
        int n = 0;
        for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
            ++n;
        }
        return n;
    };
    // Reopened after each rotation: the agent's lines continue in the new files.
    EXPECT_EQ(count(all, "agent: configuration reloaded"), 2) << all;
    EXPECT_NE(current.find("job tick: starting"), std::string::npos) << current;
    EXPECT_NE(slurp(logs / "mlkeeper.log.1").find("job tick: starting"), std::string::npos);

    const auto history =
        nlohmann::json::parse(mk.run({"schedule", "history", "-n", "10000", "--json"}).out);
    int started = 0, succeeded = 0;
    for (const auto& r : history) {
        ++started;
        if (r["outcome"] == "success") {
            ++succeeded;
            EXPECT_EQ(count(all, "tick-run-" + std::to_string(r["id"].get<int64_t>()) + "\n"), 1)
                << "run " << r["id"];
        }
    }
    EXPECT_GE(succeeded, 9);
    EXPECT_EQ(count(all, "job tick: starting"), started);
    EXPECT_EQ(count(all, "job tick: succeeded"), succeeded);
}

// ---- systemd units, crontab, configuration ------------------------------------------------

TEST(Packaging, CommittedFilesEqualAFreshExport) {
    if (!have("python3")) {
        GTEST_SKIP() << "python3 not installed";
    }
    TempDir out;
    const auto r = run({(kSource / "scripts/gen-packaging").string(), MLK_BINARY, out.path()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::set<std::string> generated;
    for (const auto& e : fs::recursive_directory_iterator(out.path())) {
        if (!e.is_regular_file()) {
            continue;
        }
        const auto rel = fs::relative(e.path(), out.path()).string();
        generated.insert(rel);
        EXPECT_EQ(slurp(kSource / "packaging" / rel), slurp(e.path()))
            << "packaging/" << rel
            << " differs from a fresh export: run scripts/gen-packaging build/dev/mlkeeper";
    }
    EXPECT_TRUE(generated.count("mlkeeper.toml"));
    EXPECT_TRUE(generated.count("cron/mlkeeper"));
    for (const auto* job : {"backup", "gpu", "cleanup", "maintain"}) {
        EXPECT_TRUE(generated.count("systemd/mlkeeper-" + std::string(job) + ".timer")) << job;
    }
    // No stale unit from a job that is gone: every committed unit but the agent's is generated.
    for (const auto& e : fs::directory_iterator(kSource / "packaging/systemd")) {
        const auto name = e.path().filename().string();
        EXPECT_TRUE(name == "mlkeeper-agent.service" || generated.count("systemd/" + name)) << name;
    }
}

TEST(Packaging, PackagedConfigurationIsValidAndUsesThePackageDirectories) {
    MlkeeperRunner mk;
    mk.env().erase("MLKEEPER_STATE_DIR");  // it would override the file's state.dir
    const auto file = kSource / "packaging/mlkeeper.toml";
    const auto check = mk.run({"config", "check", file.string()});
    EXPECT_EQ(check.exit_code, 0) << check.err;
    EXPECT_EQ(config_value(mk, file, "state", "dir"), "/var/lib/mlkeeper");
    // The tmpfiles.d entries create exactly the directories the configuration uses.
    const auto tmpfiles = slurp(kSource / "packaging/tmpfiles.d/mlkeeper.conf");
    const auto log_file = fs::path(config_value(mk, file, "log", "log_file").get<std::string>());
    for (const auto& d : {fs::path("/var/lib/mlkeeper"), log_file.parent_path()}) {
        EXPECT_NE(tmpfiles.find("d " + d.string() + " 0750 mlkeeper mlkeeper"), std::string::npos)
            << d;
    }
    EXPECT_NE(tmpfiles.find("f " + log_file.string() + " 0640 mlkeeper mlkeeper"),
              std::string::npos);
    EXPECT_EQ(
        fs::path(config_value(mk, file, "gpu", "metrics_file").get<std::string>()).parent_path(),
        log_file.parent_path());
    // The agent's unit makes both writable and runs as the account sysusers.d creates.
    const auto unit = slurp(kSource / "packaging/systemd/mlkeeper-agent.service");
    EXPECT_NE(unit.find("ReadWritePaths=/var/lib/mlkeeper " + log_file.parent_path().string()),
              std::string::npos);
    EXPECT_NE(slurp(kSource / "packaging/sysusers.d/mlkeeper.conf").find("\nu mlkeeper "),
              std::string::npos);
    for (const auto* line :
         {"Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "User=mlkeeper",
          "ProtectSystem=strict", "LimitNOFILE=65536", "LimitNPROC=4096", "Restart=always",
          "RestartSec=10", "SyslogIdentifier=mlkeeper", "NoNewPrivileges=yes"}) {
        EXPECT_NE(unit.find("\n" + std::string(line)), std::string::npos) << line;
    }
}

TEST(Packaging, UnitsPassSystemdAnalyzeVerify) {
    if (!have("systemd-analyze")) {
        GTEST_SKIP() << "systemd-analyze not installed";
    }
    TempDir dir;
    std::vector<std::string> argv{"systemd-analyze", "verify"};
    for (const auto& e : fs::directory_iterator(kSource / "packaging/systemd")) {
        auto text = slurp(e.path());
        // /usr/bin/mlkeeper is not installed here: point ExecStart= at this build.
        text = std::regex_replace(text, std::regex("/usr/bin/mlkeeper "),
                                  std::string(MLK_BINARY) + " ");
        const auto name = e.path().filename().string();
        std::ofstream(dir / name) << text;
        if (name.find('@') == std::string::npos) {  // a template needs an instance
            argv.push_back((dir / name).string());
        }
    }
    ASSERT_GE(argv.size(), 10u);
    const auto v = run(argv);
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
    EXPECT_EQ(v.err.find("Unknown"), std::string::npos) << v.err;
}

// ---- man page, bash completion -----------------------------------------------------------------

TEST(Packaging, ManPageRendersWithoutWarningsAndCoversEveryCommand) {
    const auto page = kBuild / "packaging/mlkeeper.1";
    if (!fs::exists(page)) {
        GTEST_SKIP() << page << " not built (python3 missing at build time)";
    }
    if (!have("groff")) {
        GTEST_SKIP() << "groff not installed";
    }
    const auto g = run({"groff", "-man", "-Tutf8", "-wall", "-z", page.string()});
    EXPECT_EQ(g.exit_code, 0) << g.err;
    EXPECT_EQ(g.err, "");
    const auto text = slurp(page);
    // Every command of `mlkeeper --help`, each with a section.
    MlkeeperRunner mk;
    const auto help = mk.run({"--help"}).out;
    const auto subs = help.substr(help.find("Subcommands:"));
    int commands = 0;
    for (const auto& line : lines_of(subs.substr(0, subs.find("\n\n")))) {
        std::smatch m;
        if (std::regex_match(line, m, std::regex(R"(  ([a-z]+) +\S.*)"))) {
            EXPECT_NE(text.find(".SS \"mlkeeper " + m[1].str() + "\""), std::string::npos) << m[1];
            ++commands;
        }
    }
    EXPECT_GE(commands, 10);
    EXPECT_NE(text.find(".SS \"mlkeeper schedule export\""), std::string::npos);
    EXPECT_NE(text.find("\\-\\-dry\\-run"), std::string::npos);
    if (have("man")) {
        const auto m = run({"/usr/bin/env", "MANWIDTH=100", "man", "-l", page.string()});
        EXPECT_EQ(m.exit_code, 0) << m.err;
        EXPECT_NE(m.out.find("mlkeeper schedule export"), std::string::npos);
    }
    EXPECT_TRUE(fs::exists(kBuild / "packaging/mlkeeper.1.gz"));
}

// Completes the words as bash would with the cursor after the last one ("" = a new word).
std::string complete(const fs::path& script, const std::vector<std::string>& words,
                     const std::string& prelude = "") {
    std::string array = "mlkeeper";
    for (const auto& w : words) {
        array += " '" + w + "'";
    }
    const auto r = run({"bash", "--norc", "--noprofile", "-c",
                        prelude + "source '" + script.string() + "' || exit 9; COMP_WORDS=(" +
                            array + "); COMP_CWORD=" + std::to_string(words.size()) +
                            "; _mlkeeper; echo \"${COMPREPLY[*]}\""});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    return trim(r.out.substr(0, r.out.find('\n')));
}

TEST(Packaging, BashCompletionCompletesCommandsOptionsAndValues) {
    const auto script = kBuild / "packaging/mlkeeper.bash";
    if (!fs::exists(script)) {
        GTEST_SKIP() << script << " not built (python3 missing at build time)";
    }
    if (!have("bash")) {
        GTEST_SKIP() << "bash not installed";
    }
    EXPECT_EQ(complete(script, {"sch"}), "schedule");
    EXPECT_EQ(complete(script, {"schedule", "ex"}), "export");
    EXPECT_EQ(complete(script, {"schedule", "export", "--cr"}), "--cron");
    EXPECT_EQ(complete(script, {"backup", "--dr"}), "--dry-run");
    EXPECT_EQ(complete(script, {"--log-level", "w"}), "warning");
    EXPECT_EQ(complete(script, {"--log-level", "warning", "he"}), "health");
    EXPECT_EQ(complete(script, {"health", "--format", "n"}), "nagios");
    EXPECT_EQ(complete(script, {"backup", "--level", ""}), "");  // a number: nothing to offer
    EXPECT_EQ(complete(script, {"nosuch"}), "");
    const auto top = complete(script, {""});
    for (const auto* cmd : {"backup", "gpu", "health", "cleanup", "schedule", "agent", "config"}) {
        EXPECT_NE((" " + top + " ").find(" " + std::string(cmd) + " "), std::string::npos) << cmd;
    }
    TempDir dir;
    std::ofstream(dir / "mlkeeper.toml") << "";
    EXPECT_EQ(complete(script, {"--config", (dir / "mlkeeper.t").string()}),
              (dir / "mlkeeper.toml").string());

    // bash-completion sources the file inside a function: its tables must still be global.
    const fs::path loader = "/usr/share/bash-completion/bash_completion";
    if (fs::exists(loader)) {
        fs::create_directories(dir / "completions");
        fs::copy_file(script, dir / "completions/mlkeeper");
        const auto r = run({"bash", "--norc", "--noprofile", "-c",
                            "BASH_COMPLETION_USER_DIR='" + dir.path().string() + "'; source " +
                                loader.string() +
                                "; _completion_loader mlkeeper; complete -p mlkeeper; "
                                "COMP_WORDS=(mlkeeper sch); COMP_CWORD=1; _mlkeeper; "
                                "echo \"${COMPREPLY[*]}\""});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        EXPECT_NE(r.out.find("complete -F _mlkeeper mlkeeper\nschedule\n"), std::string::npos)
            << r.out << r.err;
    }
}

// ---- the .deb ----------------------------------------------------------------------------------

// Root's default state directory is the package's (/var/lib/mlkeeper), and purging deletes it:
// what other runs left there (and in /var/log/mlkeeper) is moved aside and put back afterwards.
class DebCycle : public ::testing::Test {
  protected:
    static constexpr const char* kAside = ".before-packaging-test";
    const std::vector<fs::path> kDirs{"/var/lib/mlkeeper", "/var/log/mlkeeper"};

    bool move_aside() {
        for (const auto& d : kDirs) {
            if (fs::exists(d.string() + kAside)) {
                return false;  // an earlier run did not finish: leave everything as it is
            }
        }
        for (const auto& d : kDirs) {
            if (fs::exists(d)) {
                fs::rename(d, d.string() + kAside);
                moved_.push_back(d);
            }
        }
        return true;
    }
    void TearDown() override {
        if (installed_) {
            run({"dpkg", "--purge", "mlkeeper"}, 120s);
        }
        if (created_user_) {
            run({"userdel", "mlkeeper"});
            run({"groupdel", "mlkeeper"});  // where userdel leaves the group
        }
        for (const auto& d : moved_) {
            std::error_code ec;
            fs::remove_all(d, ec);
            fs::rename(d.string() + kAside, d, ec);
            EXPECT_FALSE(ec) << "could not put back " << d << ": " << ec.message();
        }
    }
    bool installed_ = false;
    bool created_user_ = false;
    std::vector<fs::path> moved_;
};

TEST_F(DebCycle, InstallsRunsAndRemovesCleanly) {
    const char* enabled = std::getenv("MLK_TEST_DEB");
    if (enabled == nullptr || std::string(enabled) != "1") {
        GTEST_SKIP() << "installs the package on this machine: run as the ctest test "
                        "packaging_deb (MLK_TEST_DEB=1)";
    }
    if (::geteuid() != 0 || !have("dpkg") || !have("cpack") || !have("dpkg-shlibdeps")) {
        GTEST_SKIP() << "needs root, dpkg, dpkg-shlibdeps and cpack";
    }
    if (!fs::exists(kBuild / "CPackConfig.cmake")) {
        GTEST_SKIP() << "no CPackConfig.cmake in " << kBuild;
    }
    if (run({"dpkg-query", "-W", "-f", "${Status}", "mlkeeper"}).out.find("installed") !=
            std::string::npos ||
        fs::exists("/usr/bin/mlkeeper") || fs::exists("/etc/mlkeeper")) {
        GTEST_SKIP() << "mlkeeper is already installed here; not touching it";
    }
    created_user_ = !run({"getent", "passwd", "mlkeeper"}).ok();
    if (!move_aside()) {
        GTEST_SKIP() << "/var/lib/mlkeeper" << kAside << " exists: an earlier run was interrupted";
    }

    TempDir out;
    const auto pack = run({"cpack", "-G", "DEB", "--config",
                           (kBuild / "CPackConfig.cmake").string(), "-B", out.path().string()},
                          240s);
    ASSERT_EQ(pack.exit_code, 0) << pack.out << pack.err;
    fs::path deb;
    for (const auto& e : fs::directory_iterator(out.path())) {
        if (e.path().extension() == ".deb") {
            deb = e.path();
        }
    }
    ASSERT_FALSE(deb.empty()) << pack.out;

    const auto info = run({"dpkg-deb", "--info", deb.string()});
    EXPECT_NE(info.out.find("Package: mlkeeper"), std::string::npos) << info.out;
    EXPECT_NE(info.out.find("Recommends: libcurl4, libpq5"), std::string::npos) << info.out;
    EXPECT_NE(info.out.find("libarchive13"), std::string::npos) << "shlibdeps: " << info.out;
    const auto listing = run({"dpkg-deb", "--contents", deb.string()}).out;
    for (const auto* path :
         {"./usr/bin/mlkeeper", "./lib/systemd/system/mlkeeper-agent.service",
          "./lib/systemd/system/mlkeeper-backup.timer",
          "./lib/systemd/system/mlkeeper-alert@.service", "./etc/logrotate.d/mlkeeper",
          "./etc/mlkeeper/mlkeeper.toml", "./usr/share/man/man1/mlkeeper.1.gz",
          "./usr/share/bash-completion/completions/mlkeeper", "./usr/lib/sysusers.d/mlkeeper.conf",
          "./usr/lib/tmpfiles.d/mlkeeper.conf", "./usr/share/doc/mlkeeper/examples/cron.d/mlkeeper",
          "./usr/share/doc/mlkeeper/PACKAGING.md",
          "./usr/share/doc/mlkeeper/examples/prometheus/mlkeeper-alerts.yml",
          "./usr/share/doc/mlkeeper/examples/grafana/mlkeeper-dashboard.json"}) {
        EXPECT_NE(listing.find(std::string(path) + "\n"), std::string::npos) << path;
    }
    EXPECT_EQ(listing.find("./etc/cron.d"), std::string::npos) << "would schedule jobs unasked";

    // A file a run as root left in root's (and the package's) state directory.
    fs::create_directories("/var/lib/mlkeeper");
    std::ofstream("/var/lib/mlkeeper/left-by-root") << "x";

    const auto install = run({"dpkg", "-i", deb.string()}, 180s);
    installed_ = true;
    ASSERT_EQ(install.exit_code, 0) << install.out << install.err;
    const auto control = run({"cat", "/var/lib/dpkg/info/mlkeeper.conffiles"});
    EXPECT_NE(control.out.find("/etc/mlkeeper/mlkeeper.toml"), std::string::npos);
    EXPECT_NE(control.out.find("/etc/logrotate.d/mlkeeper"), std::string::npos);

    const auto version = run({"/usr/bin/mlkeeper", "--version"});
    EXPECT_EQ(version.exit_code, 0) << version.err;
    EXPECT_EQ(version.out.rfind("mlkeeper ", 0), 0u) << version.out;
    EXPECT_TRUE(run({"getent", "passwd", "mlkeeper"}).ok());
    for (const auto* d : {"/var/lib/mlkeeper", "/var/log/mlkeeper"}) {
        struct stat st {};
        ASSERT_EQ(::stat(d, &st), 0) << d;
        EXPECT_EQ(st.st_mode & 07777, 0750u) << d;
        EXPECT_EQ(run({"stat", "-c", "%U:%G", d}).out, "mlkeeper:mlkeeper\n") << d;
    }
    EXPECT_EQ(run({"stat", "-c", "%U", "/var/lib/mlkeeper/left-by-root"}).out, "mlkeeper\n");
    // Nothing enabled or scheduled.
    for (const auto& dir : {"/etc/systemd/system/multi-user.target.wants",
                            "/etc/systemd/system/timers.target.wants"}) {
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(dir, ec)) {
            EXPECT_EQ(e.path().filename().string().rfind("mlkeeper", 0), std::string::npos)
                << e.path();
        }
    }
    EXPECT_FALSE(fs::exists("/etc/cron.d/mlkeeper"));

    // The account can use the packaged configuration: its state directory, its log file.
    if (have("runuser")) {
        const auto list =
            run({"runuser", "-u", "mlkeeper", "--", "/usr/bin/mlkeeper", "schedule", "list"});
        EXPECT_EQ(list.exit_code, 0) << list.out << list.err;
        EXPECT_NE(list.out.find("backup"), std::string::npos) << list.out;
        const auto hist = run({"runuser", "-u", "mlkeeper", "--", "/usr/bin/mlkeeper", "history"});
        EXPECT_EQ(hist.exit_code, 0) << hist.err;
        EXPECT_TRUE(fs::exists("/var/lib/mlkeeper/state.db"));
    }
    if (have("logrotate")) {
        const auto lr = run({"logrotate", "-d", "/etc/logrotate.d/mlkeeper"});
        EXPECT_EQ(lr.exit_code, 0) << lr.err;
        EXPECT_EQ(lr.err.find("error"), std::string::npos) << lr.err;
    }
    if (have("systemd-analyze")) {
        const auto v =
            run({"systemd-analyze", "verify", "/lib/systemd/system/mlkeeper-agent.service",
                 "/lib/systemd/system/mlkeeper-backup.timer",
                 "/lib/systemd/system/mlkeeper-backup.service"});
        EXPECT_EQ(v.exit_code, 0) << v.err;
    }
    if (have("man")) {
        EXPECT_TRUE(run({"man", "-w", "mlkeeper"}).ok());
    }

    const auto remove = run({"dpkg", "-r", "mlkeeper"}, 120s);
    EXPECT_EQ(remove.exit_code, 0) << remove.out << remove.err;
    EXPECT_FALSE(fs::exists("/usr/bin/mlkeeper"));
    EXPECT_FALSE(fs::exists("/lib/systemd/system/mlkeeper-agent.service"));
    EXPECT_TRUE(fs::exists("/etc/mlkeeper/mlkeeper.toml")) << "a conffile stays until purge";
    const auto purge = run({"dpkg", "--purge", "mlkeeper"}, 120s);
    EXPECT_EQ(purge.exit_code, 0) << purge.out << purge.err;
    installed_ = false;
    EXPECT_FALSE(fs::exists("/etc/mlkeeper"));
    EXPECT_FALSE(fs::exists("/etc/logrotate.d/mlkeeper"));
    EXPECT_FALSE(fs::exists("/var/lib/mlkeeper"));
    EXPECT_FALSE(fs::exists("/var/log/mlkeeper"));
    EXPECT_EQ(run({"dpkg-query", "-W", "-f", "${Status}", "mlkeeper"}).out.find("installed"),
              std::string::npos);
}

}  // namespace
}  // namespace mlk::testing
