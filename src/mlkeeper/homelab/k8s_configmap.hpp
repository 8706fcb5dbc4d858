// The Kubernetes side of the NGINX updater (the seeds' "NGINX ConfigMap Updater" in namespace
// inference-manager): two ConfigMap manifests as one YAML stream, one holding the rendered NGINX
// config (data "models.conf") and one holding the inference service URL (data
// "INFERENCE_SERVICE_URL"), kept apart so each environment can point at its own service without
// touching the routing. Output is meant for `kubectl apply -f -`.
// Thread safety: pure functions.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace mlk::homelab {

struct ConfigMapSpec {
    std::string ns{"inference-manager"};            // metadata.namespace of both
    std::string name{"mlkeeper-nginx-models"};      // the NGINX config's ConfigMap
    std::string url_name{"inference-service-url"};  // the inference URL's ConfigMap
    std::string inference_url;                      // its INFERENCE_SERVICE_URL value
    // Added to both; app.kubernetes.io/{name,component,managed-by} are always set.
    std::map<std::string, std::string> labels;
};

// The data key of the config ConfigMap, and of the URL one.
inline constexpr std::string_view kConfigMapConfKey = "models.conf";
inline constexpr std::string_view kConfigMapUrlKey = "INFERENCE_SERVICE_URL";
// What the API server stores in one ConfigMap.
inline constexpr std::size_t kConfigMapMaxBytes = 1024 * 1024;

// RFC 1123 label as Kubernetes checks names and namespaces: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at
// most 63 characters.
bool valid_dns1123_label(std::string_view s);

// "apiVersion: v1\nkind: ConfigMap\n..." for the config, "---", then the URL ConfigMap. Every
// scalar from outside is double-quoted (a name like "no" or "y" would otherwise read as a
// boolean); the config is a literal block scalar (|, |- or |+ so that its trailing newlines
// survive exactly, with an indentation indicator when its first line starts with a space or tab),
// or a double-quoted string when it holds characters a block scalar cannot (CR, other control
// characters). Throws std::invalid_argument naming the field for an invalid name or namespace,
// an empty URL, two equal names, or a config over kConfigMapMaxBytes.
std::string render_configmaps(const ConfigMapSpec& spec, std::string_view nginx_conf);

// `value` as a YAML scalar: a block scalar introduced after "KEY:" (returns " |\n" + indented
// lines) or a double-quoted one (returns " \"...\"\n"). `indent` is the indentation of the key.
std::string yaml_string_value(std::string_view value, int indent);

}  // namespace mlk::homelab
