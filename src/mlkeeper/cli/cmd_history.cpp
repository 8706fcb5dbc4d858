// `mlkeeper history`: the recorded runs of every command, newest first.
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>
#include <iostream>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/util/host.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/time.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cli {
namespace {

// A run without an exit code is still going only if its process lives here.
std::string state_of(const core::RunRecord& r) {
    if (r.exit_code) {
        switch (*r.exit_code) {
            case 0:
                return "ok";
            case 1:
                return "failed (1)";
            case 2:
                return "critical (2)";
            default:
                return fmt::format("error ({})", *r.exit_code);
        }
    }
    bool alive = r.host == util::host_name() && r.pid > 0 &&
                 (::kill(static_cast<pid_t>(r.pid), 0) == 0 || errno == EPERM);
    return alive ? "running" : "interrupted";
}

nlohmann::json to_json(const core::RunRecord& r) {
    nlohmann::json j = {
        {"id", r.id},
        {"command", r.command},
        {"args", r.args},
        {"pid", r.pid},
        {"host", r.host},
        {"started_at", util::iso8601_utc(r.started_at)},
        {"ended_at", r.ended_at ? nlohmann::json(util::iso8601_utc(*r.ended_at)) : nullptr},
        {"exit_code", r.exit_code ? nlohmann::json(*r.exit_code) : nullptr},
        {"state", state_of(r)},
        {"summary", r.summary},
    };
    return j;
}

}  // namespace

Command history_command() {
    return Command{
        "history", "List recorded runs of mlkeeper commands, newest first", "", Record::kNo,
        [](CLI::App& app, FlagBindings&) {
            struct Opts {
                std::size_t limit = 20;
                std::string command;
                bool json = false;
            };
            auto o = std::make_shared<Opts>();
            app.add_option("-n,--limit", o->limit, "How many runs to show")
                ->check(CLI::Range(1, 100000))
                ->capture_default_str();
            app.add_option("--command", o->command, "Only runs of this command (e.g. backup)");
            app.add_flag("--json", o->json, "JSON array of runs");
            app.footer(R"(
Examples:
  mlkeeper history                    the last 20 runs
  mlkeeper history --command backup -n 5
  mlkeeper history --json | jq '.[] | select(.exit_code != 0)')");
            Handler h;
            h.run = [o](Context& ctx) {
                auto runs = ctx.state().recent_runs(
                    o->limit, o->command.empty() ? std::nullopt
                                                 : std::optional<std::string_view>(o->command));
                if (o->json) {
                    nlohmann::json arr = nlohmann::json::array();
                    for (const auto& r : runs) {
                        arr.push_back(to_json(r));
                    }
                    std::cout << arr.dump(2) << "\n";
                    return 0;
                }
                if (runs.empty()) {
                    std::cout << "no runs recorded yet in " << ctx.state().path().string() << "\n";
                    return 0;
                }
                std::cout << fmt::format("{:>5}  {:<19}  {:>8}  {:<12}  {}\n", "ID", "STARTED",
                                         "DURATION", "RESULT", "COMMAND LINE");
                for (const auto& r : runs) {
                    std::string dur = "-";
                    if (r.ended_at) {
                        auto secs = std::chrono::duration_cast<std::chrono::seconds>(*r.ended_at -
                                                                                     r.started_at);
                        dur =
                            secs.count() == 0
                                ? fmt::format("{}ms",
                                              std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  *r.ended_at - r.started_at)
                                                  .count())
                                : util::format_duration(secs);
                    }
                    std::vector<std::string> line;
                    for (const auto& a : r.args) {
                        line.push_back(util::shell_quote(a));
                    }
                    std::cout << fmt::format("{:>5}  {:<19}  {:>8}  {:<12}  {}\n", r.id,
                                             util::format_local(r.started_at), dur, state_of(r),
                                             util::join(line, " "));
                }
                return 0;
            };
            return h;
        }};
}

}  // namespace mlk::cli
