// Black-box checks of the monitoring files in packaging/, no server needed: promtool accepts the
// example Prometheus configuration, the alert rules and the rules' unit tests; those unit tests
// fail once the alerts are renamed (so each alert has a case where it fires) and each alert also
// has a case where it must not; every alert has `for:`, a severity and templated annotations;
// the rules, their tests and the Grafana dashboard's queries use only the metric families listed
// in docs/formats/metrics.md; the dashboard parses and every panel has a data source and a query.
// The promtool checks skip where promtool is not installed (Debian package: prometheus).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/util/process.hpp"
#include "mlkeeper/util/strings.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"

namespace mlk::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const fs::path kSource = MLK_SOURCE_DIR;
const fs::path kPrometheusDir = kSource / "packaging/prometheus";
const fs::path kConfig = kPrometheusDir / "prometheus.yml";
const fs::path kRules = kPrometheusDir / "mlkeeper-alerts.yml";
const fs::path kRuleTests = kPrometheusDir / "mlkeeper-alerts.test.yml";
const fs::path kDashboard = kSource / "packaging/grafana/mlkeeper-dashboard.json";
const fs::path kMetricsDoc = kSource / "docs/formats/metrics.md";
constexpr std::string_view kDataSource = "${DS_PROMETHEUS}";

// The alerts the rules must define (the observability issue's list).
const std::set<std::string> kAlerts = {
    "MlkeeperGpuHot",
    "MlkeeperGpuWarm",
    "MlkeeperGpuUncorrectableEcc",
    "MlkeeperGpuXid",
    "MlkeeperGpuLost",
    "MlkeeperBackupTooOld",
    "MlkeeperBackupFailed",
    "MlkeeperBackupUnverified",
    "MlkeeperHealthCritical",
    "MlkeeperHealthStale",
    "MlkeeperCleanupBreakerTripped",
    "MlkeeperJobFailing",
    "MlkeeperAlertDeliveryFailing",
    "MlkeeperAgentDown",
};

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        out.push_back(line);
    }
    return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

std::string unquote(std::string_view s) {
    s = util::trim(s);
    if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) {
        s = s.substr(1, s.size() - 2);
    }
    return std::string(s);
}

std::string join_lines(const std::vector<std::string>& v) {
    return util::join(v, "\n");
}

// ------------------------------------------------------------------------ metric names

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == ':';
}

// Every whole identifier that starts with `mlkeeper_` (PromQL, series selectors, templates):
// "xmlkeeper_a" is not one; "mlkeeper_Bad" is taken whole so that it cannot match a listed name.
std::set<std::string> metric_names_in(std::string_view text) {
    constexpr std::string_view kPrefix = "mlkeeper_";
    std::set<std::string> out;
    for (auto at = text.find(kPrefix); at != std::string_view::npos;
         at = text.find(kPrefix, at + 1)) {
        if (at > 0 && is_name_char(text[at - 1])) {
            continue;
        }
        auto end = at + kPrefix.size();
        while (end < text.size() && is_name_char(text[end])) {
            ++end;
        }
        out.emplace(text.substr(at, end - at));
    }
    return out;
}

// The families docs/formats/metrics.md lists: a backtick followed by mlkeeper_[a-z0-9_]+ (so
// "`mlkeeper_gpu_up`" and "`mlkeeper_gpu_up{gpu,uuid}`" both name mlkeeper_gpu_up). Names in
// fenced example output are not backticked and do not count.
std::set<std::string> documented_metrics(std::string_view markdown) {
    constexpr std::string_view kPrefix = "`mlkeeper_";
    std::set<std::string> out;
    for (auto at = markdown.find(kPrefix); at != std::string_view::npos;
         at = markdown.find(kPrefix, at + 1)) {
        auto end = at + kPrefix.size();
        while (end < markdown.size() &&
               ((markdown[end] >= 'a' && markdown[end] <= 'z') ||
                (markdown[end] >= '0' && markdown[end] <= '9') || markdown[end] == '_')) {
            ++end;
        }
        if (end > at + kPrefix.size()) {
            out.emplace(markdown.substr(at + 1, end - at - 1));
        }
    }
    return out;
}

std::vector<std::string> undocumented(const std::set<std::string>& used,
                                      const std::set<std::string>& documented,
                                      const std::string& where) {
    std::vector<std::string> out;
    for (const auto& name : used) {
        if (documented.count(name) == 0) {
            out.push_back(where + " uses " + name +
                          ", which docs/formats/metrics.md does not list");
        }
    }
    return out;
}

// ------------------------------------------------------------------------ alert rules

struct AlertRule {
    std::string name;
    std::string text;  // the rule's lines, comments left out
};

// The alerting rules of a rules file, by its `- alert:` lines.
std::vector<AlertRule> alert_rules(const std::string& yaml) {
    std::vector<AlertRule> out;
    bool in_alert = false;
    for (const auto& line : lines_of(yaml)) {
        const auto t = util::trim(line);
        if (starts_with(t, "#")) {
            continue;
        }
        if (starts_with(t, "- alert:")) {
            out.push_back({unquote(t.substr(8)), ""});
            in_alert = true;
        } else if (starts_with(t, "- record:") || starts_with(t, "- name:")) {
            in_alert = false;
        }
        if (in_alert) {
            out.back().text += line + "\n";
        }
    }
    return out;
}

// What an alerting rule lacks: a `for:`, a severity label, a summary and a description that
// are filled in from $labels or $value.
std::vector<std::string> rule_problems(const std::string& yaml) {
    std::vector<std::string> out;
    std::set<std::string> seen;
    for (const auto& rule : alert_rules(yaml)) {
        const auto bad = [&](const std::string& what) { out.push_back(rule.name + ": " + what); };
        if (!seen.insert(rule.name).second) {
            bad("defined twice");
        }
        bool has_for = false, has_severity = false;
        std::string summary, description;
        std::string* annotation = nullptr;  // the one whose (folded) lines follow
        std::size_t annotation_indent = 0;
        for (const auto& line : lines_of(rule.text)) {
            const auto t = util::trim(line);
            const auto indent = line.find_first_not_of(' ');
            if (annotation != nullptr && !t.empty() && indent <= annotation_indent) {
                annotation = nullptr;  // the next key at its depth or above
            }
            if (starts_with(t, "for:") && !util::trim(t.substr(4)).empty()) {
                has_for = true;
            }
            const auto severity = unquote(starts_with(t, "severity:") ? t.substr(9) : "");
            if (severity == "critical" || severity == "warning" || severity == "info") {
                has_severity = true;
            }
            if (starts_with(t, "summary:") || starts_with(t, "description:")) {
                annotation = starts_with(t, "summary:") ? &summary : &description;
                annotation_indent = indent;
            }
            if (annotation != nullptr) {
                *annotation += std::string(t) + " ";
            }
        }
        if (!has_for) {
            bad("no `for:`");
        }
        if (!has_severity) {
            bad("no severity label (critical, warning or info)");
        }
        for (const auto& [key, value] :
             {std::pair{"summary", &summary}, std::pair{"description", &description}}) {
            if (value->empty()) {
                bad(std::string("no ") + key + " annotation");
            } else if (value->find("$labels.") == std::string::npos &&
                       value->find("$value") == std::string::npos) {
                bad(std::string(key) + " uses neither $labels nor $value");
            }
        }
    }
    return out;
}

// What the rules' unit tests lack: for every alert, a case where it fires (exp_alerts with an
// entry) and one where it must not (exp_alerts: []); a case for an alert the rules do not
// define would pass whatever the rules say, so that is a problem too.
std::vector<std::string> coverage_problems(const std::string& rules_yaml,
                                           const std::string& tests_yaml) {
    struct Cases {
        int firing = 0, quiet = 0;
    };
    std::map<std::string, Cases> cases;
    std::string current;
    std::vector<std::string> out;
    const auto ls = lines_of(tests_yaml);
    for (std::size_t i = 0; i < ls.size(); ++i) {
        auto t = util::trim(ls[i]);
        if (starts_with(t, "- ")) {
            t = util::trim(t.substr(2));
        }
        if (starts_with(t, "alertname:")) {
            current = unquote(t.substr(10));
        } else if (starts_with(t, "exp_alerts:")) {
            const auto rest = util::trim(t.substr(11));
            bool fires = false;
            if (rest.empty()) {
                for (std::size_t j = i + 1; j < ls.size(); ++j) {
                    const auto next = util::trim(ls[j]);
                    if (!next.empty() && !starts_with(next, "#")) {
                        fires = starts_with(next, "- exp_labels:") ||
                                starts_with(next, "- exp_annotations:");
                        break;
                    }
                }
            } else if (rest != "[]") {
                out.push_back("line " + std::to_string(i + 1) + ": exp_alerts is not [] or a list");
                continue;
            }
            if (current.empty()) {
                out.push_back("line " + std::to_string(i + 1) + ": exp_alerts before alertname");
                continue;
            }
            ++(fires ? cases[current].firing : cases[current].quiet);
        }
    }
    std::set<std::string> defined;
    for (const auto& rule : alert_rules(rules_yaml)) {
        defined.insert(rule.name);
        const auto& c = cases[rule.name];
        if (c.firing == 0) {
            out.push_back(rule.name + ": no test case where it fires");
        }
        if (c.quiet == 0) {
            out.push_back(rule.name + ": no test case where it must not fire (exp_alerts: [])");
        }
    }
    for (const auto& [name, c] : cases) {
        if (defined.count(name) == 0) {
            out.push_back("the tests expect " + name + ", which the rules do not define");
        }
    }
    return out;
}

// ------------------------------------------------------------------------ Grafana

// Every panel, those inside rows (collapsed rows hold theirs) included.
void collect_panels(const nlohmann::json& list, std::vector<const nlohmann::json*>& out) {
    if (!list.is_array()) {
        return;
    }
    for (const auto& p : list) {
        out.push_back(&p);
        if (p.is_object() && p.contains("panels")) {
            collect_panels(p["panels"], out);
        }
    }
}

std::vector<const nlohmann::json*> panels_of(const nlohmann::json& dashboard) {
    std::vector<const nlohmann::json*> out;
    if (dashboard.is_object() && dashboard.contains("panels")) {
        collect_panels(dashboard["panels"], out);
    }
    return out;
}

bool is_row(const nlohmann::json& panel) {
    return panel.value("type", "") == "row";
}

std::string string_at(const nlohmann::json& j, const char* key) {
    return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>()
                                                                  : std::string();
}

// Every PromQL query of the dashboard: the panels' targets and the template variables.
std::vector<std::string> queries_of(const nlohmann::json& dashboard) {
    std::vector<std::string> out;
    for (const auto* p : panels_of(dashboard)) {
        if (p->contains("targets") && (*p)["targets"].is_array()) {
            for (const auto& t : (*p)["targets"]) {
                out.push_back(string_at(t, "expr"));
            }
        }
    }
    if (dashboard.contains("templating") && dashboard["templating"].contains("list")) {
        for (const auto& v : dashboard["templating"]["list"]) {
            const auto& q = v.contains("query") ? v["query"] : nlohmann::json();
            out.push_back(q.is_string() ? q.get<std::string>() : string_at(q, "query"));
            out.push_back(string_at(v, "definition"));
        }
    }
    return out;
}

std::vector<std::string> dashboard_problems(const nlohmann::json& d) {
    std::vector<std::string> out;
    if (!d.is_object()) {
        return {"the dashboard is not a JSON object"};
    }
    if (d.value("schemaVersion", 0) != 39) {
        out.push_back("schemaVersion is not 39");
    }
    bool input = false;
    for (const auto& i : d.value("__inputs", nlohmann::json::array())) {
        input = input ||
                (string_at(i, "name") == "DS_PROMETHEUS" && string_at(i, "type") == "datasource" &&
                 string_at(i, "pluginId") == "prometheus");
    }
    if (!input) {
        out.push_back("no __inputs entry for the DS_PROMETHEUS data source");
    }
    bool instance = false;
    if (d.contains("templating") && d["templating"].contains("list")) {
        for (const auto& v : d["templating"]["list"]) {
            instance = instance || string_at(v, "name") == "instance";
        }
    }
    if (!instance) {
        out.push_back("no `instance` template variable");
    }
    std::set<long long> ids;
    for (const auto* p : panels_of(d)) {
        const auto title = string_at(*p, "title");
        const auto id = p->is_object() ? p->value("id", -1LL) : -1LL;
        const auto bad = [&](const std::string& what) {
            out.push_back("panel \"" + title + "\" (id " + std::to_string(id) + "): " + what);
        };
        if (id < 0 || !ids.insert(id).second) {
            bad("no id, or one used twice");
        }
        if (!p->is_object() || !p->contains("gridPos")) {
            bad("no gridPos");
        }
        if (!p->is_object() || is_row(*p)) {
            continue;
        }
        const auto ds = p->contains("datasource") ? (*p)["datasource"] : nlohmann::json();
        if ((ds.is_string() ? ds.get<std::string>() : string_at(ds, "uid")) != kDataSource) {
            bad("its datasource is not " + std::string(kDataSource));
        }
        const auto targets = p->contains("targets") ? (*p)["targets"] : nlohmann::json();
        if (!targets.is_array() || targets.empty()) {
            bad("no targets");
            continue;
        }
        for (const auto& t : targets) {
            const auto expr = string_at(t, "expr");
            if (expr.empty()) {
                bad("a target without an expr");
            } else if (expr.find("$instance") == std::string::npos) {
                bad("the query ignores $instance: " + expr);
            }
        }
    }
    return out;
}

// ------------------------------------------------------------------------ promtool

std::string promtool_path() {
    const auto r = run_shell("command -v promtool", 10s);
    return r.ok() ? std::string(util::trim(r.out)) : std::string();
}

util::RunResult promtool(const std::vector<std::string>& args) {
    std::vector<std::string> argv{promtool_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_shell(util::shell_join(argv), 120s);
}

std::string output_of(const util::RunResult& r) {
    return "exit " + std::to_string(r.exit_code) + " (" + r.error + ")\n" + r.out + r.err;
}

constexpr const char* kNoPromtool = "promtool is not installed (Debian package: prometheus)";

nlohmann::json dashboard() {
    return nlohmann::json::parse(slurp(kDashboard), nullptr, /*allow_exceptions=*/false);
}

// ------------------------------------------------------------------------ checks of the checks

TEST(PrometheusRulesCheck, MetricNamesAreTakenWhole) {
    EXPECT_EQ(metric_names_in("sum by (gpu) (rate(mlkeeper_a_total{x=\"1\"}[5m])) / "
                              "on(instance) mlkeeper_b xmlkeeper_c foo_mlkeeper_d mlkeeper_Bad "
                              "mlkeeper-alerts.yml Mlkeeper_e"),
              (std::set<std::string>{"mlkeeper_a_total", "mlkeeper_b", "mlkeeper_Bad"}));
    EXPECT_TRUE(metric_names_in("up{job=\"mlkeeper\"} == 0").empty());
}

TEST(PrometheusRulesCheck, DocumentedNamesAreTheBacktickedOnes) {
    EXPECT_EQ(documented_metrics("| `mlkeeper_a` | gauge |\n`mlkeeper_b{gpu,uuid}` and "
                                 "`mlkeeper_c_total`\nmlkeeper_d 1\n`mlkeeper_` `mlkeeper_E`"),
              (std::set<std::string>{"mlkeeper_a", "mlkeeper_b", "mlkeeper_c_total"}));
    const auto missing = undocumented({"mlkeeper_a", "mlkeeper_a_bucket"}, {"mlkeeper_a"}, "x");
    ASSERT_EQ(missing.size(), 1u);
    EXPECT_NE(missing[0].find("mlkeeper_a_bucket"), std::string::npos);
}

TEST(PrometheusRulesCheck, FindsRulesWithoutForSeverityOrTemplatedAnnotations) {
    const std::string rules = R"(groups:
  - name: g
    rules:
      - alert: Good
        expr: x > 1
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "x on {{ $labels.instance }}"
          description: >-
            x is {{ $value }}
            for 5 minutes.
      - alert: Bare
        expr: x > 1
        # for: 5m
        labels:
          severity: loud
        annotations:
          summary: "x is high"
      - alert: Good
        expr: y > 1
        for: 1m
        labels: {severity: critical}
)";
    const auto problems = join_lines(rule_problems(rules));
    for (const auto* expected :
         {"Bare: no `for:`", "Bare: no severity label", "Bare: summary uses neither",
          "Bare: no description", "Good: defined twice", "Good: no severity label"}) {
        EXPECT_NE(problems.find(expected), std::string::npos) << expected << " in\n" << problems;
    }
    EXPECT_EQ(problems.find("Good: no `for:`"), std::string::npos) << problems;
    EXPECT_EQ(problems.find("Good: summary"), std::string::npos) << problems;
    EXPECT_EQ(problems.find("Good: description"), std::string::npos) << problems;
}

TEST(PrometheusRulesCheck, FindsAlertsWithoutAFiringOrAQuietCase) {
    const std::string rules =
        "groups:\n  - name: g\n    rules:\n      - alert: A\n"
        "      - alert: B\n      - alert: C\n";
    const std::string tests = R"(tests:
  - interval: 1m
    alert_rule_test:
      - eval_time: 1m
        alertname: A
        exp_alerts:
          # fires
          - exp_labels: {severity: warning}
      - eval_time: 2m
        alertname: A
        exp_alerts: []
      - eval_time: 1m
        alertname: B
        exp_alerts: []
      - eval_time: 1m
        alertname: Typo
        exp_alerts: []
)";
    const auto problems = coverage_problems(rules, tests);
    const auto all = join_lines(problems);
    EXPECT_EQ(problems.size(), 4u) << all;
    for (const auto* expected : {"B: no test case where it fires", "C: no test case where it fires",
                                 "C: no test case where it must not", "expect Typo"}) {
        EXPECT_NE(all.find(expected), std::string::npos) << expected << " in\n" << all;
    }
    EXPECT_EQ(all.find("A:"), std::string::npos) << all;
}

TEST(GrafanaDashboardCheck, FindsPanelsWithoutADataSourceOrAQuery) {
    const auto d = nlohmann::json::parse(R"({
      "schemaVersion": 38,
      "panels": [
        {"type": "row", "id": 1, "title": "R", "gridPos": {}, "collapsed": true, "panels": [
          {"type": "stat", "id": 2, "title": "no targets", "gridPos": {},
           "datasource": {"uid": "${DS_PROMETHEUS}"}}
        ]},
        {"type": "timeseries", "id": 3, "title": "no datasource", "gridPos": {},
         "targets": [{"expr": "mlkeeper_a{instance=~\"$instance\"}"}]},
        {"type": "timeseries", "id": 3, "title": "no instance", "gridPos": {},
         "datasource": "${DS_PROMETHEUS}", "targets": [{"expr": "mlkeeper_a"}, {"refId": "B"}]}
      ]})");
    const auto all = join_lines(dashboard_problems(d));
    for (const auto* expected :
         {"schemaVersion", "DS_PROMETHEUS data source", "`instance` template variable",
          "\"no targets\" (id 2): no targets", "\"no datasource\" (id 3): its datasource",
          "\"no instance\" (id 3): no id, or one used twice",
          "\"no instance\" (id 3): the query ignores $instance",
          "\"no instance\" (id 3): a target without an expr"}) {
        EXPECT_NE(all.find(expected), std::string::npos) << expected << " in\n" << all;
    }
    EXPECT_EQ(all.find("\"R\""), std::string::npos) << all;
    EXPECT_EQ(dashboard_problems(nlohmann::json::array()).size(), 1u);
}

// ------------------------------------------------------------------------ the shipped files

TEST(PrometheusRules, ExampleConfigPassesPromtool) {
    if (promtool_path().empty()) {
        FAIL() << kNoPromtool;
    }
    const auto r = promtool({"check", "config", kConfig.string()});
    EXPECT_TRUE(r.ok()) << output_of(r);
    // promtool also loads the rule files the configuration names.
    EXPECT_NE(r.out.find("1 rule files found"), std::string::npos) << output_of(r);
    const auto text = slurp(kConfig);
    for (const auto* expected : {"job_name: mlkeeper", "\"127.0.0.1:9835\"", "scrape_interval: 15s",
                                 "- mlkeeper-alerts.yml", "credentials_file:"}) {
        EXPECT_NE(text.find(expected), std::string::npos) << expected;
    }
}

TEST(PrometheusRules, RulesPassPromtool) {
    if (promtool_path().empty()) {
        FAIL() << kNoPromtool;
    }
    const auto r = promtool({"check", "rules", kRules.string()});
    EXPECT_TRUE(r.ok()) << output_of(r);
    const auto expected =
        "SUCCESS: " + std::to_string(alert_rules(slurp(kRules)).size()) + " rules found";
    EXPECT_NE(r.out.find(expected), std::string::npos) << expected << "\n" << output_of(r);
}

TEST(PrometheusRules, RuleUnitTestsPass) {
    if (promtool_path().empty()) {
        FAIL() << kNoPromtool;
    }
    const auto r = promtool({"test", "rules", kRuleTests.string()});
    EXPECT_TRUE(r.ok()) << output_of(r);
}

// Renaming every alert must make each alert's firing case fail: a case that passes anyway
// does not test its alert.
TEST(PrometheusRules, UnitTestsFailForEachAlertThatNoLongerFires) {
    if (promtool_path().empty()) {
        FAIL() << kNoPromtool;
    }
    TempDir dir;
    std::string renamed;
    for (const auto& line : lines_of(slurp(kRules))) {
        const auto at = line.find("- alert: ");
        renamed +=
            (at == std::string::npos ? line
                                     : line.substr(0, at + 9) + "Renamed" + line.substr(at + 9)) +
            "\n";
    }
    dir.write("mlkeeper-alerts.yml", renamed);
    const auto tests = dir.write("mlkeeper-alerts.test.yml", slurp(kRuleTests));
    const auto r = promtool({"test", "rules", tests.string()});
    EXPECT_EQ(r.kind, util::ExitKind::kExited) << output_of(r);
    EXPECT_NE(r.exit_code, 0) << output_of(r);
    const auto output = r.out + r.err;
    for (const auto& rule : alert_rules(slurp(kRules))) {
        EXPECT_NE(output.find("alertname: " + rule.name + ","), std::string::npos)
            << "no failing case for " << rule.name << " once it is renamed:\n"
            << output;
    }
}

TEST(PrometheusRules, DefinesEveryAlertWithForSeverityAndAnnotations) {
    const auto text = slurp(kRules);
    std::set<std::string> names;
    for (const auto& rule : alert_rules(text)) {
        names.insert(rule.name);
    }
    EXPECT_EQ(names, kAlerts);
    const auto problems = rule_problems(text);
    EXPECT_TRUE(problems.empty()) << join_lines(problems);
}

TEST(PrometheusRules, EveryAlertHasAFiringAndAQuietCase) {
    const auto problems = coverage_problems(slurp(kRules), slurp(kRuleTests));
    EXPECT_TRUE(problems.empty()) << join_lines(problems);
}

TEST(PrometheusRules, UseOnlyDocumentedMetrics) {
    ASSERT_TRUE(fs::exists(kMetricsDoc)) << kMetricsDoc << " is missing";
    const auto documented = documented_metrics(slurp(kMetricsDoc));
    ASSERT_FALSE(documented.empty()) << "no `mlkeeper_...` names in " << kMetricsDoc;
    auto problems =
        undocumented(metric_names_in(slurp(kRules)), documented, kRules.filename().string());
    const auto in_tests = undocumented(metric_names_in(slurp(kRuleTests)), documented,
                                       kRuleTests.filename().string());
    problems.insert(problems.end(), in_tests.begin(), in_tests.end());
    EXPECT_TRUE(problems.empty()) << join_lines(problems);
    EXPECT_FALSE(metric_names_in(slurp(kRules)).empty());
}

TEST(GrafanaDashboard, ParsesAndEveryPanelHasADataSourceAndAQuery) {
    const auto d = dashboard();
    ASSERT_FALSE(d.is_discarded()) << kDashboard << " is not valid JSON";
    const auto problems = dashboard_problems(d);
    EXPECT_TRUE(problems.empty()) << join_lines(problems);
    std::set<std::string> rows;
    std::size_t graphs = 0;
    for (const auto* p : panels_of(d)) {
        if (is_row(*p)) {
            rows.insert(string_at(*p, "title"));
        } else {
            ++graphs;
        }
    }
    for (const auto* row :
         {"GPUs", "Health", "Backups", "Cleanup", "Scheduler", "Alerts", "Models"}) {
        EXPECT_EQ(rows.count(row), 1u) << "no row " << row;
    }
    EXPECT_GE(graphs, 20u);
}

TEST(GrafanaDashboard, UsesOnlyDocumentedMetrics) {
    ASSERT_TRUE(fs::exists(kMetricsDoc)) << kMetricsDoc << " is missing";
    const auto documented = documented_metrics(slurp(kMetricsDoc));
    const auto d = dashboard();
    ASSERT_FALSE(d.is_discarded()) << kDashboard << " is not valid JSON";
    std::set<std::string> used;
    for (const auto& q : queries_of(d)) {
        used.merge(metric_names_in(q));
    }
    EXPECT_GE(used.size(), 30u);
    const auto problems = undocumented(used, documented, kDashboard.filename().string());
    EXPECT_TRUE(problems.empty()) << join_lines(problems);
}

}  // namespace
}  // namespace mlk::testing
