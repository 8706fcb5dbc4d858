#include "mlkeeper/gpu/csv_log.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <thread>

#include <fmt/format.h>

#include "mlkeeper/util/time.hpp"

namespace mlk::gpu {
namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;

// RFC 4180: quote a field holding a comma, quote or line break.
std::string csv_field(std::string_view v) {
    if (v.find_first_of(",\"\r\n") == std::string_view::npos) {
        return std::string(v);
    }
    std::string out = "\"";
    for (char c : v) {
        out += c;
        if (c == '"') {
            out += '"';
        }
    }
    return out + "\"";
}

template <typename T>
std::string opt(const std::optional<T>& v, std::string_view f = "{}") {
    return v ? fmt::format(fmt::runtime(f), *v) : std::string();
}

class Fd {
  public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) {
            ::close(fd_);  // also drops the flock
        }
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

  private:
    int fd_;
};

[[noreturn]] void fail(int err, const std::string& what, const std::filesystem::path& p) {
    throw std::system_error(err, std::generic_category(), what + " " + p.string());
}

}  // namespace

std::string csv_rows(const Snapshot& s) {
    const std::string ts = util::format_local(s.time, "%Y-%m-%d %H:%M:%S");
    std::string out;
    for (const auto& g : s.gpus) {
        std::optional<std::uint64_t> used, total;
        if (g.mem_used_bytes) {
            used = *g.mem_used_bytes / kMiB;
        }
        if (g.mem_total_bytes) {
            total = *g.mem_total_bytes / kMiB;
        }
        out +=
            fmt::format("{},{},{},{},{},{},{},{},{},{}\n", ts, g.index, csv_field(g.name),
                        opt(g.temperature_c), opt(g.util_gpu_pct), opt(g.util_mem_pct), opt(used),
                        opt(total), opt(g.power_draw_w, "{:.2f}"), opt(g.power_limit_w, "{:.2f}"));
    }
    return out;
}

void append_csv(const std::filesystem::path& path, const Snapshot& s,
                std::chrono::milliseconds lock_timeout) {
    std::string rows = csv_rows(s);
    if (rows.empty()) {
        return;
    }
    Fd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (fd.get() < 0) {
        fail(errno, "cannot open metrics file", path);
    }
    // Poll with LOCK_NB so a stuck writer cannot hang a timer run forever.
    const auto deadline = std::chrono::steady_clock::now() + lock_timeout;
    while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            fail(errno, "cannot lock metrics file", path);
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            fail(ETIMEDOUT, "another writer holds the lock on metrics file", path);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        fail(errno, "cannot stat metrics file", path);
    }
    std::string data = st.st_size == 0 ? std::string(kCsvHeader) + "\n" + rows : rows;
    std::string_view left = data;
    while (!left.empty()) {
        ssize_t n = ::write(fd.get(), left.data(), left.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fail(errno, "cannot append to metrics file", path);
        }
        left.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace mlk::gpu
