// Drives Debian's headless Chromium for tests of web pages: load a URL, wait (bounded) for a
// condition, read the DOM, evaluate JavaScript, collect console messages and uncaught errors, and
// save a PNG screenshot. It talks the DevTools protocol over --remote-debugging-pipe, so no port
// is opened. Every call has a deadline, and the browser (its whole process group) is killed when
// the object goes, so a test never hangs on it. Thread safety: one Chromium per thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace mlk::testing {

// Where Chromium is: $MLK_CHROMIUM if set, else the first executable of /usr/bin/chromium,
// /usr/bin/chromium-browser, /usr/bin/google-chrome. nullopt when there is none.
std::optional<std::filesystem::path> find_chromium();

// MLK_ALLOW_NO_CHROMIUM=1: a machine without Chromium skips browser tests instead of failing.
bool chromium_may_be_missing();

inline constexpr const char* kNoChromiumMessage =
    "Chromium not found (/usr/bin/chromium): install it with `apt-get install -y "
    "--no-install-recommends chromium`, or set MLK_ALLOW_NO_CHROMIUM=1 to skip browser tests";

// In a TEST body: fails (or, with MLK_ALLOW_NO_CHROMIUM=1, skips) when there is no Chromium.
#define MLK_REQUIRE_CHROMIUM()                                      \
    do {                                                            \
        if (!::mlk::testing::find_chromium()) {                     \
            if (::mlk::testing::chromium_may_be_missing()) {        \
                GTEST_SKIP() << ::mlk::testing::kNoChromiumMessage; \
            }                                                       \
            FAIL() << ::mlk::testing::kNoChromiumMessage;           \
        }                                                           \
    } while (false)

struct ConsoleMessage {
    std::string level;   // "error", "warning", "info", "log", "debug", "verbose"
    std::string source;  // "console" (console.*), "exception" (uncaught), or the browser's own:
                         // "network", "javascript", "security", ...
    std::string text;
    std::string url;  // where it came from, when known
};

// One line per message ("error [network] text (url)"), for test failure output.
std::string describe(const std::vector<ConsoleMessage>& messages);

enum class ColorScheme { kLight, kDark };

struct ChromiumOptions {
    std::filesystem::path binary;  // empty: find_chromium()
    int width = 1280;              // the viewport, CSS pixels
    int height = 900;
    std::chrono::milliseconds command_limit{15000};  // each DevTools command
    // The whole session: past it every call throws. Together with command_limit this bounds
    // every test that uses the browser.
    std::chrono::milliseconds total_limit{120000};
};

class Chromium {
  public:
    // Starts the browser in a temporary profile and attaches to its page. Throws
    // std::runtime_error (with the end of Chromium's log) when it cannot.
    explicit Chromium(const ChromiumOptions& options = {});
    // Closes the browser, kills what is left of its process group, removes the profile.
    ~Chromium();
    Chromium(const Chromium&) = delete;
    Chromium& operator=(const Chromium&) = delete;

    // Loads `url` and waits for its load event. Throws std::runtime_error on a navigation error
    // (no server, bad URL) or when `limit` passes.
    void navigate(const std::string& url,
                  std::chrono::milliseconds limit = std::chrono::seconds(15));

    // Polls the JavaScript `expression` until it is truthy (true) or `limit` passes (false). An
    // expression that throws counts as false.
    bool wait_for(const std::string& expression, std::chrono::milliseconds limit);

    // The value of a JavaScript expression (a promise is awaited), as JSON; undefined is null.
    // Throws std::runtime_error when it throws.
    nlohmann::json evaluate(const std::string& expression);

    // document.documentElement.outerHTML as the scripts left it.
    std::string dom();

    // A PNG of the whole page (not just the viewport) at `png`. Throws on failure.
    void screenshot(const std::filesystem::path& png);

    // Emulates prefers-color-scheme.
    void set_color_scheme(ColorScheme scheme);

    // Everything the page logged so far, and its errors (level "error": console.error,
    // uncaught exceptions and rejections, failed loads).
    const std::vector<ConsoleMessage>& console() const { return console_; }
    std::vector<ConsoleMessage> errors() const;

    // The end of Chromium's own stderr, for diagnostics.
    std::string log_tail() const;

  private:
    using Clock = std::chrono::steady_clock;

    nlohmann::json send(const std::string& method, const nlohmann::json& params,
                        bool to_page = true, std::optional<Clock::time_point> deadline = {});
    // Reads and handles what has arrived, waiting until `deadline` for something to arrive.
    // Returns false when nothing came in time; throws when the browser has gone.
    bool pump(Clock::time_point deadline);
    void handle(const nlohmann::json& message);
    Clock::time_point deadline_after(std::chrono::milliseconds d) const;
    [[noreturn]] void fail(const std::string& what) const;
    void shutdown() noexcept;

    ChromiumOptions options_;
    std::filesystem::path dir_;  // temporary: profile/ and chromium.log
    pid_t pid_ = -1;             // also its process group
    int to_browser_ = -1;        // our ends of the two socket pairs
    int from_browser_ = -1;
    Clock::time_point end_;  // total_limit
    std::string buffer_;     // received bytes not yet split into messages
    int next_id_ = 0;
    int awaited_id_ = 0;
    std::optional<nlohmann::json> response_;
    std::string session_;
    std::uint64_t load_events_ = 0;
    bool crashed_ = false;
    bool responsive_ = true;  // false once a command went unanswered: no polite close then
    std::vector<ConsoleMessage> console_;
};

struct PageResult {
    bool ready = false;  // the wait expression held in time
    std::string dom;
    std::vector<ConsoleMessage> console;
    std::vector<ConsoleMessage> errors;
};

// One go: starts Chromium, loads `url`, waits up to `limit` for `wait_expression` (empty: only
// the load event), takes a screenshot when `screenshot` is not empty, and stops the browser.
// Throws std::runtime_error when Chromium cannot start or the page cannot load.
PageResult load_page(const std::string& url, const std::string& wait_expression,
                     std::chrono::milliseconds limit, const std::filesystem::path& screenshot = {});

// Where screenshots for review go: $MLK_TEST_ARTIFACTS (created), else the test temp directory.
std::filesystem::path artifact_path(const std::string& name);

}  // namespace mlk::testing
