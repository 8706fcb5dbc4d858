// Encrypted archives: which keys [backup] encrypt_to / encrypt_passphrase_file / identity_file
// give, and how an encrypted archive is recognised (".age" after the codec's extension). The
// age format itself lives in crypto/.
// Thread safety: stateless functions.
#pragma once

#include <optional>
#include <string_view>

#include "mlkeeper/backup/manifest.hpp"
#include "mlkeeper/core/config.hpp"
#include "mlkeeper/crypto/age_stream.hpp"

namespace mlk::backup {

inline constexpr std::string_view kEncryptedSuffix = ".age";

// Whether an archive name is an encrypted archive's.
bool is_encrypted_name(std::string_view name);

// What new archives are encrypted to; nullopt when encryption is not configured. Throws
// ConfigError naming the key for a recipient that is not an age1... key, a passphrase file that
// cannot be read, is empty, or can be read by group or others, or both set at once (the age
// format allows a passphrase only alone).
std::optional<crypto::EncryptTo> encryption_from_config(const core::Config& cfg);

// The manifest's record of `to` (public information only).
Manifest::Encryption describe(const crypto::EncryptTo& to);

// The keys verify and restore may decrypt with: identity_file's identities and the passphrase
// file's passphrase. Empty when neither is configured. Throws ConfigError like the above.
crypto::DecryptWith decryption_from_config(const core::Config& cfg);

}  // namespace mlk::backup
