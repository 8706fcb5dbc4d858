// Alert channel that writes structured journald entries through libsystemd's sd_journal_sendv,
// so `journalctl MLKEEPER_ALERT_KEY=gpu0_temp` finds every notice about one condition.
// Thread safety: sd_journal_sendv is thread-safe and JournalChannel holds no state, so send() may
// run on several threads at once; journal_fields() is pure.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mlkeeper/alert/alert.hpp"
#include "mlkeeper/alert/channel.hpp"

namespace mlk::alert {

inline constexpr std::string_view kJournalSocket = "/run/systemd/journal/socket";

// True when journald's native socket exists; without it sd_journal_sendv has nowhere to write.
bool journal_available();

// "MLKEEPER_FIELD_" + the name upper-cased, with every byte outside [A-Z0-9_] replaced by '_'
// and the result cut to journald's 64-byte limit on field names: "gpu-index" ->
// "MLKEEPER_FIELD_GPU_INDEX".
std::string journal_field_name(std::string_view extra_name);

// The entry as "NAME=value" strings, in this order: MESSAGE (alert_log_line()), PRIORITY
// (syslog_severity()), SYSLOG_IDENTIFIER=mlkeeper, MLKEEPER_ALERT_KEY, MLKEEPER_SEVERITY
// ("critical"), MLKEEPER_STATE ("firing"/"resolved"), MLKEEPER_TIME (ISO 8601 UTC),
// MLKEEPER_OCCURRENCES, MLKEEPER_SUPPRESSED, then MLKEEPER_CHECK, MLKEEPER_VALUE,
// MLKEEPER_THRESHOLD, MLKEEPER_ACTION and MLKEEPER_HOST only when non-empty, then one
// journal_field_name(name)=value per extra field. Values are kept byte for byte (newlines
// included): the native protocol carries them length-prefixed.
std::vector<std::string> journal_fields(const Alert& a);

class JournalChannel : public Channel {
  public:
    std::string name() const override { return "journal"; }

    // Throws ChannelError(kPermanent) when journal_available() is false, and a transient
    // ChannelError with the errno text when sd_journal_sendv fails.
    void send(const Alert& alert) override;
};

}  // namespace mlk::alert
