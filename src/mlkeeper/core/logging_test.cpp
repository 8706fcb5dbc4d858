#include "mlkeeper/core/logging.hpp"

#include <gtest/gtest.h>

#include <spdlog/sinks/stdout_sinks.h>
#include <csignal>
#include <nlohmann/json.hpp>

#include "support/temp_dir.hpp"

namespace mlk::core {
namespace {

using mlk::testing::slurp;
using mlk::testing::TempDir;

class LoggingTest : public ::testing::Test {
  protected:
    void TearDown() override {
        spdlog::set_default_logger(std::make_shared<spdlog::logger>(
            "test", std::make_shared<spdlog::sinks::stderr_sink_mt>()));
    }
};

TEST_F(LoggingTest, SighupReopensARotatedFile) {
    TempDir dir;
    auto log = dir / "ml-backup.log";
    LogOptions o;
    o.file = log;
    o.stderr_mode = StderrMode::kQuiet;
    ASSERT_TRUE(init_logging(o));
    install_sighup_reopen();
    spdlog::info("before rotation");
    std::filesystem::rename(log, dir / "ml-backup.log.1");  // what logrotate does
    spdlog::info("still the old file");
    ASSERT_EQ(::raise(SIGHUP), 0);
    spdlog::info("after rotation");
    spdlog::default_logger()->flush();
    auto old_content = slurp(dir / "ml-backup.log.1");
    auto new_content = slurp(log);
    EXPECT_NE(old_content.find("before rotation"), std::string::npos);
    EXPECT_NE(old_content.find("still the old file"), std::string::npos);
    EXPECT_EQ(old_content.find("after rotation"), std::string::npos);
    EXPECT_NE(new_content.find("after rotation"), std::string::npos);
    EXPECT_NE(new_content.find("[info]"), std::string::npos);
    signal(SIGHUP, SIG_DFL);
}

TEST_F(LoggingTest, JsonLinesEscapeAndCarryFields) {
    TempDir dir;
    LogOptions o;
    o.file = dir / "x.log";
    o.format = LogFormat::kJson;
    o.command = "backup";
    o.stderr_mode = StderrMode::kQuiet;
    ASSERT_TRUE(init_logging(o));
    spdlog::warn("quote \" and newline \n inside");
    spdlog::default_logger()->flush();
    auto line = slurp(dir / "x.log");
    ASSERT_FALSE(line.empty());
    auto j = nlohmann::json::parse(line.substr(0, line.find('\n')));
    EXPECT_EQ(j["level"], "warning");
    EXPECT_EQ(j["command"], "backup");
    EXPECT_EQ(j["msg"], "quote \" and newline \n inside");
    EXPECT_TRUE(j["ts"].get<std::string>().ends_with("Z"));
}

TEST_F(LoggingTest, UnwritableFileReturnsFalseAndKeepsLogging) {
    TempDir dir;
    auto blocker = dir.write("blocker", "x");
    LogOptions o;
    o.file = blocker / "cannot" / "exist.log";
    o.stderr_mode = StderrMode::kQuiet;
    EXPECT_FALSE(init_logging(o));
    EXPECT_NO_THROW(spdlog::error("still fine"));
}

TEST(LogLevel, ParsesNames) {
    EXPECT_EQ(parse_log_level("warning"), spdlog::level::warn);
    EXPECT_EQ(parse_log_level("debug"), spdlog::level::debug);
    EXPECT_EQ(parse_log_level("off"), spdlog::level::off);
}

}  // namespace
}  // namespace mlk::core
