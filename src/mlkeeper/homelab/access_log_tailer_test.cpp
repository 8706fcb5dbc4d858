#include "mlkeeper/homelab/access_log_tailer.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/core/state_store.hpp"

namespace mlk::homelab {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class RecordingSink : public RequestSink {
  public:
    void request_started(std::string_view) override {}
    void request_finished(const RequestEvent&) override {}
    void request_seen(const RequestEvent& e) override {
        std::lock_guard lk(mu_);
        events_.push_back(e);
    }
    std::size_t count() const {
        std::lock_guard lk(mu_);
        return events_.size();
    }
    std::vector<RequestEvent> events() const {
        std::lock_guard lk(mu_);
        return events_;
    }

  private:
    mutable std::mutex mu_;
    std::vector<RequestEvent> events_;
};

class TempDir {
  public:
    TempDir() {
        std::string tmpl = ::testing::TempDir() + "mlk-tailer-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) {
            throw std::runtime_error("mkdtemp");
        }
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    fs::path operator/(const std::string& n) const { return path_ / n; }

  private:
    fs::path path_;
};

std::string json_line(const std::string& model, int n, int status = 200) {
    return R"({"msec":"1795356000.)" + std::to_string(100 + n % 900) + R"(","model":")" + model +
           R"(","status":")" + std::to_string(status) +
           R"(","request_length":"120","bytes_sent":"800","request_time":"0.005","uri":"/models/)" +
           model + "/v1/x?n=" + std::to_string(n) + "\"}\n";
}

void append(const fs::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary | std::ios::app);
    out << text;
}

TailerSettings settings_for(const fs::path& p) {
    TailerSettings s;
    s.path = p;
    s.poll_interval = 10ms;
    s.rotate_grace = 0ms;
    return s;
}

// ---- parsing ---------------------------------------------------------------------------------

TEST(ParseJsonLine, NginxStringsAndNumbers) {
    auto p = parse_json_line(
        R"({"msec":"1732290000.123","model":"llama","status":"201","request_length":"350",)"
        R"("bytes_sent":"1024","request_time":"0.005","uri":"/models/llama/v1/chat"})");
    ASSERT_EQ(p.kind, LineKind::kEvent);
    EXPECT_EQ(p.event.model, "llama");
    EXPECT_EQ(p.event.source, RequestSource::kNginx);
    EXPECT_EQ(p.event.status, 201);
    EXPECT_EQ(p.event.bytes_in, 350U);
    EXPECT_EQ(p.event.bytes_out, 1024U);
    EXPECT_EQ(p.event.latency, 5ms);
    EXPECT_EQ(p.event.at, SysTime(1732290000123ms));

    p = parse_json_line(
        R"({"msec":1732290000.5,"model":"qwen","status":499,"request_length":10,"bytes_sent":0,)"
        R"("request_time":1.25})");
    ASSERT_EQ(p.kind, LineKind::kEvent);
    EXPECT_EQ(p.event.status, 499);
    EXPECT_EQ(p.event.latency, 1250ms);
    EXPECT_EQ(p.event.at, SysTime(1732290000500ms));

    // Optional fields absent or "-".
    p = parse_json_line(R"({"msec":"1732290000","model":"a","status":"200","request_time":"-"})");
    ASSERT_EQ(p.kind, LineKind::kEvent);
    EXPECT_EQ(p.event.latency, 0ms);
    EXPECT_EQ(p.event.bytes_in, 0U);
    // nginx writes a variable without a value as ""; garbage in an optional field is absent.
    p = parse_json_line(
        R"({"msec":"1732290000","model":"a","status":"200","request_length":"","bytes_sent":"lots",)"
        R"("request_time":"","upstream_response_time":"0.010, 0.004"})");
    ASSERT_EQ(p.kind, LineKind::kEvent);
    EXPECT_EQ(p.event.bytes_in, 0U);
    EXPECT_EQ(p.event.bytes_out, 0U);
    EXPECT_EQ(p.event.latency, 0ms);
    // The example line of docs/formats/nginx-access-log.md.
    p = parse_json_line(
        R"({"time":"2026-11-22T18:00:01+00:00","msec":"1795284001.123","model":"llama","method":"POST","uri":"/models/llama/v1/chat/completions","status":"200","request_length":"1523","bytes_sent":"48211","body_bytes_sent":"48020","request_time":"12.480","upstream_response_time":"12.479","upstream_status":"200","remote_addr":"10.0.0.7"})");
    ASSERT_EQ(p.kind, LineKind::kEvent);
    EXPECT_EQ(p.event.model, "llama");
    EXPECT_EQ(p.event.bytes_in, 1523U);
    EXPECT_EQ(p.event.bytes_out, 48211U);
    EXPECT_EQ(p.event.latency, 12480ms);
    EXPECT_EQ(p.event.at, SysTime(1795284001123ms));
}

TEST(ParseJsonLine, NotAModelLocation) {
    EXPECT_EQ(parse_json_line(R"({"msec":"1.0","model":"","status":"200"})").kind,
              LineKind::kNotModel);
    EXPECT_EQ(parse_json_line(R"({"msec":"1.0","model":"-","status":"404"})").kind,
              LineKind::kNotModel);
}

TEST(ParseJsonLine, MalformedLines) {
    for (const char* bad : {
             "", "not json", "[1,2]",
             R"({"msec":"1.0","model":"a"})",                  // no status
             R"({"msec":"1.0","status":"200"})",               // no model
             R"({"model":"a","status":"200"})",                // no time
             R"({"msec":"1.0","model":5,"status":"200"})",     // model not a string
             R"({"msec":"x","model":"a","status":"200"})",     // bad time
             R"({"msec":"-1.0","model":"a","status":"200"})",  // negative time
             R"({"msec":"1.0","model":"a","status":"2OO"})",   // bad status
             R"({"msec":"1.0","model":"a","status":"1000"})",  // status out of range
             R"({"msec":"1.0","model":"a","status":-200})",    // negative status
             R"({"msec":"1.0","model":"a","status":"200")",    // cut short
         }) {
        EXPECT_EQ(parse_json_line(bad).kind, LineKind::kMalformed) << bad;
    }
}

TEST(ParseCombinedLine, ModelFromThePathAfterThePrefix) {
    const auto p = parse_combined_line(
        R"(10.0.0.7 - - [10/Oct/2000:13:55:36 -0700] "POST /models/llama/v1/chat?x=1 HTTP/1.1" 200 2326 "-" "curl/7.88.1")",
        "/models");
    ASSERT_EQ(p.kind, LineKind::kEvent);
    EXPECT_EQ(p.event.model, "llama");
    EXPECT_EQ(p.event.status, 200);
    EXPECT_EQ(p.event.bytes_out, 2326U);
    EXPECT_EQ(p.event.source, RequestSource::kNginx);
    // 13:55:36 at -07:00 is 20:55:36 UTC: 971211336.
    EXPECT_EQ(p.event.at, SysTime(971211336s));

    const auto q = parse_combined_line(
        R"(::1 - bob [01/Jan/2026:00:30:00 +0100] "GET /api/models/qwen HTTP/2.0" 404 - "-" "x")",
        "/api/models");
    ASSERT_EQ(q.kind, LineKind::kEvent);
    EXPECT_EQ(q.event.model, "qwen");
    EXPECT_EQ(q.event.bytes_out, 0U);
    EXPECT_EQ(q.event.at, SysTime(1767223800s));  // 2025-12-31T23:30:00Z
}

TEST(ParseCombinedLine, OtherLocationsAndOddRequests) {
    for (const char* line : {
             R"(1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /health HTTP/1.1" 200 2 "-" "-")",
             R"(1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /models HTTP/1.1" 200 2 "-" "-")",
             R"(1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /models/ HTTP/1.1" 200 2 "-" "-")",
             R"(1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /modelsX/a HTTP/1.1" 200 2 "-" "-")",
             R"(1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "-" 400 0 "-" "-")",
             R"(1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "\x16\x03\x01\x02\x00" 400 157 "-" "-")",
         }) {
        EXPECT_EQ(parse_combined_line(line, "/models").kind, LineKind::kNotModel) << line;
    }
    // An escaped quote inside the request line does not end it.
    const auto p = parse_combined_line(
        R"(1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /models/a/\"x HTTP/1.1" 200 5 "-" "-")",
        "/models");
    ASSERT_EQ(p.kind, LineKind::kEvent);
    EXPECT_EQ(p.event.model, "a");
}

TEST(ParseCombinedLine, MalformedLines) {
    for (const char* bad : {
             "",
             "garbage",
             R"(1.2.3.4 - - [10/Oct/2000:13:55:36] "GET /models/a HTTP/1.1" 200 5 "-" "-")",
             R"(1.2.3.4 - - [10/Foo/2000:13:55:36 +0000] "GET /models/a HTTP/1.1" 200 5 "-" "-")",
             R"(1.2.3.4 - - [32/Oct/2000:13:55:36 +0000] "GET /models/a HTTP/1.1" 200 5 "-" "-")",
             R"(1.2.3.4 - - [10/Oct/2000:25:55:36 +0000] "GET /models/a HTTP/1.1" 200 5 "-" "-")",
             R"(1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /models/a HTTP/1.1" OK 5 "-" "-")",
             R"(1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /models/a HTTP/1.1" 200 five)",
             R"(1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /models/a HTTP/1.1" 200)",
             R"(1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /models/a HTTP/1.1)",
         }) {
        EXPECT_EQ(parse_combined_line(bad, "/models").kind, LineKind::kMalformed) << bad;
    }
}

TEST(AccessLogFormat, Words) {
    EXPECT_EQ(parse_access_log_format("json"), AccessLogFormat::kJson);
    EXPECT_EQ(parse_access_log_format("combined"), AccessLogFormat::kCombined);
    EXPECT_FALSE(parse_access_log_format("JSON"));
    EXPECT_FALSE(parse_access_log_format(""));
    EXPECT_EQ(to_string(AccessLogFormat::kCombined), "combined");
}

// ---- following a file ------------------------------------------------------------------------

TEST(AccessLogTailer, ReadsNewLinesAndKeepsAPartialLastLine) {
    TempDir dir;
    const auto log = dir / "access.log";
    append(log, json_line("a", 1) + json_line("b", 2));
    RecordingSink sink;
    AccessLogTailer t(settings_for(log), sink);
    EXPECT_FALSE(t.poll_once());
    EXPECT_EQ(sink.count(), 2U);

    // Half a line: nothing yet; the rest: one event.
    const auto line = json_line("a", 3);
    append(log, line.substr(0, 20));
    t.poll_once();
    EXPECT_EQ(sink.count(), 2U);
    append(log, line.substr(20));
    t.poll_once();
    EXPECT_EQ(sink.count(), 3U);
    EXPECT_EQ(sink.events().back().model, "a");

    const auto st = t.stats();
    EXPECT_EQ(st.lines, 3U);
    EXPECT_EQ(st.events, 3U);
    EXPECT_TRUE(st.file_open);
    EXPECT_EQ(st.offset, fs::file_size(log));
}

TEST(AccessLogTailer, MalformedAndOverlongLinesAreCountedAndSkipped) {
    TempDir dir;
    const auto log = dir / "access.log";
    RecordingSink sink;
    AccessLogTailer t(settings_for(log), sink);
    append(log, "garbage\n\r\n" + json_line("", 1) + std::string(kMaxLogLineBytes + 10, 'x') +
                    "\n" + json_line("a", 2));
    t.poll_once();
    // An overlong line that arrives in pieces (no '\n' for a while) is skipped as a whole.
    append(log, std::string(kMaxLogLineBytes - 5, 'y'));
    t.poll_once();
    append(log, std::string(100, 'y'));
    t.poll_once();
    append(log, std::string(kMaxLogLineBytes, 'y'));
    t.poll_once();
    append(log, "yyy\n" + json_line("b", 3));
    t.poll_once();
    // Exactly the limit is still a line (malformed JSON, but not too long).
    append(log, std::string(kMaxLogLineBytes, 'z') + "\n");
    t.poll_once();

    ASSERT_EQ(sink.count(), 2U);
    EXPECT_EQ(sink.events()[0].model, "a");
    EXPECT_EQ(sink.events()[1].model, "b");
    const auto st = t.stats();
    EXPECT_EQ(st.too_long, 2U);
    EXPECT_EQ(st.malformed, 4U);  // garbage, 2 overlong, the z line
    EXPECT_EQ(st.not_model, 1U);
    EXPECT_EQ(st.offset, fs::file_size(log));
}

TEST(AccessLogTailer, CombinedFormat) {
    TempDir dir;
    const auto log = dir / "access.log";
    auto s = settings_for(log);
    s.format = AccessLogFormat::kCombined;
    s.location_prefix = "/llm/";  // a trailing '/' is ignored
    RecordingSink sink;
    AccessLogTailer t(s, sink);
    append(log,
           "1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] \"GET /llm/a/x HTTP/1.1\" 200 5 \"-\" \"-\"\n"
           "1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] \"GET /models/a/x HTTP/1.1\" 200 5 \"-\" "
           "\"-\"\n");
    t.poll_once();
    ASSERT_EQ(sink.count(), 1U);
    EXPECT_EQ(sink.events()[0].model, "a");
    EXPECT_EQ(t.stats().not_model, 1U);
}

TEST(AccessLogTailer, WaitsForAMissingFile) {
    TempDir dir;
    const auto log = dir / "later.log";
    RecordingSink sink;
    AccessLogTailer t(settings_for(log), sink);
    EXPECT_FALSE(t.poll_once());
    EXPECT_FALSE(t.stats().file_open);
    append(log, json_line("a", 1));
    t.poll_once();
    EXPECT_EQ(sink.count(), 1U);
    EXPECT_TRUE(t.stats().file_open);
}

TEST(AccessLogTailer, DirectoryInsteadOfAFileIsNotFatal) {
    TempDir dir;
    fs::create_directory(dir / "access.log");
    RecordingSink sink;
    AccessLogTailer t(settings_for(dir / "access.log"), sink);
    EXPECT_FALSE(t.poll_once());
    EXPECT_FALSE(t.stats().file_open);
}

TEST(AccessLogTailer, RenameRotationReadsTheRestOfTheOldFile) {
    TempDir dir;
    const auto log = dir / "access.log";
    auto s = settings_for(log);
    s.rotate_grace = 10min;  // the old file stays open in this test
    RecordingSink sink;
    AccessLogTailer t(s, sink);
    append(log, json_line("a", 1));
    t.poll_once();
    fs::rename(log, dir / "access.log.1");
    // The writer still writes to the old file until it reopens.
    append(dir / "access.log.1", json_line("a", 2));
    t.poll_once();  // path missing: reads the old file, waits for the new one
    EXPECT_EQ(sink.count(), 2U);
    EXPECT_FALSE(t.stats().file_open);
    append(log, json_line("b", 3));
    append(dir / "access.log.1", json_line("a", 4));
    t.poll_once();
    append(log, json_line("b", 5));
    t.poll_once();
    EXPECT_EQ(sink.count(), 5U);
    EXPECT_EQ(t.stats().rotations, 1U);

    // logrotate `create`: rename and a new file at once.
    fs::rename(log, dir / "access.log.2");
    append(log, json_line("c", 6));
    append(dir / "access.log.2", json_line("b", 7));
    t.poll_once();
    t.poll_once();
    EXPECT_EQ(sink.count(), 7U);
    EXPECT_EQ(t.stats().rotations, 2U);
}

TEST(AccessLogTailer, RenamedAwayAndBackIsNotReadTwice) {
    TempDir dir;
    const auto log = dir / "access.log";
    auto s = settings_for(log);
    s.rotate_grace = 10min;
    RecordingSink sink;
    AccessLogTailer t(s, sink);
    append(log, json_line("a", 1));
    t.poll_once();
    fs::rename(log, dir / "tmp");
    t.poll_once();
    fs::rename(dir / "tmp", log);
    append(log, json_line("a", 2));
    t.poll_once();
    t.poll_once();
    EXPECT_EQ(sink.count(), 2U);
}

TEST(AccessLogTailer, CopyTruncateStartsAgainAndRecoversLinesFromTheCopy) {
    TempDir dir;
    const auto log = dir / "access.log";
    RecordingSink sink;
    AccessLogTailer t(settings_for(log), sink);
    append(log, json_line("a", 1) + json_line("a", 2));
    t.poll_once();
    // Written after our last read; then copied and truncated before we read again.
    append(log, json_line("a", 3));
    fs::copy_file(log, dir / "access.log.1");
    fs::resize_file(log, 0);
    append(log, json_line("b", 4));
    t.poll_once();
    EXPECT_EQ(sink.count(), 4U);
    EXPECT_EQ(t.stats().truncations, 1U);
    EXPECT_EQ(t.stats().recovered_from_copy, 1U);

    // Truncated and already rewritten past our offset: the changed first bytes tell.
    fs::copy_file(log, dir / "access.log.2");
    fs::resize_file(log, 0);
    append(log, json_line("c", 5) + json_line("c", 6) + json_line("c", 7));
    t.poll_once();
    t.poll_once();
    EXPECT_EQ(sink.count(), 7U);
    EXPECT_EQ(t.stats().truncations, 2U);
}

TEST(AccessLogTailer, ThreadFollowsAndStopIsBounded) {
    TempDir dir;
    const auto log = dir / "access.log";
    RecordingSink sink;
    {
        AccessLogTailer t(settings_for(log), sink);
        t.start();
        t.start();  // no second thread
        for (int i = 0; i < 20; ++i) {
            append(log, json_line("a", i));
        }
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (sink.count() < 20 && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(5ms);
        }
        EXPECT_EQ(sink.count(), 20U);
        const auto t0 = std::chrono::steady_clock::now();
        t.stop();
        t.stop();
        EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
    }  // the destructor after stop() is fine too
}

// ---- persistence -----------------------------------------------------------------------------

class TailerPersistTest : public ::testing::Test {
  protected:
    TailerPersistTest() : store_(std::make_unique<core::StateStore>(dir_ / "state.db")) {}
    ~TailerPersistTest() override { store_.reset(); }
    TempDir dir_;
    std::unique_ptr<core::StateStore> store_;
    fs::path log_ = dir_ / "access.log";
};

TEST_F(TailerPersistTest, RestartResumesAtTheSavedOffset) {
    RecordingSink sink;
    int saves = 0;
    {
        AccessLogTailer t(settings_for(log_), sink,
                          {store_.get(), [&] {
                               ++saves;
                               // Counters go first, position after.
                               EXPECT_FALSE(store_->kv_get(kTailerStateKey) && saves == 1);
                           }});
        append(log_, json_line("a", 1) + json_line("a", 2) + json_line("a", 3).substr(0, 10));
        t.poll_once();
        t.checkpoint();
    }
    EXPECT_EQ(saves, 1);
    const auto saved = nlohmann::json::parse(*store_->kv_get(kTailerStateKey));
    EXPECT_EQ(saved["version"], 1);
    EXPECT_EQ(saved["path"], log_.string());
    EXPECT_GT(saved["inode"].get<std::uint64_t>(), 0U);
    // The partial line is not part of the saved offset.
    EXPECT_EQ(saved["offset"], 2 * json_line("a", 1).size());

    append(log_, json_line("a", 3).substr(10) + json_line("a", 4));
    AccessLogTailer u(settings_for(log_), sink, {store_.get(), {}});
    u.poll_once();
    EXPECT_EQ(sink.count(), 4U);  // 1, 2, then 3 and 4 once each
    EXPECT_EQ(u.stats().lines, 2U);
}

TEST_F(TailerPersistTest, NewInodeStartsAtItsBeginning) {
    RecordingSink sink;
    {
        AccessLogTailer t(settings_for(log_), sink, {store_.get(), {}});
        append(log_, json_line("a", 1));
        t.poll_once();
        t.checkpoint();
    }
    fs::remove(log_);
    append(log_, json_line("b", 2));
    AccessLogTailer u(settings_for(log_), sink, {store_.get(), {}});
    u.poll_once();
    ASSERT_EQ(sink.count(), 2U);
    EXPECT_EQ(sink.events()[1].model, "b");
}

TEST_F(TailerPersistTest, RotatedWhileAwayFinishesTheOldFileFirst) {
    RecordingSink sink;
    {
        AccessLogTailer t(settings_for(log_), sink, {store_.get(), {}});
        append(log_, json_line("a", 1));
        t.poll_once();
        t.checkpoint();
    }
    append(log_, json_line("a", 2));  // after the checkpoint, before the rotation
    fs::rename(log_, dir_ / "access.log.1");
    append(log_, json_line("b", 3));
    AccessLogTailer u(settings_for(log_), sink, {store_.get(), {}});
    u.poll_once();
    u.poll_once();
    ASSERT_EQ(sink.count(), 3U);
    EXPECT_EQ(u.stats().rotations, 1U);
}

TEST_F(TailerPersistTest, RestartWhileARotatedFileIsStillWrittenLosesNothing) {
    RecordingSink sink;
    auto s = settings_for(log_);
    s.rotate_grace = 10min;
    {
        AccessLogTailer t(s, sink, {store_.get(), {}});
        append(log_, json_line("a", 1));
        t.poll_once();
        fs::rename(log_, dir_ / "access.log.1");
        append(log_, json_line("b", 2));
        t.poll_once();  // now reading the new file, and the old one until it goes quiet
        t.checkpoint();
        const auto saved = nlohmann::json::parse(*store_->kv_get(kTailerStateKey));
        EXPECT_EQ(saved["rotated"].size(), 1U);
    }
    // The writer had not reopened yet: more lines in the old file after the checkpoint.
    append(dir_ / "access.log.1", json_line("a", 3));
    append(log_, json_line("b", 4));
    AccessLogTailer u(s, sink, {store_.get(), {}});
    u.poll_once();
    ASSERT_EQ(sink.count(), 4U);
    EXPECT_EQ(u.stats().lines, 2U);
}

TEST_F(TailerPersistTest, RestartWhileThePathIsMissing) {
    RecordingSink sink;
    auto s = settings_for(log_);
    s.rotate_grace = 10min;
    {
        AccessLogTailer t(s, sink, {store_.get(), {}});
        append(log_, json_line("a", 1));
        t.poll_once();
        fs::rename(log_, dir_ / "access.log.1");
        t.poll_once();
        t.checkpoint();
    }
    append(dir_ / "access.log.1", json_line("a", 2));
    AccessLogTailer u(s, sink, {store_.get(), {}});
    u.poll_once();
    EXPECT_EQ(sink.count(), 2U);
    append(log_, json_line("b", 3));
    u.poll_once();
    EXPECT_EQ(sink.count(), 3U);
}

TEST_F(TailerPersistTest, TruncatedWhileAwayStartsAgainAndReadsTheCopy) {
    RecordingSink sink;
    {
        AccessLogTailer t(settings_for(log_), sink, {store_.get(), {}});
        append(log_, json_line("a", 1));
        t.poll_once();
        t.checkpoint();
    }
    append(log_, json_line("a", 2));
    fs::copy_file(log_, dir_ / "access.log.1");
    fs::resize_file(log_, 0);
    append(log_, json_line("b", 3) + json_line("b", 4));  // longer than the saved offset
    AccessLogTailer u(settings_for(log_), sink, {store_.get(), {}});
    u.poll_once();
    EXPECT_EQ(sink.count(), 4U);
    EXPECT_EQ(u.stats().truncations, 1U);
}

TEST_F(TailerPersistTest, CorruptSavedPositionIsIgnored) {
    append(log_, json_line("a", 1));
    for (const char* bad :
         {"nope", "{}", R"({"version": 2})", R"({"version":1,"path":"x","inode":1,"offset":-1})",
          R"({"version":1,"path":"x","inode":1,"offset":1,"head_bytes":1,"head_fnv1a":"zz"})"}) {
        store_->kv_set(kTailerStateKey, bad);
        RecordingSink sink;
        AccessLogTailer t(settings_for(log_), sink, {store_.get(), {}});
        t.poll_once();
        EXPECT_EQ(sink.count(), 1U) << bad;
    }
}

TEST_F(TailerPersistTest, OtherPathInTheSavedPositionIsIgnored) {
    RecordingSink sink;
    {
        AccessLogTailer t(settings_for(log_), sink, {store_.get(), {}});
        append(log_, json_line("a", 1));
        t.poll_once();
        t.checkpoint();
    }
    fs::rename(log_, dir_ / "other.log");
    AccessLogTailer u(settings_for(dir_ / "other.log"), sink, {store_.get(), {}});
    u.poll_once();
    EXPECT_EQ(sink.count(), 2U);  // a different configured path reads from the start
}

}  // namespace
}  // namespace mlk::homelab
