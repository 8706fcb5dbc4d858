// The table of every configuration key: section, name, type, default, the
// environment variable that sets it (the seeds' names), and its valid range.
// The loader, validation, `config show` and docs all read this one table.
// Thread safety: immutable after static initialisation.
#pragma once

#include <span>
#include <string_view>

#include "mlkeeper/util/units.hpp"

namespace mlk::core {

enum class ValueType {
    kBool,
    kInt,
    kNumber,  // floating point (percentages, ratios)
    kString,
    kPath,
    kChoice,      // one of KeySpec::choices ("a|b|c")
    kStringList,  // TOML array of strings; from env: separated by spaces or commas
    kDuration,    // "30d", "10m", "90s"; a plain number uses KeySpec::plain_unit
    kSize,        // "500GB", "2GiB", or bytes
};

enum class Sensitivity { kPlain, kSecret };  // secrets are masked in every output

struct KeySpec {
    std::string_view section;
    std::string_view name;
    ValueType type;
    std::string_view default_value;  // text in the same syntax as env values; "" = unset
    std::string_view env;            // environment variable, or "" for none
    double min = 0;                  // range for kInt/kNumber/kDuration(seconds)/kSize
    double max = 0;                  // max <= min means "no range check"
    std::string_view choices = {};   // kChoice: "zstd|gzip"; kStringList: "lines" = one item
                                     // per line from env (else split on spaces and commas)
    util::DurationUnit plain_unit = util::DurationUnit::kSeconds;
    Sensitivity sensitivity = Sensitivity::kPlain;
    std::string_view help = {};
};

// Every section the file may contain, including ones whose keys later
// capabilities will define (an empty section is accepted, unknown keys not).
std::span<const std::string_view> config_sections();

std::span<const KeySpec> config_keys();

// Lookup by "section.name"; nullptr when unknown.
const KeySpec* find_key(std::string_view section, std::string_view name);
const KeySpec* find_key(std::string_view dotted);

}  // namespace mlk::core
