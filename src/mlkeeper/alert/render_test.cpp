// Tests for the shared plain-text rendering of alerts (subject line and body).
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "mlkeeper/alert/channel.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::alert {
namespace {

Alert sample() {
    Alert a;
    a.key = "gpu0_temp";
    a.severity = Severity::kCritical;
    a.summary = "GPU 0 temperature 87°C exceeds 85°C";
    a.check = "gpu";
    a.value = "87°C";
    a.threshold = "85°C";
    a.action = "Check the fans and the airflow of the chassis.";
    a.host = "gpu-box";
    a.time = std::chrono::system_clock::time_point(std::chrono::seconds(1'790'000'000));
    a.occurrences = 3;
    return a;
}

std::vector<std::string> lines(const std::string& text) {
    return util::split(text, '\n');
}

// Index of the first line that starts with `prefix`, or -1.
int find_line(const std::vector<std::string>& ls, const std::string& prefix) {
    for (std::size_t i = 0; i < ls.size(); ++i) {
        if (ls[i].rfind(prefix, 0) == 0) {
            return static_cast<int>(i);
        }
    }
    return -1;
}

TEST(AlertRender, SubjectForFiringAlertNamesSeverityHostAndSummary) {
    EXPECT_EQ(subject_line(sample()),
              "[mlkeeper CRITICAL] gpu-box: GPU 0 temperature 87°C exceeds 85°C");
    Alert w = sample();
    w.severity = Severity::kWarning;
    EXPECT_EQ(subject_line(w), "[mlkeeper WARNING] gpu-box: GPU 0 temperature 87°C exceeds 85°C");
    w.severity = Severity::kEmergency;
    EXPECT_EQ(subject_line(w).rfind("[mlkeeper EMERGENCY] ", 0), 0u);
    w.severity = Severity::kInfo;
    EXPECT_EQ(subject_line(w).rfind("[mlkeeper INFO] ", 0), 0u);
}

TEST(AlertRender, SubjectForResolvedAlertSaysResolved) {
    Alert a = sample();
    a.state = AlertState::kResolved;
    a.summary = "GPU 0 temperature back to 70°C";
    EXPECT_EQ(subject_line(a), "[mlkeeper RESOLVED] gpu-box: GPU 0 temperature back to 70°C");
}

TEST(AlertRender, SubjectWithoutHostOmitsTheHostPart) {
    Alert a = sample();
    a.host.clear();
    EXPECT_EQ(subject_line(a), "[mlkeeper CRITICAL] GPU 0 temperature 87°C exceeds 85°C");
}

TEST(AlertRender, SubjectIsAlwaysOneLine) {
    Alert a = sample();
    a.summary = "first\r\nBcc: victim@example.com\nthird\tcol";
    const std::string s = subject_line(a);
    EXPECT_EQ(s.find_first_of("\r\n\t"), std::string::npos) << s;
    EXPECT_EQ(s, "[mlkeeper CRITICAL] gpu-box: first Bcc: victim@example.com third col");
}

TEST(AlertRender, BodyHasEveryField) {
    const Alert a = sample();
    const std::string body = text_body(a);
    const auto ls = lines(body);
    ASSERT_FALSE(ls.empty());
    EXPECT_EQ(ls[0], "CRITICAL: GPU 0 temperature 87°C exceeds 85°C");
    const std::string time = util::format_local(a.time, "%Y-%m-%d %H:%M:%S %Z");
    const std::vector<std::string> expected = {
        "Host:        gpu-box", "Time:        " + time, "Severity:    critical",
        "State:       firing",  "Check:       gpu",     "Key:         gpu0_temp",
        "Value:       87°C",    "Threshold:   85°C",    "Occurrences: 3",
    };
    int previous = -1;
    for (const std::string& want : expected) {
        const int at = find_line(ls, want);
        ASSERT_GE(at, 0) << "missing line '" << want << "' in:\n" << body;
        EXPECT_EQ(ls[static_cast<std::size_t>(at)], want);
        EXPECT_GT(at, previous) << "out of order: " << want;
        previous = at;
    }
    EXPECT_GE(find_line(ls, "What to do: Check the fans and the airflow of the chassis."), 0)
        << body;
    EXPECT_EQ(body.find("suppressed"), std::string::npos) << body;
    EXPECT_EQ(body.find("Details:"), std::string::npos) << body;
}

TEST(AlertRender, BodyEndsWithFooterNamingTheHost) {
    const std::string body = text_body(sample());
    ASSERT_GE(body.size(), 2u);
    EXPECT_EQ(body.back(), '\n');
    const auto ls = lines(body);
    ASSERT_GE(ls.size(), 2u);
    EXPECT_EQ(ls[ls.size() - 2], "-- mlkeeper on gpu-box");
}

TEST(AlertRender, SuppressedRepeatsAreCounted) {
    Alert a = sample();
    a.suppressed = 12;
    EXPECT_GE(find_line(lines(text_body(a)), "12 repeats suppressed since the last notice"), 0)
        << text_body(a);
    a.suppressed = 1;
    EXPECT_GE(find_line(lines(text_body(a)), "1 repeat suppressed since the last notice"), 0)
        << text_body(a);
    a.suppressed = 0;
    EXPECT_EQ(text_body(a).find("suppressed"), std::string::npos);
    a.suppressed = -4;  // nonsense from a caller must not print a negative count
    EXPECT_EQ(text_body(a).find("suppressed"), std::string::npos);
}

TEST(AlertRender, ExtraFieldsAreSortedAfterTheAction) {
    Alert a = sample();
    a.fields["zeta"] = "last";
    a.fields["gpu_index"] = "0";
    a.fields["alpha"] = "first";
    const std::string body = text_body(a);
    const auto ls = lines(body);
    const int details = find_line(ls, "Details:");
    const int action = find_line(ls, "What to do:");
    const int alpha = find_line(ls, "  alpha:");
    const int gpu = find_line(ls, "  gpu_index:");
    const int zeta = find_line(ls, "  zeta:");
    ASSERT_GE(details, 0) << body;
    EXPECT_LT(action, details);
    EXPECT_LT(details, alpha);
    EXPECT_LT(alpha, gpu);
    EXPECT_LT(gpu, zeta);
    EXPECT_EQ(ls[static_cast<std::size_t>(alpha)], "  alpha:     first");
    EXPECT_EQ(ls[static_cast<std::size_t>(gpu)], "  gpu_index: 0");
}

TEST(AlertRender, ResolvedBodyAndEmptyOptionalFields) {
    Alert a = sample();
    a.state = AlertState::kResolved;
    a.value.clear();
    a.threshold.clear();
    a.check.clear();
    a.action.clear();
    const std::string body = text_body(a);
    const auto ls = lines(body);
    EXPECT_EQ(ls[0], "RESOLVED: GPU 0 temperature 87°C exceeds 85°C");
    EXPECT_GE(find_line(ls, "State:       resolved"), 0) << body;
    EXPECT_LT(find_line(ls, "Value:"), 0) << body;
    EXPECT_LT(find_line(ls, "Threshold:"), 0) << body;
    EXPECT_LT(find_line(ls, "Check:"), 0) << body;
    EXPECT_LT(find_line(ls, "What to do:"), 0) << body;
}

TEST(AlertRender, MultiLineValuesAreIndentedSoNoLineStartsWithADot) {
    Alert a = sample();
    a.action = "Run:\n.\nnvidia-smi -q";
    a.fields["log"] = ".first\r\n.second";
    const std::string body = text_body(a);
    for (const std::string& l : lines(body)) {
        EXPECT_NE(l.rfind('.', 0), 0u) << "line starts with a dot: '" << l << "'";
        EXPECT_EQ(l.find('\r'), std::string::npos);
    }
    const auto ls = lines(body);
    const int at = find_line(ls, "What to do: Run:");
    ASSERT_GE(at, 0) << body;
    EXPECT_EQ(ls[static_cast<std::size_t>(at) + 1], "            .");
    EXPECT_EQ(ls[static_cast<std::size_t>(at) + 2], "            nvidia-smi -q");
    EXPECT_GE(find_line(ls, "  log: .first"), 0) << body;
    EXPECT_GE(find_line(ls, "       .second"), 0) << body;
}

TEST(AlertRender, UnknownHostStillRenders) {
    Alert a = sample();
    a.host.clear();
    const std::string body = text_body(a);
    EXPECT_GE(find_line(lines(body), "Host:        (unknown)"), 0) << body;
    EXPECT_NE(body.find("-- mlkeeper on (unknown host)\n"), std::string::npos) << body;
}

}  // namespace
}  // namespace mlk::alert
