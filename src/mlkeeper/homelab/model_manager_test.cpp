#include "mlkeeper/homelab/model_manager.hpp"

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include "support/wait.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlk::homelab {
namespace {

bool eventually_(const std::function<bool()>& pred,
                 std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
    return testing::wait_until(pred, limit, std::chrono::milliseconds(5));
}

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using std::chrono::steady_clock;
using std::chrono::system_clock;

// What a fake model does, and what was done to it. Shared by the backend and the health probe.
struct FakeModel {
    std::mutex mu;
    // Behaviour.
    milliseconds start_delay{0};  // start() blocks this long
    bool start_throws = false;
    int healthy_after = 0;  // probes answered "not healthy" after each start before the first ok
    bool never_healthy = false;
    std::optional<int> exit_during_start;  // the process exits with this code right after start
    bool stop_ignores_term = false;        // stop() takes its whole timeout, then SIGKILLs
    bool stop_throws = false;
    milliseconds stop_delay{0};
    // Observations.
    int starts = 0;
    int stops = 0;
    int kills = 0;
    int double_starts = 0;  // start() while already running: a second spawn
    int active_starts = 0;
    int max_active_starts = 0;
    int probes = 0;
    milliseconds last_stop_timeout{-1};
    // The "process".
    bool running = false;
    pid_t pid = 0;
    pid_t next_pid = 100;
    std::optional<BackendStatus> exited;  // reported once by status()

    void crash(int code, std::optional<int> sig = std::nullopt) {
        std::lock_guard lk(mu);
        running = false;
        BackendStatus st;
        st.state = BackendState::kExited;
        st.pid = pid;
        if (sig) {
            st.signal = sig;
        } else {
            st.exit_code = code;
        }
        exited = st;
    }
    bool is_running() {
        std::lock_guard lk(mu);
        return running;
    }
    int count(int FakeModel::*field) {
        std::lock_guard lk(mu);
        return this->*field;
    }
};

class FakeBackend : public ModelBackend {
  public:
    explicit FakeBackend(std::shared_ptr<FakeModel> m) : m_(std::move(m)) {}

    void start() override {
        milliseconds delay;
        {
            std::lock_guard lk(m_->mu);
            ++m_->starts;
            if (m_->running) {
                ++m_->double_starts;
            }
            ++m_->active_starts;
            m_->max_active_starts = std::max(m_->max_active_starts, m_->active_starts);
            delay = m_->start_delay;
        }
        std::this_thread::sleep_for(delay);
        std::lock_guard lk(m_->mu);
        --m_->active_starts;
        if (m_->start_throws) {
            throw std::runtime_error("model x: cannot run /nonexistent: No such file or directory");
        }
        m_->running = true;
        m_->pid = m_->next_pid++;
        m_->probes = 0;
        m_->exited.reset();
        if (m_->exit_during_start) {
            m_->running = false;
            BackendStatus st;
            st.state = BackendState::kExited;
            st.pid = m_->pid;
            st.exit_code = *m_->exit_during_start;
            st.detail = "exited with code " + std::to_string(*m_->exit_during_start);
            m_->exited = st;
        }
    }

    void stop(milliseconds timeout) override {
        milliseconds wait{0};
        bool kill = false;
        {
            std::lock_guard lk(m_->mu);
            ++m_->stops;
            m_->last_stop_timeout = timeout;
            if (m_->stop_throws) {
                throw std::runtime_error("systemctl stop x.service: exit 1");
            }
            if (!m_->running) {
                m_->exited.reset();
                return;
            }
            if (m_->stop_ignores_term) {
                wait = timeout;  // SIGTERM ignored: the grace period runs out
                kill = true;
            } else {
                wait = m_->stop_delay;
            }
        }
        std::this_thread::sleep_for(wait);
        std::lock_guard lk(m_->mu);
        if (kill) {
            ++m_->kills;
        }
        m_->running = false;
        m_->exited.reset();
    }

    BackendStatus status() override {
        std::lock_guard lk(m_->mu);
        BackendStatus st;
        if (m_->running) {
            st.state = BackendState::kRunning;
            st.pid = m_->pid;
        } else if (m_->exited) {
            st = *m_->exited;
            m_->exited.reset();
        }
        return st;
    }

  private:
    std::shared_ptr<FakeModel> m_;
};

// A wall clock the test moves by hand; thread-safe.
class FakeClock {
  public:
    system_clock::time_point now() const { return base_ + milliseconds(offset_ms_.load()); }
    void advance(milliseconds d) { offset_ms_ += d.count(); }

  private:
    system_clock::time_point base_ = system_clock::from_time_t(1795356000);  // 2026-11-22
    std::atomic<long long> offset_ms_{0};
};

ModelSpec make_spec(const std::string& name) {
    ModelSpec s;
    s.name = name;
    s.command = {"/bin/true"};
    s.port = 8001;
    s.health_url = "http://fake/" + name;
    s.start_timeout = 5s;
    s.stop_timeout = 2s;
    s.restart_backoff_min = 1000ms;
    s.restart_backoff_max = 4000ms;
    s.max_restarts = 3;
    return s;
}

enum class ClockKind { kFake, kReal };

struct Harness {
    std::map<std::string, std::shared_ptr<FakeModel>> models;
    FakeClock clock;
    std::atomic<int> probe_calls{0};
    std::atomic<long long> max_probe_timeout_ms{0};
    std::unique_ptr<ModelManager> mgr;

    explicit Harness(std::vector<ModelSpec> specs, ClockKind ck = ClockKind::kFake) {
        for (const auto& s : specs) {
            models[s.name] = std::make_shared<FakeModel>();
        }
        auto factory = [this](const ModelSpec& s) -> std::unique_ptr<ModelBackend> {
            return std::make_unique<FakeBackend>(models.at(s.name));
        };
        auto probe = [this](const std::string& url, milliseconds timeout) {
            ++probe_calls;
            long long prev = max_probe_timeout_ms.load();
            while (timeout.count() > prev &&
                   !max_probe_timeout_ms.compare_exchange_weak(prev, timeout.count())) {
            }
            const std::string name = url.substr(std::string("http://fake/").size());
            FakeModel& m = *models.at(name);
            std::lock_guard lk(m.mu);
            if (!m.running || m.never_healthy) {
                return false;
            }
            return ++m.probes > m.healthy_after;
        };
        ModelManager::Clock now;
        if (ck == ClockKind::kFake) {
            now = [this] { return clock.now(); };
        }
        mgr = ck == ClockKind::kFake
                  ? std::make_unique<ModelManager>(std::move(specs), factory, probe, now)
                  : std::make_unique<ModelManager>(std::move(specs), factory, probe);
    }
    FakeModel& m(const std::string& name) { return *models.at(name); }
    ModelInfo info(const std::string& name) { return mgr->get(name).value(); }
};

template <typename F>
milliseconds timed(F&& f) {
    const auto t0 = steady_clock::now();
    f();
    return std::chrono::duration_cast<milliseconds>(steady_clock::now() - t0);
}

// The ModelError kind `f` throws; fails the test if it throws nothing.
template <typename F>
std::optional<ModelError::Kind> error_kind(F&& f, std::string* message = nullptr) {
    try {
        f();
    } catch (const ModelError& e) {
        if (message) {
            *message = e.what();
        }
        return e.kind();
    }
    ADD_FAILURE() << "no ModelError thrown";
    return std::nullopt;
}

TEST(ModelManager, ListsEveryModelSortedAndStopped) {
    Harness h({make_spec("zeta"), make_spec("alpha"), make_spec("mid")});
    const auto all = h.mgr->list();
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[0].name, "alpha");
    EXPECT_EQ(all[1].name, "mid");
    EXPECT_EQ(all[2].name, "zeta");
    for (const auto& i : all) {
        EXPECT_EQ(i.state, ModelState::kStopped);
        EXPECT_EQ(i.restarts, 0);
        EXPECT_FALSE(i.pid);
        EXPECT_FALSE(i.last_error);
        EXPECT_EQ(i.since, h.clock.now());
    }
    EXPECT_FALSE(h.mgr->get("nope"));
    EXPECT_FALSE(h.mgr->get(""));
    EXPECT_FALSE(h.mgr->get("ALPHA"));
}

TEST(ModelManager, DuplicateNamesAreRejected) {
    auto factory = [](const ModelSpec&) {
        return std::make_unique<FakeBackend>(std::make_shared<FakeModel>());
    };
    EXPECT_THROW(ModelManager({make_spec("a"), make_spec("b"), make_spec("a")}, factory,
                              [](const std::string&, milliseconds) { return true; }),
                 std::invalid_argument);
    auto null_factory = [](const ModelSpec&) { return std::unique_ptr<ModelBackend>(); };
    EXPECT_THROW(ModelManager({make_spec("a")}, null_factory,
                              [](const std::string&, milliseconds) { return true; }),
                 std::invalid_argument);
}

TEST(ModelManager, StartStopLifecycle) {
    Harness h({make_spec("llama")});
    h.m("llama").healthy_after = 2;
    h.clock.advance(5s);
    auto r = h.mgr->start("llama", Wait::kYes, std::nullopt);
    EXPECT_EQ(r.outcome, OpOutcome::kStarted);
    EXPECT_EQ(r.model.state, ModelState::kRunning);
    EXPECT_EQ(r.model.pid, 100);
    EXPECT_EQ(r.model.since, h.clock.now());
    EXPECT_EQ(h.m("llama").count(&FakeModel::probes), 3);
    EXPECT_EQ(h.mgr->start("llama", Wait::kYes, std::nullopt).outcome, OpOutcome::kAlreadyRunning);
    EXPECT_EQ(h.m("llama").count(&FakeModel::starts), 1);

    h.clock.advance(7s);
    r = h.mgr->stop("llama", Wait::kYes, 3s);
    EXPECT_EQ(r.outcome, OpOutcome::kStopped);
    EXPECT_EQ(r.model.state, ModelState::kStopped);
    EXPECT_FALSE(r.model.pid);
    EXPECT_EQ(r.model.since, h.clock.now());
    EXPECT_EQ(h.m("llama").last_stop_timeout, 3000ms);
    EXPECT_FALSE(h.m("llama").is_running());
    EXPECT_EQ(h.mgr->stop("llama", Wait::kYes, std::nullopt).outcome, OpOutcome::kAlreadyStopped);
    EXPECT_EQ(h.m("llama").count(&FakeModel::stops), 1);

    // The default stop timeout is the spec's.
    h.mgr->start("llama", Wait::kYes, std::nullopt);
    h.mgr->stop("llama", Wait::kYes, std::nullopt);
    EXPECT_EQ(h.m("llama").last_stop_timeout, 2000ms);
    EXPECT_EQ(h.info("llama").restarts, 0);
}

TEST(ModelManager, UnknownNamesAreNotFoundWhateverTheyContain) {
    Harness h({make_spec("llama")});
    const std::vector<std::string> names = {"../x",
                                            "a;b",
                                            "a b",
                                            "llama ",
                                            "LLAMA",
                                            "",
                                            "caf\xc3\xa9",
                                            "\xff\xfe",
                                            std::string(10240, 'x'),
                                            std::string("lla\0ma", 6)};
    for (const auto& n : names) {
        std::string msg;
        EXPECT_EQ(error_kind([&] { h.mgr->start(n, Wait::kYes, std::nullopt); }, &msg),
                  ModelError::Kind::kNotFound);
        EXPECT_LE(msg.size(), 16u + 6u * 64u + 5u) << msg;
        EXPECT_NO_THROW((void)nlohmann::json(msg).dump()) << "message is valid UTF-8";
        EXPECT_EQ(error_kind([&] { h.mgr->stop(n, Wait::kNo, std::nullopt); }),
                  ModelError::Kind::kNotFound);
        EXPECT_EQ(error_kind([&] { h.mgr->restart(n, std::nullopt); }),
                  ModelError::Kind::kNotFound);
        EXPECT_FALSE(h.mgr->get(n));
    }
    EXPECT_EQ(h.m("llama").count(&FakeModel::starts), 0);
}

TEST(QuoteName, EscapesAndCuts) {
    EXPECT_EQ(quote_name("llama"), "\"llama\"");
    EXPECT_EQ(quote_name("a\"b\\c"), "\"a\\\"b\\\\c\"");
    EXPECT_EQ(quote_name("line\nfeed\x01"), "\"line\\nfeed\\u0001\"");
    EXPECT_EQ(quote_name("caf\xc3\xa9"), "\"caf\\u00e9\"");
    EXPECT_EQ(quote_name("\xff"), "\"\\ufffd\"");
    EXPECT_EQ(quote_name(std::string(64, 'a')), "\"" + std::string(64, 'a') + "\"");
    EXPECT_EQ(quote_name(std::string(10240, 'a')), "\"" + std::string(64, 'a') + "\"...");
    // A two-byte character straddling byte 64 is dropped whole, not split.
    const std::string straddle = std::string(63, 'a') + "\xc3\xa9" + "zzz";
    EXPECT_EQ(quote_name(straddle), "\"" + std::string(63, 'a') + "\"...");
    for (unsigned char c : quote_name(std::string(100, '\x80'))) {
        EXPECT_LT(c, 0x80);  // ASCII only
    }
}

TEST(ModelManager, TwentyConcurrentStartsSpawnOnce) {
    Harness h({make_spec("llama")});
    h.m("llama").start_delay = 50ms;
    h.m("llama").healthy_after = 2;  // ~550 ms of starting
    std::vector<std::thread> threads;
    std::atomic<int> started{0};
    std::atomic<int> already{0};
    std::atomic<int> errors{0};
    std::atomic<bool> go{false};
    for (int i = 0; i < 20; ++i) {
        threads.emplace_back([&] {
            while (!go) {
                std::this_thread::yield();
            }
            try {
                const auto r = h.mgr->start("llama", Wait::kYes, std::nullopt);
                (r.outcome == OpOutcome::kStarted ? started : already)++;
                EXPECT_EQ(r.model.state, ModelState::kRunning);
            } catch (...) {
                ++errors;
            }
        });
    }
    go = true;
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(errors, 0);
    EXPECT_GE(started, 1);
    EXPECT_EQ(started + already, 20);
    EXPECT_EQ(h.m("llama").count(&FakeModel::starts), 1);
    EXPECT_EQ(h.m("llama").count(&FakeModel::double_starts), 0);
    EXPECT_EQ(h.info("llama").state, ModelState::kRunning);
}

TEST(ModelManager, JoinersShareAFailedOutcome) {
    Harness h({make_spec("llama")});
    h.m("llama").never_healthy = true;
    std::vector<std::thread> threads;
    std::atomic<int> failed{0};
    for (int i = 0; i < 5; ++i) {
        threads.emplace_back([&] {
            if (error_kind([&] { h.mgr->start("llama", Wait::kYes, 1s); }) ==
                ModelError::Kind::kStartFailed) {
                ++failed;
            }
        });
        std::this_thread::sleep_for(20ms);  // all join the first start
    }
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(failed, 5);
    EXPECT_EQ(h.m("llama").count(&FakeModel::starts), 1);
}

TEST(ModelManager, StartStopRacesEndConsistent) {
    Harness h({make_spec("llama")});
    h.m("llama").start_delay = 2ms;
    h.m("llama").stop_delay = 2ms;
    std::vector<std::thread> threads;
    std::atomic<int> unexpected{0};
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(t));
            for (int i = 0; i < 40; ++i) {
                const int what = static_cast<int>(rng() % 5);
                const Wait w = rng() % 2 ? Wait::kYes : Wait::kNo;
                try {
                    if (what == 0 || what == 1) {
                        h.mgr->start("llama", w, std::nullopt);
                    } else if (what == 2 || what == 3) {
                        h.mgr->stop("llama", w, std::nullopt);
                    } else {
                        h.mgr->restart("llama", std::nullopt);
                    }
                } catch (const ModelError& e) {
                    if (e.kind() != ModelError::Kind::kConflict) {
                        ++unexpected;
                    }
                }
                (void)h.mgr->list();
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(unexpected, 0);
    // Let wait=false operations finish; then the reported state matches the "process".
    ASSERT_TRUE(eventually_([&] {
        const auto s = h.info("llama").state;
        return s == ModelState::kRunning || s == ModelState::kStopped;
    }));
    const auto info = h.info("llama");
    EXPECT_EQ(info.state == ModelState::kRunning, h.m("llama").is_running());
    EXPECT_EQ(info.pid.has_value(), h.m("llama").is_running());
    EXPECT_EQ(h.m("llama").count(&FakeModel::double_starts), 0);
    EXPECT_EQ(h.m("llama").count(&FakeModel::max_active_starts), 1);
}

TEST(ModelManager, NeverHealthyFailsWithinTheTimeoutAndStopsTheProcess) {
    Harness h({make_spec("llama")});
    h.m("llama").never_healthy = true;
    std::string msg;
    const auto took = timed([&] {
        EXPECT_EQ(error_kind([&] { h.mgr->start("llama", Wait::kYes, 1s); }, &msg),
                  ModelError::Kind::kStartFailed);
    });
    EXPECT_GE(took, 950ms);
    EXPECT_LT(took, 2500ms);
    EXPECT_NE(msg.find("not healthy within 1 s"), std::string::npos) << msg;
    EXPECT_NE(msg.find("http://fake/llama"), std::string::npos) << msg;
    const auto info = h.info("llama");
    EXPECT_EQ(info.state, ModelState::kFailed);
    ASSERT_TRUE(info.last_error);
    EXPECT_NE(info.last_error->find("not healthy"), std::string::npos);
    EXPECT_FALSE(info.pid);
    EXPECT_FALSE(h.m("llama").is_running());
    EXPECT_EQ(h.m("llama").count(&FakeModel::stops), 1);
    // Polled every 250 ms, each probe bounded by what is left (at most 2 s).
    EXPECT_GE(h.probe_calls, 3);
    EXPECT_LE(h.probe_calls, 8);
    EXPECT_LE(h.max_probe_timeout_ms, 1000);

    // A failed model starts again (and last_error clears once it runs).
    h.m("llama").never_healthy = false;
    EXPECT_EQ(h.mgr->start("llama", Wait::kYes, std::nullopt).outcome, OpOutcome::kStarted);
    EXPECT_FALSE(h.info("llama").last_error);
}

TEST(ModelManager, ProbeExceptionsAreReported) {
    auto fm = std::make_shared<FakeModel>();
    ModelManager mgr(
        {make_spec("llama")}, [&](const ModelSpec&) { return std::make_unique<FakeBackend>(fm); },
        [](const std::string&, milliseconds) -> bool {
            throw std::runtime_error("libcurl.so.4 cannot be loaded");
        });
    std::string msg;
    EXPECT_EQ(error_kind([&] { mgr.start("llama", Wait::kYes, 1s); }, &msg),
              ModelError::Kind::kStartFailed);
    EXPECT_NE(msg.find("libcurl.so.4 cannot be loaded"), std::string::npos) << msg;
}

TEST(ModelManager, ExitWhileStartingFailsAtOnce) {
    Harness h({make_spec("llama")});
    h.m("llama").exit_during_start = 3;
    std::string msg;
    const auto took = timed([&] {
        EXPECT_EQ(error_kind([&] { h.mgr->start("llama", Wait::kYes, 60s); }, &msg),
                  ModelError::Kind::kStartFailed);
    });
    EXPECT_LT(took, 1000ms);
    EXPECT_NE(msg.find("exited with code 3 while starting"), std::string::npos) << msg;
    EXPECT_EQ(h.info("llama").state, ModelState::kFailed);
    EXPECT_EQ(h.info("llama").last_error, "exited with code 3 while starting");
}

TEST(ModelManager, SpawnFailureIsStartFailed) {
    Harness h({make_spec("llama")});
    h.m("llama").start_throws = true;
    std::string msg;
    EXPECT_EQ(error_kind([&] { h.mgr->start("llama", Wait::kYes, std::nullopt); }, &msg),
              ModelError::Kind::kStartFailed);
    EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
    EXPECT_EQ(h.info("llama").state, ModelState::kFailed);
    EXPECT_EQ(h.m("llama").count(&FakeModel::stops), 0);  // nothing was spawned
}

TEST(ModelManager, NoHealthUrlRunsOnceUpForASecond) {
    auto spec = make_spec("plain");
    spec.health_url.clear();
    Harness h({spec});
    const auto took = timed([&] {
        EXPECT_EQ(h.mgr->start("plain", Wait::kYes, std::nullopt).outcome, OpOutcome::kStarted);
    });
    EXPECT_GE(took, 990ms);
    EXPECT_LT(took, 2000ms);
    EXPECT_EQ(h.probe_calls, 0);
    EXPECT_EQ(to_json(h.info("plain"))["health_url"], nullptr);
}

TEST(ModelManager, StopWhileStartingAndStartWhileStoppingConflict) {
    Harness h({make_spec("llama")});
    h.m("llama").healthy_after = 3;
    auto r = h.mgr->start("llama", Wait::kNo, std::nullopt);
    EXPECT_EQ(r.outcome, OpOutcome::kStarting);
    EXPECT_EQ(r.model.state, ModelState::kStarting);
    EXPECT_EQ(error_kind([&] { h.mgr->stop("llama", Wait::kYes, std::nullopt); }),
              ModelError::Kind::kConflict);
    EXPECT_EQ(error_kind([&] { h.mgr->restart("llama", std::nullopt); }),
              ModelError::Kind::kConflict);
    // A second wait=false start joins and reports "starting" without a second spawn.
    EXPECT_EQ(h.mgr->start("llama", Wait::kNo, std::nullopt).outcome, OpOutcome::kStarting);
    ASSERT_TRUE(eventually_([&] { return h.info("llama").state == ModelState::kRunning; }));

    h.m("llama").stop_delay = 600ms;
    r = h.mgr->stop("llama", Wait::kNo, std::nullopt);
    EXPECT_EQ(r.outcome, OpOutcome::kStopping);
    EXPECT_EQ(r.model.state, ModelState::kStopping);
    std::string msg;
    EXPECT_EQ(error_kind([&] { h.mgr->start("llama", Wait::kYes, std::nullopt); }, &msg),
              ModelError::Kind::kConflict);
    EXPECT_NE(msg.find("stopping"), std::string::npos);
    EXPECT_EQ(error_kind([&] { h.mgr->restart("llama", std::nullopt); }),
              ModelError::Kind::kConflict);
    // A second stop joins the one in progress.
    EXPECT_EQ(h.mgr->stop("llama", Wait::kYes, std::nullopt).outcome, OpOutcome::kStopped);
    EXPECT_EQ(h.m("llama").count(&FakeModel::stops), 1);
    EXPECT_EQ(h.m("llama").count(&FakeModel::starts), 1);
}

TEST(ModelManager, WaitFalseReturnsAtOnce) {
    Harness h({make_spec("llama")});
    h.m("llama").start_delay = 300ms;
    h.m("llama").healthy_after = 2;
    OpResult r;
    EXPECT_LT(timed([&] { r = h.mgr->start("llama", Wait::kNo, std::nullopt); }), 100ms);
    EXPECT_EQ(r.outcome, OpOutcome::kStarting);
    EXPECT_EQ(h.info("llama").state, ModelState::kStarting);
    ASSERT_TRUE(eventually_([&] { return h.info("llama").state == ModelState::kRunning; }));

    h.m("llama").stop_delay = 300ms;
    EXPECT_LT(timed([&] { r = h.mgr->stop("llama", Wait::kNo, std::nullopt); }), 100ms);
    EXPECT_EQ(r.outcome, OpOutcome::kStopping);
    ASSERT_TRUE(eventually_([&] { return h.info("llama").state == ModelState::kStopped; }));
    EXPECT_EQ(h.mgr->stop("llama", Wait::kNo, std::nullopt).outcome, OpOutcome::kAlreadyStopped);
}

TEST(ModelManager, WaitFalseFailureIsRecorded) {
    Harness h({make_spec("llama")});
    h.m("llama").exit_during_start = 1;
    EXPECT_EQ(h.mgr->start("llama", Wait::kNo, std::nullopt).outcome, OpOutcome::kStarting);
    ASSERT_TRUE(eventually_([&] { return h.info("llama").state == ModelState::kFailed; }));
    EXPECT_EQ(h.info("llama").last_error, "exited with code 1 while starting");
}

TEST(ModelManager, HangOnStopIsKilledAfterTheTimeout) {
    Harness h({make_spec("llama")});
    h.mgr->start("llama", Wait::kYes, std::nullopt);
    h.m("llama").stop_ignores_term = true;
    OpResult r;
    const auto took = timed([&] { r = h.mgr->stop("llama", Wait::kYes, 1s); });
    EXPECT_GE(took, 990ms);
    EXPECT_LT(took, 2000ms);
    EXPECT_EQ(r.outcome, OpOutcome::kStopped);
    EXPECT_EQ(h.m("llama").count(&FakeModel::kills), 1);
    EXPECT_EQ(h.m("llama").last_stop_timeout, 1000ms);
    // get() and list() do not wait for a slow stop.
    h.mgr->start("llama", Wait::kYes, std::nullopt);
    h.mgr->stop("llama", Wait::kNo, 1s);
    EXPECT_LT(timed([&] { EXPECT_EQ(h.info("llama").state, ModelState::kStopping); }), 100ms);
    ASSERT_TRUE(eventually_([&] { return h.info("llama").state == ModelState::kStopped; }));
}

TEST(ModelManager, StopFailureLeavesTheModelFailed) {
    Harness h({make_spec("llama")});
    h.mgr->start("llama", Wait::kYes, std::nullopt);
    h.m("llama").stop_throws = true;
    std::string msg;
    EXPECT_EQ(error_kind([&] { h.mgr->stop("llama", Wait::kYes, std::nullopt); }, &msg),
              ModelError::Kind::kStopFailed);
    EXPECT_NE(msg.find("systemctl stop"), std::string::npos) << msg;
    EXPECT_EQ(h.info("llama").state, ModelState::kFailed);
    EXPECT_EQ(h.info("llama").last_error, "stop failed: systemctl stop x.service: exit 1");
    EXPECT_EQ(error_kind([&] { h.mgr->restart("llama", std::nullopt); }),
              ModelError::Kind::kStopFailed);
    // Stopping a failed model asks the backend again.
    h.m("llama").stop_throws = false;
    EXPECT_EQ(h.mgr->stop("llama", Wait::kYes, std::nullopt).outcome, OpOutcome::kStopped);
    EXPECT_FALSE(h.m("llama").is_running());
}

TEST(ModelManager, RestartStopsAndStarts) {
    Harness h({make_spec("llama")});
    h.mgr->start("llama", Wait::kYes, std::nullopt);
    auto r = h.mgr->restart("llama", std::nullopt);
    EXPECT_EQ(r.outcome, OpOutcome::kRestarted);
    EXPECT_EQ(r.model.state, ModelState::kRunning);
    EXPECT_EQ(r.model.restarts, 1);
    EXPECT_EQ(r.model.pid, 101);
    EXPECT_EQ(h.m("llama").count(&FakeModel::starts), 2);
    EXPECT_EQ(h.m("llama").count(&FakeModel::stops), 1);
    // A stopped model is simply started.
    h.mgr->stop("llama", Wait::kYes, std::nullopt);
    EXPECT_EQ(h.mgr->restart("llama", std::nullopt).outcome, OpOutcome::kRestarted);
    EXPECT_EQ(h.info("llama").restarts, 2);
    // A restart whose start fails is start_failed.
    h.m("llama").never_healthy = true;
    EXPECT_EQ(error_kind([&] { h.mgr->restart("llama", 1s); }), ModelError::Kind::kStartFailed);
    EXPECT_EQ(h.info("llama").state, ModelState::kFailed);
}

TEST(ModelManager, DifferentModelsStartInParallel) {
    Harness h({make_spec("a"), make_spec("b"), make_spec("c")});
    for (auto& [name, m] : h.models) {
        m->healthy_after = 2;  // ~500 ms each
    }
    const auto took = timed([&] {
        std::vector<std::thread> ts;
        for (const char* n : {"a", "b", "c"}) {
            ts.emplace_back([&, n] { h.mgr->start(n, Wait::kYes, std::nullopt); });
        }
        for (auto& t : ts) {
            t.join();
        }
    });
    EXPECT_LT(took, 1200ms);  // serialized would be >= 1500 ms
    for (const auto& i : h.mgr->list()) {
        EXPECT_EQ(i.state, ModelState::kRunning);
    }
}

// The crash-restart tests drive the backoff with the fake clock: supervise_once() restarts a
// model once the clock passed its restart time.
void crash_and_reap(Harness& h, const std::string& name, int code = 1) {
    h.m(name).crash(code);
    h.mgr->supervise_once();
}

void restart_due(Harness& h, const std::string& name) {
    h.mgr->supervise_once();
    ASSERT_TRUE(eventually_([&] { return h.info(name).state == ModelState::kRunning; }));
}

TEST(ModelManager, CrashRestartsWithBackoffThenGivesUp) {
    Harness h({make_spec("llama")});  // backoff 1 s .. 4 s, 3 restarts in 10 min
    h.mgr->start("llama", Wait::kYes, std::nullopt);
    h.mgr->supervise_once();
    EXPECT_EQ(h.info("llama").state, ModelState::kRunning);  // healthy: nothing happens

    crash_and_reap(h, "llama");
    auto info = h.info("llama");
    EXPECT_EQ(info.state, ModelState::kFailed);
    EXPECT_EQ(info.last_error, "exited with code 1; restarting in 1 s");
    EXPECT_FALSE(info.pid);
    h.clock.advance(999ms);
    h.mgr->supervise_once();
    EXPECT_EQ(h.info("llama").state, ModelState::kFailed);
    EXPECT_EQ(h.m("llama").count(&FakeModel::starts), 1);
    h.clock.advance(1ms);
    restart_due(h, "llama");
    EXPECT_EQ(h.info("llama").restarts, 1);
    EXPECT_FALSE(h.info("llama").last_error);
    EXPECT_EQ(h.m("llama").count(&FakeModel::starts), 2);

    crash_and_reap(h, "llama", 0);  // on-failure: a clean exit is not restarted...
    EXPECT_EQ(h.info("llama").state, ModelState::kStopped);
    h.mgr->start("llama", Wait::kYes, std::nullopt);  // ...and a start by hand resets the count

    crash_and_reap(h, "llama");
    h.clock.advance(1s);
    restart_due(h, "llama");
    crash_and_reap(h, "llama");
    EXPECT_EQ(h.info("llama").last_error, "exited with code 1; restarting in 2 s");
    h.clock.advance(1500ms);
    h.mgr->supervise_once();
    EXPECT_EQ(h.info("llama").state, ModelState::kFailed);
    h.clock.advance(500ms);
    restart_due(h, "llama");
    h.m("llama").crash(0, 9);  // a signal is a failure
    h.mgr->supervise_once();
    EXPECT_EQ(h.info("llama").last_error, "killed by signal 9; restarting in 4 s");
    h.clock.advance(4s);
    restart_due(h, "llama");
    EXPECT_EQ(h.info("llama").restarts, 4);

    crash_and_reap(h, "llama");  // the 4th crash: 3 restarts already within 10 min
    info = h.info("llama");
    EXPECT_EQ(info.state, ModelState::kFailed);
    EXPECT_EQ(info.last_error, "exited with code 1; gave up after 3 restarts within 10 min");
    h.clock.advance(std::chrono::hours(1));
    h.mgr->supervise_once();
    EXPECT_EQ(h.info("llama").state, ModelState::kFailed);
    EXPECT_EQ(h.m("llama").count(&FakeModel::starts), 6);  // 2 by hand, 4 automatic
}

TEST(ModelManager, BackoffResetsAfterAHealthyPeriod) {
    Harness h({make_spec("llama")});
    h.mgr->start("llama", Wait::kYes, std::nullopt);
    crash_and_reap(h, "llama");
    h.clock.advance(1s);
    restart_due(h, "llama");
    h.clock.advance(59s);
    crash_and_reap(h, "llama");
    EXPECT_EQ(h.info("llama").last_error, "exited with code 1; restarting in 2 s");
    h.clock.advance(2s);
    restart_due(h, "llama");
    h.clock.advance(60s);  // kHealthyPeriod
    crash_and_reap(h, "llama");
    EXPECT_EQ(h.info("llama").last_error, "exited with code 1; restarting in 1 s");
}

TEST(ModelManager, RestartWindowForgetsOldCrashes) {
    auto spec = make_spec("llama");
    spec.max_restarts = 1;
    Harness h({spec});
    h.mgr->start("llama", Wait::kYes, std::nullopt);
    crash_and_reap(h, "llama");
    h.clock.advance(1s);
    restart_due(h, "llama");
    h.clock.advance(kRestartWindow);
    crash_and_reap(h, "llama");  // the first restart is out of the window now
    EXPECT_EQ(h.info("llama").last_error, "exited with code 1; restarting in 1 s");
    h.clock.advance(1s);
    restart_due(h, "llama");
    crash_and_reap(h, "llama");
    EXPECT_EQ(h.info("llama").last_error,
              "exited with code 1; gave up after 1 restarts within 10 min");
}

TEST(ModelManager, RestartPolicies) {
    auto never = make_spec("never");
    never.restart = ModelSpec::Restart::kNo;
    auto always = make_spec("always");
    always.restart = ModelSpec::Restart::kAlways;
    auto zero = make_spec("zero");
    zero.max_restarts = 0;
    Harness h({never, always, zero});
    for (const char* n : {"never", "always", "zero"}) {
        h.mgr->start(n, Wait::kYes, std::nullopt);
    }
    h.m("never").crash(2);
    h.m("always").crash(0);
    h.m("zero").crash(1);
    h.mgr->supervise_once();
    EXPECT_EQ(h.info("never").state, ModelState::kFailed);
    EXPECT_EQ(h.info("never").last_error, "exited with code 2");
    EXPECT_EQ(h.info("always").last_error, "exited with code 0; restarting in 1 s");
    EXPECT_EQ(h.info("zero").last_error,
              "exited with code 1; gave up after 0 restarts within 10 min");
    h.clock.advance(1s);
    h.mgr->supervise_once();
    ASSERT_TRUE(eventually_([&] { return h.info("always").state == ModelState::kRunning; }));
    EXPECT_EQ(h.info("never").state, ModelState::kFailed);
    EXPECT_EQ(h.info("zero").state, ModelState::kFailed);
}

TEST(ModelManager, FailedAutomaticRestartCountsAsACrash) {
    Harness h({make_spec("llama")});
    h.mgr->start("llama", Wait::kYes, std::nullopt);
    crash_and_reap(h, "llama");
    h.m("llama").exit_during_start = 7;
    h.clock.advance(1s);
    h.mgr->supervise_once();
    ASSERT_TRUE(eventually_([&] { return h.info("llama").state == ModelState::kFailed; }));
    EXPECT_EQ(h.info("llama").last_error, "exited with code 7 while starting; restarting in 2 s");
}

TEST(ModelManager, StopCancelsAPendingRestart) {
    Harness h({make_spec("llama")});
    h.mgr->start("llama", Wait::kYes, std::nullopt);
    crash_and_reap(h, "llama");
    EXPECT_EQ(h.mgr->stop("llama", Wait::kYes, std::nullopt).outcome, OpOutcome::kStopped);
    h.clock.advance(std::chrono::minutes(5));
    h.mgr->supervise_once();
    EXPECT_EQ(h.info("llama").state, ModelState::kStopped);
    EXPECT_EQ(h.m("llama").count(&FakeModel::starts), 1);
}

TEST(ModelManager, MonitorThreadRestartsACrashedModel) {
    auto spec = make_spec("llama");
    spec.restart_backoff_min = 10ms;
    Harness h({spec}, ClockKind::kReal);
    h.mgr->start("llama", Wait::kYes, std::nullopt);
    h.mgr->start_monitor(10ms);
    h.mgr->start_monitor(10ms);  // a second call replaces the first thread
    h.m("llama").crash(1);
    ASSERT_TRUE(eventually_([&] {
        return h.info("llama").restarts == 1 && h.info("llama").state == ModelState::kRunning;
    }));
    h.mgr->stop_monitor();
    h.mgr->stop_monitor();
    h.m("llama").crash(1);
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(h.info("llama").state, ModelState::kRunning);  // nobody is watching now
}

TEST(ModelManager, StopAllStopsEverythingWithinTheBudget) {
    Harness h({make_spec("a"), make_spec("b"), make_spec("slow"), make_spec("idle")});
    h.mgr->start("a", Wait::kYes, std::nullopt);
    h.mgr->start("b", Wait::kYes, std::nullopt);
    h.m("b").stop_ignores_term = true;  // takes its whole timeout (capped by the budget)
    h.m("slow").never_healthy = true;
    h.mgr->start("slow", Wait::kNo, 60s);
    std::this_thread::sleep_for(100ms);
    const auto took = timed([&] { h.mgr->stop_all(1000ms); });
    EXPECT_LT(took, 1800ms);
    EXPECT_EQ(h.info("a").state, ModelState::kStopped);
    EXPECT_EQ(h.info("b").state, ModelState::kStopped);
    // Its start was cancelled (failed), then what it had spawned was stopped.
    EXPECT_EQ(h.info("slow").state, ModelState::kStopped);
    ASSERT_TRUE(h.info("slow").last_error);
    EXPECT_NE(h.info("slow").last_error->find("cancelled"), std::string::npos);
    EXPECT_EQ(h.info("idle").state, ModelState::kStopped);
    EXPECT_EQ(h.m("idle").count(&FakeModel::stops), 0);
    EXPECT_LE(h.m("b").last_stop_timeout, 1000ms);
    for (auto& [name, m] : h.models) {
        EXPECT_FALSE(m->is_running()) << name;
    }
    EXPECT_EQ(error_kind([&] { h.mgr->start("a", Wait::kYes, std::nullopt); }),
              ModelError::Kind::kConflict);
    EXPECT_EQ(h.mgr->stop("a", Wait::kYes, std::nullopt).outcome, OpOutcome::kAlreadyStopped);
}

TEST(ModelManager, DestructionCancelsStartsInProgress) {
    auto h = std::make_unique<Harness>(std::vector<ModelSpec>{make_spec("llama")});
    h->m("llama").never_healthy = true;
    h->mgr->start("llama", Wait::kNo, 60s);
    std::this_thread::sleep_for(50ms);
    const auto took = timed([&] { h->mgr.reset(); });
    EXPECT_LT(took, 1000ms);
    EXPECT_FALSE(h->m("llama").is_running());
}

TEST(ModelManager, ToJsonMatchesTheApiModelObject) {
    Harness h({make_spec("llama")});
    h.mgr->start("llama", Wait::kYes, std::nullopt);
    const auto j = to_json(h.info("llama"));
    EXPECT_EQ(j["name"], "llama");
    EXPECT_EQ(j["backend"], "process");
    EXPECT_EQ(j["state"], "running");
    EXPECT_EQ(j["pinned"], false);
    EXPECT_EQ(j["port"], 8001);
    EXPECT_EQ(j["pid"], 100);
    EXPECT_EQ(j["since"], "2026-11-22T14:00:00.000Z");
    EXPECT_EQ(j["restarts"], 0);
    EXPECT_EQ(j["last_error"], nullptr);
    EXPECT_EQ(j["health_url"], "http://fake/llama");
    EXPECT_EQ(j.size(), 10u);
    ModelInfo bare;
    bare.name = "x";
    bare.backend = ModelSpec::Backend::kSystemd;
    bare.state = ModelState::kFailed;
    bare.last_error = "boom";
    const auto k = to_json(bare);
    EXPECT_EQ(k["backend"], "systemd");
    EXPECT_EQ(k["state"], "failed");
    EXPECT_EQ(k["port"], nullptr);
    EXPECT_EQ(k["pid"], nullptr);
    EXPECT_EQ(k["last_error"], "boom");
}

TEST(ModelManager, BackendMessagesThatAreNotUtf8AreRepaired) {
    auto fm = std::make_shared<FakeModel>();
    class BadBackend : public FakeBackend {
      public:
        using FakeBackend::FakeBackend;
        void start() override { throw std::runtime_error("cannot run /m\xff\xfe"); }
    };
    ModelManager mgr(
        {make_spec("llama")}, [&](const ModelSpec&) { return std::make_unique<BadBackend>(fm); },
        [](const std::string&, milliseconds) { return true; });
    EXPECT_THROW(mgr.start("llama", Wait::kYes, std::nullopt), ModelError);
    EXPECT_NO_THROW((void)to_json(*mgr.get("llama")).dump());
}

// A one-shot HTTP server on a loopback port that answers every connection with `status`.
class TinyHttpServer {
  public:
    explicit TinyHttpServer(int status) : status_(status) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 8) != 0) {
            throw std::runtime_error("bind");
        }
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~TinyHttpServer() {
        stop_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        thread_.join();
        ::close(fd_);
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/health"; }

  private:
    void serve() {
        while (!stop_) {
            const int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) {
                return;
            }
            char buf[4096];
            (void)::recv(c, buf, sizeof buf, 0);
            const std::string resp = "HTTP/1.1 " + std::to_string(status_) +
                                     " X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
            (void)::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
            ::close(c);
        }
    }
    int status_;
    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

TEST(HttpHealthProbe, TwoHundredsAreHealthyAndEverythingElseIsNot) {
    TinyHttpServer ok(200);
    TinyHttpServer busy(503);
    EXPECT_TRUE(http_health_probe(ok.url(), 2000ms));
    EXPECT_FALSE(http_health_probe(busy.url(), 2000ms));
    // A closed port: refused at once.
    std::string closed;
    {
        TinyHttpServer gone(200);
        closed = gone.url();
    }
    EXPECT_FALSE(http_health_probe(closed, 2000ms));
    EXPECT_FALSE(http_health_probe("ftp://127.0.0.1/x", 500ms));
}

TEST(HttpHealthProbe, ASilentServerIsBoundedByTheTimeout) {
    // Listens but never accepts: the probe must give up at its timeout.
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(fd, 8), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/health";
    bool healthy = true;
    const auto took = timed([&] { healthy = http_health_probe(url, 300ms); });
    ::close(fd);
    EXPECT_FALSE(healthy);
    EXPECT_LT(took, 1500ms);
}

}  // namespace
}  // namespace mlk::homelab
