#include "mlkeeper/backup/manifest.hpp"

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <utility>

namespace mlk::backup {

namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Bytes, UTF-8, base64, hex

// Strict RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF. This must be at
// least as strict as nlohmann's own check, or a path we write as "path" would fail to parse.
bool is_valid_utf8(std::string_view s) {
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len = 0;
        std::uint32_t cp = 0;
        if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len) {
            return false;
        }
        for (std::size_t k = 1; k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += len;
    }
    return true;
}

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        const std::uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                                (static_cast<unsigned char>(in[i + 1]) << 8) |
                                static_cast<unsigned char>(in[i + 2]);
        out += kBase64Alphabet[(v >> 18) & 63];
        out += kBase64Alphabet[(v >> 12) & 63];
        out += kBase64Alphabet[(v >> 6) & 63];
        out += kBase64Alphabet[v & 63];
    }
    const std::size_t rest = in.size() - i;
    if (rest > 0) {
        std::uint32_t v = static_cast<unsigned char>(in[i]) << 16;
        if (rest == 2) {
            v |= static_cast<unsigned char>(in[i + 1]) << 8;
        }
        out += kBase64Alphabet[(v >> 18) & 63];
        out += kBase64Alphabet[(v >> 12) & 63];
        out += rest == 2 ? kBase64Alphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

// Standard alphabet with padding, nothing else (no whitespace, no URL-safe letters).
std::optional<std::string> base64_decode(std::string_view in) {
    static const std::array<int, 256> kValue = [] {
        std::array<int, 256> t{};
        t.fill(-1);
        for (int i = 0; i < 64; ++i) {
            t[static_cast<unsigned char>(kBase64Alphabet[i])] = i;
        }
        return t;
    }();
    if (in.size() % 4 != 0) {
        return std::nullopt;
    }
    std::string out;
    out.reserve(in.size() / 4 * 3);
    for (std::size_t i = 0; i < in.size(); i += 4) {
        const bool last = i + 4 == in.size();
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = in[i + k];
            if (c == '=' && last && k >= 2) {
                v[k] = 0;
                ++pad;
                continue;
            }
            if (pad > 0) {  // data after '='
                return std::nullopt;
            }
            v[k] = kValue[static_cast<unsigned char>(c)];
            if (v[k] < 0) {
                return std::nullopt;
            }
        }
        const std::uint32_t bits = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
        out += static_cast<char>((bits >> 16) & 0xFF);
        if (pad < 2) {
            out += static_cast<char>((bits >> 8) & 0xFF);
        }
        if (pad < 1) {
            out += static_cast<char>(bits & 0xFF);
        }
    }
    return out;
}

bool is_sha256_hex(std::string_view s) {
    if (s.size() != 64) {
        return false;
    }
    for (const char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

void lower_hex(std::string& s) {
    for (char& c : s) {
        if (c >= 'A' && c <= 'F') {
            c = static_cast<char>(c - 'A' + 'a');
        }
    }
}

// A value for an error message: quoted, control characters and (in non-UTF-8 text) every
// non-ASCII byte shown as \xNN, cut after 120 bytes.
std::string quote_value(std::string_view s) {
    constexpr std::size_t kMax = 120;
    const bool utf8 = is_valid_utf8(s);
    std::string out = "\"";
    for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7F || (c >= 0x80 && !utf8) || c == '"' || c == '\\') {
            if (c == '"' || c == '\\') {
                out += '\\';
                out += static_cast<char>(c);
            } else {
                static constexpr char kHex[] = "0123456789abcdef";
                out += "\\x";
                out += kHex[c >> 4];
                out += kHex[c & 15];
            }
        } else {
            out += static_cast<char>(c);
        }
    }
    out += s.size() > kMax ? "\"..." : "\"";
    return out;
}

[[noreturn]] void fail(std::string_view what, std::string_view problem) {
    std::string msg = "manifest ";
    msg += what;
    msg += ": ";
    msg += problem;
    throw ManifestError(msg);
}

std::string entry_what(std::size_t index, std::string_view field) {
    std::string what = "entries[" + std::to_string(index) + "]";
    if (!field.empty()) {
        what += '.';
        what += field;
    }
    return what;
}

// ---------------------------------------------------------------------------------------------
// Validation

// Why `p` is not a clean relative path, or nullopt.
std::optional<std::string> relative_path_problem(std::string_view p) {
    if (p.empty()) {
        return "is empty";
    }
    if (p.find('\0') != std::string_view::npos) {
        return "contains a NUL byte";
    }
    if (p.front() == '/') {
        return "is absolute";
    }
    std::size_t start = 0;
    while (true) {
        const std::size_t slash = p.find('/', start);
        const std::string_view part = p.substr(
            start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        if (part.empty()) {
            return "has an empty component ('//' or a trailing '/')";
        }
        if (part == "." || part == "..") {
            return "has a '.' or '..' component";
        }
        if (slash == std::string_view::npos) {
            return std::nullopt;
        }
        start = slash + 1;
    }
}

bool is_under_root(std::string_view p, std::string_view root) {
    return p == root ||
           (p.size() > root.size() && p.substr(0, root.size()) == root && p[root.size()] == '/');
}

// `p` must be a relative path inside the backup's root directory. `what` is only called to
// build an error message, so the common case allocates nothing.
template <typename What>
void check_tree_path(const What& what, std::string_view p, std::string_view root) {
    if (auto problem = relative_path_problem(p)) {
        fail(what(), quote_value(p) + " " + *problem);
    }
    if (!is_under_root(p, root)) {
        fail(what(), quote_value(p) + " is not under the root " + quote_value(root));
    }
}

// A plain file name in the destination directory (archive, parent, stored_in).
void check_file_name(std::string_view what, std::string_view name) {
    if (name.empty()) {
        fail(what, "is empty");
    }
    if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos ||
        name == "." || name == "..") {
        fail(what, quote_value(name) + " is not a plain file name");
    }
    if (!is_valid_utf8(name)) {
        fail(what, quote_value(name) + " is not valid UTF-8");
    }
}

void check_utf8(std::string_view what, std::string_view s) {
    if (!is_valid_utf8(s)) {
        fail(what, quote_value(s) + " is not valid UTF-8");
    }
}

void check_not_empty(std::string_view what, std::string_view s) {
    if (s.empty()) {
        fail(what, "is empty");
    }
}

void validate_entry(const Manifest& m, std::size_t i) {
    const ManifestEntry& e = m.entries[i];
    const auto where = [&](std::string_view field) { return entry_what(i, field); };
    check_tree_path([&] { return where("path"); }, e.path, m.root);
    const auto of_path = [&] { return " (path " + quote_value(e.path) + ")"; };
    if (e.mode > 07777) {
        fail(where("mode"),
             std::to_string(e.mode) + " has bits beyond 07777 (only permission bits)" + of_path());
    }
    if (e.type == EntryType::kFile) {
        if (!is_sha256_hex(e.sha256)) {
            fail(where("sha256"),
                 "must be 64 hex digits, got " + quote_value(e.sha256) + of_path());
        }
        if (e.stored_in) {
            check_file_name(where("stored_in"), *e.stored_in);
            if (*e.stored_in == m.archive) {
                fail(where("stored_in"),
                     "names this archive; content in this archive has stored_in null" + of_path());
            }
            if (m.kind == BackupKind::kFull) {
                fail(where("stored_in"),
                     "is set in a full backup, which holds all content itself" + of_path());
            }
        }
    } else {
        if (e.size != 0) {
            fail(where("size"), "only files have a size" + of_path());
        }
        if (!e.sha256.empty()) {
            fail(where("sha256"), "only files have a sha256" + of_path());
        }
        if (e.sparse) {
            fail(where("sparse"), "only files can be sparse" + of_path());
        }
        if (e.stored_in) {
            fail(where("stored_in"), "only files have stored_in" + of_path());
        }
    }
    switch (e.type) {
        case EntryType::kSymlink:
            if (e.target.empty()) {
                fail(where("target"), "a symlink needs a target" + of_path());
            }
            if (e.target.find('\0') != std::string::npos) {
                fail(where("target"), "contains a NUL byte" + of_path());
            }
            break;
        case EntryType::kHardlink:
            check_tree_path([&] { return where("target"); }, e.target, m.root);
            if (e.target == e.path) {
                fail(where("target"), "a hardlink cannot link to itself" + of_path());
            }
            break;
        case EntryType::kFile:
        case EntryType::kDir:
            if (!e.target.empty()) {
                fail(where("target"), "only symlinks and hardlinks have a target" + of_path());
            }
            break;
    }
}

// ---------------------------------------------------------------------------------------------
// Writing JSON text

// Buffers output and hands it to `sink` in large pieces so a 200k-entry manifest streams to disk
// without a second full copy in memory.
class JsonText {
  public:
    using Sink = std::function<void(std::string_view)>;

    // Hands the text to `sink` whenever `flush_at` bytes have gathered.
    JsonText(Sink sink, std::size_t flush_at) : sink_(std::move(sink)), flush_at_(flush_at) {
        buf_.reserve(flush_at_ + 4096);
    }
    // Keeps everything in memory for take().
    explicit JsonText(std::size_t expected_size)
        : flush_at_(std::numeric_limits<std::size_t>::max()) {
        buf_.reserve(expected_size);
    }

    std::string take() { return std::move(buf_); }

    void raw(std::string_view s) {
        buf_.append(s);
        maybe_flush();
    }
    void raw(char c) { buf_ += c; }

    // `s` must be valid UTF-8 (validate_manifest() guarantees it for every field we write).
    void str(std::string_view s) {
        buf_ += '"';
        std::size_t run = 0;
        for (std::size_t i = 0; i < s.size(); ++i) {
            const auto c = static_cast<unsigned char>(s[i]);
            if (c >= 0x20 && c != '"' && c != '\\') {
                continue;
            }
            buf_.append(s.data() + run, i - run);
            run = i + 1;
            switch (c) {
                case '"':
                    buf_ += "\\\"";
                    break;
                case '\\':
                    buf_ += "\\\\";
                    break;
                case '\b':
                    buf_ += "\\b";
                    break;
                case '\f':
                    buf_ += "\\f";
                    break;
                case '\n':
                    buf_ += "\\n";
                    break;
                case '\r':
                    buf_ += "\\r";
                    break;
                case '\t':
                    buf_ += "\\t";
                    break;
                default: {
                    static constexpr char kHex[] = "0123456789abcdef";
                    buf_ += "\\u00";
                    buf_ += kHex[c >> 4];
                    buf_ += kHex[c & 15];
                }
            }
        }
        buf_.append(s.data() + run, s.size() - run);
        buf_ += '"';
    }

    void key(std::string_view k) {
        buf_ += '"';
        buf_ += k;  // our keys never need escaping
        buf_ += "\": ";
    }

    // A validated digest, in lower case.
    void hex(std::string_view digest) {
        buf_ += '"';
        const std::size_t start = buf_.size();
        buf_.append(digest);
        for (std::size_t i = start; i < buf_.size(); ++i) {
            if (buf_[i] >= 'A' && buf_[i] <= 'F') {
                buf_[i] = static_cast<char>(buf_[i] - 'A' + 'a');
            }
        }
        buf_ += '"';
    }

    template <typename Int>
    void num(Int v) {
        char tmp[24];
        const auto res = std::to_chars(tmp, tmp + sizeof tmp, v);
        buf_.append(tmp, static_cast<std::size_t>(res.ptr - tmp));
    }

    // "key": "text", or "key_b64": "base64" when the bytes are not UTF-8.
    void bytes_field(std::string_view k, std::string_view value) {
        if (is_valid_utf8(value)) {
            key(k);
            str(value);
        } else {
            buf_ += '"';
            buf_ += k;
            buf_ += "_b64\": ";
            str(base64_encode(value));
        }
    }

    void maybe_flush() {
        if (buf_.size() >= flush_at_) {
            flush();
        }
    }
    void flush() {
        if (sink_ && !buf_.empty()) {
            sink_(buf_);
            buf_.clear();
        }
    }

  private:
    Sink sink_;
    std::size_t flush_at_;
    std::string buf_;
};

void write_entry(JsonText& out, const ManifestEntry& e) {
    out.raw('{');
    out.bytes_field("path", e.path);
    out.raw(", ");
    out.key("type");
    out.str(to_string(e.type));
    if (e.type == EntryType::kFile) {
        out.raw(", ");
        out.key("size");
        out.num(e.size);
        out.raw(", ");
        out.key("sha256");
        out.hex(e.sha256);
    }
    if (e.type == EntryType::kSymlink || e.type == EntryType::kHardlink) {
        out.raw(", ");
        out.bytes_field("target", e.target);
    }
    out.raw(", ");
    out.key("mode");
    out.num(e.mode);
    out.raw(", ");
    out.key("uid");
    out.num(e.uid);
    out.raw(", ");
    out.key("gid");
    out.num(e.gid);
    out.raw(", ");
    out.bytes_field("user", e.user);
    out.raw(", ");
    out.bytes_field("group", e.group);
    out.raw(", ");
    out.key("mtime_ns");
    out.num(e.mtime_ns);
    out.raw(", ");
    out.key("dev");
    out.num(e.dev);
    out.raw(", ");
    out.key("ino");
    out.num(e.ino);
    if (e.type == EntryType::kFile) {
        out.raw(", ");
        out.key("sparse");
        out.raw(e.sparse ? "true" : "false");
        out.raw(", ");
        out.key("stored_in");
        if (e.stored_in) {
            out.str(*e.stored_in);
        } else {
            out.raw("null");
        }
    }
    out.raw('}');
}

void write_optional_string(JsonText& out, const std::optional<std::string>& s) {
    if (s) {
        out.str(*s);
    } else {
        out.raw("null");
    }
}

void write_totals(JsonText& out, const Manifest::Totals& t) {
    const std::pair<const char*, std::uint64_t> fields[] = {
        {"files", t.files},
        {"dirs", t.dirs},
        {"symlinks", t.symlinks},
        {"hardlinks", t.hardlinks},
        {"bytes", t.bytes},
        {"stored_files", t.stored_files},
        {"stored_bytes", t.stored_bytes},
    };
    out.raw('{');
    bool first = true;
    for (const auto& [name, value] : fields) {
        if (!first) {
            out.raw(", ");
        }
        first = false;
        out.key(name);
        out.num(value);
    }
    out.raw('}');
}

// A path list element: a string, or {"path_b64": "..."} for bytes that are not UTF-8.
void write_path_element(JsonText& out, std::string_view p) {
    if (is_valid_utf8(p)) {
        out.str(p);
    } else {
        out.raw('{');
        out.bytes_field("path", p);
        out.raw('}');
    }
}

// `m` must have passed validate_manifest().
void write_manifest_text(const Manifest& m, JsonText& out) {
    const auto line = [&](std::string_view k) {
        out.raw(",\n  ");
        out.key(k);
    };
    out.raw("{\n  ");
    out.key("format");
    out.str(kManifestFormat);
    line("version");
    out.num(kManifestVersion);
    line("archive");
    out.str(m.archive);
    line("archive_size");
    out.num(m.archive_size);
    line("archive_sha256");
    out.hex(m.archive_sha256);
    line("created_at");
    out.str(m.created_at);
    out.raw(",\n  ");
    out.bytes_field("host", m.host);
    line("tool");
    out.raw('{');
    out.key("name");
    out.str(m.tool.name);
    out.raw(", ");
    out.key("version");
    out.str(m.tool.version);
    out.raw('}');
    out.raw(",\n  ");
    out.bytes_field("source", m.source);
    out.raw(",\n  ");
    out.bytes_field("root", m.root);
    line("compression");
    out.raw('{');
    out.key("codec");
    out.str(m.compression.codec);
    out.raw(", ");
    out.key("level");
    out.num(m.compression.level);
    out.raw('}');
    if (m.encryption) {
        line("encryption");
        out.raw('{');
        out.key("format");
        out.str(m.encryption->format);
        out.raw(", ");
        out.key("recipients");
        out.raw('[');
        for (std::size_t i = 0; i < m.encryption->recipients.size(); ++i) {
            if (i > 0) {
                out.raw(", ");
            }
            out.str(m.encryption->recipients[i]);
        }
        out.raw("], ");
        out.key("passphrase");
        out.raw(m.encryption->passphrase ? "true" : "false");
        out.raw('}');
    }
    line("kind");
    out.str(to_string(m.kind));
    line("parent");
    write_optional_string(out, m.parent);
    line("verified_at");
    write_optional_string(out, m.verified_at);
    line("totals");
    write_totals(out, compute_totals(m.entries));
    line("changed_during_backup");
    out.raw('[');
    for (std::size_t i = 0; i < m.changed_during_backup.size(); ++i) {
        if (i > 0) {
            out.raw(", ");
        }
        write_path_element(out, m.changed_during_backup[i]);
    }
    out.raw(']');
    line("depends_on");
    out.raw('[');
    {
        const auto deps = compute_depends_on(m);
        for (std::size_t i = 0; i < deps.size(); ++i) {
            if (i > 0) {
                out.raw(", ");
            }
            out.str(deps[i]);
        }
    }
    out.raw(']');
    line("entries");
    if (m.entries.empty()) {
        out.raw("[]");
    } else {
        out.raw("[\n    ");
        for (std::size_t i = 0; i < m.entries.size(); ++i) {
            if (i > 0) {
                out.raw(",\n    ");
            }
            write_entry(out, m.entries[i]);
        }
        out.raw("\n  ]");
    }
    out.raw("\n}\n");
    out.flush();
}

// ---------------------------------------------------------------------------------------------
// DOM output

void put_bytes(json& obj, const std::string& key, const std::string& value) {
    if (is_valid_utf8(value)) {
        obj[key] = value;
    } else {
        obj[key + "_b64"] = base64_encode(value);
    }
}

json optional_json(const std::optional<std::string>& s) {
    return s ? json(*s) : json(nullptr);
}

json totals_json(const Manifest::Totals& t) {
    return json{{"files", t.files},
                {"dirs", t.dirs},
                {"symlinks", t.symlinks},
                {"hardlinks", t.hardlinks},
                {"bytes", t.bytes},
                {"stored_files", t.stored_files},
                {"stored_bytes", t.stored_bytes}};
}

json entry_json(const ManifestEntry& e) {
    json j = json::object();
    put_bytes(j, "path", e.path);
    j["type"] = to_string(e.type);
    if (e.type == EntryType::kFile) {
        j["size"] = e.size;
        std::string hex = e.sha256;
        lower_hex(hex);
        j["sha256"] = hex;
        j["sparse"] = e.sparse;
        j["stored_in"] = optional_json(e.stored_in);
    }
    if (e.type == EntryType::kSymlink || e.type == EntryType::kHardlink) {
        put_bytes(j, "target", e.target);
    }
    j["mode"] = e.mode;
    j["uid"] = e.uid;
    j["gid"] = e.gid;
    put_bytes(j, "user", e.user);
    put_bytes(j, "group", e.group);
    j["mtime_ns"] = e.mtime_ns;
    j["dev"] = e.dev;
    j["ino"] = e.ino;
    return j;
}

// ---------------------------------------------------------------------------------------------
// Reading: one scalar from either the DOM or the SAX parser

struct Value {
    enum class Kind { kNull, kBool, kInt, kUint, kFloat, kString, kNested };
    Kind kind = Kind::kNull;
    bool b = false;
    std::int64_t i = 0;
    std::uint64_t u = 0;
    const std::string* s = nullptr;  // kString
};

const char* kind_name(Value::Kind k) {
    switch (k) {
        case Value::Kind::kNull:
            return "null";
        case Value::Kind::kBool:
            return "a boolean";
        case Value::Kind::kInt:
            return "a negative integer";
        case Value::Kind::kUint:
            return "an integer";
        case Value::Kind::kFloat:
            return "a floating-point number";
        case Value::Kind::kString:
            return "a string";
        case Value::Kind::kNested:
            return "an object or array";
    }
    return "?";
}

// `v` must outlive the result, which may point at its string.
Value value_of(const json& v) {
    Value out;
    switch (v.type()) {
        case json::value_t::null:
            out.kind = Value::Kind::kNull;
            break;
        case json::value_t::boolean:
            out.kind = Value::Kind::kBool;
            out.b = v.get<bool>();
            break;
        case json::value_t::number_integer:
            // A DOM built in code holds json(1) as a signed integer; only the parser sorts
            // non-negative numbers into number_unsigned.
            out.i = v.get<std::int64_t>();
            if (out.i >= 0) {
                out.kind = Value::Kind::kUint;
                out.u = static_cast<std::uint64_t>(out.i);
            } else {
                out.kind = Value::Kind::kInt;
            }
            break;
        case json::value_t::number_unsigned:
            out.kind = Value::Kind::kUint;
            out.u = v.get<std::uint64_t>();
            break;
        case json::value_t::number_float:
            out.kind = Value::Kind::kFloat;
            break;
        case json::value_t::string:
            out.kind = Value::Kind::kString;
            out.s = &v.get_ref<const std::string&>();
            break;
        default:
            out.kind = Value::Kind::kNested;
            break;
    }
    return out;
}

// Names a field in error messages. An entry field's name is only formatted when an error is
// reported: building "entries[123456].size" for every value would cost more than parsing it.
class Where {
  public:
    // Implicit, so that header fields can pass their plain names.
    Where(const char* what) : text_(what) {}
    Where(const std::string& what) : text_(what) {}
    Where(std::size_t index, std::string_view key) : index_(index), key_(key), entry_(true) {}

    std::string str() const { return entry_ ? entry_what(index_, key_) : std::string(text_); }

  private:
    std::string_view text_;
    std::size_t index_ = 0;
    std::string_view key_;
    bool entry_ = false;
};

[[noreturn]] void wrong_type(const Where& what, const char* expected, const Value& v) {
    fail(what.str(), std::string("must be ") + expected + ", got " + kind_name(v.kind));
}

// Copies rather than moves: in the SAX reader *v.s is the lexer's token buffer, and taking it
// would make the lexer regrow a fresh buffer for every later string.
std::string take_string(const Where& what, const Value& v) {
    if (v.kind != Value::Kind::kString) {
        wrong_type(what, "a string", v);
    }
    return *v.s;
}

std::string take_base64(const Where& what, const Value& v) {
    std::string text = take_string(what, v);
    auto bytes = base64_decode(text);
    if (!bytes) {
        fail(what.str(), "is not valid base64: " + quote_value(text));
    }
    return std::move(*bytes);
}

std::uint64_t take_uint(const Where& what, const Value& v,
                        std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) {
    if (v.kind != Value::Kind::kUint) {
        wrong_type(what, "a non-negative integer", v);
    }
    if (v.u > max) {
        fail(what.str(), std::to_string(v.u) + " is larger than " + std::to_string(max));
    }
    return v.u;
}

std::int64_t take_int(const Where& what, const Value& v, std::int64_t min, std::int64_t max) {
    std::int64_t x = 0;
    if (v.kind == Value::Kind::kInt) {
        x = v.i;
    } else if (v.kind == Value::Kind::kUint) {
        if (v.u > static_cast<std::uint64_t>(max)) {
            fail(what.str(), std::to_string(v.u) + " is out of range");
        }
        x = static_cast<std::int64_t>(v.u);
    } else {
        wrong_type(what, "an integer", v);
    }
    if (x < min || x > max) {
        fail(what.str(), std::to_string(x) + " is out of range");
    }
    return x;
}

bool take_bool(const Where& what, const Value& v) {
    if (v.kind != Value::Kind::kBool) {
        wrong_type(what, "true or false", v);
    }
    return v.b;
}

// Collects the fields of one entry in any order; finish() checks that the required ones came.
// Shared by the DOM and the SAX readers so both accept exactly the same documents.
class EntryBuilder {
  public:
    void begin(std::size_t index) {
        index_ = index;
        seen_ = 0;
        entry_ = ManifestEntry{};
    }

    void field(std::string_view key, const Value& v) {
        const Field f = lookup(key);
        if (f == Field::kUnknown || v.kind == Value::Kind::kNull) {
            return;  // unknown: forward compatibility; null: the same as a missing field
        }
        const Where where(index_, key);
        seen_ |= bit(f);
        switch (f) {
            case Field::kPath:
                entry_.path = take_string(where, v);
                break;
            case Field::kPathB64:
                entry_.path = take_base64(where, v);
                break;
            case Field::kType: {
                const std::string text = take_string(where, v);
                const auto type = parse_entry_type(text);
                if (!type) {
                    fail(where.str(), "unknown type " + quote_value(text) +
                                          " (expected file, dir, symlink or hardlink)");
                }
                entry_.type = *type;
                break;
            }
            case Field::kSize:
                entry_.size = take_uint(where, v);
                break;
            case Field::kSha256:
                entry_.sha256 = take_string(where, v);
                lower_hex(entry_.sha256);
                break;
            case Field::kMode:
                entry_.mode = static_cast<std::uint32_t>(take_uint(where, v, 0xFFFFFFFFu));
                break;
            case Field::kUid:
                entry_.uid = static_cast<std::uint32_t>(take_uint(where, v, 0xFFFFFFFFu));
                break;
            case Field::kGid:
                entry_.gid = static_cast<std::uint32_t>(take_uint(where, v, 0xFFFFFFFFu));
                break;
            case Field::kUser:
                entry_.user = take_string(where, v);
                break;
            case Field::kUserB64:
                entry_.user = take_base64(where, v);
                break;
            case Field::kGroup:
                entry_.group = take_string(where, v);
                break;
            case Field::kGroupB64:
                entry_.group = take_base64(where, v);
                break;
            case Field::kMtimeNs:
                entry_.mtime_ns = take_int(where, v, std::numeric_limits<std::int64_t>::min(),
                                           std::numeric_limits<std::int64_t>::max());
                break;
            case Field::kDev:
                entry_.dev = take_uint(where, v);
                break;
            case Field::kIno:
                entry_.ino = take_uint(where, v);
                break;
            case Field::kTarget:
                entry_.target = take_string(where, v);
                break;
            case Field::kTargetB64:
                entry_.target = take_base64(where, v);
                break;
            case Field::kSparse:
                entry_.sparse = take_bool(where, v);
                break;
            case Field::kStoredIn:
                entry_.stored_in = take_string(where, v);
                break;
            case Field::kUnknown:
                break;
        }
    }

    bool is_known(std::string_view key) const { return lookup(key) != Field::kUnknown; }

    ManifestEntry finish() {
        both(Field::kPath, Field::kPathB64, "path");
        both(Field::kTarget, Field::kTargetB64, "target");
        both(Field::kUser, Field::kUserB64, "user");
        both(Field::kGroup, Field::kGroupB64, "group");
        if (!has(Field::kPath) && !has(Field::kPathB64)) {
            fail(entry_what(index_, "path"), "missing");
        }
        require(Field::kType, "type");
        require(Field::kMode, "mode");
        require(Field::kUid, "uid");
        require(Field::kGid, "gid");
        require(Field::kMtimeNs, "mtime_ns");
        if (entry_.type == EntryType::kFile) {
            require(Field::kSize, "size");
            require(Field::kSha256, "sha256");
        }
        if ((entry_.type == EntryType::kSymlink || entry_.type == EntryType::kHardlink) &&
            !has(Field::kTarget) && !has(Field::kTargetB64)) {
            fail(entry_what(index_, "target"), "missing (path " + quote_value(entry_.path) + ")");
        }
        return std::move(entry_);
    }

  private:
    enum class Field {
        kPath,
        kPathB64,
        kType,
        kSize,
        kSha256,
        kMode,
        kUid,
        kGid,
        kUser,
        kUserB64,
        kGroup,
        kGroupB64,
        kMtimeNs,
        kDev,
        kIno,
        kTarget,
        kTargetB64,
        kSparse,
        kStoredIn,
        kUnknown,
    };

    static Field lookup(std::string_view key) {
        static constexpr std::pair<std::string_view, Field> kFields[] = {
            {"path", Field::kPath},
            {"type", Field::kType},
            {"size", Field::kSize},
            {"sha256", Field::kSha256},
            {"mode", Field::kMode},
            {"uid", Field::kUid},
            {"gid", Field::kGid},
            {"user", Field::kUser},
            {"group", Field::kGroup},
            {"mtime_ns", Field::kMtimeNs},
            {"dev", Field::kDev},
            {"ino", Field::kIno},
            {"target", Field::kTarget},
            {"sparse", Field::kSparse},
            {"stored_in", Field::kStoredIn},
            {"path_b64", Field::kPathB64},
            {"target_b64", Field::kTargetB64},
            {"user_b64", Field::kUserB64},
            {"group_b64", Field::kGroupB64},
        };
        for (const auto& [name, f] : kFields) {
            if (name == key) {
                return f;
            }
        }
        return Field::kUnknown;
    }

    static std::uint32_t bit(Field f) { return 1u << static_cast<unsigned>(f); }
    bool has(Field f) const { return (seen_ & bit(f)) != 0; }

    void require(Field f, std::string_view name) {
        if (!has(f)) {
            std::string problem = "missing";
            if (has(Field::kPath) || has(Field::kPathB64)) {
                problem += " (path " + quote_value(entry_.path) + ")";
            }
            fail(entry_what(index_, name), problem);
        }
    }

    void both(Field plain, Field b64, std::string_view name) {
        if (has(plain) && has(b64)) {
            fail(entry_what(index_, name), "both \"" + std::string(name) + "\" and \"" +
                                               std::string(name) + "_b64\" are present");
        }
    }

    std::size_t index_ = 0;
    std::uint32_t seen_ = 0;
    ManifestEntry entry_;
};

ManifestEntry entry_from_json(const json& j, std::size_t index, EntryBuilder& builder) {
    if (!j.is_object()) {
        fail(entry_what(index, ""), "must be an object");
    }
    builder.begin(index);
    for (const auto& [key, value] : j.items()) {
        if (value.is_structured() && !builder.is_known(key)) {
            continue;
        }
        Value v = value_of(value);
        builder.field(key, v);
    }
    return builder.finish();
}

// ---------------------------------------------------------------------------------------------
// Reading the header (everything but "entries") from a DOM

const json* member(const json& obj, const char* key) {
    const auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
}

std::string req_string(const json& obj, const char* key, const std::string& what) {
    const json* j = member(obj, key);
    if (!j) {
        fail(what, "missing");
    }
    Value v = value_of(*j);
    return take_string(what, v);
}

// Optional: a missing key and null both give nullopt.
std::optional<std::string> opt_string(const json& obj, const char* key, const std::string& what) {
    const json* j = member(obj, key);
    if (!j || j->is_null()) {
        return std::nullopt;
    }
    Value v = value_of(*j);
    return take_string(what, v);
}

// "<key>" or "<key>_b64"; nullopt when neither is there. `where` prefixes error names.
std::optional<std::string> opt_bytes(const json& obj, const std::string& key,
                                     const std::string& where = "") {
    const json* plain = member(obj, key.c_str());
    const std::string b64_key = key + "_b64";
    const json* b64 = member(obj, b64_key.c_str());
    if (plain && !plain->is_null() && b64 && !b64->is_null()) {
        fail(where + key, "both \"" + key + "\" and \"" + b64_key + "\" are present");
    }
    if (b64 && !b64->is_null()) {
        return take_base64(where + b64_key, value_of(*b64));
    }
    if (plain && !plain->is_null()) {
        return take_string(where + key, value_of(*plain));
    }
    return std::nullopt;
}

std::string req_bytes(const json& obj, const std::string& key) {
    auto s = opt_bytes(obj, key);
    if (!s) {
        fail(key, "missing");
    }
    return std::move(*s);
}

std::uint64_t req_uint(const json& obj, const char* key, const std::string& what) {
    const json* j = member(obj, key);
    if (!j) {
        fail(what, "missing");
    }
    return take_uint(what, value_of(*j));
}

const json* opt_object(const json& obj, const char* key) {
    const json* j = member(obj, key);
    if (!j || j->is_null()) {
        return nullptr;
    }
    if (!j->is_object()) {
        wrong_type(key, "an object", value_of(*j));
    }
    return j;
}

// First, so that a newer or foreign document is reported as such and not as a missing field.
void check_format_and_version(const json& j) {
    if (!j.is_object()) {
        fail("document", "must be a JSON object");
    }
    const json* format = member(j, "format");
    if (!format) {
        fail("format", "missing (is this an mlkeeper backup manifest?)");
    }
    Value fv = value_of(*format);
    const std::string text = take_string("format", fv);
    if (text != kManifestFormat) {
        fail("format",
             "expected \"" + std::string(kManifestFormat) + "\", got " + quote_value(text));
    }
    const json* version = member(j, "version");
    if (!version) {
        fail("version", "missing");
    }
    const std::int64_t v =
        take_int("version", value_of(*version), std::numeric_limits<std::int64_t>::min(),
                 std::numeric_limits<std::int64_t>::max());
    if (v > kManifestVersion) {
        fail("version", std::to_string(v) + " is newer than this mlkeeper reads (" +
                            std::to_string(kManifestVersion) + "); use a newer mlkeeper");
    }
    if (v < 1) {
        fail("version", "must be at least 1, got " + std::to_string(v));
    }
}

void read_header(const json& j, Manifest& m) {
    m.archive = req_string(j, "archive", "archive");
    m.archive_size = req_uint(j, "archive_size", "archive_size");
    m.archive_sha256 = req_string(j, "archive_sha256", "archive_sha256");
    lower_hex(m.archive_sha256);
    m.created_at = req_string(j, "created_at", "created_at");
    m.host = opt_bytes(j, "host").value_or("");
    if (const json* tool = opt_object(j, "tool")) {
        m.tool.name = opt_string(*tool, "name", "tool.name").value_or("");
        m.tool.version = opt_string(*tool, "version", "tool.version").value_or("");
    } else {
        m.tool = Manifest::Tool{"", ""};
    }
    m.source = req_bytes(j, "source");
    m.root = req_bytes(j, "root");
    if (const json* c = opt_object(j, "compression")) {
        m.compression.codec = opt_string(*c, "codec", "compression.codec").value_or("");
        if (const json* level = member(*c, "level"); level && !level->is_null()) {
            m.compression.level = static_cast<int>(take_int("compression.level", value_of(*level),
                                                            std::numeric_limits<int>::min(),
                                                            std::numeric_limits<int>::max()));
        }
    }
    if (const json* e = opt_object(j, "encryption")) {
        Manifest::Encryption enc;
        enc.format = opt_string(*e, "format", "encryption.format").value_or("");
        if (const json* r = member(*e, "recipients"); r && !r->is_null()) {
            if (!r->is_array()) {
                wrong_type("encryption.recipients", "an array", value_of(*r));
            }
            for (const auto& item : *r) {
                if (!item.is_string()) {
                    wrong_type("encryption.recipients", "strings", value_of(item));
                }
                enc.recipients.push_back(item.get<std::string>());
            }
        }
        if (const json* pp = member(*e, "passphrase"); pp && !pp->is_null()) {
            if (!pp->is_boolean()) {
                wrong_type("encryption.passphrase", "a boolean", value_of(*pp));
            }
            enc.passphrase = pp->get<bool>();
        }
        m.encryption = std::move(enc);
    }
    const std::string kind = req_string(j, "kind", "kind");
    const auto parsed_kind = parse_backup_kind(kind);
    if (!parsed_kind) {
        fail("kind", "unknown kind " + quote_value(kind) + " (expected full or incremental)");
    }
    m.kind = *parsed_kind;
    m.parent = opt_string(j, "parent", "parent");
    m.verified_at = opt_string(j, "verified_at", "verified_at");
    if (const json* changed = member(j, "changed_during_backup"); changed && !changed->is_null()) {
        if (!changed->is_array()) {
            wrong_type("changed_during_backup", "an array", value_of(*changed));
        }
        m.changed_during_backup.reserve(changed->size());
        for (std::size_t i = 0; i < changed->size(); ++i) {
            const json& item = (*changed)[i];
            const std::string what = "changed_during_backup[" + std::to_string(i) + "]";
            if (item.is_string()) {
                m.changed_during_backup.push_back(item.get<std::string>());
            } else if (item.is_object()) {
                auto p = opt_bytes(item, "path", what + ".");
                if (!p) {
                    fail(what, "an object element needs \"path\" or \"path_b64\"");
                }
                m.changed_during_backup.push_back(std::move(*p));
            } else {
                wrong_type(what, "a string or an object", value_of(item));
            }
        }
    }
}

// Stored totals are redundant; a mismatch means the file was edited or damaged.
// Header-only reads: the stored totals and dependencies as written (their
// agreement with the entries is checked by every full read).
// Whether every header field came before "entries", as our writer puts them:
// a manifest rewritten with its keys in another order (jq -S) may have
// optional fields such as verified_at after the entries.
bool header_complete(const json& j) {
    static constexpr std::array<const char*, 14> kHeaderKeys = {"format",
                                                                "version",
                                                                "archive",
                                                                "archive_size",
                                                                "archive_sha256",
                                                                "created_at",
                                                                "tool",
                                                                "compression",
                                                                "kind",
                                                                "parent",
                                                                "verified_at",
                                                                "totals",
                                                                "changed_during_backup",
                                                                "depends_on"};
    for (const char* k : kHeaderKeys) {
        if (member(j, k) == nullptr) {
            return false;
        }
    }
    for (std::string k : {"host", "source", "root"}) {
        if (member(j, k.c_str()) == nullptr && member(j, (k + "_b64").c_str()) == nullptr) {
            return false;
        }
    }
    return true;
}

bool read_header_summary(const json& j, Manifest& m) {
    const json* deps = member(j, "depends_on");
    const json* t = opt_object(j, "totals");
    if (deps == nullptr || !deps->is_array() || t == nullptr) {
        return false;  // written before depends_on existed: the caller reads the entries
    }
    for (const auto& d : *deps) {
        if (!d.is_string()) {
            return false;
        }
        m.depends_on.push_back(d.get<std::string>());
    }
    m.totals.files = req_uint(*t, "files", "totals.files");
    m.totals.dirs = req_uint(*t, "dirs", "totals.dirs");
    m.totals.symlinks = req_uint(*t, "symlinks", "totals.symlinks");
    m.totals.hardlinks = req_uint(*t, "hardlinks", "totals.hardlinks");
    m.totals.bytes = req_uint(*t, "bytes", "totals.bytes");
    m.totals.stored_files = req_uint(*t, "stored_files", "totals.stored_files");
    m.totals.stored_bytes = req_uint(*t, "stored_bytes", "totals.stored_bytes");
    return true;
}

void check_depends_on(const json& j, Manifest& m) {
    m.depends_on = compute_depends_on(m);
    const json* deps = member(j, "depends_on");
    if (deps == nullptr) {
        return;  // optional: manifests of earlier versions lack it
    }
    if (!deps->is_array()) {
        wrong_type("depends_on", "an array", value_of(*deps));
    }
    std::vector<std::string> stored;
    for (const auto& d : *deps) {
        if (!d.is_string()) {
            fail("depends_on", "must hold archive names");
        }
        stored.push_back(d.get<std::string>());
    }
    if (stored != m.depends_on) {
        fail("depends_on",
             "does not match the parent and the entries' stored_in; the manifest "
             "was changed or damaged");
    }
}

void check_totals(const json& j, Manifest& m) {
    m.totals = compute_totals(m.entries);
    const json* t = opt_object(j, "totals");
    if (!t) {
        return;
    }
    const std::pair<const char*, std::uint64_t> fields[] = {
        {"files", m.totals.files},
        {"dirs", m.totals.dirs},
        {"symlinks", m.totals.symlinks},
        {"hardlinks", m.totals.hardlinks},
        {"bytes", m.totals.bytes},
        {"stored_files", m.totals.stored_files},
        {"stored_bytes", m.totals.stored_bytes},
    };
    for (const auto& [name, counted] : fields) {
        const std::string what = std::string("totals.") + name;
        const std::uint64_t stored = req_uint(*t, name, what);
        if (stored != counted) {
            fail(what, std::to_string(stored) + " does not match the entries (" +
                           std::to_string(counted) + "); the manifest was changed or damaged");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming reader

// Builds a small DOM for the header and turns "entries" straight into ManifestEntry values, so
// a large manifest never exists as a DOM. Errors inside entries are remembered and reading
// goes on, so that a wrong format or version (reported first) wins over an entry error.
class ManifestSax : public nlohmann::json_sax<json> {
  public:
    json header;
    std::vector<ManifestEntry> entries;
    bool entries_seen = false;
    std::optional<std::string> syntax_error;
    std::optional<std::string> entries_error;
    bool header_only = false;  // stop at the "entries" key
    bool stopped_at_entries = false;

    bool null() override {
        return scalar(json(nullptr), [] { return Value{}; });
    }
    bool boolean(bool val) override {
        return scalar(json(val), [&] {
            Value v;
            v.kind = Value::Kind::kBool;
            v.b = val;
            return v;
        });
    }
    bool number_integer(number_integer_t val) override {
        return scalar(json(val), [&] {
            Value v;
            v.kind = val >= 0 ? Value::Kind::kUint : Value::Kind::kInt;
            v.i = val;
            v.u = static_cast<std::uint64_t>(val);
            return v;
        });
    }
    bool number_unsigned(number_unsigned_t val) override {
        return scalar(json(val), [&] {
            Value v;
            v.kind = Value::Kind::kUint;
            v.u = val;
            return v;
        });
    }
    bool number_float(number_float_t val, const string_t& /*text*/) override {
        return scalar(json(val), [] {
            Value v;
            v.kind = Value::Kind::kFloat;
            return v;
        });
    }
    bool string(string_t& val) override {
        if (mode_ == Mode::kHeader) {
            add(json(std::move(val)));
            return true;
        }
        return scalar(json(), [&] {
            Value v;
            v.kind = Value::Kind::kString;
            v.s = &val;
            return v;
        });
    }
    bool binary(binary_t& /*val*/) override {
        return scalar(json(nullptr), [] { return Value{}; });
    }

    bool start_object(std::size_t /*elements*/) override {
        ++depth_;
        switch (mode_) {
            case Mode::kHeader:
                dom_stack_.push_back(add(json::object()));
                break;
            case Mode::kEntries:
                builder_.begin(entry_index_);
                mode_ = Mode::kEntry;
                break;
            case Mode::kEntry:
                nested();
                break;
            case Mode::kSkip:
                break;
        }
        return true;
    }
    bool end_object() override {
        --depth_;
        switch (mode_) {
            case Mode::kHeader:
                dom_stack_.pop_back();
                break;
            case Mode::kEntry:
                try {
                    entries.push_back(builder_.finish());
                    ++entry_index_;
                    mode_ = Mode::kEntries;
                } catch (const ManifestError& e) {
                    stop(e.what());
                }
                break;
            case Mode::kEntries:
                break;  // unreachable: objects are entered through kEntry
            case Mode::kSkip:
                leave_skip();
                break;
        }
        return true;
    }
    bool start_array(std::size_t /*elements*/) override {
        ++depth_;
        switch (mode_) {
            case Mode::kHeader:
                if (pending_entries_) {
                    pending_entries_ = false;
                    entries_seen = true;
                    mode_ = Mode::kEntries;
                } else {
                    dom_stack_.push_back(add(json::array()));
                }
                break;
            case Mode::kEntries:
                stop("manifest " + entry_what(entry_index_, "") + ": must be an object");
                break;
            case Mode::kEntry:
                nested();
                break;
            case Mode::kSkip:
                break;
        }
        return true;
    }
    bool end_array() override {
        --depth_;
        switch (mode_) {
            case Mode::kHeader:
                dom_stack_.pop_back();
                break;
            case Mode::kEntries:
                mode_ = Mode::kHeader;
                break;
            case Mode::kEntry:
                break;  // unreachable
            case Mode::kSkip:
                leave_skip();
                break;
        }
        return true;
    }
    bool key(string_t& val) override {
        if (mode_ == Mode::kHeader) {
            if (depth_ == 1 && val == "entries" && header_only) {
                stopped_at_entries = true;
                return false;  // ends the parse here: the entries are not needed
            }
            if (depth_ == 1 && val == "entries") {
                if (entries_key_seen_) {
                    stop("manifest entries: appears more than once");  // skips its value
                    return true;
                }
                entries_key_seen_ = true;
                pending_entries_ = true;
            } else {
                pending_entries_ = false;
            }
            key_ = std::move(val);
        } else if (mode_ == Mode::kEntry) {
            key_.assign(val);  // keeps the lexer's buffer (see take_string)
        }
        return true;
    }
    bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                     const nlohmann::detail::exception& ex) override {
        std::string msg = ex.what();
        // "[json.exception.parse_error.101] parse error at line 3, column 1: ..." -> drop the tag.
        if (const auto close = msg.find("] ");
            msg.rfind("[json.exception.", 0) == 0 && close != std::string::npos) {
            msg.erase(0, close + 2);
        }
        syntax_error = std::move(msg);
        return false;
    }

  private:
    // kHeader: building the DOM. kEntries: directly inside the "entries" array. kEntry: inside
    // one entry object. kSkip: ignoring a nested value (unknown entry field) or, after an
    // error, the rest of "entries"; we return to the previous mode at skip_depth_.
    enum class Mode { kHeader, kEntries, kEntry, kSkip };

    template <typename MakeValue>
    bool scalar(json dom_value, MakeValue make_value) {
        switch (mode_) {
            case Mode::kHeader:
                add(std::move(dom_value));
                break;
            case Mode::kEntries:
                stop("manifest " + entry_what(entry_index_, "") + ": must be an object");
                // A scalar has no depth to wait for: skip to the end of "entries".
                break;
            case Mode::kEntry:
                try {
                    Value v = make_value();
                    builder_.field(key_, v);
                } catch (const ManifestError& e) {
                    stop(e.what());
                }
                break;
            case Mode::kSkip:
                // Only a skipped value that is itself a scalar (the value of a duplicate
                // "entries" key) ends at the depth we wait for.
                if (depth_ == skip_depth_) {
                    mode_ = resume_;
                }
                break;
        }
        return true;
    }

    // An object or array as an entry field's value: fine for unknown fields, an error for ours.
    void nested() {
        if (builder_.is_known(key_)) {
            Value v;
            v.kind = Value::Kind::kNested;
            try {
                builder_.field(key_, v);
            } catch (const ManifestError& e) {
                stop(e.what());
                return;
            }
        }
        resume_ = Mode::kEntry;
        skip_depth_ = depth_ - 1;
        mode_ = Mode::kSkip;
    }

    // Records the first entry error and skips the rest of the "entries" array (depth 1 is the
    // top-level object), or of a duplicate "entries" value.
    void stop(const std::string& message) {
        if (!entries_error) {
            entries_error = message;
        }
        resume_ = Mode::kHeader;
        skip_depth_ = 1;
        mode_ = Mode::kSkip;
    }

    void leave_skip() {
        if (depth_ == skip_depth_) {
            mode_ = resume_;
        }
    }

    json* add(json&& v) {
        if (dom_stack_.empty()) {
            header = std::move(v);
            return &header;
        }
        json& top = *dom_stack_.back();
        if (top.is_object()) {
            json& slot = top[key_];
            slot = std::move(v);
            return &slot;
        }
        top.push_back(std::move(v));
        return &top.back();
    }

    Mode mode_ = Mode::kHeader;
    Mode resume_ = Mode::kHeader;
    std::size_t depth_ = 0;
    std::size_t skip_depth_ = 0;
    bool pending_entries_ = false;
    bool entries_key_seen_ = false;
    std::string key_;
    std::vector<json*> dom_stack_;
    EntryBuilder builder_;
    std::size_t entry_index_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public functions

std::string_view to_string(EntryType type) {
    switch (type) {
        case EntryType::kFile:
            return "file";
        case EntryType::kDir:
            return "dir";
        case EntryType::kSymlink:
            return "symlink";
        case EntryType::kHardlink:
            return "hardlink";
    }
    return "?";
}

std::string_view to_string(BackupKind kind) {
    switch (kind) {
        case BackupKind::kFull:
            return "full";
        case BackupKind::kIncremental:
            return "incremental";
    }
    return "?";
}

std::optional<EntryType> parse_entry_type(std::string_view text) {
    if (text == "file") {
        return EntryType::kFile;
    }
    if (text == "dir") {
        return EntryType::kDir;
    }
    if (text == "symlink") {
        return EntryType::kSymlink;
    }
    if (text == "hardlink") {
        return EntryType::kHardlink;
    }
    return std::nullopt;
}

std::optional<BackupKind> parse_backup_kind(std::string_view text) {
    if (text == "full") {
        return BackupKind::kFull;
    }
    if (text == "incremental") {
        return BackupKind::kIncremental;
    }
    return std::nullopt;
}

std::vector<std::string> compute_depends_on(const Manifest& m) {
    std::set<std::string> deps;
    if (m.parent) {
        deps.insert(*m.parent);
    }
    for (const auto& e : m.entries) {
        if (e.stored_in) {
            deps.insert(*e.stored_in);
        }
    }
    return {deps.begin(), deps.end()};
}

Manifest::Totals compute_totals(const std::vector<ManifestEntry>& entries) {
    Manifest::Totals t;
    for (const ManifestEntry& e : entries) {
        switch (e.type) {
            case EntryType::kFile:
                ++t.files;
                t.bytes += e.size;
                if (!e.stored_in) {
                    ++t.stored_files;
                    t.stored_bytes += e.size;
                }
                break;
            case EntryType::kDir:
                ++t.dirs;
                break;
            case EntryType::kSymlink:
                ++t.symlinks;
                break;
            case EntryType::kHardlink:
                ++t.hardlinks;
                break;
        }
    }
    return t;
}

void validate_manifest(const Manifest& m) {
    check_file_name("archive", m.archive);
    if (!is_sha256_hex(m.archive_sha256)) {
        fail("archive_sha256", "must be 64 hex digits, got " + quote_value(m.archive_sha256));
    }
    check_not_empty("created_at", m.created_at);
    check_utf8("created_at", m.created_at);
    check_utf8("tool.name", m.tool.name);
    check_utf8("tool.version", m.tool.version);
    check_utf8("compression.codec", m.compression.codec);
    check_not_empty("source", m.source);
    if (m.source.find('\0') != std::string::npos) {
        fail("source", "contains a NUL byte");
    }
    if (auto problem = relative_path_problem(m.root)) {
        fail("root", quote_value(m.root) + " " + *problem);
    }
    if (m.root.find('/') != std::string::npos) {
        fail("root", quote_value(m.root) + " must be a single name, not a path");
    }
    if (m.encryption) {
        if (m.encryption->format != "age-v1") {
            fail("encryption.format",
                 "unknown format " + quote_value(m.encryption->format) + " (expected age-v1)");
        }
        if (m.encryption->recipients.empty() && !m.encryption->passphrase) {
            fail("encryption", "an encrypted archive needs recipients or a passphrase");
        }
        for (const auto& r : m.encryption->recipients) {
            if (!r.starts_with("age1")) {
                fail("encryption.recipients", quote_value(r) + " is not an age1... public key");
            }
        }
    }
    if (m.kind == BackupKind::kIncremental) {
        if (!m.parent) {
            fail("parent", "an incremental backup needs the file name of its parent archive");
        }
        check_file_name("parent", *m.parent);
        if (*m.parent == m.archive) {
            fail("parent", "an archive cannot be its own parent");
        }
    } else if (m.parent) {
        fail("parent", "must be null for a full backup, got " + quote_value(*m.parent));
    }
    if (m.verified_at) {
        check_not_empty("verified_at", *m.verified_at);
        check_utf8("verified_at", *m.verified_at);
    }
    for (std::size_t i = 0; i < m.changed_during_backup.size(); ++i) {
        check_tree_path([&] { return "changed_during_backup[" + std::to_string(i) + "]"; },
                        m.changed_during_backup[i], m.root);
    }
    for (std::size_t i = 0; i < m.entries.size(); ++i) {
        validate_entry(m, i);
    }
    const ManifestIndex index(m);  // throws on duplicate paths
    for (std::size_t i = 0; i < m.entries.size(); ++i) {
        const ManifestEntry& e = m.entries[i];
        if (e.type != EntryType::kHardlink) {
            continue;
        }
        const ManifestEntry* target = index.find(e.target);
        if (target == nullptr || target->type != EntryType::kFile) {
            fail(entry_what(i, "target"), quote_value(e.target) +
                                              " is not a file in this manifest (path " +
                                              quote_value(e.path) + ")");
        }
    }
}

nlohmann::json to_json(const Manifest& m) {
    validate_manifest(m);
    json j = json::object();
    j["format"] = kManifestFormat;
    j["version"] = kManifestVersion;
    j["archive"] = m.archive;
    j["archive_size"] = m.archive_size;
    std::string hex = m.archive_sha256;
    lower_hex(hex);
    j["archive_sha256"] = hex;
    j["created_at"] = m.created_at;
    put_bytes(j, "host", m.host);
    j["tool"] = json{{"name", m.tool.name}, {"version", m.tool.version}};
    put_bytes(j, "source", m.source);
    put_bytes(j, "root", m.root);
    j["compression"] = json{{"codec", m.compression.codec}, {"level", m.compression.level}};
    if (m.encryption) {
        j["encryption"] = json{{"format", m.encryption->format},
                               {"recipients", m.encryption->recipients},
                               {"passphrase", m.encryption->passphrase}};
    }
    j["kind"] = to_string(m.kind);
    j["parent"] = optional_json(m.parent);
    j["verified_at"] = optional_json(m.verified_at);
    j["totals"] = totals_json(compute_totals(m.entries));
    json changed = json::array();
    for (const std::string& p : m.changed_during_backup) {
        if (is_valid_utf8(p)) {
            changed.push_back(p);
        } else {
            changed.push_back(json{{"path_b64", base64_encode(p)}});
        }
    }
    j["changed_during_backup"] = std::move(changed);
    j["depends_on"] = compute_depends_on(m);
    json entries = json::array();
    for (const ManifestEntry& e : m.entries) {
        entries.push_back(entry_json(e));
    }
    j["entries"] = std::move(entries);
    return j;
}

Manifest manifest_from_json(const nlohmann::json& j) {
    check_format_and_version(j);
    Manifest m;
    read_header(j, m);
    const json* entries = member(j, "entries");
    if (!entries) {
        fail("entries", "missing");
    }
    if (!entries->is_array()) {
        wrong_type("entries", "an array", value_of(*entries));
    }
    m.entries.reserve(entries->size());
    EntryBuilder builder;
    for (std::size_t i = 0; i < entries->size(); ++i) {
        m.entries.push_back(entry_from_json((*entries)[i], i, builder));
    }
    check_totals(j, m);
    validate_manifest(m);
    check_depends_on(j, m);
    return m;
}

std::string serialize_manifest(const Manifest& m) {
    validate_manifest(m);
    JsonText out(4096 + m.entries.size() * 320);  // a typical entry line is 250-350 bytes
    write_manifest_text(m, out);
    return out.take();
}

Manifest parse_manifest(std::string_view text) {
    ManifestSax sax;
    json::sax_parse(text.begin(), text.end(), &sax, json::input_format_t::json, true);
    if (sax.syntax_error) {
        fail("document", "invalid JSON: " + *sax.syntax_error);
    }
    check_format_and_version(sax.header);
    if (sax.entries_error) {
        throw ManifestError(*sax.entries_error);
    }
    Manifest m;
    read_header(sax.header, m);
    if (!sax.entries_seen) {
        const json* entries = member(sax.header, "entries");
        if (!entries) {
            fail("entries", "missing");
        }
        wrong_type("entries", "an array", value_of(*entries));
    }
    m.entries = std::move(sax.entries);
    check_totals(sax.header, m);
    validate_manifest(m);
    check_depends_on(sax.header, m);
    return m;
}

namespace {

// The header of a manifest laid out as we write it (header fields, then "entries"), from `text`,
// which may be only the start of the file; nullopt when `text` does not hold a whole header.
std::optional<Manifest> header_from_prefix(std::string_view text) {
    ManifestSax sax;
    sax.header_only = true;
    json::sax_parse(text.begin(), text.end(), &sax, json::input_format_t::json, true);
    if (!sax.stopped_at_entries || !header_complete(sax.header)) {
        return std::nullopt;
    }
    check_format_and_version(sax.header);
    Manifest m;
    read_header(sax.header, m);
    if (!read_header_summary(sax.header, m)) {
        return std::nullopt;
    }
    return m;
}

// Enough for any header we write (a few hundred bytes plus depends_on); a longer one is read whole.
constexpr std::size_t kHeaderPrefix = 64 * 1024;

}  // namespace

Manifest parse_manifest_header(std::string_view text) {
    if (auto m = header_from_prefix(text)) {
        return std::move(*m);
    }
    return parse_manifest(text);  // not laid out as we write it: read everything
}

Manifest read_manifest_header(const std::filesystem::path& file, const util::FsOps& ops) {
    try {
        // Listing archives reads every manifest's header: the entries (most of the file, 1.3 MB
        // for 3,000 files) are not read at all.
        std::string text = util::read_file_prefix(file, kHeaderPrefix, ops);
        if (text.size() == kHeaderPrefix) {
            if (auto m = header_from_prefix(text)) {
                return std::move(*m);
            }
            text = util::read_file(file, ops);
        }
        return parse_manifest_header(text);
    } catch (const ManifestError& e) {
        throw ManifestError(file.string() + ": " + e.what());
    }
}

void write_manifest(const std::filesystem::path& file, const Manifest& m, mode_t mode,
                    const util::FsOps& ops, util::Durability durability) {
    validate_manifest(m);  // before the temp file exists, so a bad manifest leaves nothing behind
    util::AtomicFileWriter writer(file, mode, ops, durability);
    JsonText out([&](std::string_view piece) { writer.write(piece); }, std::size_t{1} << 20);
    write_manifest_text(m, out);
    writer.commit();
}

Manifest read_manifest(const std::filesystem::path& file, const util::FsOps& ops) {
    const std::string text = util::read_file(file, ops);
    try {
        return parse_manifest(text);
    } catch (const ManifestError& e) {
        throw ManifestError(file.string() + ": " + e.what());
    }
}

std::filesystem::path manifest_path_for(const std::filesystem::path& archive) {
    std::filesystem::path p = archive;
    p += ".manifest.json";
    return p;
}

ManifestIndex::ManifestIndex(const Manifest& m) {
    by_path_.reserve(m.entries.size());
    for (std::size_t i = 0; i < m.entries.size(); ++i) {
        const ManifestEntry& e = m.entries[i];
        const auto [it, inserted] = by_path_.emplace(e.path, &e);
        if (!inserted) {
            fail(entry_what(i, "path"), "duplicate path " + quote_value(e.path) +
                                            " (also entries[" +
                                            std::to_string(it->second - m.entries.data()) + "])");
        }
    }
}

const ManifestEntry* ManifestIndex::find(std::string_view path) const {
    const auto it = by_path_.find(path);
    return it == by_path_.end() ? nullptr : it->second;
}

}  // namespace mlk::backup
