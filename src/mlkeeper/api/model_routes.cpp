#include "mlkeeper/api/model_routes.hpp"

#include <memory>
#include <mutex>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/util/strings.hpp"

namespace mlk::api {

namespace {

using homelab::ModelError;
using homelab::ModelManager;
using homelab::OpOutcome;
using homelab::OpResult;
using homelab::Wait;

constexpr std::int64_t kTimeoutMin = 1;
constexpr std::int64_t kTimeoutMax = 3600;

const std::string& name_param(const Request& req) {
    static const std::string kEmpty;
    const auto it = req.params.find("name");
    return it == req.params.end() ? kEmpty : it->second;
}

// Only names the registry knows go further; whatever else was sent is quoted (cut, escaped) in
// the message and nowhere else.
void require_model(const ModelManager& models, const std::string& name) {
    if (!models.get(name)) {
        throw ApiError(404, "not_found", "no model named " + homelab::quote_name(name));
    }
}

Wait parse_wait(const Request& req) {
    const auto it = req.query.find("wait");
    if (it == req.query.end()) {
        return Wait::kYes;
    }
    const auto b = util::parse_bool(it->second);
    if (!b) {
        throw ApiError(400, "bad_request",
                       "wait must be true or false, not " + homelab::quote_name(it->second));
    }
    return *b ? Wait::kYes : Wait::kNo;
}

std::optional<std::chrono::seconds> parse_timeout(const Request& req) {
    const auto it = req.query.find("timeout");
    if (it == req.query.end()) {
        return std::nullopt;
    }
    const auto v = util::parse_int64(it->second);
    if (!v) {
        throw ApiError(
            400, "bad_request",
            "timeout must be a whole number of seconds, not " + homelab::quote_name(it->second));
    }
    if (*v < kTimeoutMin || *v > kTimeoutMax) {
        throw ApiError(400, "invalid",
                       "timeout must be " + std::to_string(kTimeoutMin) + ".." +
                           std::to_string(kTimeoutMax) + " seconds, not " + std::to_string(*v));
    }
    return std::chrono::seconds(*v);
}

ApiError to_api_error(const ModelError& e) {
    switch (e.kind()) {
        case ModelError::Kind::kNotFound:
            return ApiError(404, "not_found", e.what());
        case ModelError::Kind::kConflict:
            return ApiError(409, "conflict", e.what());
        case ModelError::Kind::kStartFailed:
            return ApiError(500, "start_failed", e.what());
        case ModelError::Kind::kStopFailed:
            return ApiError(500, "stop_failed", e.what());
    }
    return ApiError(500, "internal", e.what());
}

Response op_response(const OpResult& r) {
    Response resp;
    const bool begun = r.outcome == OpOutcome::kStarting || r.outcome == OpOutcome::kStopping;
    resp.status = begun ? 202 : 200;
    resp.body = {{"result", std::string(homelab::to_string(r.outcome))},
                 {"model", homelab::to_json(r.model)}};
    return resp;
}

// The serialized lists of GET /models and /models/running, rebuilt only when a model's state
// changed since the last request: building and dumping the JSON was most of those routes' cost.
class ListCache {
  public:
    Response get(std::vector<homelab::ModelInfo> infos, bool running_only) {
        std::lock_guard lk(mu_);
        if (infos != infos_ || !all_) {
            all_ = serialize(infos, false);
            running_ = serialize(infos, true);
            infos_ = std::move(infos);
        }
        Response resp;
        resp.raw_body = running_only ? running_ : all_;
        return resp;
    }

  private:
    static std::shared_ptr<const std::string> serialize(
        const std::vector<homelab::ModelInfo>& infos, bool running_only) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& info : infos) {
            if (!running_only || info.state == homelab::ModelState::kRunning) {
                arr.push_back(homelab::to_json(info));
            }
        }
        const nlohmann::json doc = {{"models", std::move(arr)}};
        return std::make_shared<const std::string>(
            doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }

    std::mutex mu_;
    std::vector<homelab::ModelInfo> infos_;
    std::shared_ptr<const std::string> all_, running_;
};

Route route(std::string method, std::string pattern, Access access, Handler handler) {
    Route r;
    r.method = std::move(method);
    r.pattern = std::move(pattern);
    r.access = access;
    r.group = RouteGroup::kModels;
    r.audit = access == Access::kAdmin ? Audit::kYes : Audit::kNo;
    r.handler = std::move(handler);
    return r;
}

}  // namespace

void add_model_routes(Router& router, ModelManager& models) {
    auto cache = std::make_shared<ListCache>();
    router.add(route("GET", "/models", Access::kRead, [&models, cache](const Request&) {
        return cache->get(models.list(), false);
    }));
    router.add(route("GET", "/models/running", Access::kRead,
                     [&models, cache](const Request&) { return cache->get(models.list(), true); }));
    router.add(route("GET", "/models/{name}", Access::kRead, [&models](const Request& req) {
        const std::string& name = name_param(req);
        const auto info = models.get(name);
        if (!info) {
            throw ApiError(404, "not_found", "no model named " + homelab::quote_name(name));
        }
        Response resp;
        resp.body = homelab::to_json(*info);
        return resp;
    }));
    router.add(route("POST", "/models/{name}/start", Access::kAdmin, [&models](const Request& req) {
        const std::string& name = name_param(req);
        require_model(models, name);
        const Wait wait = parse_wait(req);
        const auto timeout = parse_timeout(req);
        try {
            return op_response(models.start(name, wait, timeout));
        } catch (const ModelError& e) {
            throw to_api_error(e);
        }
    }));
    router.add(route("POST", "/models/{name}/stop", Access::kAdmin, [&models](const Request& req) {
        const std::string& name = name_param(req);
        require_model(models, name);
        const Wait wait = parse_wait(req);
        const auto timeout = parse_timeout(req);
        try {
            return op_response(models.stop(name, wait, timeout));
        } catch (const ModelError& e) {
            throw to_api_error(e);
        }
    }));
    router.add(
        route("POST", "/models/{name}/restart", Access::kAdmin, [&models](const Request& req) {
            const std::string& name = name_param(req);
            require_model(models, name);
            const auto timeout = parse_timeout(req);
            try {
                return op_response(models.restart(name, timeout));
            } catch (const ModelError& e) {
                throw to_api_error(e);
            }
        }));
}

}  // namespace mlk::api
