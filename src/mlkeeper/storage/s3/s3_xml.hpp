// Reads the few S3 XML responses mlkeeper needs (ListObjectsV2, CreateMultipartUpload, error
// bodies) and writes the CompleteMultipartUpload body. A small scanner rather than an XML library:
// these documents are flat and machine-written, and the scanner never reads past its input.
// Thread safety: pure functions on their arguments; safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mlk::storage::s3 {

struct ObjectInfo {
    std::string key;
    std::uint64_t size = 0;
    std::string etag;  // surrounding quotes stripped
    std::string last_modified;
    std::string storage_class;
};

struct ListPage {
    std::vector<ObjectInfo> objects;
    std::vector<std::string> common_prefixes;
    bool truncated = false;
    std::string next_continuation_token;  // set whenever truncated is
};

// A <ListBucketResult> page. Keys and prefixes come back decoded (entities, and the
// percent-encoding of an <EncodingType>url</EncodingType> response). Throws mlk::Error on a body
// that is not one: not XML, truncated, an <Error> body (its code and message in what()), a
// <Contents> without <Key> or with a bad <Size>, or a truncated page without a continuation token
// (which would otherwise end a listing early).
ListPage parse_list_objects_v2(std::string_view xml);

// <InitiateMultipartUploadResult><UploadId>; throws mlk::Error like parse_list_objects_v2.
std::string parse_upload_id(std::string_view xml);

struct ErrorBody {
    std::string code;
    std::string message;
    std::string request_id;
};

// The fields of a document whose root is <Error>, else nullopt (also for malformed input: this is
// asked of every body, and never throws). CompleteMultipartUpload can fail with status 200 and
// such a body, so callers must ask even on success.
std::optional<ErrorBody> parse_error(std::string_view xml);

// <CompleteMultipartUpload><Part><PartNumber>n</PartNumber><ETag>"e"</ETag></Part>...
// An ETag may be given with or without its quotes. Throws std::logic_error (a caller bug) unless
// the list is non-empty, part numbers are 1..10000 in strictly ascending order and every ETag is
// non-empty.
std::string complete_multipart_body(const std::vector<std::pair<int, std::string>>& parts);

// Escapes & < > " ' as the five named entities, so the result is safe in text and attributes.
std::string xml_escape(std::string_view s);

}  // namespace mlk::storage::s3
