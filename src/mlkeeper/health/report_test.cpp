#include "mlkeeper/health/report.hpp"

#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "mlkeeper/util/process.hpp"

namespace mlk::health {
namespace {

CheckResult result(std::string check, std::string key, Status s, std::optional<double> value,
                   std::string unit = "%") {
    CheckResult r;
    r.check = std::move(check);
    r.key = std::move(key);
    r.category = "disk";
    r.status = s;
    r.message = r.check + ": msg";
    r.value = value;
    r.unit = std::move(unit);
    if (value && r.unit == "%") {
        r.warn = 80;
        r.crit = 90;
        r.min = 0;
        r.max = 100;
        r.threshold = s == Status::kFail ? 90 : 80;
    }
    return r;
}

HealthReport sample() {
    HealthReport rep;
    rep.hostname = "ml-node-01";
    rep.checks.push_back(result("Disk usage /", "disk_/", Status::kPass, 65.25));
    rep.checks.push_back(result("Disk usage /data", "disk_/data", Status::kWarn, 85));
    rep.checks.push_back(result("Memory usage", "memory", Status::kPass, 72));
    rep.checks.back().metrics.push_back({"memory_used_ratio", {}, 0.72, "Memory"});
    rep.checks.push_back(skipped_result("Service docker", "service_docker", "service",
                                        "systemd not running: cannot check docker"));
    return rep;
}

TEST(Summary, ScoreRoundsToTwoDecimals) {
    std::vector<CheckResult> c(15, result("x", "x", Status::kPass, 1));
    c[0].status = c[1].status = Status::kWarn;
    auto s = summarize(c);
    EXPECT_EQ(s.total, 15);
    EXPECT_EQ(s.passed, 13);
    EXPECT_EQ(s.warnings, 2);
    EXPECT_EQ(s.failed, 0);
    EXPECT_DOUBLE_EQ(s.health_score, 86.67);  // the seeds' example
    EXPECT_DOUBLE_EQ(summarize({}).health_score, 100);
}

TEST(ExitCodes, SeedsAndNagios) {
    auto rep = sample();
    EXPECT_EQ(exit_code(rep.checks, Format::kJson), 1);
    rep.checks[1].status = Status::kPass;
    EXPECT_EQ(exit_code(rep.checks, Format::kText), 0);  // skipped is not a warning
    rep.checks.push_back(error_result("Memory usage", "memory", "memory", "cannot read"));
    EXPECT_EQ(exit_code(rep.checks, Format::kText), 1);
    EXPECT_EQ(exit_code(rep.checks, Format::kNagios), 3);
    rep.checks.push_back(result("Disk usage /x", "disk_/x", Status::kFail, 95));
    EXPECT_EQ(exit_code(rep.checks, Format::kText), 2);
    EXPECT_EQ(exit_code(rep.checks, Format::kNagios), 2);
    EXPECT_EQ(parse_format("nagios"), Format::kNagios);
    EXPECT_FALSE(parse_format("xml"));
}

TEST(Json, SeedsShapeInOrder) {
    auto j = to_json(sample());
    std::vector<std::string> keys;
    for (auto it = j.begin(); it != j.end(); ++it)
        keys.push_back(it.key());
    EXPECT_EQ(keys, (std::vector<std::string>{"timestamp", "hostname", "checks", "summary"}));
    EXPECT_EQ(j["hostname"], "ml-node-01");
    EXPECT_EQ(j["timestamp"].get<std::string>().size(), 19u);  // "2025-01-31 14:30:00"
    const auto& c = j["checks"][1];
    EXPECT_EQ(c["check"], "Disk usage /data");
    EXPECT_EQ(c["status"], "warn");
    EXPECT_EQ(c["message"], "Disk usage /data: msg");
    EXPECT_EQ(c["value"], 85.0);
    EXPECT_EQ(c["threshold"], 80.0);
    EXPECT_EQ(c["unit"], "%");
    EXPECT_EQ(j["checks"][3]["status"], "pass");
    EXPECT_EQ(j["checks"][3]["skipped"], true);
    EXPECT_TRUE(j["checks"][3]["value"].is_null());
    const auto& s = j["summary"];
    EXPECT_EQ(s["total"], 4);
    EXPECT_EQ(s["passed"], 3);
    EXPECT_EQ(s["warnings"], 1);
    EXPECT_EQ(s["failed"], 0);
    EXPECT_EQ(s["health_score"], 75.0);
    EXPECT_EQ(s["skipped"], 1);
    EXPECT_NE(j.dump().find("\"health_score\":75.0"), std::string::npos) << j.dump();
}

TEST(Text, OneLinePerCheckAndColourOnlyWhenAsked) {
    auto rep = sample();
    auto plain = to_text(rep, Colour::kNo, Verbosity::kNormal);
    EXPECT_NE(plain.find("PASS  Disk usage /: msg\n"), std::string::npos) << plain;
    EXPECT_NE(plain.find("WARN  Disk usage /data: msg\n"), std::string::npos);
    EXPECT_NE(plain.find("SKIP  Service docker: skipped: systemd not running"), std::string::npos);
    EXPECT_NE(plain.find("4 checks: 3 passed, 1 warnings, 0 failed; health score 75%"),
              std::string::npos);
    EXPECT_EQ(plain.find('\033'), std::string::npos);
    auto colour = to_text(rep, Colour::kYes, Verbosity::kVerbose);
    EXPECT_NE(colour.find("\033[33mWARN\033[0m"), std::string::npos);
    EXPECT_NE(colour.find("value=85% warn=80 crit=90"), std::string::npos) << colour;
}

TEST(Nagios, StatusLineAndPerfdata) {
    auto rep = sample();
    rep.checks.push_back(result("Uptime", "uptime", Status::kPass, 273784.52, "s"));
    rep.checks.push_back(result("Odd", "it's=odd", Status::kPass, 1, "count"));
    auto n = to_nagios(rep);
    EXPECT_EQ(n.substr(0, n.find(" | ")),
              "HEALTH WARNING - Disk usage /data: msg (5 of 6 checks passed)");
    EXPECT_NE(n.find("'disk_/'=65.25%;80;90;0;100"), std::string::npos) << n;
    EXPECT_NE(n.find("'disk_/data'=85%;80;90;0;100"), std::string::npos);
    EXPECT_NE(n.find("'uptime'=273784.52s "), std::string::npos) << n;
    EXPECT_NE(n.find("'it''s_odd'=1 "), std::string::npos) << n;
    EXPECT_NE(n.find("'health_score'=83.33%;;;0;100\n"), std::string::npos) << n;
    EXPECT_EQ(std::count(n.begin(), n.end(), '\n'), 1);
    HealthReport ok;
    ok.checks.push_back(result("Memory usage", "memory", Status::kPass, 10));
    EXPECT_EQ(to_nagios(ok).substr(0, 30), "HEALTH OK - 1 checks passed | ");
    ok.checks.push_back(error_result("CPU load", "cpu_load", "cpu", "cannot read /proc/loadavg"));
    EXPECT_EQ(to_nagios(ok).substr(0, 42), "HEALTH UNKNOWN - cannot read /proc/loadavg");
}

TEST(Prometheus, PassesPromtool) {
    auto rep = sample();
    rep.checks.push_back(result("Disk usage /a\"b", "disk_/a\"b", Status::kFail, 95));
    rep.checks.back().metrics.push_back(
        {"disk_used_ratio", {{"mountpoint", "/a\"b"}}, 0.95, "Used share"});
    rep.checks.back().metrics.push_back(
        {"oom_kills_total", {}, 3, "OOM kills", core::MetricType::kCounter});
    auto text = to_prometheus(rep);
    EXPECT_NE(
        text.find("mlkeeper_health_check_status{check=\"Disk usage /data\",category=\"disk\"} 1"),
        std::string::npos)
        << text;
    EXPECT_NE(text.find("mlkeeper_health_score_ratio 0.6"), std::string::npos) << text;
    EXPECT_NE(text.find("mlkeeper_health_memory_used_ratio 0.72"), std::string::npos);
    if (::access("/usr/bin/promtool", X_OK) != 0) {
        GTEST_SKIP() << "/usr/bin/promtool not installed";
    }
    util::RunOptions o;
    o.stdin_data = text;
    o.timeout = std::chrono::seconds(30);
    auto r = util::run_process({"/usr/bin/promtool", "check", "metrics"}, o);
    EXPECT_TRUE(r.ok()) << r.out << r.err << "\n" << text;
}

}  // namespace
}  // namespace mlk::health
