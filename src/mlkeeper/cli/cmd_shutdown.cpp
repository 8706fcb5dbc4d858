// `mlkeeper shutdown schedule|cancel|status`: the agent's shutdown API (port 5001 in the seeds'
// layout) from the command line. The agent, not this command, powers the machine off, so a
// schedule survives the terminal closing and is kept across agent restarts.
#include <cstdint>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "mlkeeper/cli/api_client.hpp"
#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cli {
namespace {

using nlohmann::json;

struct Opts {
    std::int64_t minutes = 0;
    std::string reason;
    bool replace = false;
    bool json = false;
};

constexpr std::chrono::seconds kCallTimeout{30};

// "2026-11-22 15:30:00 (in 30m), requested by admin: nightly"
std::string describe(const json& s) {
    const auto now = std::chrono::system_clock::now();
    const auto at = s.value("at", json());
    const auto rel = relative_time(at, now);
    std::string text = display_time(at);
    if (!rel.empty()) {
        text += " (" + rel + ")";
    }
    const std::string by = s.value("requested_by", std::string());
    if (!by.empty()) {
        text += ", requested by " + by;
    }
    const std::string reason = s.value("reason", std::string());
    if (!reason.empty()) {
        text += ": " + reason;
    }
    return text;
}

// Runs one call; with --json an error document also goes to stdout, for scripts.
ApiReply call(const ApiClient& client, bool as_json, std::string_view method, std::string_view path,
              const json& body = nullptr) {
    try {
        return client.call(method, path, body, kCallTimeout);
    } catch (const ApiCallError& e) {
        if (as_json && !e.body().is_null()) {
            std::cout << e.body().dump(2) << "\n";
        }
        if (e.code() == "conflict") {
            // The agent's hint names the JSON field; a CLI user needs the flag.
            auto message = e.message();
            message = message.substr(0, message.find("; send"));
            throw ApiCallError(e.status(), e.code(), message + "; add --replace to replace it",
                               e.body());
        }
        throw;
    }
}

int schedule(Context& ctx, const Opts& o) {
    const ApiClient client(api_client_settings(ctx.config(), AgentService::kShutdown));
    json body = {{"delay_minutes", o.minutes}, {"replace", o.replace}};
    if (!o.reason.empty()) {
        body["reason"] = o.reason;
    }
    const auto reply = call(client, o.json, "POST", "/shutdown", body);
    ctx.summary()["shutdown"] = reply.body.value("shutdown", json());
    if (o.json) {
        std::cout << reply.body.dump(2) << "\n";
        return 0;
    }
    std::cout << "power-off scheduled for " << describe(reply.body.value("shutdown", json()))
              << "\n";
    if (reply.body.contains("replaced") && reply.body["replaced"].is_object()) {
        std::cout << "it replaces the one for " << describe(reply.body["replaced"]) << "\n";
    }
    return 0;
}

int cancel(Context& ctx, const Opts& o) {
    const ApiClient client(api_client_settings(ctx.config(), AgentService::kShutdown));
    const auto reply = call(client, o.json, "DELETE", "/shutdown");
    if (o.json) {
        std::cout << reply.body.dump(2) << "\n";
        return 0;
    }
    std::cout << "cancelled the power-off scheduled for "
              << describe(reply.body.value("cancelled", json())) << "\n";
    return 0;
}

int status(Context& ctx, const Opts& o) {
    const ApiClient client(api_client_settings(ctx.config(), AgentService::kShutdown));
    const auto reply = call(client, o.json, "GET", "/shutdown");
    if (o.json) {
        std::cout << reply.body.dump(2) << "\n";
        return 0;
    }
    const auto s = reply.body.value("shutdown", json());
    if (s.is_object()) {
        std::cout << "power-off scheduled for " << describe(s) << "\n";
    } else {
        std::cout << "no power-off is scheduled\n";
    }
    const auto up = call(client, false, "GET", "/uptime").body;
    const auto secs = up.value("uptime_seconds", 0.0);
    std::string load = "-";
    if (up.contains("load_average") && up["load_average"].is_array()) {
        load.clear();
        for (const auto& v : up["load_average"]) {
            load += fmt::format("{}{:.2f}", load.empty() ? "" : " ",
                                v.is_number() ? v.get<double>() : 0.0);
        }
    }
    std::cout << fmt::format(
        "up {} (booted {}), load average {}\n",
        util::format_duration(std::chrono::seconds(static_cast<std::int64_t>(secs))),
        display_time(up.value("boot_time", json())), load);
    return 0;
}

}  // namespace

Command shutdown_command() {
    return Command{
        "shutdown", "Schedule, cancel or show a power-off of this machine (through the agent)", "",
        Record::kNo, [](CLI::App& app, FlagBindings&) {
            auto o = std::make_shared<Opts>();
            app.require_subcommand(1, 1);
            auto* sch = app.add_subcommand("schedule", "Power off MINUTES from now (0 = now)");
            sch->add_option("MINUTES", o->minutes, "Minutes from now, 0 to [shutdown] max_delay")
                ->required()
                ->check(CLI::Validator(
                    [](std::string& text) -> std::string {
                        const auto v = util::parse_int64(text);
                        return v && *v >= 0 ? std::string()
                                            : "must be a whole number of minutes, 0 or more";
                    },
                    "MINUTES", "whole minutes"));
            sch->add_option("--reason", o->reason, "Why (logged and shown; at most 200 characters)")
                ->type_name("TEXT");
            sch->add_flag("--replace", o->replace, "Replace a power-off already scheduled");
            sch->add_flag("--json", o->json, "The API's JSON reply");
            auto* can = app.add_subcommand("cancel", "Cancel the scheduled power-off");
            can->add_flag("--json", o->json, "The API's JSON reply");
            auto* st = app.add_subcommand("status", "The scheduled power-off (if any) and uptime");
            st->add_flag("--json", o->json, "The API's JSON ({\"shutdown\": ... | null})");
            app.footer(R"(
The agent runs [shutdown] command (default: systemctl poweroff) when the time
comes; see docs/SHUTDOWN.md for the polkit rule or sudoers line it needs. A
schedule survives agent restarts and is dropped if the machine reboots first.
The commands call [api] client_url, or the shutdown listener (127.0.0.1:5001 by
default; single-port mode: [api] listen + /api/v1); an admin token goes alone in
the file named by [api] client_token_file.
Exit codes: 0 ok, 1 the agent refused (409 already scheduled, 404 nothing to
cancel, 400 out of range) or is not running, 64 usage.

Examples:
  mlkeeper shutdown schedule 30 --reason "nightly power saving"
  mlkeeper shutdown schedule 5 --replace
  mlkeeper shutdown status
  mlkeeper shutdown cancel)");
            Handler h;
            h.run = [o, sch, can](Context& ctx) {
                if (sch->parsed()) {
                    return schedule(ctx, *o);
                }
                if (can->parsed()) {
                    return cancel(ctx, *o);
                }
                return status(ctx, *o);
            };
            return h;
        }};
}

}  // namespace mlk::cli
