// Black-box tests of the command line: exit codes, help, errors, config
// sources and history, run against the built binary.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/mlkeeper_runner.hpp"

namespace mlk {
namespace {

using ::testing::HasSubstr;
using testing::MlkeeperRunner;
using ::testing::Not;

int lines(const std::string& s) {
    return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

TEST(Cli, HelpListsCommandsAndExamples) {
    MlkeeperRunner m;
    auto r = m.run({"--help"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_THAT(r.out, HasSubstr("config"));
    EXPECT_THAT(r.out, HasSubstr("history"));
    EXPECT_THAT(r.out, HasSubstr("Examples:"));
    EXPECT_THAT(r.out, HasSubstr("--env-file"));
    auto sub = m.run({"config", "--help"});
    EXPECT_EQ(sub.exit_code, 0);
    EXPECT_THAT(sub.out, HasSubstr("mlkeeper config check /etc/mlkeeper/mlkeeper.toml"));
}

TEST(Cli, VersionNamesBuildAndLibraries) {
    MlkeeperRunner m;
    auto r = m.run({"--version"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_THAT(r.out, HasSubstr("mlkeeper 0."));
    EXPECT_THAT(r.out, HasSubstr("git "));
    EXPECT_THAT(r.out, HasSubstr("libcurl"));
    EXPECT_THAT(r.out, HasSubstr("sqlite"));
    EXPECT_THAT(r.out, HasSubstr("libarchive"));
}

TEST(Cli, UsageErrorsExit64WithOneLine) {
    MlkeeperRunner m;
    for (auto args : std::vector<std::vector<std::string>>{{"no-such-command"},
                                                           {"--no-such-flag"},
                                                           {"history", "--limit", "zero"},
                                                           {"history", "--limit", "0"},
                                                           {"config"}}) {
        auto r = m.run(args);
        EXPECT_EQ(r.exit_code, 64) << args[0];
        EXPECT_EQ(lines(r.err), 1) << r.err;
        EXPECT_THAT(r.err, HasSubstr("--help")) << r.err;
        EXPECT_EQ(r.out, "");
    }
}

TEST(Cli, BadConfigExits78WithLocation) {
    MlkeeperRunner m;
    auto file = m.dir().write("bad.toml", "[backup]\ncompression_level = 0\nretension_days = 3\n");
    auto r = m.run({"--config", file.string(), "config", "show"});
    EXPECT_EQ(r.exit_code, 78);
    EXPECT_THAT(r.err, HasSubstr(file.string() + ":2:21: 0 is out of range for compression_level"));
    EXPECT_THAT(r.err,
                HasSubstr(file.string() + ":3:1: unknown key `retension_days` in [backup] (did "
                                          "you mean `retention_days`?)"));
    EXPECT_EQ(r.out, "");

    auto check = m.run({"config", "check", file.string()});
    EXPECT_EQ(check.exit_code, 78);
    auto env = m.run({"config", "show"}, {{"RETENTION_DAYS", "-5"}});
    EXPECT_EQ(env.exit_code, 78);
    EXPECT_THAT(env.err, HasSubstr("environment RETENTION_DAYS: invalid duration"));
    auto missing = m.run({"--config", (m.dir() / "nope.toml").string(), "config", "show"});
    EXPECT_EQ(missing.exit_code, 78);
    EXPECT_THAT(missing.err, HasSubstr("nope.toml: config file not found"));
}

TEST(Cli, ConfigCheckAcceptsAGoodFile) {
    MlkeeperRunner m;
    auto file = m.dir().write("ok.toml",
                              "[backup]\nretention_days = \"14d\"\n[gpu]\ntemp_threshold = 82\n");
    auto r = m.run({"config", "check", file.string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("ok: " + file.string() + " is valid (2 keys set there)"));
}

TEST(Cli, ConfigShowNamesTheSourceOfEachValue) {
    MlkeeperRunner m;
    auto file =
        m.dir().write("c.toml", "[backup]\nretention_days = 10\nbackup_dir = \"/from/file\"\n");
    auto envf = m.dir().write("ml.conf", "BACKUP_DIR=/from/envfile\nTEMP_THRESHOLD=70\n");
    auto r = m.run({"--config", file.string(), "--env-file", envf.string(), "--log-level", "debug",
                    "config", "show", "--json"},
                   {{"RETENTION_DAYS", "12"}, {"ALERT_WEBHOOK", "https://hooks.example/T/SECRET"}});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    auto s = j["settings"];
    EXPECT_EQ(s["backup"]["retention_days"]["value"], 12 * 86400);
    EXPECT_EQ(s["backup"]["retention_days"]["source"], "env");
    EXPECT_EQ(s["backup"]["backup_dir"]["value"], "/from/envfile");
    EXPECT_EQ(s["backup"]["backup_dir"]["source"], "env-file");
    EXPECT_EQ(s["gpu"]["temp_threshold"]["value"], 70);
    EXPECT_EQ(s["log"]["log_level"]["source"], "flag");
    EXPECT_EQ(s["backup"]["model_dir"]["source"], "default");
    EXPECT_EQ(s["alerts"]["alert_webhook"]["value"], "********");
    EXPECT_THAT(r.out, Not(HasSubstr("SECRET")));
    EXPECT_EQ(j["file"], file.string());

    auto text = m.run({"--config", file.string(), "config", "show"});
    EXPECT_THAT(text.out, HasSubstr("retention_days = \"10d\""));
    EXPECT_THAT(text.out, HasSubstr("# " + file.string() + ":2:18"));
}

TEST(Cli, ConfigShowOutputIsItselfAValidConfig) {
    MlkeeperRunner m;
    auto r = m.run({"config", "show"}, {{"SERVICES_TO_CHECK", "docker nginx"}});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto file = m.dir().write("roundtrip.toml", r.out);
    auto check = m.run({"config", "check", file.string()});
    EXPECT_EQ(check.exit_code, 0) << check.err << r.out;
}

TEST(Cli, GlobalOptionsWorkAfterTheCommand) {
    MlkeeperRunner m;
    auto r = m.run({"config", "show", "--json", "--log-level", "error"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["settings"]["log"]["log_level"]["value"], "error");
}

TEST(Cli, HistoryRecordsRunsWithArgsAndExitCodes) {
    MlkeeperRunner m;
    auto empty = m.run({"history"});
    EXPECT_EQ(empty.exit_code, 0) << empty.err;
    EXPECT_THAT(empty.out, HasSubstr("no runs recorded yet"));
    ASSERT_EQ(m.run({"config", "check"}).exit_code, 0);
    ASSERT_EQ(m.run({"config", "show", "--json"}).exit_code, 0);
    auto r = m.run({"history", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto runs = nlohmann::json::parse(r.out);
    ASSERT_EQ(runs.size(), 2u);
    EXPECT_EQ(runs[0]["command"], "config");
    EXPECT_EQ(runs[0]["args"], nlohmann::json::array({"config", "show", "--json"}));
    EXPECT_EQ(runs[0]["exit_code"], 0);
    EXPECT_EQ(runs[0]["state"], "ok");
    EXPECT_EQ(runs[1]["args"], nlohmann::json::array({"config", "check"}));
    auto limited = nlohmann::json::parse(m.run({"history", "--json", "-n", "1"}).out);
    EXPECT_EQ(limited.size(), 1u);
    auto text = m.run({"history"});
    EXPECT_THAT(text.out, HasSubstr("config show --json"));
}

TEST(Cli, CorruptStateIsAClearErrorAndLeftUntouched) {
    MlkeeperRunner m;
    auto db = m.dir().write("state/state.db", std::string(8192, '\x5a'));
    auto before = testing::slurp(db);
    auto r = m.run({"history"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_THAT(r.err, HasSubstr(db.string()));
    EXPECT_THAT(r.err, HasSubstr("move it aside"));
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_EQ(testing::slurp(db), before);
    // Other commands still work, and say their run is not recorded.
    auto show = m.run({"config", "check"});
    EXPECT_EQ(show.exit_code, 0);
    EXPECT_THAT(show.err, HasSubstr("not recorded"));
    EXPECT_EQ(testing::slurp(db), before);
}

TEST(Cli, UnwritableLogFileIsOnlyAWarning) {
    MlkeeperRunner m;
    auto blocker = m.dir().write("file-not-dir", "x");
    auto r = m.run({"--log-file", (blocker / "sub" / "x.log").string(), "config", "check"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_THAT(r.err, HasSubstr("cannot open log file"));
}

TEST(Cli, JsonLogLinesGoToTheLogFileNotStdout) {
    MlkeeperRunner m;
    auto log = m.dir() / "logs" / "mlk.log";
    auto r = m.run({"--log-file", log.string(), "--log-format", "json", "--log-level", "debug",
                    "history", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(nlohmann::json::accept(r.out));  // stdout is pure JSON
    auto content = testing::slurp(log);
    ASSERT_FALSE(content.empty());
    std::size_t pos = 0;
    while (pos < content.size()) {
        auto nl = content.find('\n', pos);
        auto obj = nlohmann::json::parse(content.substr(pos, nl - pos));
        EXPECT_TRUE(obj.contains("ts") && obj.contains("level") && obj.contains("msg"));
        pos = nl + 1;
    }
}

}  // namespace
}  // namespace mlk

namespace mlk {
namespace {

TEST(Cli, SecretsNeverAppearInConfigShow) {
    testing::MlkeeperRunner m;
    std::map<std::string, std::string> env{
        {"ALERT_WEBHOOK", "https://hooks.slack.com/services/T0/B0/SECRET1"},
        {"ALERT_WEBHOOK_HEADERS", "Authorization:Bearer-SECRET2"},
        {"ALERT_SMTP_PASSWORD", "SECRET3"}};
    for (auto args :
         std::vector<std::vector<std::string>>{{"config", "show"}, {"config", "show", "--json"}}) {
        auto r = m.run(args, env);
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(r.out.find("SECRET"), std::string::npos) << r.out;
        EXPECT_NE(r.out.find("********"), std::string::npos);
    }
}

}  // namespace
}  // namespace mlk
