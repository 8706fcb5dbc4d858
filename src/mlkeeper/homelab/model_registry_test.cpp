#include "mlkeeper/homelab/model_registry.hpp"

#include <gtest/gtest.h>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "support/temp_dir.hpp"

namespace mlk::homelab {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string error_of(const std::string& toml) {
    try {
        (void)parse_models(toml, "f.toml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

TEST(ModelRegistry, NoModelsTableGivesNoModels) {
    EXPECT_TRUE(parse_models("[backup]\nmodel_dir = \"/m\"\n", "f.toml").empty());
    EXPECT_TRUE(parse_models("", "f.toml").empty());
    EXPECT_TRUE(parse_models("[models]\nidle_timeout = \"1h\"\n", "f.toml").empty());
}

TEST(ModelRegistry, ReadsEveryFieldAndTheDefaults) {
    const auto models = parse_models(R"(
[models]
idle_timeout = "1h"
start_timeout = "5m"
stop_timeout = 10
log_dir = "/var/log/models"
log_max_size = "1MB"
log_keep = 5

[models.llama3]
command = ["/usr/bin/llama-server", "--port", "8001", "a b; rm -rf /"]
env = { CUDA_VISIBLE_DEVICES = "0", HF_HOME = "/srv/hf" }
workdir = "/srv/llama"
port = 8001
pinned = true
restart = "always"
restart_backoff_min = "500ms"
restart_backoff_max = "2m"
max_restarts = 3
description = "Llama 3 8B"

[models.embed]
unit = "embed-server.service"
port = 8002
health_url = "http://127.0.0.1:8002/ready"
idle_timeout = "never"
start_timeout = 30

[models."qwen2.5-7b_q4"]
backend = "process"
command = ["qwen"]
restart = "no"
idle_timeout = "10m"
stop_timeout = "1m"
)",
                                     "f.toml");
    ASSERT_EQ(models.size(), 3u);
    // Sorted by name.
    EXPECT_EQ(models[0].name, "embed");
    EXPECT_EQ(models[1].name, "llama3");
    EXPECT_EQ(models[2].name, "qwen2.5-7b_q4");

    const auto& l = models[1];
    EXPECT_EQ(l.backend, ModelSpec::Backend::kProcess);
    ASSERT_EQ(l.command.size(), 4u);
    EXPECT_EQ(l.command[3], "a b; rm -rf /");  // one argument, never a shell
    EXPECT_EQ(l.env.at("CUDA_VISIBLE_DEVICES"), "0");
    EXPECT_EQ(l.env.at("HF_HOME"), "/srv/hf");
    EXPECT_EQ(l.workdir, "/srv/llama");
    EXPECT_EQ(l.port, 8001);
    EXPECT_EQ(l.health_url, "http://127.0.0.1:8001/health");
    EXPECT_TRUE(l.pinned);
    EXPECT_EQ(l.restart, ModelSpec::Restart::kAlways);
    EXPECT_EQ(l.restart_backoff_min, milliseconds(500));
    EXPECT_EQ(l.restart_backoff_max, milliseconds(120000));
    EXPECT_EQ(l.max_restarts, 3);
    EXPECT_EQ(l.start_timeout, seconds(300));  // from [models]
    EXPECT_EQ(l.stop_timeout, seconds(10));
    EXPECT_EQ(l.idle_timeout, seconds(3600));

    const auto& e = models[0];
    EXPECT_EQ(e.backend, ModelSpec::Backend::kSystemd);  // a unit alone means systemd
    EXPECT_EQ(e.unit, "embed-server.service");
    EXPECT_TRUE(e.command.empty());
    EXPECT_EQ(e.health_url, "http://127.0.0.1:8002/ready");
    EXPECT_FALSE(e.idle_timeout.has_value());
    EXPECT_EQ(e.start_timeout, seconds(30));
    EXPECT_FALSE(e.pinned);
    EXPECT_EQ(e.restart, ModelSpec::Restart::kOnFailure);

    const auto& q = models[2];
    EXPECT_EQ(q.restart, ModelSpec::Restart::kNo);
    EXPECT_EQ(q.idle_timeout, seconds(600));
    EXPECT_EQ(q.stop_timeout, seconds(60));
    EXPECT_FALSE(q.port.has_value());
    EXPECT_EQ(q.health_url, "");  // no port, no URL: running once the process is up
    EXPECT_EQ(q.restart_backoff_min, milliseconds(1000));
    EXPECT_EQ(q.restart_backoff_max, milliseconds(60000));
    EXPECT_EQ(q.max_restarts, 5);
}

TEST(ModelRegistry, BuiltInDefaults) {
    const auto models = parse_models("[models.m]\ncommand = [\"/bin/m\"]\n", "f.toml");
    ASSERT_EQ(models.size(), 1u);
    EXPECT_EQ(models[0].start_timeout, seconds(120));
    EXPECT_EQ(models[0].stop_timeout, seconds(30));
    EXPECT_EQ(models[0].idle_timeout, seconds(1800));
    EXPECT_EQ(to_string(models[0].backend), "process");
    EXPECT_EQ(to_string(models[0].restart), "on-failure");
}

TEST(ModelRegistry, IdleTimeoutZeroMeansNever) {
    const auto models = parse_models(R"(
[models]
idle_timeout = 0
[models.a]
command = ["/bin/a"]
[models.b]
command = ["/bin/b"]
idle_timeout = "5m"
[models.c]
command = ["/bin/c"]
idle_timeout = "off"
)",
                                     "f.toml");
    ASSERT_EQ(models.size(), 3u);
    EXPECT_FALSE(models[0].idle_timeout.has_value());
    EXPECT_EQ(models[1].idle_timeout, seconds(300));
    EXPECT_FALSE(models[2].idle_timeout.has_value());
}

TEST(ModelRegistry, GivenDefaultsWinOverTheFilesScalars) {
    ModelDefaults d;
    d.start_timeout = seconds(7);
    d.idle_timeout.reset();
    const auto models = parse_models(R"(
[models]
start_timeout = "5m"
colour = "ignored here: the config loader checks [models] keys"
[models.a]
command = ["/bin/a"]
)",
                                     "f.toml", d);
    ASSERT_EQ(models.size(), 1u);
    EXPECT_EQ(models[0].start_timeout, seconds(7));
    EXPECT_FALSE(models[0].idle_timeout.has_value());
}

TEST(ModelRegistry, DisabledModelsAreLeftOut) {
    const auto models = parse_models(R"(
[models.a]
command = ["/bin/a"]
enabled = false
[models.b]
command = ["/bin/b"]
)",
                                     "f.toml");
    ASSERT_EQ(models.size(), 1u);
    EXPECT_EQ(models[0].name, "b");
}

TEST(ModelRegistry, NameRules) {
    EXPECT_TRUE(valid_model_name("a"));
    EXPECT_TRUE(valid_model_name("Llama-3.1_8B"));
    EXPECT_TRUE(valid_model_name("0abc"));
    EXPECT_TRUE(valid_model_name(std::string(64, 'x')));
    EXPECT_FALSE(valid_model_name(std::string(65, 'x')));
    EXPECT_FALSE(valid_model_name(""));
    EXPECT_FALSE(valid_model_name("../x"));
    EXPECT_FALSE(valid_model_name(".."));
    EXPECT_FALSE(valid_model_name(".hidden"));
    EXPECT_FALSE(valid_model_name("-rf"));
    EXPECT_FALSE(valid_model_name("_x"));
    EXPECT_FALSE(valid_model_name("a;b"));
    EXPECT_FALSE(valid_model_name("a b"));
    EXPECT_FALSE(valid_model_name("a/b"));
    EXPECT_FALSE(valid_model_name("mod\xc3\xa8le"));
    EXPECT_FALSE(valid_model_name(std::string("a\0b", 3)));
    EXPECT_FALSE(valid_model_name("a\nb"));
}

TEST(ModelRegistry, BadNamesAreErrorsWithTheirPlace) {
    const std::string long_name(65, 'n');
    const auto msg = error_of(
        "[models.\"../x\"]\ncommand = [\"/bin/a\"]\n"
        "[models.\"a;b\"]\ncommand = [\"/bin/a\"]\n"
        "[models.\"a b\"]\ncommand = [\"/bin/a\"]\n"
        "[models.\"mod\xc3\xa8le\"]\ncommand = [\"/bin/a\"]\n"
        "[models." +
        long_name +
        "]\ncommand = [\"/bin/a\"]\n"
        "[models.\"\"]\ncommand = [\"/bin/a\"]\n"
        "[models.\"a\\nb\"]\ncommand = [\"/bin/a\"]\n"
        "[models.ok]\ncommand = [\"/bin/a\"]\n");
    EXPECT_NE(msg.find("f.toml:1:1: model name \"../x\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("f.toml:3:1: model name \"a;b\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("f.toml:5:1: model name \"a b\""), std::string::npos) << msg;
    // Non-ASCII and control characters are shown escaped, long names cut.
    EXPECT_NE(msg.find("\"mod\\xc3\\xa8le\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"" + std::string(64, 'n') + "...\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("model name \"\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"a\\x0ab\""), std::string::npos) << msg;
    EXPECT_EQ(msg.find("\"ok\""), std::string::npos) << msg;
    EXPECT_EQ(std::count(msg.begin(), msg.end(), '\n'), 6) << msg;  // seven errors, one a line
}

TEST(ModelRegistry, SixtyFourCharactersIsTheLongestName) {
    const std::string name(64, 'n');
    const auto models = parse_models("[models." + name + "]\ncommand = [\"/bin/a\"]\n", "f.toml");
    ASSERT_EQ(models.size(), 1u);
    EXPECT_EQ(models[0].name, name);
}

TEST(ModelRegistry, NamesOfApiListsAreReserved) {
    EXPECT_NE(error_of("[models.running]\ncommand = [\"/bin/a\"]\n").find("reserved"),
              std::string::npos);
    EXPECT_NE(error_of("[models.active]\ncommand = [\"/bin/a\"]\n").find("reserved"),
              std::string::npos);
    EXPECT_EQ(error_of("[models.running2]\ncommand = [\"/bin/a\"]\n"), "");
}

TEST(ModelRegistry, ProcessNeedsACommandAndSystemdAUnit) {
    EXPECT_NE(error_of("[models.a]\nport = 8000\n").find("f.toml:1:1: model a: set `command`"),
              std::string::npos);
    EXPECT_NE(error_of("[models.a]\ncommand = []\n").find("f.toml:2:11: `command` needs at least"),
              std::string::npos);
    EXPECT_NE(error_of("[models.a]\ncommand = [\"\"]\n").find("needs at least the program"),
              std::string::npos);
    EXPECT_NE(error_of("[models.a]\nbackend = \"systemd\"\n").find("needs `unit`"),
              std::string::npos);
    EXPECT_NE(error_of("[models.a]\nbackend = \"process\"\nunit = \"a.service\"\n"
                       "command = [\"/bin/a\"]\n")
                  .find("`unit` needs backend = \"systemd\""),
              std::string::npos);
    EXPECT_NE(error_of("[models.a]\nbackend = \"systemd\"\nunit = \"a.service\"\n"
                       "command = [\"/bin/a\"]\n")
                  .find("belong in the systemd unit"),
              std::string::npos);
    EXPECT_NE(error_of("[models.a]\nunit = \"a.service\"\ncommand = [\"/bin/a\"]\n")
                  .find("`unit` needs backend = \"systemd\""),
              std::string::npos);
    EXPECT_NE(
        error_of("[models.a]\nbackend = \"docker\"\n").find("f.toml:2:11: backend \"docker\""),
        std::string::npos);
}

TEST(ModelRegistry, UnitNames) {
    EXPECT_TRUE(valid_unit_name("llama.service"));
    EXPECT_TRUE(valid_unit_name("model@8001.service"));
    EXPECT_TRUE(valid_unit_name("a-b_c:d.e.service"));
    EXPECT_FALSE(valid_unit_name(".service"));
    EXPECT_FALSE(valid_unit_name("llama"));
    EXPECT_FALSE(valid_unit_name("llama.socket"));
    EXPECT_FALSE(valid_unit_name("-H.service"));
    EXPECT_FALSE(valid_unit_name("a;b.service"));
    EXPECT_FALSE(valid_unit_name("a b.service"));
    EXPECT_FALSE(valid_unit_name("a/b.service"));
    EXPECT_FALSE(valid_unit_name("$(x).service"));
    EXPECT_FALSE(valid_unit_name(std::string(300, 'a') + ".service"));
    const auto msg = error_of("[models.a]\nunit = \"a;reboot.service\"\n");
    EXPECT_NE(msg.find("f.toml:2:8: unit \"a;reboot.service\" must be a systemd service name"),
              std::string::npos)
        << msg;
}

TEST(ModelRegistry, UnknownKeysAreErrors) {
    const auto msg = error_of(R"(
[models]
idle_timout = "5m"
[models.a]
command = ["/bin/a"]
comand = ["/bin/a"]
)");
    EXPECT_NE(msg.find("f.toml:3:15: unknown key \"idle_timout\" in [models]"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("f.toml:6:10: unknown key \"comand\" in [models.a]"), std::string::npos)
        << msg;
}

TEST(ModelRegistry, WrongTypesAndRangesAreAllReported) {
    const auto msg = error_of(R"(
[models.a]
command = "/bin/a --port 1"
port = "8001"
pinned = "yes"
env = "A=1"
start_timeout = "soon"
restart = "sometimes"
max_restarts = -1
health_url = "ftp://x/"
workdir = "relative/dir"
stop_timeout = 1.5

[models.b]
command = ["/bin/b", 3]
port = 70000
env = { "1BAD" = "x", GOOD = 1 }
restart_backoff_min = "2m"
restart_backoff_max = "1m"
idle_timeout = "40d"
start_timeout = 0
)");
    for (const char* want : {
             "f.toml:3:11: `command` must be an array of strings",
             "f.toml:4:8: `port` must be a whole number from 1 to 65535",
             "f.toml:5:10: `pinned` must be true or false",
             "f.toml:6:7: `env` must be a table of strings",
             "f.toml:7:17: `start_timeout`:",
             "f.toml:8:11: restart \"sometimes\" must be",
             "f.toml:9:16: `max_restarts` must be a whole number from 0 to 1000",
             "f.toml:10:14: health_url \"ftp://x/\"",
             "f.toml:11:11: `workdir` must be an absolute path",
             "f.toml:12:16: `stop_timeout` must be a duration",
             "f.toml:15:11: `command` must be an array of strings",
             "f.toml:16:8: `port` must be a whole number from 1 to 65535",
             "env name \"1BAD\"",
             "`env.GOOD` must be a string",
             "restart_backoff_min must be above 0 and at most restart_backoff_max",
             "f.toml:20:16: `idle_timeout` must be a duration",
             "f.toml:21:17: `start_timeout` must be at least 1s",
         }) {
        EXPECT_NE(msg.find(want), std::string::npos) << "missing: " << want << "\nin:\n" << msg;
    }
}

TEST(ModelRegistry, TomlSyntaxErrorsHaveTheirPlace) {
    const auto msg = error_of("[models.a]\ncommand = [\"/bin/a\"\n");
    EXPECT_EQ(msg.rfind("f.toml:", 0), 0u) << msg;
    EXPECT_NE(error_of("models = 5\n").find("f.toml:1:10: `models` must be a table"),
              std::string::npos);
    EXPECT_NE(error_of("[[models]]\nname = \"a\"\n").find("`models` must be a table"),
              std::string::npos);
    EXPECT_NE(error_of("[models]\na = 5\n").find("unknown key \"a\" in [models]"),
              std::string::npos);
}

TEST(ModelRegistry, ControlCharactersInArgumentsAreRejected) {
    const auto msg = error_of("[models.a]\ncommand = [\"/bin/a\", \"x\\u0000y\"]\n");
    EXPECT_NE(msg.find("`command` must be an array of strings"), std::string::npos) << msg;
    const auto url = error_of("[models.a]\ncommand = [\"/bin/a\"]\nhealth_url = \"http://x/ y\"\n");
    EXPECT_NE(url.find("without spaces"), std::string::npos) << url;
}

TEST(ModelRegistry, HealthUrlCanBeSwitchedOff) {
    const auto models = parse_models(
        "[models.a]\ncommand = [\"/bin/a\"]\nport = 9000\nhealth_url = \"\"\n", "f.toml");
    ASSERT_EQ(models.size(), 1u);
    EXPECT_EQ(models[0].port, 9000);
    EXPECT_EQ(models[0].health_url, "");
}

TEST(ModelRegistry, LoadModelsReadsTheConfigFile) {
    if (core::find_key("models.idle_timeout") == nullptr) {
        GTEST_SKIP() << "[models] keys are not in config_schema.cpp yet";
    }
    testing::TempDir dir;
    const auto file = dir.write("mlkeeper.toml",
                                "[models]\nstart_timeout = \"9s\"\n"
                                "[models.a]\ncommand = [\"/bin/a\"]\n");
    core::ConfigInputs in;
    in.file = file;
    in.env = {{"MLKEEPER_MODELS_STOP_TIMEOUT", "4"}};
    const auto cfg = core::Config::load(in);
    const auto d = model_defaults(cfg);
    EXPECT_EQ(d.start_timeout, seconds(9));
    EXPECT_EQ(d.stop_timeout, seconds(4));
    EXPECT_EQ(d.log_keep, 3);
    const auto models = load_models(cfg);
    ASSERT_EQ(models.size(), 1u);
    EXPECT_EQ(models[0].start_timeout, seconds(9));
    EXPECT_EQ(models[0].stop_timeout, seconds(4));  // env beats the file
}

}  // namespace
}  // namespace mlk::homelab
