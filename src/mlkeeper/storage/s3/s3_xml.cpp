#include "mlkeeper/storage/s3/s3_xml.hpp"

#include <charconv>
#include <stdexcept>
#include <system_error>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::storage::s3 {
namespace {

// A malformed document: what is wrong and the byte offset where it was noticed.
struct ParseError {
    std::string what;
    std::size_t offset;
};

struct Node {
    std::string_view qname;  // as written (prefix included), to match the end tag
    std::string_view name;   // local name: namespace prefixes do not matter to us
    std::string text;        // decoded character data directly inside the element
    std::vector<std::size_t> children;
};

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool all_space(std::string_view s) {
    for (char c : s) {
        if (!is_space(c)) {
            return false;
        }
    }
    return true;
}

void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// One pass over the input into a flat node list (children by index), so neither parsing nor
// destruction recurses however deeply a hostile document nests.
class Scanner {
  public:
    explicit Scanner(std::string_view in) : in_(in) {}

    std::vector<Node> run() {
        std::vector<Node> nodes;
        std::vector<std::size_t> open;
        bool root_closed = false;
        while (pos_ < in_.size()) {
            if (in_[pos_] != '<') {
                std::size_t end = in_.find('<', pos_);
                if (end == std::string_view::npos) {
                    end = in_.size();
                }
                const std::string_view raw = in_.substr(pos_, end - pos_);
                if (open.empty()) {
                    if (!all_space(raw)) {
                        fail("text outside the root element");
                    }
                } else {
                    decode_text(nodes[open.back()].text, raw, pos_);
                }
                pos_ = end;
            } else if (at("<?")) {
                skip_past("?>", "processing instruction");
            } else if (at("<!--")) {
                pos_ += 4;
                skip_past("-->", "comment");
            } else if (at("<![CDATA[")) {
                if (open.empty()) {
                    fail("CDATA outside the root element");
                }
                const std::size_t start = pos_ + 9;
                const std::size_t end = in_.find("]]>", start);
                if (end == std::string_view::npos) {
                    fail("unterminated CDATA section");
                }
                nodes[open.back()].text += in_.substr(start, end - start);
                pos_ = end + 3;
            } else if (at("<!")) {
                if (!open.empty()) {
                    fail("declaration inside an element");
                }
                skip_past(">", "declaration");
            } else if (at("</")) {
                const std::size_t tag_start = pos_;
                pos_ += 2;
                const std::string_view qname = read_name();
                skip_space();
                expect('>');
                if (open.empty() || nodes[open.back()].qname != qname) {
                    pos_ = tag_start;
                    fail("end tag does not match the open element");
                }
                open.pop_back();
                root_closed = open.empty();
            } else {
                if (root_closed) {
                    fail("more than one root element");
                }
                ++pos_;
                Node node;
                node.qname = read_name();
                const std::size_t colon = node.qname.rfind(':');
                node.name =
                    colon == std::string_view::npos ? node.qname : node.qname.substr(colon + 1);
                const std::size_t index = nodes.size();
                if (!open.empty()) {
                    nodes[open.back()].children.push_back(index);
                }
                nodes.push_back(std::move(node));
                if (skip_attributes()) {
                    root_closed = open.empty();
                } else {
                    open.push_back(index);
                }
            }
        }
        if (!open.empty()) {
            fail("input ends inside <" + std::string(nodes[open.back()].qname) + "> (truncated?)");
        }
        if (nodes.empty()) {
            fail(in_.empty() ? "empty body" : "no element");
        }
        return nodes;
    }

  private:
    [[noreturn]] void fail(std::string what) const { throw ParseError{std::move(what), pos_}; }

    bool at(std::string_view s) const { return in_.substr(pos_).starts_with(s); }

    void skip_past(std::string_view terminator, const char* what) {
        const std::size_t end = in_.find(terminator, pos_);
        if (end == std::string_view::npos) {
            fail(std::string("unterminated ") + what);
        }
        pos_ = end + terminator.size();
    }

    void skip_space() {
        while (pos_ < in_.size() && is_space(in_[pos_])) {
            ++pos_;
        }
    }

    void expect(char c) {
        if (pos_ >= in_.size()) {
            fail("input ends inside a tag (truncated?)");
        }
        if (in_[pos_] != c) {
            fail(std::string("expected '") + c + "'");
        }
        ++pos_;
    }

    std::string_view read_name() {
        const std::size_t start = pos_;
        while (pos_ < in_.size()) {
            const char c = in_[pos_];
            if (is_space(c) || c == '>' || c == '/' || c == '<' || c == '=' || c == '"' ||
                c == '\'' || c == '&') {
                break;
            }
            ++pos_;
        }
        if (pos_ == start) {
            fail(pos_ >= in_.size() ? "input ends inside a tag (truncated?)"
                                    : "missing element name");
        }
        return in_.substr(start, pos_ - start);
    }

    // Skips to the end of a start tag (attributes do not matter to us, but a quoted value may
    // hold '>'). Returns true for an empty-element tag <x/>.
    bool skip_attributes() {
        while (pos_ < in_.size()) {
            const char c = in_[pos_];
            if (c == '>') {
                ++pos_;
                return false;
            }
            if (c == '/') {
                ++pos_;
                expect('>');
                return true;
            }
            if (c == '"' || c == '\'') {
                const std::size_t end = in_.find(c, pos_ + 1);
                if (end == std::string_view::npos) {
                    fail("unterminated attribute value");
                }
                pos_ = end + 1;
                continue;
            }
            if (c == '<') {
                fail("'<' inside a tag");
            }
            ++pos_;
        }
        fail("input ends inside a tag (truncated?)");
    }

    // Appends `raw` (which starts at byte `base`) with entities decoded and line ends normalised
    // to \n as XML requires.
    void decode_text(std::string& out, std::string_view raw, std::size_t base) {
        std::size_t i = 0;
        while (i < raw.size()) {
            const char c = raw[i];
            if (c == '\r') {
                out += '\n';
                i += (i + 1 < raw.size() && raw[i + 1] == '\n') ? 2 : 1;
                continue;
            }
            if (c != '&') {
                out += c;
                ++i;
                continue;
            }
            constexpr std::size_t kLongestEntity = 10;  // "#x10FFFF" and a little slack
            const std::size_t semi = raw.find(';', i + 1);
            if (semi == std::string_view::npos || semi - i - 1 > kLongestEntity) {
                pos_ = base + i;
                fail("'&' without a complete entity");
            }
            const std::string_view entity = raw.substr(i + 1, semi - i - 1);
            if (entity == "amp") {
                out += '&';
            } else if (entity == "lt") {
                out += '<';
            } else if (entity == "gt") {
                out += '>';
            } else if (entity == "quot") {
                out += '"';
            } else if (entity == "apos") {
                out += '\'';
            } else if (entity.starts_with('#')) {
                append_utf8(out, char_ref(entity.substr(1), base + i));
            } else {
                pos_ = base + i;
                fail("unknown entity");
            }
            i = semi + 1;
        }
    }

    // The code point of "123" or "x1F" (the part after '#').
    std::uint32_t char_ref(std::string_view digits, std::size_t offset) {
        int radix = 10;
        if (!digits.empty() && (digits.front() == 'x' || digits.front() == 'X')) {
            radix = 16;
            digits.remove_prefix(1);
        }
        std::uint32_t cp = 0;
        const auto [end, ec] =
            std::from_chars(digits.data(), digits.data() + digits.size(), cp, radix);
        const bool valid = !digits.empty() && ec == std::errc() &&
                           end == digits.data() + digits.size() && cp != 0 && cp <= 0x10FFFF &&
                           !(cp >= 0xD800 && cp <= 0xDFFF);
        if (!valid) {
            pos_ = offset;
            fail("bad character reference");
        }
        return cp;
    }

    std::string_view in_;
    std::size_t pos_ = 0;
};

// A parsed document with lookups by local element name.
class Document {
  public:
    explicit Document(std::string_view xml) : nodes_(Scanner(xml).run()) {}

    const Node& root() const { return nodes_.front(); }

    const Node* child(const Node& parent, std::string_view name) const {
        for (std::size_t i : parent.children) {
            if (nodes_[i].name == name) {
                return &nodes_[i];
            }
        }
        return nullptr;
    }

    // The text of the first child called `name`, or "" when there is none.
    std::string child_text(const Node& parent, std::string_view name) const {
        const Node* n = child(parent, name);
        return n != nullptr ? n->text : std::string();
    }

    template <typename F>
    void for_each_child(const Node& parent, std::string_view name, F&& f) const {
        for (std::size_t i : parent.children) {
            if (nodes_[i].name == name) {
                f(nodes_[i]);
            }
        }
    }

  private:
    std::vector<Node> nodes_;
};

// Server-supplied text in one of our one-line messages: control characters become spaces and
// the length is bounded, whatever the body held.
std::string one_line(std::string_view s) {
    constexpr std::size_t kMax = 200;
    std::string out;
    for (char c : util::trim(s)) {
        if (out.size() >= kMax) {
            out += "...";
            break;
        }
        out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) ? ' ' : c;
    }
    return out;
}

// The document, or mlk::Error naming the operation, when the body is not XML or is an <Error>.
Document parse_response(std::string_view xml, std::string_view operation,
                        std::string_view expected_root) {
    std::optional<Document> doc;
    try {
        doc.emplace(xml);
    } catch (const ParseError& e) {
        throw Error("S3 " + std::string(operation) + " response is not valid XML: " + e.what +
                    " at byte " + std::to_string(e.offset) + " of " + std::to_string(xml.size()));
    }
    const Node& root = doc->root();
    if (root.name == "Error") {
        std::string message = "S3 " + std::string(operation) +
                              " failed: " + one_line(doc->child_text(root, "Code")) + ": " +
                              one_line(doc->child_text(root, "Message"));
        const std::string request_id = one_line(doc->child_text(root, "RequestId"));
        if (!request_id.empty()) {
            message += " (request id " + request_id + ")";
        }
        throw Error(message);
    }
    if (root.name != expected_root) {
        throw Error("S3 " + std::string(operation) + " response: expected <" +
                    std::string(expected_root) + ">, got <" + one_line(root.qname) + ">");
    }
    return std::move(*doc);
}

std::string_view strip_quotes(std::string_view s) {
    if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
        return s.substr(1, s.size() - 2);
    }
    return s;
}

// encoding-type=url: S3 percent-encodes keys and writes a space as '+' (botocore decodes these
// with unquote_plus).
std::string url_decode(std::string_view s) {
    try {
        return util::percent_decode(s, util::PlusIs::kSpace, util::BadEscape::kThrow);
    } catch (const std::invalid_argument&) {
        throw Error(
            "S3 ListObjectsV2 response: bad percent-encoding in a url-encoded key or prefix");
    }
}

std::uint64_t parse_size(std::string_view text) {
    const std::string_view digits = util::trim(text);
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
        throw Error("S3 ListObjectsV2 response: <Size> '" + one_line(text) +
                    "' is not a byte count");
    }
    return v;
}

}  // namespace

ListPage parse_list_objects_v2(std::string_view xml) {
    const Document doc = parse_response(xml, "ListObjectsV2", "ListBucketResult");
    const Node& root = doc.root();
    const bool url_encoded =
        util::to_lower(util::trim(doc.child_text(root, "EncodingType"))) == "url";
    const auto decode = [&](std::string s) { return url_encoded ? url_decode(s) : s; };

    ListPage page;
    doc.for_each_child(root, "Contents", [&](const Node& c) {
        const Node* key = doc.child(c, "Key");
        if (key == nullptr) {
            throw Error("S3 ListObjectsV2 response: a <Contents> entry has no <Key>");
        }
        const Node* size = doc.child(c, "Size");
        if (size == nullptr) {
            throw Error("S3 ListObjectsV2 response: a <Contents> entry has no <Size>");
        }
        ObjectInfo o;
        o.key = decode(key->text);
        o.size = parse_size(size->text);
        o.etag = std::string(strip_quotes(util::trim(doc.child_text(c, "ETag"))));
        o.last_modified = std::string(util::trim(doc.child_text(c, "LastModified")));
        o.storage_class = std::string(util::trim(doc.child_text(c, "StorageClass")));
        page.objects.push_back(std::move(o));
    });
    doc.for_each_child(root, "CommonPrefixes", [&](const Node& cp) {
        doc.for_each_child(cp, "Prefix",
                           [&](const Node& p) { page.common_prefixes.push_back(decode(p.text)); });
    });

    if (const Node* t = doc.child(root, "IsTruncated")) {
        const std::string value = util::to_lower(util::trim(t->text));
        if (value == "true") {
            page.truncated = true;
        } else if (value != "false") {
            throw Error("S3 ListObjectsV2 response: <IsTruncated> is '" + one_line(t->text) +
                        "', not true or false");
        }
    }
    page.next_continuation_token =
        std::string(util::trim(doc.child_text(root, "NextContinuationToken")));
    if (page.truncated && page.next_continuation_token.empty()) {
        throw Error(
            "S3 ListObjectsV2 response: the page is truncated but has no <NextContinuationToken> "
            "(does the server support list-type=2?)");
    }
    return page;
}

std::string parse_upload_id(std::string_view xml) {
    const Document doc =
        parse_response(xml, "CreateMultipartUpload", "InitiateMultipartUploadResult");
    std::string id(util::trim(doc.child_text(doc.root(), "UploadId")));
    if (id.empty()) {
        throw Error("S3 CreateMultipartUpload response has no <UploadId>");
    }
    return id;
}

std::optional<ErrorBody> parse_error(std::string_view xml) {
    std::optional<Document> doc;
    try {
        doc.emplace(xml);
    } catch (const ParseError&) {
        return std::nullopt;
    }
    const Node& root = doc->root();
    if (root.name != "Error") {
        return std::nullopt;
    }
    ErrorBody e;
    e.code = std::string(util::trim(doc->child_text(root, "Code")));
    e.message = std::string(util::trim(doc->child_text(root, "Message")));
    e.request_id = std::string(util::trim(doc->child_text(root, "RequestId")));
    return e;
}

std::string complete_multipart_body(const std::vector<std::pair<int, std::string>>& parts) {
    constexpr int kMaxPartNumber = 10000;
    if (parts.empty()) {
        throw std::logic_error("complete_multipart_body: no parts");
    }
    std::string out = "<CompleteMultipartUpload>";
    int previous = 0;
    for (const auto& [number, etag] : parts) {
        if (number <= previous || number > kMaxPartNumber) {
            throw std::logic_error("complete_multipart_body: part number " +
                                   std::to_string(number) + " after " + std::to_string(previous) +
                                   " (must ascend within 1..10000)");
        }
        const std::string_view bare = strip_quotes(etag);
        if (bare.empty()) {
            throw std::logic_error("complete_multipart_body: empty ETag for part " +
                                   std::to_string(number));
        }
        out += "<Part><PartNumber>" + std::to_string(number) + "</PartNumber><ETag>\"" +
               xml_escape(bare) + "\"</ETag></Part>";
        previous = number;
    }
    out += "</CompleteMultipartUpload>";
    return out;
}

std::string xml_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&apos;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

}  // namespace mlk::storage::s3
