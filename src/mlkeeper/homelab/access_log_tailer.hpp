// Follows one NGINX access log (the JSON format of docs/formats/nginx-access-log.md, or
// "combined") and feeds each model request to a RequestSink, across logrotate's `create` and
// `copytruncate` rotations and agent restarts, without losing or counting a line twice.
// Thread safety: the parse functions are pure. AccessLogTailer's members may be called from any
// thread; one mutex serializes reading the file, stats() and checkpoint().
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mlkeeper/homelab/request_event.hpp"

namespace mlk::core {
class Config;
class StateStore;
}  // namespace mlk::core

namespace mlk::homelab {

using SysTime = std::chrono::system_clock::time_point;

enum class AccessLogFormat { kJson, kCombined };
std::string_view to_string(AccessLogFormat f);  // "json" | "combined"
std::optional<AccessLogFormat> parse_access_log_format(std::string_view text);  // exact words

struct TailerSettings {
    std::filesystem::path path;  // the live log file
    AccessLogFormat format = AccessLogFormat::kJson;
    // combined: the model is the path segment after it ("/models/NAME/..."); no trailing '/'.
    std::string location_prefix = "/models";
    std::chrono::milliseconds poll_interval{1000};
    std::chrono::milliseconds persist_interval{60000};  // checkpoint(); 0 = only at stop()
    // A file rotated away (renamed or deleted) is still read until it has not grown for this
    // long: NGINX writes to it until it reopens its logs (logrotate's postrotate `nginx -s
    // reopen`, or USR1), a little after the new file appeared.
    std::chrono::milliseconds rotate_grace{5000};
};

// [activity] access_log, access_log_format, location_prefix, poll_interval, persist_interval
// (keys-activity.txt). nullopt when access_log is "" (tailing off). Throws ConfigError for an
// unknown format or a prefix that does not start with '/'.
std::optional<TailerSettings> tailer_settings_from(const core::Config& cfg);

// What one log line is.
enum class LineKind { kEvent, kNotModel, kMalformed };
struct ParsedLine {
    LineKind kind = LineKind::kMalformed;
    RequestEvent event;  // kEvent: source kNginx, model, status, bytes, latency, at
};

// One line of the JSON format, without its '\n': an object with "model" (string; "" or "-": not a
// model location), "status" and "msec" required, "request_length", "bytes_sent" and
// "request_time" optional ("", "-" or a value that does not parse: absent, 0); numbers as JSON
// numbers or as decimal strings (nginx escape=json writes strings). bytes_in = request_length,
// bytes_out = bytes_sent (both include headers).
ParsedLine parse_json_line(std::string_view line);
// One line of NGINX's "combined" format: `ADDR - USER [10/Oct/2000:13:55:36 -0700] "GET
// /models/NAME/... HTTP/1.1" STATUS BYTES "REFERER" "AGENT"`. The model is the path segment
// after `location_prefix`; bytes_out = body bytes; no request size or latency in this format.
ParsedLine parse_combined_line(std::string_view line, std::string_view location_prefix);

// Lines longer than this (without the '\n') are skipped and counted in too_long.
inline constexpr std::size_t kMaxLogLineBytes = 64 * 1024;
// The kv key of the saved position (docs/STATE.md).
inline constexpr const char* kTailerStateKey = "activity.tailer";

struct TailerStats {
    std::uint64_t lines = 0;      // complete lines read (all kinds)
    std::uint64_t events = 0;     // delivered to the sink
    std::uint64_t not_model = 0;  // valid lines of other locations
    std::uint64_t malformed = 0;  // includes too_long
    std::uint64_t too_long = 0;
    std::uint64_t rotations = 0;            // the path now names another file (or none)
    std::uint64_t truncations = 0;          // the file shrank or was rewritten (copytruncate)
    std::uint64_t recovered_from_copy = 0;  // lines read from the rotated copy after a truncation
    bool file_open = false;                 // false while the path is missing
    std::optional<std::uint64_t> inode;
    std::uint64_t offset = 0;  // end of the last complete line of the current file
};

// Where checkpoint() writes. `save_counts` (e.g. [&] { tracker.save(store); }) runs right before
// the position is written while no line is being delivered, so the counters and the position
// saved always agree: a restart then neither loses nor recounts a line.
struct TailerPersistence {
    core::StateStore* store = nullptr;  // nullptr: nothing saved or restored
    std::function<void()> save_counts;
};

class AccessLogTailer {
  public:
    // Reads the saved position (kTailerStateKey) when persistence is given; a corrupt value is
    // logged and ignored. Starts nothing: call start(), or poll_once() from a test.
    AccessLogTailer(TailerSettings settings, RequestSink& sink, TailerPersistence persist = {});
    // stop().
    ~AccessLogTailer();
    AccessLogTailer(const AccessLogTailer&) = delete;
    AccessLogTailer& operator=(const AccessLogTailer&) = delete;

    // Polls every poll_interval (at once again while a backlog remains) and checkpoints every
    // persist_interval, on a thread of its own. A second start() does nothing.
    void start();
    // Stops and joins the thread, then checkpoints once more. Safe to call twice.
    void stop();

    // One pass: (re)open the file if needed, read what was appended (at most a few MiB per file,
    // so a backlog is read over several passes), then look for a rotation or truncation. Never
    // throws for a missing or unreadable file (logged once, tried again next pass). Returns true
    // when data is left to read.
    bool poll_once();
    // Saves the counters (save_counts) and the position now; errors are logged, not thrown.
    void checkpoint();

    TailerStats stats() const;
    const TailerSettings& settings() const { return settings_; }

  private:
    struct File;
    struct Saved;

    // The file at `path` at offset 0; nullptr with errno set when it cannot be opened.
    static std::unique_ptr<File> open_file(const std::filesystem::path& path);
    bool drain(File& f, std::size_t budget);  // mu_ held; true when the budget ran out
    void deliver(std::string_view line);      // mu_ held
    void open_current();                      // mu_ held
    void resume_saved();                      // mu_ held; once, before the first open
    void check_rotation();                    // mu_ held; after reading
    bool check_truncation();                  // mu_ held; true: started again at 0
    void restart_after_truncation(File& f);   // mu_ held
    // Reads, from `offset` to its end, the rotated copy (a sibling "NAME.x" or "NAME-x") whose
    // first `head_bytes` hash to `head_hash`. mu_ held.
    bool read_copy(std::uint64_t offset, std::size_t head_bytes, std::uint64_t head_hash, dev_t dev,
                   ino_t ino);
    void close_idle_drained();  // mu_ held
    void checkpoint_locked();   // mu_ held
    void run();

    TailerSettings settings_;
    RequestSink& sink_;
    TailerPersistence persist_;

    mutable std::mutex mu_;
    std::unique_ptr<File> current_;
    std::vector<std::unique_ptr<File>> draining_;
    std::unique_ptr<Saved> saved_;  // the position from the last run, until the first open
    TailerStats stats_;
    int last_open_errno_ = 0;  // to log a failing open once, not every pass

    std::mutex thread_mu_;
    std::condition_variable cv_;
    bool stop_ = false;  // thread_mu_
    std::thread thread_;
};

}  // namespace mlk::homelab
