#include "mlkeeper/core/logging.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/sinks/systemd_sink.h>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>

#include "mlkeeper/util/time.hpp"

namespace mlk::core {
namespace {

// Bumped by SIGHUP; each file sink reopens when it sees a new generation.
std::atomic<unsigned> g_reopen_generation{0};

// Appends to a file; reopens it (by name) after request_log_reopen(), so a
// rotated file is released and a fresh one started.
class ReopenableFileSink final : public spdlog::sinks::base_sink<std::mutex> {
  public:
    explicit ReopenableFileSink(std::filesystem::path path) : path_(std::move(path)) { open(); }
    ~ReopenableFileSink() override { close(); }
    bool is_open() const { return file_ != nullptr; }
    int open_errno() const { return open_errno_; }

  protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        if (auto gen = g_reopen_generation.load(std::memory_order_relaxed); gen != generation_) {
            generation_ = gen;
            close();
            open();
        }
        if (file_ == nullptr) {
            return;
        }
        spdlog::memory_buf_t buf;
        formatter_->format(msg, buf);
        std::fwrite(buf.data(), 1, buf.size(), file_);
        std::fflush(file_);  // one line at a time: a crash loses nothing already logged
    }
    void flush_() override {
        if (file_ != nullptr) {
            std::fflush(file_);
        }
    }

  private:
    void open() {
        std::error_code ec;
        if (path_.has_parent_path()) {
            std::filesystem::create_directories(path_.parent_path(), ec);
        }
        file_ = std::fopen(path_.c_str(), "ae");
        open_errno_ = file_ == nullptr ? errno : 0;
        generation_ = g_reopen_generation.load(std::memory_order_relaxed);
    }
    void close() {
        if (file_ != nullptr) {
            std::fclose(file_);
            file_ = nullptr;
        }
    }

    std::filesystem::path path_;
    std::FILE* file_ = nullptr;
    unsigned generation_ = 0;
    int open_errno_ = 0;
};

// One JSON object a line: ts, level, command, msg.
class JsonFormatter final : public spdlog::formatter {
  public:
    explicit JsonFormatter(std::string command) : command_(std::move(command)) {}
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        nlohmann::json j;
        j["ts"] = util::iso8601_utc(std::chrono::time_point_cast<util::Clock::duration>(msg.time));
        auto lvl = spdlog::level::to_string_view(msg.level);
        j["level"] = std::string_view(lvl.data(), lvl.size());
        if (!command_.empty()) {
            j["command"] = command_;
        }
        j["pid"] = ::getpid();
        j["msg"] = std::string_view(msg.payload.data(), msg.payload.size());
        auto s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        dest.append(s.data(), s.data() + s.size());
        dest.push_back('\n');
    }
    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<JsonFormatter>(command_);
    }

  private:
    std::string command_;
};

// systemd sets JOURNAL_STREAM to the device:inode of the stream it connected
// to stderr; when it matches, native journal fields beat plain text.
bool stderr_is_journal() {
    const char* js = std::getenv("JOURNAL_STREAM");
    if (js == nullptr) {
        return false;
    }
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) != 0) {
        return false;
    }
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) {
        return false;
    }
    return dev == st.st_dev && ino == st.st_ino;
}

void on_sighup(int /*sig*/) {
    request_log_reopen();
}

}  // namespace

void request_log_reopen() {
    g_reopen_generation.fetch_add(1, std::memory_order_relaxed);
}

void install_sighup_reopen() {
    struct sigaction sa {};
    sa.sa_handler = on_sighup;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGHUP, &sa, nullptr);
}

spdlog::level::level_enum parse_log_level(std::string_view name) {
    if (name == "warning") {
        return spdlog::level::warn;
    }
    return spdlog::level::from_str(std::string(name));
}

bool init_logging(const LogOptions& opts) {
    std::vector<spdlog::sink_ptr> sinks;
    auto apply_format = [&](const spdlog::sink_ptr& sink, const char* pattern) {
        if (opts.format == LogFormat::kJson) {
            sink->set_formatter(std::make_unique<JsonFormatter>(opts.command));
        } else {
            sink->set_pattern(pattern);
        }
    };

    if (stderr_is_journal()) {
        auto journal = std::make_shared<spdlog::sinks::systemd_sink_mt>(opts.ident, false);
        sinks.push_back(journal);
    } else {
        auto err = std::make_shared<spdlog::sinks::stderr_color_sink_mt>(
            opts.color == ColorMode::kNever ? spdlog::color_mode::never
                                            : spdlog::color_mode::automatic);
        apply_format(err, "%^%l%$: %v");
        switch (opts.stderr_mode) {
            case StderrMode::kQuiet:
                err->set_level(spdlog::level::err);
                break;
            case StderrMode::kNormal:
                err->set_level(std::max(opts.level, spdlog::level::warn));
                break;
            case StderrMode::kVerbose:
                break;
        }
        sinks.push_back(err);
    }

    bool file_ok = true;
    int file_errno = 0;
    if (!opts.file.empty()) {
        auto file = std::make_shared<ReopenableFileSink>(opts.file);
        if (file->is_open()) {
            apply_format(file, "[%Y-%m-%d %H:%M:%S] [%l] %v");
            sinks.push_back(file);
        } else {
            file_ok = false;
            file_errno = file->open_errno();
        }
    }
    if (opts.syslog) {
        auto sys =
            std::make_shared<spdlog::sinks::syslog_sink_mt>(opts.ident, LOG_PID, LOG_USER, false);
        sinks.push_back(sys);
    }

    auto logger = std::make_shared<spdlog::logger>("mlkeeper", sinks.begin(), sinks.end());
    logger->set_level(opts.level);
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(logger);
    if (!file_ok) {
        spdlog::warn("cannot open log file {} ({}); logging to stderr only", opts.file.string(),
                     std::error_code(file_errno, std::generic_category()).message());
    }
    return file_ok;
}

}  // namespace mlk::core
