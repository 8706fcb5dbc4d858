// Sets TZ for the lifetime of the guard and restores the previous value (or
// its absence), for tests of local-time formatting and day buckets.
// Thread safety: changes process-wide state; use from one test thread.
#pragma once

#include <time.h>

#include <cstdlib>
#include <optional>
#include <string>

namespace mlk::testing {

class ScopedTz {
  public:
    explicit ScopedTz(const char* tz) {
        if (const char* old = std::getenv("TZ")) {
            old_ = old;
        }
        ::setenv("TZ", tz, 1);
        ::tzset();
    }
    ~ScopedTz() {
        if (old_) {
            ::setenv("TZ", old_->c_str(), 1);
        } else {
            ::unsetenv("TZ");
        }
        ::tzset();
    }
    ScopedTz(const ScopedTz&) = delete;
    ScopedTz& operator=(const ScopedTz&) = delete;

  private:
    std::optional<std::string> old_;
};

// A POSIX rule string, so tests do not depend on tzdata being installed: US
// Eastern, DST from the second Sunday of March 02:00 to the first Sunday of
// November 02:00.
inline constexpr const char* kEastern = "EST5EDT,M3.2.0,M11.1.0";

}  // namespace mlk::testing
