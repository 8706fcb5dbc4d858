#include "mlkeeper/alert/command_channel.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mlk::alert {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class TempDir {
  public:
    TempDir() {
        std::string tmpl = (fs::path(::testing::TempDir()) / "mlk_cmd_XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }

    // Writes an executable /bin/sh script and returns its path.
    fs::path script(const std::string& name, const std::string& body) const {
        fs::path p = path_ / name;
        std::ofstream(p) << "#!/bin/sh\n" << body;
        fs::permissions(p, fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
        return p;
    }

    std::optional<std::string> read(const std::string& name) const {
        std::ifstream in(path_ / name);
        if (!in) {
            return std::nullopt;
        }
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

  private:
    fs::path path_;
};

Alert sample_alert() {
    Alert a;
    a.key = "gpu0_temp";
    a.severity = Severity::kCritical;
    a.summary = "GPU 0 temperature 87°C exceeds 85°C";
    a.check = "gpu";
    a.value = "87°C";
    a.threshold = "85°C";
    a.action = "Check the fans.";
    a.host = "gpu-box";
    a.time = std::chrono::system_clock::from_time_t(1795357800) + 123ms;  // 2026-11-22T14:30:00Z
    a.occurrences = 4;
    a.suppressed = 7;
    a.fields = {{"gpu-index", "0"}};
    return a;
}

// Records each argument and the selected variables in their own file (values may hold newlines).
std::string recorder_body(const fs::path& dir) {
    std::string d = "'" + dir.string() + "'";
    return "printf '%s' \"$#\" > " + d + "/argc\n" +  //
           "printf '%s' \"$1\" > " + d + "/arg1\n" +  //
           "printf '%s' \"$2\" > " + d + "/arg2\n" +
           "for v in MLKEEPER_ALERT_KEY MLKEEPER_SEVERITY MLKEEPER_STATE MLKEEPER_SUMMARY "
           "MLKEEPER_CHECK MLKEEPER_VALUE MLKEEPER_THRESHOLD MLKEEPER_ACTION MLKEEPER_HOST "
           "MLKEEPER_TIME MLKEEPER_SUPPRESSED MLKEEPER_OCCURRENCES MLKEEPER_FIELD_GPU_INDEX; do\n"
           "  eval \"printf '%s' \\\"\\$$v\\\"\" > " +
           d + "/$v\n" + "done\n";
}

std::string error_of(CommandChannel& ch, const Alert& a, ChannelError::Kind* kind = nullptr) {
    try {
        ch.send(a);
    } catch (const ChannelError& e) {
        if (kind != nullptr) {
            *kind = e.kind();
        }
        return e.what();
    }
    return "";
}

TEST(CommandArgv, AppendsSeverityAndSummary) {
    CommandOptions opts;
    opts.argv = {"/opt/ml-automation/handlers/custom-alert.sh", "--team", "ml"};
    Alert a = sample_alert();
    EXPECT_EQ(command_argv(opts, a),
              (std::vector<std::string>{"/opt/ml-automation/handlers/custom-alert.sh", "--team",
                                        "ml", "critical", "GPU 0 temperature 87°C exceeds 85°C"}));
    a.severity = Severity::kInfo;
    EXPECT_EQ(command_argv(opts, a)[3], "info");
    a.severity = Severity::kWarning;
    EXPECT_EQ(command_argv(opts, a)[3], "warning");
    a.severity = Severity::kEmergency;
    EXPECT_EQ(command_argv(opts, a)[3], "emergency");
    a.state = AlertState::kResolved;
    EXPECT_EQ(command_argv(opts, a)[3], "resolved");
    a.summary = std::string("a\0b", 3);
    EXPECT_EQ(command_argv(opts, a)[4], "ab");
}

TEST(CommandEnv, SetsEveryVariable) {
    Alert a = sample_alert();
    a.fields = {{"gpu-index", "0"}, {"mount point", "/data"}};
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"MLKEEPER_ALERT_KEY", "gpu0_temp"},
        {"MLKEEPER_SEVERITY", "critical"},
        {"MLKEEPER_STATE", "firing"},
        {"MLKEEPER_SUMMARY", "GPU 0 temperature 87°C exceeds 85°C"},
        {"MLKEEPER_CHECK", "gpu"},
        {"MLKEEPER_VALUE", "87°C"},
        {"MLKEEPER_THRESHOLD", "85°C"},
        {"MLKEEPER_ACTION", "Check the fans."},
        {"MLKEEPER_HOST", "gpu-box"},
        {"MLKEEPER_TIME", "2026-11-22T14:30:00.123Z"},
        {"MLKEEPER_SUPPRESSED", "7"},
        {"MLKEEPER_OCCURRENCES", "4"},
        {"MLKEEPER_FIELD_GPU_INDEX", "0"},
        {"MLKEEPER_FIELD_MOUNT_POINT", "/data"},
    };
    EXPECT_EQ(command_env(a), expected);
}

TEST(CommandEnv, DropsNulBytesAndKeepsEmptyValues) {
    Alert a;
    a.key = std::string("k\0ey", 4);
    auto env = command_env(a);
    EXPECT_EQ(env[0].second, "key");
    EXPECT_EQ(env[4].first, "MLKEEPER_CHECK");
    EXPECT_EQ(env[4].second, "");
    EXPECT_EQ(env[2].second, "firing");
}

TEST(CommandChannel, RejectsBadOptions) {
    EXPECT_THROW(CommandChannel(CommandOptions{}), std::invalid_argument);
    EXPECT_THROW(CommandChannel(CommandOptions{{""}, 1000ms}), std::invalid_argument);
    EXPECT_THROW(CommandChannel(CommandOptions{{"/bin/true"}, 0ms}), std::invalid_argument);
    CommandChannel ch(CommandOptions{{"/bin/true"}});
    EXPECT_EQ(ch.name(), "command");
    EXPECT_EQ(ch.options().timeout, 30000ms);
}

TEST(CommandChannel, HandlerGetsSeveritySummaryAndEnvironment) {
    TempDir dir;
    CommandChannel ch(
        CommandOptions{{dir.script("handler.sh", recorder_body(dir.path())).string()}});
    ::setenv("MLKEEPER_THRESHOLD", "stale value from the parent", 1);
    Alert a = sample_alert();
    a.threshold.clear();
    ASSERT_NO_THROW(ch.send(a));
    ::unsetenv("MLKEEPER_THRESHOLD");

    EXPECT_EQ(dir.read("argc"), "2");
    EXPECT_EQ(dir.read("arg1"), "critical");
    EXPECT_EQ(dir.read("arg2"), "GPU 0 temperature 87°C exceeds 85°C");
    EXPECT_EQ(dir.read("MLKEEPER_ALERT_KEY"), "gpu0_temp");
    EXPECT_EQ(dir.read("MLKEEPER_SEVERITY"), "critical");
    EXPECT_EQ(dir.read("MLKEEPER_STATE"), "firing");
    EXPECT_EQ(dir.read("MLKEEPER_SUMMARY"), "GPU 0 temperature 87°C exceeds 85°C");
    EXPECT_EQ(dir.read("MLKEEPER_CHECK"), "gpu");
    EXPECT_EQ(dir.read("MLKEEPER_VALUE"), "87°C");
    EXPECT_EQ(dir.read("MLKEEPER_THRESHOLD"), "");  // not the parent's stale value
    EXPECT_EQ(dir.read("MLKEEPER_ACTION"), "Check the fans.");
    EXPECT_EQ(dir.read("MLKEEPER_HOST"), "gpu-box");
    EXPECT_EQ(dir.read("MLKEEPER_TIME"), "2026-11-22T14:30:00.123Z");
    EXPECT_EQ(dir.read("MLKEEPER_SUPPRESSED"), "7");
    EXPECT_EQ(dir.read("MLKEEPER_OCCURRENCES"), "4");
    EXPECT_EQ(dir.read("MLKEEPER_FIELD_GPU_INDEX"), "0");
}

TEST(CommandChannel, ResolvedAlertPassesResolved) {
    TempDir dir;
    CommandChannel ch(
        CommandOptions{{dir.script("handler.sh", recorder_body(dir.path())).string()}});
    Alert a = sample_alert();
    a.state = AlertState::kResolved;
    a.summary = "GPU 0 temperature back to 70°C";
    ASSERT_NO_THROW(ch.send(a));
    EXPECT_EQ(dir.read("arg1"), "resolved");
    EXPECT_EQ(dir.read("arg2"), "GPU 0 temperature back to 70°C");
    EXPECT_EQ(dir.read("MLKEEPER_STATE"), "resolved");
    EXPECT_EQ(dir.read("MLKEEPER_SEVERITY"), "critical");
}

TEST(CommandChannel, FixedArgumentsComeFirst) {
    TempDir dir;
    fs::path script = dir.script("args.sh", "for a in \"$@\"; do printf '%s|' \"$a\"; done > '" +
                                                dir.path().string() + "/all'\n");
    CommandChannel ch(CommandOptions{{script.string(), "--route", "ml team"}});
    ASSERT_NO_THROW(ch.send(sample_alert()));
    EXPECT_EQ(dir.read("all"), "--route|ml team|critical|GPU 0 temperature 87°C exceeds 85°C|");
}

TEST(CommandChannel, ShellMetacharactersArriveVerbatimAndRunNothing) {
    TempDir dir;
    CommandChannel ch(
        CommandOptions{{dir.script("handler.sh", recorder_body(dir.path())).string()}});
    const std::string canary = (dir.path() / "pwned").string();
    Alert a = sample_alert();
    a.summary = "; rm -rf /tmp/x $(id) `touch " + canary + "1` $(touch " + canary + "2); touch " +
                canary + "3 && echo 'quoted' \"dq\" | cat > " + canary + "4 \\ \n$HOME *";
    a.key = "$(touch " + canary + "5)";
    ASSERT_NO_THROW(ch.send(a));
    EXPECT_EQ(dir.read("argc"), "2");
    EXPECT_EQ(dir.read("arg2"), a.summary);
    EXPECT_EQ(dir.read("MLKEEPER_SUMMARY"), a.summary);
    EXPECT_EQ(dir.read("MLKEEPER_ALERT_KEY"), a.key);
    for (int i = 1; i <= 5; ++i) {
        EXPECT_FALSE(fs::exists(canary + std::to_string(i))) << "command " << i << " ran";
    }
}

TEST(CommandChannel, NonZeroExitReportsCodeAndLastStderrLine) {
    TempDir dir;
    CommandChannel ch(CommandOptions{
        {dir.script("fail.sh",
                    "echo 'first line' >&2\necho 'curl: (6) Could not resolve host' >&2\n"
                    "echo 'on stdout'\nexit 3\n")
             .string()}});
    ChannelError::Kind kind = ChannelError::Kind::kPermanent;
    std::string err = error_of(ch, sample_alert(), &kind);
    EXPECT_EQ(kind, ChannelError::Kind::kTransient);
    EXPECT_NE(err.find("fail.sh"), std::string::npos) << err;
    EXPECT_NE(err.find("exited with status 3: curl: (6) Could not resolve host"), std::string::npos)
        << err;
    EXPECT_EQ(err.find("first line"), std::string::npos) << err;
    EXPECT_EQ(err.find("on stdout"), std::string::npos) << err;
}

TEST(CommandChannel, NonZeroExitWithoutStderrSaysSo) {
    TempDir dir;
    CommandChannel ch(CommandOptions{{dir.script("quiet.sh", "exit 1\n").string()}});
    std::string err = error_of(ch, sample_alert());
    EXPECT_NE(err.find("exited with status 1 (no stderr output)"), std::string::npos) << err;
}

TEST(CommandChannel, LongStderrLineIsCut) {
    TempDir dir;
    CommandChannel ch(
        CommandOptions{{dir.script("long.sh", "printf '%0500d\\n\\n' 0 >&2\nexit 2\n").string()}});
    std::string err = error_of(ch, sample_alert());
    EXPECT_NE(err.find("exited with status 2: 000"), std::string::npos) << err;
    EXPECT_LT(err.size(), 450u) << err;
    EXPECT_TRUE(err.ends_with("...")) << err;
}

TEST(CommandChannel, KilledBySignalIsTransient) {
    TempDir dir;
    CommandChannel ch(CommandOptions{{dir.script("die.sh", "kill -KILL $$\n").string()}});
    ChannelError::Kind kind = ChannelError::Kind::kPermanent;
    std::string err = error_of(ch, sample_alert(), &kind);
    EXPECT_EQ(kind, ChannelError::Kind::kTransient);
    EXPECT_NE(err.find("killed by signal 9"), std::string::npos) << err;
}

bool process_gone(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    if (!stat) {
        return true;
    }
    std::string line;
    std::getline(stat, line);
    std::size_t paren = line.rfind(')');
    return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

TEST(CommandChannel, TimeoutKillsHandlerAndItsChildren) {
    TempDir dir;
    const std::string pidfile = (dir.path() / "sleeper.pid").string();
    CommandChannel ch(CommandOptions{
        {dir.script("slow.sh", "sleep 30 &\necho $! > '" + pidfile + "'\nwait\n").string()},
        500ms});
    const auto start = std::chrono::steady_clock::now();
    ChannelError::Kind kind = ChannelError::Kind::kPermanent;
    std::string err = error_of(ch, sample_alert(), &kind);
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(kind, ChannelError::Kind::kTransient);
    EXPECT_NE(err.find("timed out after 500 ms"), std::string::npos) << err;
    EXPECT_LT(took, 2s);
    EXPECT_GE(took, 450ms);

    auto pid_text = dir.read("sleeper.pid");
    ASSERT_TRUE(pid_text.has_value());
    const pid_t sleeper = static_cast<pid_t>(std::stol(*pid_text));
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (!process_gone(sleeper) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
    }
    EXPECT_TRUE(process_gone(sleeper)) << "sleep " << sleeper << " survived the timeout";
}

TEST(CommandChannel, MissingProgramIsPermanent) {
    TempDir dir;
    const std::string missing = (dir.path() / "no-such-handler.sh").string();
    CommandChannel ch(CommandOptions{{missing}});
    ChannelError::Kind kind = ChannelError::Kind::kTransient;
    std::string err = error_of(ch, sample_alert(), &kind);
    EXPECT_EQ(kind, ChannelError::Kind::kPermanent);
    EXPECT_NE(err.find(missing), std::string::npos) << err;

    CommandChannel in_path(CommandOptions{{"mlkeeper-no-such-handler-xyz"}});
    err = error_of(in_path, sample_alert(), &kind);
    EXPECT_EQ(kind, ChannelError::Kind::kPermanent);
    EXPECT_NE(err.find("mlkeeper-no-such-handler-xyz"), std::string::npos) << err;
}

TEST(CommandChannel, NonExecutableProgramIsPermanent) {
    TempDir dir;
    fs::path p = dir.path() / "handler.sh";
    std::ofstream(p) << "#!/bin/sh\nexit 0\n";
    fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write);
    if (::geteuid() == 0) {
        // root may execute files without x bits only if some x bit is set; none is, so this
        // still fails, but be explicit about what we rely on.
        ASSERT_EQ(::access(p.c_str(), X_OK), -1);
    }
    CommandChannel ch(CommandOptions{{p.string()}});
    ChannelError::Kind kind = ChannelError::Kind::kTransient;
    std::string err = error_of(ch, sample_alert(), &kind);
    EXPECT_EQ(kind, ChannelError::Kind::kPermanent) << err;
    EXPECT_NE(err.find("handler.sh"), std::string::npos) << err;
}

TEST(CommandChannel, ProgramIsFoundInPath) {
    CommandChannel ch(CommandOptions{{"sh", "-c", "test \"$0\" = warning && test \"$1\" = hi"}});
    Alert a = sample_alert();
    a.severity = Severity::kWarning;
    a.summary = "hi";
    EXPECT_EQ(error_of(ch, a), "");
    a.summary = "other";
    EXPECT_NE(error_of(ch, a).find("exited with status 1"), std::string::npos);
}

TEST(CommandChannel, ConcurrentSendsDoNotInterfere) {
    TempDir dir;
    fs::path script = dir.script(
        "each.sh", "printf '%s' \"$2\" > '" + dir.path().string() + "'/\"$MLKEEPER_ALERT_KEY\"\n");
    CommandChannel ch(CommandOptions{{script.string()}});
    std::vector<std::thread> threads;
    std::vector<std::string> errors(8);
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            Alert a = sample_alert();
            a.key = "key" + std::to_string(t);
            a.summary = "summary " + std::to_string(t);
            errors[static_cast<std::size_t>(t)] = error_of(ch, a);
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    for (int t = 0; t < 8; ++t) {
        EXPECT_EQ(errors[static_cast<std::size_t>(t)], "");
        EXPECT_EQ(dir.read("key" + std::to_string(t)), "summary " + std::to_string(t));
    }
}

}  // namespace
}  // namespace mlk::alert
