// `mlkeeper models list|status|start|stop|restart`: the agent's model-control API (port 5002 in
// the seeds' layout) from the command line, as a table or the API's JSON.
#include <algorithm>
#include <iostream>
#include <memory>
#include <utility>

#include <fmt/format.h>

#include "mlkeeper/cli/api_client.hpp"
#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/core/error.hpp"

namespace mlk::cli {
namespace {

using nlohmann::json;

struct Opts {
    std::string name;
    bool no_wait = false;
    int timeout = 0;  // seconds; 0 = the agent's start_timeout/stop_timeout
    bool json = false;
};

// The API's own limit for ?timeout=, plus time for the answer to travel.
constexpr int kMaxTimeout = 3600;
constexpr std::chrono::seconds kReplySlack{15};

std::string field(const json& m, const char* key) {
    if (!m.is_object() || !m.contains(key) || m.at(key).is_null()) {
        return "-";
    }
    const auto& v = m.at(key);
    if (v.is_string()) {
        return v.get<std::string>();
    }
    if (v.is_boolean()) {
        return v.get<bool>() ? "yes" : "no";
    }
    return v.dump();
}

void print_table(const json& models) {
    if (!models.is_array() || models.empty()) {
        std::cout << "no models are configured (the agent's config has no [models.NAME] "
                     "tables)\n";
        return;
    }
    const std::vector<std::string> header = {"NAME", "STATE", "BACKEND", "PORT",
                                             "PID",  "SINCE", "PINNED"};
    std::vector<std::vector<std::string>> rows;
    for (const auto& m : models) {
        rows.push_back({field(m, "name"), field(m, "state"), field(m, "backend"), field(m, "port"),
                        field(m, "pid"),
                        display_time(m.is_object() ? m.value("since", json()) : json()),
                        field(m, "pinned")});
    }
    std::vector<std::size_t> width(header.size());
    for (std::size_t c = 0; c < header.size(); ++c) {
        width[c] = header[c].size();
        for (const auto& r : rows) {
            width[c] = std::max(width[c], r[c].size());
        }
    }
    auto print_row = [&](const std::vector<std::string>& r) {
        std::string line;
        for (std::size_t c = 0; c < r.size(); ++c) {
            line += c + 1 == r.size() ? r[c] : fmt::format("{:<{}}  ", r[c], width[c]);
        }
        std::cout << line << "\n";
    };
    print_row(header);
    for (const auto& r : rows) {
        print_row(r);
    }
}

void print_model(const json& m) {
    const auto now = std::chrono::system_clock::now();
    const auto since = m.value("since", json());
    const auto ago = relative_time(since, now);
    std::cout << fmt::format("name:        {}\n", field(m, "name"))
              << fmt::format("state:       {} since {}{}\n", field(m, "state"), display_time(since),
                             ago.empty() ? "" : " (" + ago + ")")
              << fmt::format("backend:     {}\n", field(m, "backend"))
              << fmt::format("port:        {}\n", field(m, "port"))
              << fmt::format("pid:         {}\n", field(m, "pid"))
              << fmt::format("pinned:      {}\n", field(m, "pinned"))
              << fmt::format("restarts:    {}\n", field(m, "restarts"))
              << fmt::format("health_url:  {}\n", field(m, "health_url"))
              << fmt::format("last_error:  {}\n", field(m, "last_error"));
}

// One line on what a start/stop/restart did.
void print_action(const std::string& name, const json& reply) {
    const std::string result = reply.value("result", std::string());
    const json model = reply.value("model", json::object());
    std::string detail;
    if (model.is_object() && model.value("pid", json()).is_number()) {
        detail = " (pid " + field(model, "pid");
        if (model.value("port", json()).is_number()) {
            detail += ", port " + field(model, "port");
        }
        detail += ")";
    }
    const std::string check = fmt::format("; see `mlkeeper models status {}`", name);
    if (result == "started") {
        std::cout << fmt::format("started {}{}\n", name, detail);
    } else if (result == "already_running") {
        std::cout << fmt::format("{} is already running{}\n", name, detail);
    } else if (result == "starting") {
        std::cout << fmt::format("starting {} (not waiting){}\n", name, check);
    } else if (result == "stopped") {
        std::cout << fmt::format("stopped {}\n", name);
    } else if (result == "already_stopped") {
        std::cout << fmt::format("{} was not running\n", name);
    } else if (result == "stopping") {
        std::cout << fmt::format("stopping {} (not waiting){}\n", name, check);
    } else if (result == "restarted") {
        std::cout << fmt::format("restarted {}{}\n", name, detail);
    } else {
        std::cout << fmt::format("{}: {} (state {})\n", name, result.empty() ? "done" : result,
                                 field(model, "state"));
    }
}

// Runs one call; with --json an error document also goes to stdout, for scripts.
ApiReply call(const ApiClient& client, const Opts& o, std::string_view method,
              const std::string& path, std::chrono::milliseconds timeout) {
    try {
        return client.call(method, path, nullptr, timeout);
    } catch (const ApiCallError& e) {
        if (o.json && !e.body().is_null()) {
            std::cout << e.body().dump(2) << "\n";
        }
        throw;
    }
}

int run(Context& ctx, const Opts& o, std::string_view action) {
    const ApiClient client(api_client_settings(ctx.config(), AgentService::kModels));
    const std::string model_path = "/models/" + url_encode(o.name);
    ApiReply reply;
    if (action == "list") {
        reply = call(client, o, "GET", "/models", std::chrono::seconds(30));
    } else if (action == "status") {
        reply = call(client, o, "GET", model_path, std::chrono::seconds(30));
    } else {
        std::vector<std::string> query;
        if (o.no_wait) {
            query.emplace_back("wait=false");
        }
        if (o.timeout > 0) {
            query.push_back(fmt::format("timeout={}", o.timeout));
        }
        std::string path = model_path + "/" + std::string(action);
        for (std::size_t i = 0; i < query.size(); ++i) {
            path += (i == 0 ? "?" : "&") + query[i];
        }
        // A waiting call lasts as long as the model takes; the agent bounds that itself.
        const auto wait =
            o.no_wait ? std::chrono::seconds(30)
                      : std::chrono::seconds(o.timeout > 0 ? o.timeout : kMaxTimeout) + kReplySlack;
        reply = call(client, o, "POST", path, wait);
        ctx.summary()["result"] = reply.body.value("result", std::string());
    }
    if (o.json) {
        std::cout << reply.body.dump(2) << "\n";
        return 0;
    }
    if (action == "list") {
        print_table(reply.body.value("models", json::array()));
    } else if (action == "status") {
        print_model(reply.body);
    } else {
        print_action(o.name, reply.body);
    }
    return 0;
}

}  // namespace

Command models_command() {
    return Command{
        "models", "List, start, stop or restart the agent's models (talks to `mlkeeper agent`)", "",
        Record::kNo, [](CLI::App& app, FlagBindings&) {
            auto o = std::make_shared<Opts>();
            app.require_subcommand(1, 1);
            auto* ls = app.add_subcommand("list", "Every configured model and its state");
            ls->add_flag("--json", o->json, "The API's JSON ({\"models\": [...]})");
            auto* st = app.add_subcommand("status", "One model in detail");
            st->add_option("NAME", o->name, "Model name")->required();
            st->add_flag("--json", o->json, "The API's JSON model object");
            std::vector<CLI::App*> actions;
            const std::pair<const char*, const char*> verbs[] = {
                {"start", "Start a model and wait until it is healthy"},
                {"stop", "Stop a model"},
                {"restart", "Stop and start a model"},
            };
            for (const auto& [verb, help] : verbs) {
                auto* sub = app.add_subcommand(verb, help);
                sub->add_option("NAME", o->name, "Model name")->required();
                if (std::string_view(verb) != "restart") {
                    sub->add_flag("--no-wait", o->no_wait,
                                  "Return at once (HTTP 202) instead of waiting for the result");
                }
                sub->add_option("--timeout", o->timeout,
                                "Give up after S seconds instead of the model's own "
                                "start_timeout/stop_timeout")
                    ->type_name("S")
                    ->check(CLI::Range(1, kMaxTimeout));
                sub->add_flag("--json", o->json, "The API's JSON reply");
                actions.push_back(sub);
            }
            app.footer(R"(
The commands call the agent's REST API: [api] client_url, or the models listener
(127.0.0.1:5002 by default; single-port mode: [api] listen + /api/v1). With
authentication on, put an admin token alone in a file (mode 0600) and point
[api] client_token_file at it.
Exit codes: 0 ok, 1 the agent refused or failed (or is not running), 64 usage.

Examples:
  mlkeeper models list
  mlkeeper models start llama3 --timeout 300
  mlkeeper models stop llama3 --no-wait
  mlkeeper models status llama3 --json | jq .state)");
            Handler h;
            h.run = [o, ls, st, actions](Context& ctx) {
                if (ls->parsed()) {
                    return run(ctx, *o, "list");
                }
                if (st->parsed()) {
                    return run(ctx, *o, "status");
                }
                for (auto* sub : actions) {
                    if (sub->parsed()) {
                        return run(ctx, *o, sub->get_name());
                    }
                }
                throw UsageError("models: name a subcommand: list, status, start, stop, restart");
            };
            return h;
        }};
}

}  // namespace mlk::cli
