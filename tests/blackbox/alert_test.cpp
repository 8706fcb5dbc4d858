// Black-box tests of `mlkeeper alert`: channels configured from the
// environment, a real local HTTP server receiving webhooks, the command
// handler, and cooldown/recovery shared between separate processes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/mlkeeper_runner.hpp"

namespace mlk {
namespace {

using ::testing::HasSubstr;

// A webhook receiver on a free loopback port, stopped when the test ends.
class WebhookServer {
  public:
    WebhookServer() {
        server_.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
            std::lock_guard lock(mu_);
            bodies_.push_back(req.body);
            auth_.push_back(req.get_header_value("Authorization"));
            res.set_content("ok", "text/plain");
        });
        port_ = server_.bind_to_any_port("127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        for (int i = 0; i < 200 && !server_.is_running(); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    ~WebhookServer() {
        server_.stop();
        thread_.join();
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
    std::vector<std::string> bodies() {
        std::lock_guard lock(mu_);
        return bodies_;
    }
    std::vector<std::string> auth() {
        std::lock_guard lock(mu_);
        return auth_;
    }

  private:
    httplib::Server server_;
    int port_ = 0;
    std::thread thread_;
    std::mutex mu_;
    std::vector<std::string> bodies_, auth_;
};

class AlertCli : public ::testing::Test {
  protected:
    void SetUp() override {
        m_.env()["ALERT_SYSLOG"] = "off";
        m_.env()["ALERT_JOURNAL"] = "off";
        m_.env()["ALERT_RETRY_BACKOFF"] = "0";
        handler_ = m_.dir() / "handler.sh";
        m_.dir().write(
            "handler.sh",
            "#!/bin/sh\nprintf '%s|%s|%s\\n' \"$1\" \"$2\" \"$MLKEEPER_ALERT_KEY\" >> '" +
                (m_.dir() / "handled.txt").string() + "'\n");
        std::filesystem::permissions(handler_, std::filesystem::perms(0755));
    }
    testing::MlkeeperRunner m_;
    std::filesystem::path handler_;
};

TEST_F(AlertCli, NoChannelIsAClearError) {
    auto r = m_.run({"alert", "test"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.err, HasSubstr("no alert channel is configured"));
}

TEST_F(AlertCli, TestReachesWebhookAndCommandHandler) {
    WebhookServer hook;
    auto r = m_.run({"alert", "test", "--json"},
                    {{"ALERT_WEBHOOK", hook.url()},
                     {"ALERT_WEBHOOK_HEADERS", "Authorization: Bearer t0k3n"},
                     {"ALERT_COMMAND", handler_.string()}});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j.size(), 2u);
    for (const auto& d : j) {
        EXPECT_TRUE(d["ok"].get<bool>()) << d.dump();
    }
    ASSERT_EQ(hook.bodies().size(), 1u);
    auto payload = nlohmann::json::parse(hook.bodies()[0]);
    EXPECT_EQ(payload["key"], "mlkeeper_test");
    EXPECT_EQ(payload["severity"], "info");
    EXPECT_EQ(hook.auth()[0], "Bearer t0k3n");
    EXPECT_THAT(testing::slurp(m_.dir() / "handled.txt"),
                HasSubstr("info|Test alert from mlkeeper"));

    auto only =
        m_.run({"alert", "test", "--channel", "nope"}, {{"ALERT_COMMAND", handler_.string()}});
    EXPECT_EQ(only.exit_code, 64);
}

TEST_F(AlertCli, CooldownAndRecoveryAcrossSeparateProcesses) {
    WebhookServer hook;
    std::map<std::string, std::string> env{{"ALERT_WEBHOOK", hook.url()}};
    auto send = [&](std::vector<std::string> extra) {
        std::vector<std::string> args{"alert", "send", "--key", "disk_data", "--json"};
        args.insert(args.end(), extra.begin(), extra.end());
        auto r = m_.run(args, env);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return nlohmann::json::parse(r.out);
    };
    EXPECT_EQ(send({"--summary", "/data 91% full"})["verdict"], "sent");
    EXPECT_EQ(send({"--summary", "/data 92% full"})["verdict"], "suppressed");
    auto third = send({"--summary", "/data 93% full"});
    EXPECT_EQ(third["verdict"], "suppressed");
    EXPECT_EQ(third["suppressed"], 2);
    // Worse news goes out at once and carries the suppressed count.
    auto worse = send({"--severity", "critical", "--summary", "/data 99% full"});
    EXPECT_EQ(worse["verdict"], "sent");
    EXPECT_EQ(worse["reason"], "severity rose");
    EXPECT_EQ(worse["suppressed"], 2);
    auto resolved = send({"--resolve", "--summary", "/data back to 60%"});
    EXPECT_EQ(resolved["verdict"], "sent");
    EXPECT_EQ(send({"--resolve"})["verdict"], "ignored");

    auto bodies = hook.bodies();
    ASSERT_EQ(bodies.size(), 3u);
    EXPECT_EQ(nlohmann::json::parse(bodies[2])["state"], "resolved");
    auto status = nlohmann::json::parse(m_.run({"alert", "status", "--json"}).out)["alerts"];
    ASSERT_EQ(status.size(), 1u);
    EXPECT_EQ(status[0]["state"], "resolved");
}

TEST_F(AlertCli, ADeadChannelDoesNotStopTheOthers) {
    auto r = m_.run(
        {"alert", "send", "--key", "gpu0_temp", "--severity", "critical", "--json"},
        {{"ALERT_WEBHOOK", "http://127.0.0.1:1/hook"}, {"ALERT_COMMAND", handler_.string()}});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["verdict"], "sent");
    for (const auto& d : j["deliveries"]) {
        if (d["channel"] == "webhook") {
            EXPECT_FALSE(d["ok"].get<bool>());
            EXPECT_EQ(d["attempts"], 3);
            EXPECT_THAT(d["error"].get<std::string>(), HasSubstr("127.0.0.1:1"));
        } else {
            EXPECT_TRUE(d["ok"].get<bool>());
        }
    }
    EXPECT_THAT(testing::slurp(m_.dir() / "handled.txt"),
                HasSubstr("critical|gpu0_temp|gpu0_temp"));
}

TEST_F(AlertCli, NothingDeliveredIsAFailure) {
    auto r = m_.run({"alert", "send", "--key", "k"}, {{"ALERT_WEBHOOK", "http://127.0.0.1:1/x"}});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.out, HasSubstr("NOT DELIVERED"));
}

TEST_F(AlertCli, BackupFailureAlertsAndRecoveryResolves) {
    std::map<std::string, std::string> env{{"ALERT_COMMAND", handler_.string()},
                                           {"MODEL_DIR", (m_.dir() / "missing").string()},
                                           {"BACKUP_DIR", (m_.dir() / "backups").string()}};
    EXPECT_EQ(m_.run({"backup"}, env).exit_code, 1);
    EXPECT_THAT(testing::slurp(m_.dir() / "handled.txt"),
                HasSubstr("critical|Model backup failed|backup_failed"));
    m_.dir().write("missing/model.bin", "weights");
    auto ok = m_.run({"backup"}, env);
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_THAT(testing::slurp(m_.dir() / "handled.txt"),
                HasSubstr("resolved|Model backups work again|backup_failed"));
    // A bad alert configuration stops the backup before any work (exit 78).
    env["ALERT_ESCALATE_TO"] = "email";
    EXPECT_EQ(m_.run({"backup"}, env).exit_code, 78);
}

}  // namespace
}  // namespace mlk
