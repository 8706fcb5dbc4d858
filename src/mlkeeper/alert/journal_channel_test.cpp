#include "mlkeeper/alert/journal_channel.hpp"

#include <gtest/gtest.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace mlk::alert {
namespace {

using namespace std::chrono_literals;

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
    a.occurrences = 3;
    a.suppressed = 2;
    return a;
}

// The value of the first "NAME=..." entry, or nullopt.
std::optional<std::string> field(const std::vector<std::string>& fields, const std::string& name) {
    for (const auto& f : fields) {
        if (f.starts_with(name + "=")) {
            return f.substr(name.size() + 1);
        }
    }
    return std::nullopt;
}

TEST(JournalFieldName, UpperCasesAndSanitizes) {
    EXPECT_EQ(journal_field_name("gpu_index"), "MLKEEPER_FIELD_GPU_INDEX");
    EXPECT_EQ(journal_field_name("gpu-index"), "MLKEEPER_FIELD_GPU_INDEX");
    EXPECT_EQ(journal_field_name("mount point/2"), "MLKEEPER_FIELD_MOUNT_POINT_2");
    EXPECT_EQ(journal_field_name("Temp°C"), "MLKEEPER_FIELD_TEMP__C");  // ° is two bytes
    EXPECT_EQ(journal_field_name("a=b\n"), "MLKEEPER_FIELD_A_B_");
    EXPECT_EQ(journal_field_name(""), "MLKEEPER_FIELD_");
}

TEST(JournalFieldName, CutToJournaldLimit) {
    std::string name = journal_field_name(std::string(100, 'x'));
    EXPECT_EQ(name.size(), 64u);
    EXPECT_TRUE(name.starts_with("MLKEEPER_FIELD_XXX"));
}

TEST(JournalFields, CarriesEveryAlertAttribute) {
    Alert a = sample_alert();
    a.fields = {{"gpu_index", "0"}, {"mount", "/data"}};
    const auto f = journal_fields(a);
    const std::vector<std::string> expected = {
        "MESSAGE=[CRITICAL] gpu0_temp: GPU 0 temperature 87°C exceeds 85°C (value=87°C, "
        "threshold=85°C)",
        "PRIORITY=2",
        "SYSLOG_IDENTIFIER=mlkeeper",
        "MLKEEPER_ALERT_KEY=gpu0_temp",
        "MLKEEPER_SEVERITY=critical",
        "MLKEEPER_STATE=firing",
        "MLKEEPER_TIME=2026-11-22T14:30:00.123Z",
        "MLKEEPER_OCCURRENCES=3",
        "MLKEEPER_SUPPRESSED=2",
        "MLKEEPER_CHECK=gpu",
        "MLKEEPER_VALUE=87°C",
        "MLKEEPER_THRESHOLD=85°C",
        "MLKEEPER_ACTION=Check the fans.",
        "MLKEEPER_HOST=gpu-box",
        "MLKEEPER_FIELD_GPU_INDEX=0",
        "MLKEEPER_FIELD_MOUNT=/data",
    };
    EXPECT_EQ(f, expected);
}

TEST(JournalFields, PriorityFollowsSeverityAndResolved) {
    Alert a = sample_alert();
    a.severity = Severity::kInfo;
    EXPECT_EQ(field(journal_fields(a), "PRIORITY"), std::to_string(LOG_INFO));
    a.severity = Severity::kWarning;
    EXPECT_EQ(field(journal_fields(a), "PRIORITY"), std::to_string(LOG_WARNING));
    a.severity = Severity::kEmergency;
    EXPECT_EQ(field(journal_fields(a), "PRIORITY"), std::to_string(LOG_EMERG));
    EXPECT_EQ(field(journal_fields(a), "MLKEEPER_SEVERITY"), "emergency");
    a.state = AlertState::kResolved;
    auto f = journal_fields(a);
    EXPECT_EQ(field(f, "PRIORITY"), std::to_string(LOG_NOTICE));
    EXPECT_EQ(field(f, "MLKEEPER_STATE"), "resolved");
    EXPECT_EQ(field(f, "MLKEEPER_SEVERITY"), "emergency");  // what it was resolved from
    EXPECT_TRUE(field(f, "MESSAGE")->starts_with("[RESOLVED] gpu0_temp: "));
}

TEST(JournalFields, OmitsEmptyOptionalFields) {
    Alert a;
    a.key = "disk_root";
    a.summary = "disk almost full";
    const auto f = journal_fields(a);
    for (const char* name : {"MLKEEPER_CHECK", "MLKEEPER_VALUE", "MLKEEPER_THRESHOLD",
                             "MLKEEPER_ACTION", "MLKEEPER_HOST"}) {
        EXPECT_EQ(field(f, name), std::nullopt) << name;
    }
    EXPECT_EQ(field(f, "MLKEEPER_ALERT_KEY"), "disk_root");
    EXPECT_EQ(field(f, "MESSAGE"), "[WARNING] disk_root: disk almost full");
    EXPECT_EQ(f.size(), 9u);
}

TEST(JournalFields, KeepsValuesVerbatimAndNamesValid) {
    Alert a = sample_alert();
    a.action = "line one\nline two";
    a.fields = {{"weird name=x", "a=b\nc"}};
    const auto f = journal_fields(a);
    EXPECT_EQ(field(f, "MLKEEPER_ACTION"), "line one\nline two");
    EXPECT_EQ(field(f, "MLKEEPER_FIELD_WEIRD_NAME_X"), "a=b\nc");
    for (const auto& entry : f) {
        const std::string name = entry.substr(0, entry.find('='));
        ASSERT_FALSE(name.empty());
        EXPECT_LE(name.size(), 64u);
        EXPECT_NE(name.front(), '_');
        EXPECT_TRUE(std::all_of(name.begin(), name.end(), [](char c) {
            return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        })) << name;
    }
}

TEST(JournalChannel, UnavailableJournalIsPermanentError) {
    if (journal_available()) {
        GTEST_SKIP() << "journald is running here";
    }
    JournalChannel ch;
    EXPECT_EQ(ch.name(), "journal");
    try {
        ch.send(sample_alert());
        FAIL() << "send without journald succeeded";
    } catch (const ChannelError& e) {
        EXPECT_EQ(e.kind(), ChannelError::Kind::kPermanent);
        EXPECT_STREQ(e.what(), "journald is not running (no /run/systemd/journal/socket)");
    }
}

TEST(JournalChannel, SendsToRunningJournal) {
    if (!journal_available()) {
        GTEST_SKIP() << "no journald (" << kJournalSocket << ")";
    }
    Alert a = sample_alert();
    a.key = "mlkeeper_test_" + std::to_string(::getpid()) + "_" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
    a.severity = Severity::kInfo;
    a.fields = {{"probe", "yes"}};
    JournalChannel ch;
    ASSERT_NO_THROW(ch.send(a));

    // Reading back needs permission to the journal files; check it only where we can read any
    // entry at all.
    sd_journal* j = nullptr;
    if (sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY) < 0) {
        return;
    }
    bool readable = sd_journal_seek_tail(j) >= 0 && sd_journal_previous(j) > 0;
    bool found = false;
    if (readable) {
        const std::string match = "MLKEEPER_ALERT_KEY=" + a.key;
        sd_journal_add_match(j, match.data(), match.size());
        sd_journal_seek_head(j);
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (!found && std::chrono::steady_clock::now() < deadline) {
            if (sd_journal_next(j) > 0) {
                const void* data = nullptr;
                std::size_t len = 0;
                if (sd_journal_get_data(j, "MLKEEPER_FIELD_PROBE", &data, &len) >= 0) {
                    EXPECT_EQ(std::string(static_cast<const char*>(data), len),
                              "MLKEEPER_FIELD_PROBE=yes");
                }
                found = true;
            } else {
                sd_journal_wait(j, 200000);
            }
        }
    }
    sd_journal_close(j);
    if (readable) {
        EXPECT_TRUE(found) << "entry " << a.key << " did not reach the journal within 5 s";
    }
}

}  // namespace
}  // namespace mlk::alert
