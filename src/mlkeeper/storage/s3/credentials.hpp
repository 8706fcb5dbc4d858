// Finds AWS credentials and the region the way the AWS CLI (botocore) does: environment, then the
// shared credentials file, then the config file, so an operator's existing ~/.aws setup just works.
// Thread safety: stateless functions that read the files on every call; safe from any thread.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "mlkeeper/util/fs_ops.hpp"

namespace mlk::storage::s3 {

struct Credentials {
    std::string access_key_id;
    std::string secret_access_key;  // never logged, never put in an error message
    std::string session_token;      // empty when none
    std::string source;             // "environment" or "<path> [<section>]" -- safe to print
};

// The environment the resolvers read (HOME included), passed in so tests need no setenv().
using Env = std::map<std::string, std::string>;

// A snapshot of this process's environment.
Env process_env();

// The first complete set of keys from:
//   1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN, or the older
//      AWS_SECURITY_TOKEN);
//   2. $AWS_SHARED_CREDENTIALS_FILE or $HOME/.aws/credentials, section [PROFILE];
//   3. $AWS_CONFIG_FILE or $HOME/.aws/config, section [profile PROFILE] ([default] or
//      [profile default] for the default profile);
// where PROFILE is $AWS_PROFILE or "default". Empty variables count as unset, a leading "~/" in a
// file variable means $HOME, and a missing file is skipped.
// Throws mlk::ConfigError (one line, never containing a secret) when only one key of a pair is set,
// a file cannot be read or has a malformed line ("<path>:<line>: ..."), $AWS_PROFILE names a
// profile neither file has, or nothing is found (the message says where it looked).
Credentials resolve_credentials(const Env& env, const util::FsOps& ops = util::real_fs_ops());

// `configured` (when non-empty) > AWS_REGION > AWS_DEFAULT_REGION > `region` of the profile in
// the config file > "us-east-1". Throws mlk::ConfigError only for an unreadable or malformed config
// file; a missing file or profile just falls through to the default.
std::string resolve_region(const Env& env, const std::string& configured,
                           const util::FsOps& ops = util::real_fs_ops());

// "AKIA****MPLE": the first and last 4 characters of a key id, for logs. Ids shorter than 12
// characters become "****" so that at least 4 characters always stay hidden.
std::string mask_key_id(std::string_view id);

}  // namespace mlk::storage::s3
