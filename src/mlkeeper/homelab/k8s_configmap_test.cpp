#include "mlkeeper/homelab/k8s_configmap.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <system_error>

#include <nlohmann/json.hpp>

#include "mlkeeper/util/process.hpp"

namespace mlk::homelab {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

ConfigMapSpec spec() {
    ConfigMapSpec s;
    s.inference_url = "http://10.0.0.5:5002";
    return s;
}

TEST(K8sConfigMap, Dns1123Labels) {
    for (const std::string& ok :
         std::vector<std::string>{"a", "inference-manager", "x1", "0abc", std::string(63, 'a')}) {
        EXPECT_TRUE(valid_dns1123_label(ok)) << ok;
    }
    for (const std::string& bad : std::vector<std::string>{"", "-a", "a-", "A", "a_b", "a.b", "a b",
                                                           "é", std::string(64, 'a')}) {
        EXPECT_FALSE(valid_dns1123_label(bad)) << bad;
    }
}

TEST(K8sConfigMap, TwoDocumentsWithQuotedScalarsAndABlockScalar) {
    auto s = spec();
    s.name = "no";  // YAML 1.1 would read an unquoted `no` as false
    const auto yaml = render_configmaps(s, "server {\n    listen 8080;\n}\n");
    EXPECT_EQ(yaml,
              "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
              "  name: \"no\"\n  namespace: \"inference-manager\"\n  labels:\n"
              "    \"app.kubernetes.io/component\": \"nginx-config\"\n"
              "    \"app.kubernetes.io/managed-by\": \"mlkeeper\"\n"
              "    \"app.kubernetes.io/name\": \"mlkeeper\"\n"
              "data:\n  models.conf: |\n    server {\n        listen 8080;\n    }\n"
              "---\n"
              "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
              "  name: \"inference-service-url\"\n  namespace: \"inference-manager\"\n"
              "  labels:\n"
              "    \"app.kubernetes.io/component\": \"inference-service-url\"\n"
              "    \"app.kubernetes.io/managed-by\": \"mlkeeper\"\n"
              "    \"app.kubernetes.io/name\": \"mlkeeper\"\n"
              "data:\n  INFERENCE_SERVICE_URL: \"http://10.0.0.5:5002\"\n");
}

TEST(K8sConfigMap, BlockScalarChompingAndIndentation) {
    EXPECT_EQ(yaml_string_value("a\n", 2), " |\n    a\n");
    EXPECT_EQ(yaml_string_value("a", 2), " |-\n    a\n");
    EXPECT_EQ(yaml_string_value("a\n\n", 2), " |+\n    a\n\n");
    EXPECT_EQ(yaml_string_value("a\n\nb\n", 0), " |\n  a\n\n  b\n");
    EXPECT_EQ(yaml_string_value("  x\ny\n", 2), " |2\n      x\n    y\n");
    EXPECT_EQ(yaml_string_value("\n  x\n", 2), " |2\n\n      x\n");
    EXPECT_EQ(yaml_string_value("", 2), " \"\"\n");
    EXPECT_EQ(yaml_string_value("a\r\nb", 2), " \"a\\r\\nb\"\n");
    EXPECT_EQ(yaml_string_value("tab\there\n", 2), " |\n    tab\there\n");
    EXPECT_EQ(yaml_string_value("\tx\n", 2), " |2\n    \tx\n");
    EXPECT_THROW(yaml_string_value("bad \xff utf-8\n", 2), std::invalid_argument);
}

TEST(K8sConfigMap, BadInputsAreRefused) {
    auto s = spec();
    s.ns = "Inference_Manager";
    EXPECT_THROW(render_configmaps(s, "x"), std::invalid_argument);
    s = spec();
    s.name = "a.b";
    try {
        render_configmaps(s, "x");
        FAIL() << "no error";
    } catch (const std::invalid_argument& e) {
        EXPECT_THAT(std::string(e.what()), HasSubstr("name: \"a.b\" is not a valid Kubernetes"));
    }
    s = spec();
    s.url_name = s.name;
    EXPECT_THROW(render_configmaps(s, "x"), std::invalid_argument);
    s = spec();
    s.inference_url.clear();
    EXPECT_THROW(render_configmaps(s, "x"), std::invalid_argument);
    EXPECT_THROW(render_configmaps(spec(), std::string(kConfigMapMaxBytes + 1, 'x')),
                 std::invalid_argument);
    EXPECT_THROW(render_configmaps(spec(), "\xc3\n"), std::invalid_argument);
}

class TmpFile {
  public:
    TmpFile() {
        std::string tmpl = ::testing::TempDir() + "configmap_XXXXXX";
        const int fd = ::mkstemp(tmpl.data());
        if (fd < 0) {
            throw std::system_error(errno, std::generic_category(), "mkstemp");
        }
        ::close(fd);
        path_ = tmpl;
    }
    ~TmpFile() { fs::remove(path_); }
    const fs::path& path() const { return path_; }
    void write(const std::string& s) const { std::ofstream(path_, std::ios::binary) << s; }

  private:
    fs::path path_;
};

// No cluster and no user config: kubectl must not reach out anywhere.
util::RunOptions kubectl_options(std::optional<std::string> stdin_data = std::nullopt) {
    util::RunOptions o;
    o.timeout = 30s;
    o.stdin_data = std::move(stdin_data);
    o.env_set = {{"KUBECONFIG", "/dev/null"}};
    return o;
}

// kubectl's own YAML parser, offline: `kubectl label --local` reads the manifests and prints
// them as JSON without a cluster. (`kubectl create --dry-run=client` needs the API server for
// discovery, so it cannot run here.) nullopt when kubectl is missing or cannot run offline.
std::optional<std::vector<json>> kubectl_parse(const std::string& yaml) {
    TmpFile f;
    f.write(yaml);
    const auto r = util::run_process(
        {"kubectl", "label", "--local", "-f", f.path().string(), "mlkeeper-test=1", "-o", "json"},
        kubectl_options());
    if (!r.ok()) {
        ADD_FAILURE() << "kubectl failed: " << r.out << r.err << "\n" << yaml;
        return std::nullopt;
    }
    std::vector<json> docs;
    std::istringstream in(r.out);
    while ((in >> std::ws).peek() != EOF) {
        json j;
        in >> j;
        docs.push_back(std::move(j));
    }
    return docs;
}

bool kubectl_works() {
    const auto r = util::run_process(
        {"kubectl", "label", "--local", "-f", "-", "a=b", "-o", "json"},
        kubectl_options("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"));
    return r.ok();
}

TEST(K8sConfigMap, KubectlReadsBackExactlyWhatWasRendered) {
    if (!kubectl_works()) {
        GTEST_SKIP() << "kubectl is not installed or cannot parse manifests offline";
    }
    std::vector<std::string> contents = {
        "server {\n    listen 8080;\n}\n",
        "no final newline",
        "two final newlines\n\n",
        "  leading spaces\nthen none\n",
        "\n\nleading blank lines\n",
        "---\n...\n# not a comment\nkey: value\n- item\n\"quoted\"\n'single'\n",
        "tab\tinside\n\tleading tab\n",
        "\tfirst line tab\n",
        "unicode: é ü 模型\n",
        "carriage\r\nreturn\n",
        "trailing spaces   \n   \n",
        "{\"json\": true}\n",
    };
    // And random mixes of the awkward characters.
    std::mt19937 rng(7);
    const std::string alphabet = " \n\t#:-|>'\"{}[]&*!%@`ab";
    for (int i = 0; i < 20; ++i) {
        std::string s;
        const auto n = rng() % 60;
        for (std::size_t k = 0; k < n; ++k) {
            s += alphabet[rng() % alphabet.size()];
        }
        contents.push_back(s);
    }
    // One stream of all the pairs, so kubectl runs once.
    std::string yaml;
    std::vector<std::string> tried;
    for (const auto& content : contents) {
        if (content.empty()) {
            continue;
        }
        auto s = spec();
        s.ns = "y";  // YAML 1.1's other boolean spelling
        s.name = "true";
        s.url_name = "null";
        yaml += (yaml.empty() ? "" : "---\n") + render_configmaps(s, content);
        tried.push_back(content);
    }
    const auto docs = kubectl_parse(yaml);
    ASSERT_TRUE(docs.has_value());
    ASSERT_EQ(docs->size(), 2 * tried.size()) << yaml;
    for (std::size_t i = 0; i < tried.size(); ++i) {
        const auto& conf = (*docs)[2 * i];
        EXPECT_EQ(conf["kind"], "ConfigMap");
        EXPECT_EQ(conf["metadata"]["name"], "true");
        EXPECT_EQ(conf["metadata"]["namespace"], "y");
        EXPECT_EQ(conf["metadata"]["labels"]["app.kubernetes.io/managed-by"], "mlkeeper");
        EXPECT_EQ(conf["data"]["models.conf"], tried[i]) << render_configmaps(spec(), tried[i]);
        const auto& url = (*docs)[2 * i + 1];
        EXPECT_EQ(url["metadata"]["name"], "null");
        EXPECT_EQ(url["data"]["INFERENCE_SERVICE_URL"], "http://10.0.0.5:5002");
    }
}

}  // namespace
}  // namespace mlk::homelab
