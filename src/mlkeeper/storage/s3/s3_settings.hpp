// Where the off-site copy lives and how to talk to it: the [backup.s3] keys resolved into one
// value (credentials and region found the AWS CLI's way), plus the URL rules of S3 (path or
// virtual-host addressing, SigV4's canonical percent-encoding).
// Thread safety: plain values and pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/storage/s3/credentials.hpp"

namespace mlk::storage::s3 {

enum class Addressing { kPath, kVirtualHost };

struct S3Settings {
    std::string bucket;
    std::string prefix;  // "models/<host>/": {host} expanded, always ends in '/' (or is empty)
    std::string storage_class = "STANDARD";
    std::string endpoint;  // "https://s3.us-east-1.amazonaws.com" when none is configured
    std::string region = "us-east-1";
    Addressing addressing = Addressing::kVirtualHost;
    std::uint64_t part_size = 64ULL << 20;
    int parallel = 4;
    int attempts = 3;
    std::chrono::milliseconds retry_base{1000};
    std::chrono::seconds request_timeout{600};
    std::string ca_file;
    Credentials credentials;
};

// Reads [backup.s3]. Throws ConfigError (exit 78) when the bucket is empty, the endpoint is not
// an http(s) URL, or no credentials are found. `host` replaces {host} in the prefix; a
// non-empty `bucket` replaces the configured one (s3:// URLs on the command line).
S3Settings settings_from_config(const core::Config& cfg, const Env& env, const std::string& host,
                                const std::string& bucket = {});

// True when [backup.s3] bucket is set (the off-site copy is configured).
bool s3_configured(const core::Config& cfg);

// "s3://bucket/key" split; nullopt for anything else (no bucket, no key, other scheme).
struct S3Location {
    std::string bucket;
    std::string key;
};
std::optional<S3Location> parse_s3_url(std::string_view url);
std::string s3_url(std::string_view bucket, std::string_view key);

// SigV4's URI encoding: unreserved characters (A-Z a-z 0-9 - _ . ~) stay, everything else is
// %XX in upper case; '/' stays when `keep_slash` says so (object keys in paths).
enum class Slash { kKeep, kEncode };
std::string uri_encode(std::string_view s, Slash slash);

// The request URL for `key` (empty: the bucket itself) with query parameters sorted and encoded
// as SigV4's canonical query string wants them (libcurl 7.88 signs the query as written). A
// parameter with an empty value is written "name=" ("uploads=").
std::string object_url(const S3Settings& s, std::string_view key,
                       std::vector<std::pair<std::string, std::string>> query = {});

}  // namespace mlk::storage::s3
