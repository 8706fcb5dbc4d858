#include "mlkeeper/alert/journal_channel.hpp"

#include <sys/stat.h>
#include <sys/uio.h>

// Without this, sd-journal.h's macros add CODE_FILE/CODE_LINE/CODE_FUNC pointing here, which
// says nothing about the alert.
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include <system_error>

#include "mlkeeper/alert/syslog_channel.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::alert {

namespace {

constexpr std::size_t kMaxFieldName = 64;  // journald drops fields with longer names

void add(std::vector<std::string>& out, std::string_view name, std::string_view value) {
    std::string entry(name);
    entry += '=';
    entry += value;
    out.push_back(std::move(entry));
}

void add_if_set(std::vector<std::string>& out, std::string_view name, std::string_view value) {
    if (!value.empty()) {
        add(out, name, value);
    }
}

}  // namespace

bool journal_available() {
    struct stat st {};
    return ::stat(std::string(kJournalSocket).c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

std::string journal_field_name(std::string_view extra_name) {
    std::string name = "MLKEEPER_FIELD_";
    for (char c : extra_name) {
        if (c >= 'a' && c <= 'z') {
            name.push_back(static_cast<char>(c - 'a' + 'A'));
        } else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') {
            name.push_back(c);
        } else {
            name.push_back('_');
        }
    }
    if (name.size() > kMaxFieldName) {
        name.resize(kMaxFieldName);
    }
    return name;
}

std::vector<std::string> journal_fields(const Alert& a) {
    std::vector<std::string> out;
    out.reserve(16 + a.fields.size());
    add(out, "MESSAGE", alert_log_line(a));
    add(out, "PRIORITY", std::to_string(syslog_severity(a)));
    add(out, "SYSLOG_IDENTIFIER", "mlkeeper");
    add(out, "MLKEEPER_ALERT_KEY", a.key);
    add(out, "MLKEEPER_SEVERITY", to_string(a.severity));
    add(out, "MLKEEPER_STATE", a.state == AlertState::kResolved ? "resolved" : "firing");
    add(out, "MLKEEPER_TIME", util::iso8601_utc(a.time));
    add(out, "MLKEEPER_OCCURRENCES", std::to_string(a.occurrences));
    add(out, "MLKEEPER_SUPPRESSED", std::to_string(a.suppressed));
    add_if_set(out, "MLKEEPER_CHECK", a.check);
    add_if_set(out, "MLKEEPER_VALUE", a.value);
    add_if_set(out, "MLKEEPER_THRESHOLD", a.threshold);
    add_if_set(out, "MLKEEPER_ACTION", a.action);
    add_if_set(out, "MLKEEPER_HOST", a.host);
    for (const auto& [name, value] : a.fields) {
        add(out, journal_field_name(name), value);
    }
    return out;
}

void JournalChannel::send(const Alert& alert) {
    if (!journal_available()) {
        throw ChannelError(ChannelError::Kind::kPermanent,
                           "journald is not running (no " + std::string(kJournalSocket) + ")");
    }
    const std::vector<std::string> fields = journal_fields(alert);
    std::vector<iovec> iov;
    iov.reserve(fields.size());
    for (const auto& f : fields) {
        // sd_journal_sendv only reads the buffers.
        iov.push_back(iovec{const_cast<char*>(f.data()), f.size()});
    }
    int r = sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
    if (r < 0) {
        throw ChannelError(ChannelError::Kind::kTransient,
                           "cannot write to the journal (" + std::string(kJournalSocket) +
                               "): " + std::system_category().message(-r));
    }
}

}  // namespace mlk::alert
