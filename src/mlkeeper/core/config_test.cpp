#include "mlkeeper/core/config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "mlkeeper/core/env_file.hpp"
#include "mlkeeper/core/error.hpp"
#include "support/temp_dir.hpp"

namespace mlk::core {
namespace {

using mlk::testing::TempDir;
using ::testing::HasSubstr;

ConfigInputs no_file() {
    ConfigInputs in;
    in.default_file = "/nonexistent/mlkeeper.toml";
    return in;
}

std::string load_error(const ConfigInputs& in) {
    try {
        Config::load(in);
    } catch (const ConfigError& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected a ConfigError";
    return {};
}

// The seeds' variables, their keys and their documented defaults.
struct SeedVar {
    const char* env;
    const char* key;
    const char* shown_default;  // Config::display of the default
    const char* other;          // a valid non-default value
    const char* other_shown;
};
const SeedVar kSeedVars[] = {
    {"MODEL_DIR", "backup.model_dir", "/opt/ml/models", "/srv/m", "/srv/m"},
    {"BACKUP_DIR", "backup.backup_dir", "/backup/models", "/srv/b", "/srv/b"},
    {"RETENTION_DAYS", "backup.retention_days", "30d", "7", "7d"},
    {"COMPRESSION_LEVEL", "backup.compression_level", "3", "9", "9"},
    {"S3_BUCKET", "backup.s3.bucket", "", "my-ml-backups", "my-ml-backups"},
    {"S3_STORAGE_CLASS", "backup.s3.storage_class", "STANDARD", "GLACIER", "GLACIER"},
    {"VERIFY_BACKUP", "backup.verify_backup", "true", "false", "false"},
    {"TEMP_THRESHOLD", "gpu.temp_threshold", "80", "75", "75"},
    {"MEMORY_THRESHOLD", "gpu.memory_threshold", "90", "85", "85"},
    {"POWER_THRESHOLD", "gpu.power_threshold", "95", "90.5", "90.5"},
    {"METRICS_FILE", "gpu.metrics_file", "/var/log/gpu-metrics.csv", "/tmp/m.csv", "/tmp/m.csv"},
    {"ALERT_EMAIL", "alerts.alert_email", "", "ml-ops@example.com", "ml-ops@example.com"},
    {"ALERT_WEBHOOK", "alerts.alert_webhook", "", "https://hooks.example/x", "********"},
    {"ALERT_COOLDOWN", "alerts.alert_cooldown", "1h", "600", "10m"},
    {"EXPERIMENTS_RETENTION", "cleanup.experiments_retention", "30d", "60", "60d"},
    {"CHECKPOINTS_RETENTION", "cleanup.checkpoints_retention", "7d", "3", "3d"},
    {"LOGS_RETENTION", "cleanup.logs_retention", "14d", "2w", "14d"},
    {"AGGRESSIVE", "cleanup.aggressive", "false", "true", "true"},
    {"EXPERIMENTS_DIR", "cleanup.experiments_dir", "/opt/ml/experiments", "/e", "/e"},
    {"DISK_WARN_THRESHOLD", "health.disk_warn_threshold", "80", "70", "70"},
    {"DISK_CRIT_THRESHOLD", "health.disk_crit_threshold", "90", "95", "95"},
    {"MEM_WARN_THRESHOLD", "health.mem_warn_threshold", "85", "90", "90"},
    {"GPU_TEMP_WARN", "health.gpu_temp_warn", "75", "70", "70"},
    {"GPU_TEMP_CRIT", "health.gpu_temp_crit", "85", "90", "90"},
    {"SERVICES_TO_CHECK", "health.services_to_check", "docker", "docker nginx,postgresql",
     "docker nginx postgresql"},
    {"RUN_HEALTH_CHECK", "maintain.run_health_check", "true", "false", "false"},
    {"RUN_GPU_MONITOR", "maintain.run_gpu_monitor", "true", "no", "false"},
    {"RUN_BACKUP", "maintain.run_backup", "true", "0", "false"},
    {"RUN_CLEANUP", "maintain.run_cleanup", "true", "off", "false"},
    {"CONTINUE_ON_ERROR", "maintain.continue_on_error", "false", "true", "true"},
    {"LOG_FILE", "log.log_file", "", "/var/log/custom-maintenance.log",
     "/var/log/custom-maintenance.log"},
};

TEST(Config, SeedDefaults) {
    auto cfg = Config::load(no_file());
    for (const auto& v : kSeedVars) {
        const auto& s = cfg.setting(v.key);
        EXPECT_EQ(Config::display(s), v.shown_default) << v.key;
        EXPECT_EQ(s.source, Source::kDefault) << v.key;
        EXPECT_EQ(s.spec->env, v.env) << v.key;
    }
}

TEST(Config, EverySeedVariableMapsToItsKey) {
    for (const auto& v : kSeedVars) {
        auto in = no_file();
        in.env[v.env] = v.other;
        auto cfg = Config::load(in);
        const auto& s = cfg.setting(v.key);
        EXPECT_EQ(Config::display(s), v.other_shown) << v.env;
        EXPECT_EQ(s.source, Source::kEnv) << v.env;
        EXPECT_EQ(s.origin, std::string("environment ") + v.env);
    }
}

TEST(Config, SeedVariablesKeyNamesAreTheirLowerCaseNames) {
    for (const auto& v : kSeedVars) {
        std::string lower(v.env);
        for (auto& c : lower) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        std::string key(v.key);
        std::string name = key.substr(key.find('.') + 1);  // "s3.bucket" for [backup.s3] bucket
        std::replace(name.begin(), name.end(), '.', '_');
        EXPECT_EQ(name, lower) << v.env;
    }
}

TEST(Config, EveryEnvVariableIsUnique) {
    std::set<std::string_view> seen;
    for (const auto& k : config_keys()) {
        if (!k.env.empty()) {
            EXPECT_TRUE(seen.insert(k.env).second) << k.env;
        }
    }
}

TEST(Config, PrecedenceFlagOverEnvOverEnvFileOverFileOverDefault) {
    TempDir dir;
    auto file = dir.write("c.toml",
                          "[backup]\nretention_days = 10\nmodel_dir = \"/file/models\"\n"
                          "backup_dir = \"/file/backups\"\nverify_backup = false\n"
                          "[gpu]\ntemp_threshold = 70\n");
    auto envf = dir.write(
        "ml.conf", "RETENTION_DAYS=11\nMODEL_DIR=/envfile/models\nBACKUP_DIR=\"/envfile/b\"\n");
    ConfigInputs in = no_file();
    in.file = file;
    in.env_file = envf;
    in.env = {{"RETENTION_DAYS", "12"}, {"MODEL_DIR", "/env/models"}};
    in.flags = {{"backup.retention_days", "13", "option --retention-days"}};
    auto cfg = Config::load(in);

    EXPECT_EQ(cfg.duration("backup.retention_days"), std::chrono::hours(24 * 13));
    EXPECT_EQ(cfg.setting("backup.retention_days").source, Source::kFlag);
    EXPECT_EQ(cfg.str("backup.model_dir"), "/env/models");
    EXPECT_EQ(cfg.setting("backup.model_dir").source, Source::kEnv);
    EXPECT_EQ(cfg.str("backup.backup_dir"), "/envfile/b");
    EXPECT_EQ(cfg.setting("backup.backup_dir").source, Source::kEnvFile);
    EXPECT_EQ(cfg.setting("backup.backup_dir").origin, envf.string() + ":3");
    EXPECT_FALSE(cfg.boolean("backup.verify_backup"));
    EXPECT_EQ(cfg.setting("backup.verify_backup").source, Source::kFile);
    EXPECT_EQ(cfg.setting("backup.verify_backup").origin, file.string() + ":5:17");
    EXPECT_EQ(cfg.integer("gpu.temp_threshold"), 70);
    EXPECT_DOUBLE_EQ(cfg.number("gpu.memory_threshold"), 90);
    EXPECT_EQ(cfg.setting("gpu.memory_threshold").source, Source::kDefault);
    EXPECT_THROW(cfg.integer("gpu.memory_threshold"), std::logic_error);
}

TEST(Config, DurationsAcceptUnitsAndPlainNumbers) {
    struct Case {
        const char* env;
        const char* text;
        std::int64_t seconds;
    } cases[] = {
        {"RETENTION_DAYS", "30", 30 * 86400}, {"RETENTION_DAYS", "30d", 30 * 86400},
        {"RETENTION_DAYS", "36h", 36 * 3600}, {"ALERT_COOLDOWN", "90", 90},
        {"ALERT_COOLDOWN", "90s", 90},        {"ALERT_COOLDOWN", "10m", 600},
    };
    for (const auto& c : cases) {
        auto in = no_file();
        in.env[c.env] = c.text;
        auto cfg = Config::load(in);
        const auto* spec =
            find_key(std::string(c.env) == "RETENTION_DAYS" ? "backup.retention_days"
                                                            : "alerts.alert_cooldown");
        EXPECT_EQ(cfg.duration(std::string(spec->section) + "." + std::string(spec->name)).count(),
                  c.seconds)
            << c.env << "=" << c.text;
    }
}

TEST(Config, SizesAcceptDecimalBinaryAndBytes) {
    KeySpec spec{"t", "min_size", ValueType::kSize, "", "", 0, 0};
    EXPECT_EQ(std::get<Bytes>(std::get<Value>(parse_value(spec, "500GB"))).value,
              500'000'000'000ULL);
    EXPECT_EQ(std::get<Bytes>(std::get<Value>(parse_value(spec, "2GiB"))).value, 2ULL << 30);
    EXPECT_EQ(std::get<Bytes>(std::get<Value>(parse_value(spec, "4096"))).value, 4096ULL);
    EXPECT_TRUE(std::holds_alternative<std::string>(parse_value(spec, "lots")));
}

TEST(Config, UnknownKeySuggestsTheClosest) {
    TempDir dir;
    ConfigInputs in = no_file();
    in.file = dir.write("c.toml", "[backup]\nmodel_dir = \"/m\"\nretension_days = 5\n");
    EXPECT_EQ(load_error(in), in.file->string() +
                                  ":3:1: unknown key `retension_days` in [backup] (did you mean "
                                  "`retention_days`?)");
}

TEST(Config, KeyInTheWrongSectionSaysWhereItBelongs) {
    TempDir dir;
    ConfigInputs in = no_file();
    in.file = dir.write("c.toml", "[health]\ntemp_threshold = 70\n");
    EXPECT_THAT(load_error(in),
                HasSubstr("unknown key `temp_threshold` in [health] (it belongs in [gpu])"));
}

TEST(Config, NestedSectionIsReadAndChecked) {
    TempDir dir;
    ConfigInputs in = no_file();
    in.file = dir.write("c.toml",
                        "[backup]\nmodel_dir = \"/m\"\n[backup.s3]\nbucket = \"b\"\n"
                        "part_size = \"8MiB\"\n");
    auto cfg = Config::load(in);
    EXPECT_EQ(cfg.str("backup.s3.bucket"), "b");
    EXPECT_EQ(cfg.size("backup.s3.part_size"), 8ULL << 20);
    EXPECT_EQ(cfg.setting("backup.s3.bucket").origin, in.file->string() + ":4:10");

    in.file = dir.write("d.toml", "[backup.s3]\nbuckett = \"b\"\n");
    EXPECT_THAT(load_error(in), HasSubstr("unknown key `buckett` in [backup.s3] (did you mean "
                                          "`bucket`?)"));
    in.file = dir.write("e.toml", "[backup.s3]\npart_size = \"1MiB\"\n");
    EXPECT_THAT(load_error(in), HasSubstr("part_size"));
}

TEST(Config, OldS3KeysInBackupStillWork) {
    TempDir dir;
    ConfigInputs in = no_file();
    in.file =
        dir.write("c.toml", "[backup]\ns3_bucket = \"old\"\ns3_storage_class = \"GLACIER\"\n");
    auto cfg = Config::load(in);
    EXPECT_EQ(cfg.str("backup.s3.bucket"), "old");
    EXPECT_EQ(cfg.str("backup.s3.storage_class"), "GLACIER");
}

TEST(Config, UnknownSectionSuggestsTheClosest) {
    TempDir dir;
    ConfigInputs in = no_file();
    in.file = dir.write("c.toml", "[bakup]\nmodel_dir = \"/m\"\n");
    EXPECT_EQ(load_error(in),
              in.file->string() + ":1:2: unknown section [bakup] (did you mean [backup]?)");
}

TEST(Config, ModelTablesAreLeftToTheRegistry) {
    TempDir dir;
    ConfigInputs in = no_file();
    in.file = dir.write("c.toml",
                        "[models.llama]\ncommand = [\"sleep\", \"1\"]\nport = 8001\n"
                        "[api]\n");
    EXPECT_NO_THROW(Config::load(in));
    in.file = dir.write("d.toml", "[models]\nnot_a_key = 1\n");
    EXPECT_THAT(load_error(in), HasSubstr("unknown key `not_a_key` in [models]"));
}

TEST(Config, WrongTypeIsReportedWithLineAndColumn) {
    TempDir dir;
    ConfigInputs in = no_file();
    in.file =
        dir.write("c.toml", "[backup]\nverify_backup = \"yes\"\n[gpu]\ntemp_threshold = 80.5\n");
    auto err = load_error(in);
    EXPECT_THAT(err, HasSubstr(in.file->string() +
                               ":2:17: wrong type for verify_backup: expected a boolean"));
    EXPECT_THAT(err, HasSubstr(in.file->string() +
                               ":4:18: wrong type for temp_threshold: expected an integer"));
}

TEST(Config, OutOfRangeValuesAreRejected) {
    struct Case {
        std::map<std::string, std::string> env;
        const char* expect;
    } cases[] = {
        {{{"COMPRESSION_LEVEL", "0"}}, "0 is out of range for compression_level: expected 1 to 19"},
        {{{"COMPRESSION_LEVEL", "10"}, {"BACKUP_COMPRESSION", "gzip"}},
         "compression_level 10 is out of range for gzip: expected 1 to 9"},
        {{{"COMPRESSION_LEVEL", "20"}}, "20 is out of range for compression_level"},
        {{{"RETENTION_DAYS", "-3"}}, "invalid duration"},
        {{{"RETENTION_DAYS", "0"}}, "out of range for retention_days"},
        {{{"DISK_WARN_THRESHOLD", "150"}},
         "150 is out of range for disk_warn_threshold: expected 0 to 100"},
        {{{"MEMORY_THRESHOLD", "101"}}, "out of range for memory_threshold"},
        {{{"TEMP_THRESHOLD", "eighty"}}, "invalid integer \"eighty\" for temp_threshold"},
        {{{"VERIFY_BACKUP", "maybe"}}, "invalid boolean \"maybe\" for verify_backup"},
        {{{"S3_STORAGE_CLASS", "GLACER"}}, "(did you mean \"GLACIER\"?)"},
        {{{"DISK_WARN_THRESHOLD", "95"}},
         "disk_warn_threshold (95) must not be above disk_crit_threshold (90"},
    };
    for (const auto& c : cases) {
        auto in = no_file();
        in.env = c.env;
        auto err = load_error(in);
        EXPECT_THAT(err, HasSubstr(c.expect)) << c.env.begin()->first;
        auto var = c.env.contains("COMPRESSION_LEVEL") ? "COMPRESSION_LEVEL" : c.env.begin()->first;
        EXPECT_THAT(err, HasSubstr("environment " + var + ": "));
    }
}

TEST(Config, OutOfRangeInFileCarriesLocation) {
    TempDir dir;
    ConfigInputs in = no_file();
    in.file = dir.write("c.toml",
                        "[backup]\ncompression = \"gzip\"\ncompression_level = "
                        "10\n[health]\ndisk_crit_threshold = 150\n");
    auto err = load_error(in);
    EXPECT_THAT(
        err, HasSubstr(in.file->string() + ":3:21: compression_level 10 is out of range for gzip"));
    EXPECT_THAT(err, HasSubstr(in.file->string() + ":5:23: 150 is out of range"));
}

TEST(Config, GzipAndZstdLevelDefaults) {
    auto in = no_file();
    EXPECT_EQ(Config::load(in).integer("backup.compression_level"), 3);
    in.env["BACKUP_COMPRESSION"] = "gzip";
    EXPECT_EQ(Config::load(in).integer("backup.compression_level"), 6);
}

TEST(Config, TomlSyntaxErrorHasLocation) {
    TempDir dir;
    ConfigInputs in = no_file();
    in.file = dir.write("c.toml", "[backup]\nmodel_dir = /no/quotes\n");
    EXPECT_THAT(load_error(in), HasSubstr(in.file->string() + ":2:"));
}

TEST(Config, MissingNamedFileIsAnErrorMissingDefaultIsNot) {
    TempDir dir;
    ConfigInputs in = no_file();
    EXPECT_FALSE(Config::load(in).file().has_value());
    in.file = dir / "absent.toml";
    EXPECT_EQ(load_error(in), (dir / "absent.toml").string() + ": config file not found");
    auto env_named = no_file();
    env_named.env["MLKEEPER_CONFIG"] = (dir / "also-absent.toml").string();
    EXPECT_THAT(load_error(env_named), HasSubstr("also-absent.toml: config file not found"));
    auto dflt = no_file();
    dflt.default_file = dir.write("default.toml", "[gpu]\ntemp_threshold = 77\n");
    EXPECT_EQ(Config::load(dflt).integer("gpu.temp_threshold"), 77);
}

TEST(Config, BadFlagValueIsAUsageError) {
    auto in = no_file();
    in.flags = {{"backup.compression_level", "abc", "option --level"}};
    try {
        Config::load(in);
        FAIL() << "expected UsageError";
    } catch (const UsageError& e) {
        EXPECT_THAT(e.what(), HasSubstr("option --level: invalid integer \"abc\""));
        EXPECT_EQ(e.code(), ExitCode::kUsage);
    }
}

TEST(Config, AllProblemsAreListedOnePerLine) {
    TempDir dir;
    ConfigInputs in = no_file();
    in.file = dir.write("c.toml", "[backup]\nfoo = 1\nbar = 2\n");
    auto err = load_error(in);
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(Config, SecretsAreMasked) {
    auto in = no_file();
    in.env["ALERT_WEBHOOK"] = "https://hooks.slack.com/services/T000/B000/SECRET";
    auto cfg = Config::load(in);
    EXPECT_EQ(Config::display(cfg.setting("alerts.alert_webhook")), "********");
    EXPECT_EQ(cfg.str("alerts.alert_webhook"), "https://hooks.slack.com/services/T000/B000/SECRET");
}

TEST(EnvFile, ParsesTheSeedsConfFile) {
    auto entries = parse_env_text(
        "# /etc/ml-automation.conf\nMODEL_DIR=/opt/ml/models\nexport BACKUP_DIR=\"/backup/my "
        "models\"\n"
        "\nALERT_EMAIL='ops@example.com'  # who\nRETENTION_DAYS=30 # days\nEMPTY=\n",
        "ml.conf");
    ASSERT_EQ(entries.size(), 5u);
    EXPECT_EQ(entries[0].key, "MODEL_DIR");
    EXPECT_EQ(entries[1].value, "/backup/my models");
    EXPECT_EQ(entries[1].line, 3);
    EXPECT_EQ(entries[2].value, "ops@example.com");
    EXPECT_EQ(entries[3].value, "30");
    EXPECT_EQ(entries[4].value, "");
}

TEST(EnvFile, MalformedLinesAreErrorsWithLineNumbers) {
    EXPECT_THROW(parse_env_text("MODEL_DIR /x\n", "f"), ConfigError);
    try {
        parse_env_text("A=1\nB=\"unterminated\n", "ml.conf");
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_STREQ(e.what(), "ml.conf:2: unterminated quote in the value of B");
    }
    EXPECT_THROW(parse_env_text("1BAD=x\n", "f"), ConfigError);
    EXPECT_THROW(read_env_file("/nonexistent/ml.conf"), ConfigError);
}

}  // namespace
}  // namespace mlk::core
