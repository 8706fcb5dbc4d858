#include "mlkeeper/backup/encryption.hpp"

#include <sys/stat.h>

#include <fmt/format.h>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/crypto/age_keys.hpp"
#include "mlkeeper/util/atomic_file.hpp"

namespace mlk::backup {
namespace {

// A file holding a secret: readable, not readable by group or others, non-empty.
std::string read_secret_file(const core::Config& cfg, std::string_view key) {
    const auto path = cfg.path(key);
    const auto& origin = cfg.setting(key).origin;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        throw ConfigError(fmt::format("{}: cannot read {}: {}", origin, path.string(),
                                      std::generic_category().message(errno)));
    }
    if ((st.st_mode & 077) != 0) {
        throw ConfigError(
            fmt::format("{}: {} is readable by group or others (mode {:o}); "
                        "chmod 600 it",
                        origin, path.string(), st.st_mode & 07777));
    }
    try {
        return util::read_file(path);
    } catch (const std::system_error& e) {
        throw ConfigError(fmt::format("{}: {}", origin, e.what()));
    }
}

std::optional<std::string> passphrase(const core::Config& cfg) {
    if (!cfg.is_set("backup.encrypt_passphrase_file") ||
        cfg.path("backup.encrypt_passphrase_file").empty()) {
        return std::nullopt;
    }
    std::string text = read_secret_file(cfg, "backup.encrypt_passphrase_file");
    if (auto nl = text.find_first_of("\r\n"); nl != std::string::npos) {
        text.resize(nl);
    }
    if (text.empty()) {
        throw ConfigError(fmt::format("{}: the passphrase file is empty",
                                      cfg.setting("backup.encrypt_passphrase_file").origin));
    }
    return text;
}

}  // namespace

bool is_encrypted_name(std::string_view name) {
    return name.ends_with(kEncryptedSuffix);
}

std::optional<crypto::EncryptTo> encryption_from_config(const core::Config& cfg) {
    crypto::EncryptTo to;
    for (const auto& r : cfg.list("backup.encrypt_to")) {
        try {
            to.recipients.push_back(crypto::parse_recipient(r));
        } catch (const std::exception& e) {
            throw ConfigError(fmt::format("{}: \"{}\" is not an age recipient (age1...): {}",
                                          cfg.setting("backup.encrypt_to").origin, r, e.what()));
        }
    }
    to.passphrase = passphrase(cfg);
    if (to.passphrase && !to.recipients.empty()) {
        throw ConfigError(fmt::format(
            "{}: set encrypt_to or encrypt_passphrase_file, not both (an age file opened by a "
            "passphrase cannot have other recipients)",
            cfg.setting("backup.encrypt_passphrase_file").origin));
    }
    if (!to.passphrase && to.recipients.empty()) {
        return std::nullopt;
    }
    return to;
}

Manifest::Encryption describe(const crypto::EncryptTo& to) {
    Manifest::Encryption e;
    for (const auto& r : to.recipients) {
        e.recipients.push_back(r.to_string());
    }
    e.passphrase = to.passphrase.has_value();
    return e;
}

crypto::DecryptWith decryption_from_config(const core::Config& cfg) {
    crypto::DecryptWith with;
    if (cfg.is_set("backup.identity_file") && !cfg.path("backup.identity_file").empty()) {
        const auto& origin = cfg.setting("backup.identity_file").origin;
        try {
            with.identities =
                crypto::parse_identity_file(read_secret_file(cfg, "backup.identity_file"));
        } catch (const ConfigError&) {
            throw;
        } catch (const std::exception& e) {
            throw ConfigError(fmt::format("{}: {}", origin, e.what()));
        }
    }
    with.passphrase = passphrase(cfg);
    return with;
}

}  // namespace mlk::backup
