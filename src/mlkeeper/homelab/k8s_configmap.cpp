#include "mlkeeper/homelab/k8s_configmap.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace mlk::homelab {
namespace {

// A JSON string is a valid YAML double-quoted scalar. Throws std::invalid_argument for text that
// is not UTF-8.
std::string yaml_quoted(std::string_view s) {
    try {
        return nlohmann::json(std::string(s)).dump();
    } catch (const nlohmann::json::exception&) {
        throw std::invalid_argument("is not valid UTF-8");
    }
}

// Only tab and newline among the controls may appear in a literal block scalar; CR would be
// read as a line break and the others are not printable.
bool block_safe(std::string_view s) {
    return std::none_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return (u < 0x20 && c != '\n' && c != '\t') || u == 0x7f;
    });
}

void append_metadata(std::string& out, const std::string& name, const ConfigMapSpec& spec,
                     std::string_view component) {
    auto labels = spec.labels;
    labels["app.kubernetes.io/name"] = "mlkeeper";
    labels["app.kubernetes.io/component"] = std::string(component);
    labels["app.kubernetes.io/managed-by"] = "mlkeeper";
    out += "apiVersion: v1\nkind: ConfigMap\nmetadata:\n";
    out += "  name: " + yaml_quoted(name) + "\n";
    out += "  namespace: " + yaml_quoted(spec.ns) + "\n";
    out += "  labels:\n";
    for (const auto& [k, v] : labels) {
        out += "    " + yaml_quoted(k) + ": " + yaml_quoted(v) + "\n";
    }
}

void check_label(std::string_view field, std::string_view value) {
    if (!valid_dns1123_label(value)) {
        throw std::invalid_argument(
            std::string(field) + ": \"" + std::string(value) +
            "\" is not a valid Kubernetes name (lower-case letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters)");
    }
}

}  // namespace

bool valid_dns1123_label(std::string_view s) {
    const auto ok = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    return !s.empty() && s.size() <= 63 && ok(s.front()) && ok(s.back()) &&
           std::all_of(s.begin(), s.end(), [&](char c) { return ok(c) || c == '-'; });
}

std::string yaml_string_value(std::string_view value, int indent) {
    if (value.empty() || !block_safe(value)) {
        return " " + yaml_quoted(value) + "\n";
    }
    yaml_quoted(value);  // the UTF-8 check
    const std::string pad(static_cast<std::size_t>(indent) + 2, ' ');
    std::string out = " |";
    // The first non-empty line fixes the block's indentation: if it starts with a space, say
    // how deep the block is, or that space would be taken as indentation (and kubectl's parser
    // refuses a tab there unless told).
    const auto first = value.find_first_not_of('\n');
    if (first != std::string_view::npos && (value[first] == ' ' || value[first] == '\t')) {
        out += "2";
    }
    // Chomping: clip keeps one final newline, strip none, keep all of them.
    std::size_t trailing = 0;
    while (trailing < value.size() && value[value.size() - 1 - trailing] == '\n') {
        ++trailing;
    }
    out += trailing == 0 ? "-" : trailing == 1 ? "" : "+";
    out += "\n";
    std::string_view rest = value;
    while (!rest.empty()) {
        const auto nl = rest.find('\n');
        const auto line = rest.substr(0, nl);
        if (!line.empty()) {
            out += pad;
            out += line;
        }
        out += '\n';
        if (nl == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(nl + 1);
    }
    return out;
}

std::string render_configmaps(const ConfigMapSpec& spec, std::string_view nginx_conf) {
    check_label("namespace", spec.ns);
    check_label("name", spec.name);
    check_label("inference URL ConfigMap name", spec.url_name);
    if (spec.name == spec.url_name) {
        throw std::invalid_argument("the two ConfigMaps would both be named \"" + spec.name +
                                    "\"; give them different names");
    }
    if (spec.inference_url.empty()) {
        throw std::invalid_argument("inference service URL: empty");
    }
    if (nginx_conf.size() > kConfigMapMaxBytes) {
        throw std::invalid_argument("the NGINX config is " + std::to_string(nginx_conf.size()) +
                                    " bytes; a ConfigMap holds at most 1 MiB");
    }
    std::string out;
    append_metadata(out, spec.name, spec, "nginx-config");
    out += "data:\n  " + std::string(kConfigMapConfKey) + ":";
    try {
        out += yaml_string_value(nginx_conf, 2);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("the NGINX config ") + e.what());
    }
    out += "---\n";
    append_metadata(out, spec.url_name, spec, "inference-service-url");
    out += "data:\n  " + std::string(kConfigMapUrlKey) + ": ";
    try {
        out += yaml_quoted(spec.inference_url) + "\n";
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("inference service URL ") + e.what());
    }
    return out;
}

}  // namespace mlk::homelab
