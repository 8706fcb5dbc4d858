// `mlkeeper alert test|send|status`: try the channels, raise or resolve an
// alert from a script (with cooldown and escalation), and show alert state.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <iostream>

#include "mlkeeper/alert/channels_config.hpp"
#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::cli {
namespace {

struct Opts {
    std::string channel;
    std::string key, severity = "warning", summary, check = "manual", value, threshold, action;
    std::vector<std::string> fields;
    bool resolve = false;
    bool json = false;
};

nlohmann::json deliveries_json(const std::vector<alert::ChannelReport>& reports) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : reports) {
        arr.push_back({{"channel", r.channel},
                       {"ok", r.result.ok},
                       {"attempts", r.result.attempts},
                       {"error", r.result.error}});
    }
    return arr;
}

int test(Context& ctx, const Opts& o) {
    auto disp = alert::dispatcher_from_config(ctx.config());
    if (disp->channel_names().empty()) {
        throw Error(
            "no alert channel is configured: set ALERT_EMAIL, ALERT_WEBHOOK, [alerts] "
            "command, or run a syslog daemon (see mlkeeper config keys)");
    }
    alert::Alert a;
    a.key = "mlkeeper_test";
    a.severity = alert::Severity::kInfo;
    a.check = "alert test";
    a.summary = "Test alert from mlkeeper: if you can read this, the channel works";
    a.action = "Nothing to do.";
    auto reports = disp->deliver(a, o.channel);
    if (reports.empty()) {
        throw UsageError(fmt::format("no configured channel is named \"{}\" (configured: {})",
                                     o.channel, util::join(disp->channel_names(), ", ")));
    }
    int code = 0;
    for (const auto& r : reports) {
        code = r.result.ok ? code : 1;
    }
    ctx.summary()["deliveries"] = deliveries_json(reports);
    if (o.json) {
        std::cout << deliveries_json(reports).dump(2) << "\n";
        return code;
    }
    for (const auto& r : reports) {
        std::cout << fmt::format("{:<8} {}\n", r.channel,
                                 r.result.ok ? fmt::format("ok ({} attempt{})", r.result.attempts,
                                                           r.result.attempts == 1 ? "" : "s")
                                             : "FAILED: " + r.result.error);
    }
    return code;
}

int send(Context& ctx, const Opts& o) {
    auto sev = alert::parse_severity(o.severity);
    if (!sev) {
        throw UsageError(
            fmt::format("--severity must be info, warning, critical or emergency, not "
                        "\"{}\"",
                        o.severity));
    }
    alert::Alert a;
    a.key = o.key;
    a.severity = *sev;
    a.state = o.resolve ? alert::AlertState::kResolved : alert::AlertState::kFiring;
    a.summary = o.summary.empty() ? (o.resolve ? o.key + " resolved" : o.key) : o.summary;
    a.check = o.check;
    a.value = o.value;
    a.threshold = o.threshold;
    a.action = o.action;
    for (const auto& f : o.fields) {
        auto eq = f.find('=');
        if (eq == std::string::npos || eq == 0) {
            throw UsageError(fmt::format("--field must be NAME=VALUE, not \"{}\"", f));
        }
        a.fields[f.substr(0, eq)] = f.substr(eq + 1);
    }
    auto disp = alert::dispatcher_from_config(ctx.config());
    alert::AlertStateStore state(ctx.state(), alert::policy_from_config(ctx.config()));
    auto rep = disp->notify(state, a);
    const auto& d = rep.decision;
    std::string verdict = d.verdict == alert::Verdict::kSend       ? "sent"
                          : d.verdict == alert::Verdict::kSuppress ? "suppressed"
                                                                   : "ignored";
    bool failed = d.verdict == alert::Verdict::kSend && !rep.deliveries.empty() && !rep.delivered();
    nlohmann::json j = {{"key", a.key},
                        {"verdict", failed ? "failed" : verdict},
                        {"reason", d.reason},
                        {"severity", alert::to_string(d.alert.severity)},
                        {"escalation", d.escalation},
                        {"suppressed", d.alert.suppressed},
                        {"occurrences", d.alert.occurrences},
                        {"deliveries", deliveries_json(rep.deliveries)}};
    ctx.summary() = j;
    if (o.json) {
        std::cout << j.dump(2) << "\n";
    } else {
        std::string line =
            fmt::format("{}: {} ({})", a.key, failed ? "NOT DELIVERED" : verdict, d.reason);
        if (d.verdict == alert::Verdict::kSend) {
            std::vector<std::string> ok;
            for (const auto& r : rep.deliveries) {
                if (r.result.ok) {
                    ok.push_back(r.channel);
                }
            }
            line += ok.empty() ? (rep.deliveries.empty() ? "; no channel configured" : "")
                               : "; via " + util::join(ok, ", ");
        } else if (d.verdict == alert::Verdict::kSuppress) {
            line += fmt::format("; {} repeat{} suppressed", d.alert.suppressed,
                                d.alert.suppressed == 1 ? "" : "s");
        }
        std::cout << line << "\n";
    }
    return failed ? 1 : 0;
}

int status(Context& ctx, bool json) {
    alert::AlertStateStore state(ctx.state(), alert::policy_from_config(ctx.config()));
    auto all = state.all();
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& k : all) {
        arr.push_back(
            {{"key", k.key},
             {"state", k.state == alert::AlertState::kFiring ? "firing" : "resolved"},
             {"severity", alert::to_string(k.severity)},
             {"summary", k.summary},
             {"first_seen", util::iso8601_utc(k.first_seen)},
             {"last_seen", util::iso8601_utc(k.last_seen)},
             {"last_sent", k.last_sent ? nlohmann::json(util::iso8601_utc(*k.last_sent)) : nullptr},
             {"suppressed", k.suppressed},
             {"occurrences", k.occurrences},
             {"escalated", k.escalated}});
    }
    auto failures = state.failure_counts();
    if (json) {
        std::cout << nlohmann::json{{"alerts", arr}, {"delivery_failures", failures}}.dump(2)
                  << "\n";
        return 0;
    }
    for (const auto& [channel, n] : failures) {
        std::cout << fmt::format("{} delivery failure{} on {}\n", n, n == 1 ? "" : "s", channel);
    }
    if (all.empty()) {
        std::cout << "no alerts recorded\n";
        return 0;
    }
    std::cout << fmt::format("{:<24} {:<9} {:<10} {:>5} {:>10}  {}\n", "KEY", "STATE", "SEVERITY",
                             "COUNT", "SUPPRESSED", "LAST SENT");
    for (const auto& k : all) {
        std::cout << fmt::format("{:<24} {:<9} {:<10} {:>5} {:>10}  {}\n", k.key,
                                 k.state == alert::AlertState::kFiring ? "firing" : "resolved",
                                 alert::to_string(k.severity), k.occurrences, k.suppressed,
                                 k.last_sent ? util::format_local(*k.last_sent) : "-");
    }
    return 0;
}

}  // namespace

Command alert_command() {
    return Command{
        "alert", "Test alert channels, raise or resolve an alert, show alert state", "",
        Record::kYes, [](CLI::App& app, FlagBindings&) {
            auto o = std::make_shared<Opts>();
            app.require_subcommand(1, 1);
            auto* t =
                app.add_subcommand("test", "Send a test alert through each configured channel");
            t->add_option("--channel", o->channel,
                          "Only this channel (email, webhook, syslog, journal, command)");
            t->add_flag("--json", o->json, "JSON result per channel");
            auto* s = app.add_subcommand(
                "send", "Raise (or --resolve) an alert, with cooldown and escalation");
            s->add_option("--key", o->key, "Identity of the condition, e.g. disk_data")->required();
            s->add_option("--severity", o->severity,
                          "info, warning (default), critical, emergency");
            s->add_option("--summary", o->summary, "One line saying what is wrong");
            s->add_option("--check", o->check, "What found it (default: manual)");
            s->add_option("--value", o->value, "Observed value");
            s->add_option("--threshold", o->threshold, "Threshold it crossed");
            s->add_option("--action", o->action, "What to do about it");
            s->add_option("--field", o->fields, "Extra NAME=VALUE (repeatable)");
            s->add_flag("--resolve", o->resolve, "The condition cleared: send one resolved notice");
            s->add_flag("--json", o->json, "JSON result");
            auto* st = app.add_subcommand("status",
                                          "Every alert key: firing or resolved, counts, last sent");
            st->add_flag("--json", o->json, "JSON output");
            app.footer(R"(
Channels come from [alerts]: ALERT_EMAIL (SMTP via smtp_url, else /usr/sbin/sendmail -t),
ALERT_WEBHOOK (Slack, generic JSON or Alertmanager payloads), syslog, journald, and a
command handler run as COMMAND SEVERITY MESSAGE (the seeds' custom-alert.sh).
Repeats of one key are held back for ALERT_COOLDOWN (per severity: info 4h, warning 1h,
critical 30m, emergency 5m) and counted; after escalate_after repeats the severity rises.

Examples:
  mlkeeper alert test
  ALERT_WEBHOOK=https://hooks.slack.com/services/T/B/X mlkeeper alert test --channel webhook
  mlkeeper alert send --key disk_data --severity critical --summary "/data is 97% full"
  mlkeeper alert send --key disk_data --resolve --summary "/data is back to 70%"
  mlkeeper alert status)");
            Handler h;
            h.run = [o, t, s](Context& ctx) {
                if (t->parsed()) {
                    return test(ctx, *o);
                }
                if (s->parsed()) {
                    return send(ctx, *o);
                }
                return status(ctx, o->json);
            };
            return h;
        }};
}

}  // namespace mlk::cli
