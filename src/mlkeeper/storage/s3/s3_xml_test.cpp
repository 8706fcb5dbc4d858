#include "mlkeeper/storage/s3/s3_xml.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <stdexcept>

#include "mlkeeper/core/error.hpp"

namespace mlk::storage::s3 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The ListObjectsV2 examples of the S3 API reference, merged into one page: several <Contents>
// (one with an <Owner> block), a self-closed <Prefix/>, a delimiter and two <CommonPrefixes>.
constexpr std::string_view kAwsExample = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
    <Name>example-bucket</Name>
    <Prefix/>
    <KeyCount>5</KeyCount>
    <MaxKeys>1000</MaxKeys>
    <Delimiter>/</Delimiter>
    <IsTruncated>false</IsTruncated>
    <Contents>
        <Key>ExampleObject.txt</Key>
        <LastModified>2013-09-17T18:07:53.000Z</LastModified>
        <ETag>"599bab3ed2c697f1d26842727561fd94"</ETag>
        <Size>857</Size>
        <StorageClass>REDUCED_REDUNDANCY</StorageClass>
    </Contents>
    <Contents>
        <Key>my-image.jpg</Key>
        <LastModified>2009-10-12T17:50:30.000Z</LastModified>
        <ETag>"fba9dede5f27731c9771645a39863328"</ETag>
        <Size>434234</Size>
        <Owner>
            <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>
            <DisplayName>mtd@amazon.com</DisplayName>
        </Owner>
        <StorageClass>STANDARD</StorageClass>
    </Contents>
    <Contents>
        <Key>photos/2006/</Key>
        <LastModified>2016-04-30T23:51:29.000Z</LastModified>
        <ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag>
        <Size>0</Size>
        <StorageClass>STANDARD</StorageClass>
    </Contents>
    <CommonPrefixes>
        <Prefix>photos/2006/February/</Prefix>
    </CommonPrefixes>
    <CommonPrefixes>
        <Prefix>photos/2006/January/</Prefix>
    </CommonPrefixes>
</ListBucketResult>)";

// What s3rver (the local S3 used by the integration tests) answers.
constexpr std::string_view kS3rver =
    "<ListBucketResult xmlns=\"http://doc.s3.amazonaws.com/2006-03-01/\"><Name>bkt</Name>"
    "<Prefix>a/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false"
    "</IsTruncated><Contents><Key>a/obj.bin</Key><LastModified>2026-11-22T11:00:06.000Z"
    "</LastModified><ETag>&quot;5171a62ab17bef68d53e8ee72400a3db&quot;</ETag><Size>100000</Size>"
    "<StorageClass>STANDARD</StorageClass></Contents></ListBucketResult>";

constexpr std::string_view kErrorBody = R"(<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>NoSuchBucket</Code>
  <Message>The specified bucket does not exist</Message>
  <BucketName>missing-bucket</BucketName>
  <RequestId>4442587FB7D0A2F9</RequestId>
  <HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId>
</Error>)";

constexpr std::string_view kInitiate = R"(<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>example-bucket</Bucket>
  <Key>example-object</Key>
  <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
</InitiateMultipartUploadResult>)";

// The message of the mlk::Error that parse_list_objects_v2 throws; a failure if it does not.
std::string list_error(std::string_view xml) {
    try {
        const ListPage page = parse_list_objects_v2(xml);
        ADD_FAILURE() << "expected an mlk::Error, got " << page.objects.size() << " objects";
    } catch (const Error& e) {
        const std::string what = e.what();
        EXPECT_EQ(what.find('\n'), std::string::npos) << "not one line: " << what;
        return what;
    }
    return {};
}

std::string wrap_contents(std::string_view contents) {
    return "<ListBucketResult><Contents>" + std::string(contents) +
           "</Contents></ListBucketResult>";
}

// A copy of `s` in a heap block of exactly its size, so ASan flags any read past the end.
class ExactBuffer {
  public:
    explicit ExactBuffer(std::string_view s) : size_(s.size()), data_(new char[s.size()]) {
        std::copy(s.begin(), s.end(), data_.get());
    }
    std::string_view view() const { return {data_.get(), size_}; }

  private:
    std::size_t size_;
    std::unique_ptr<char[]> data_;
};

// --- ListObjectsV2 ---

TEST(S3Xml, AwsDocumentationExample) {
    const ListPage page = parse_list_objects_v2(kAwsExample);
    ASSERT_EQ(page.objects.size(), 3u);
    EXPECT_EQ(page.objects[0].key, "ExampleObject.txt");
    EXPECT_EQ(page.objects[0].size, 857u);
    EXPECT_EQ(page.objects[0].etag, "599bab3ed2c697f1d26842727561fd94");
    EXPECT_EQ(page.objects[0].last_modified, "2013-09-17T18:07:53.000Z");
    EXPECT_EQ(page.objects[0].storage_class, "REDUCED_REDUNDANCY");
    EXPECT_EQ(page.objects[1].key, "my-image.jpg");
    EXPECT_EQ(page.objects[1].size, 434234u);
    EXPECT_EQ(page.objects[1].storage_class, "STANDARD");  // after the <Owner> block
    EXPECT_EQ(page.objects[2].key, "photos/2006/");
    EXPECT_EQ(page.objects[2].size, 0u);
    EXPECT_THAT(page.common_prefixes, ElementsAre("photos/2006/February/", "photos/2006/January/"));
    EXPECT_FALSE(page.truncated);
    EXPECT_EQ(page.next_continuation_token, "");
}

TEST(S3Xml, S3rverPage) {
    const ListPage page = parse_list_objects_v2(kS3rver);
    ASSERT_EQ(page.objects.size(), 1u);
    EXPECT_EQ(page.objects[0].key, "a/obj.bin");
    EXPECT_EQ(page.objects[0].size, 100000u);
    EXPECT_EQ(page.objects[0].etag, "5171a62ab17bef68d53e8ee72400a3db");
    EXPECT_EQ(page.objects[0].last_modified, "2026-11-22T11:00:06.000Z");
    EXPECT_EQ(page.objects[0].storage_class, "STANDARD");
    EXPECT_TRUE(page.common_prefixes.empty());
    EXPECT_FALSE(page.truncated);
}

TEST(S3Xml, EmptyListing) {
    const ListPage page = parse_list_objects_v2(
        "<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>"
        "</ListBucketResult>");
    EXPECT_TRUE(page.objects.empty());
    EXPECT_TRUE(page.common_prefixes.empty());
    EXPECT_FALSE(page.truncated);
}

TEST(S3Xml, KeysWithEntitiesAndCharacterReferences) {
    const ListPage page = parse_list_objects_v2(
        wrap_contents("<Key>a &amp; b/&#x20AC;&#8364;&lt;&gt;&quot;&apos;&#X41;&#x1F600;</Key>"
                      "<Size>1</Size>"));
    ASSERT_EQ(page.objects.size(), 1u);
    EXPECT_EQ(page.objects[0].key, "a & b/\u20AC\u20AC<>\"'A\U0001F600");
}

TEST(S3Xml, KeysKeepTheirSpacesAndLineEndsAreNormalised) {
    const ListPage page =
        parse_list_objects_v2(wrap_contents("<Key>  two\r\nlines\r  </Key><Size>1</Size>"));
    ASSERT_EQ(page.objects.size(), 1u);
    EXPECT_EQ(page.objects[0].key, "  two\nlines\n  ");
}

TEST(S3Xml, NamespacePrefixesAttributesCommentsAndCdata) {
    const ListPage page = parse_list_objects_v2(
        "\n  <?xml version='1.0'?><!DOCTYPE x>\n<!-- a <comment> -->"
        "<s3:ListBucketResult xmlns:s3=\"urn:x\" odd='a>b' other=\"c/>\">"
        "<s3:Contents><s3:Key><![CDATA[raw &amp; <kept>]]></s3:Key><!-- -->"
        "<s3:Size >7</s3:Size ><Extra/><Extra a=\"1\" /></s3:Contents>"
        "</s3:ListBucketResult>\n\n");
    ASSERT_EQ(page.objects.size(), 1u);
    EXPECT_EQ(page.objects[0].key, "raw &amp; <kept>");
    EXPECT_EQ(page.objects[0].size, 7u);
}

TEST(S3Xml, TruncatedPagesCarryTheToken) {
    const ListPage page = parse_list_objects_v2(
        "<ListBucketResult><Name>bucket</Name><Prefix></Prefix>"
        "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</"
        "NextContinuationToken>"
        "<KeyCount>1</KeyCount><MaxKeys>1</MaxKeys><IsTruncated> true </IsTruncated>"
        "<Contents><Key>happyface.jpg</Key><Size>11</Size></Contents></ListBucketResult>");
    EXPECT_TRUE(page.truncated);
    EXPECT_EQ(page.next_continuation_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    ASSERT_EQ(page.objects.size(), 1u);
    EXPECT_EQ(page.objects[0].etag, "");  // optional fields may be absent
}

TEST(S3Xml, TruncatedPageWithoutTokenIsAnError) {
    // A V1 answer (NextMarker, no token): paging on would silently end the listing early.
    EXPECT_THAT(list_error("<ListBucketResult><IsTruncated>true</IsTruncated><NextMarker>k"
                           "</NextMarker></ListBucketResult>"),
                HasSubstr("truncated but has no <NextContinuationToken>"));
    EXPECT_THAT(list_error("<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>"),
                HasSubstr("<IsTruncated> is 'maybe'"));
}

TEST(S3Xml, UrlEncodedKeysAreDecoded) {
    const ListPage page = parse_list_objects_v2(
        "<ListBucketResult><EncodingType>url</EncodingType>"
        "<Contents><Key>dir%2Fa+b%E2%82%AC%0A</Key><Size>1</Size></Contents>"
        "<CommonPrefixes><Prefix>p%20q/</Prefix></CommonPrefixes></ListBucketResult>");
    ASSERT_EQ(page.objects.size(), 1u);
    EXPECT_EQ(page.objects[0].key, "dir/a b\u20AC\n");
    EXPECT_THAT(page.common_prefixes, ElementsAre("p q/"));

    // Without the marker, '+' and '%' are part of the key.
    EXPECT_EQ(
        parse_list_objects_v2(wrap_contents("<Key>a+b%20</Key><Size>1</Size>")).objects[0].key,
        "a+b%20");
    EXPECT_THAT(list_error("<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>a%G1"
                           "</Key><Size>1</Size></Contents></ListBucketResult>"),
                HasSubstr("bad percent-encoding"));
    EXPECT_THAT(list_error("<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>a%2"
                           "</Key><Size>1</Size></Contents></ListBucketResult>"),
                HasSubstr("bad percent-encoding"));
}

TEST(S3Xml, BadContentsEntries) {
    EXPECT_THAT(list_error(wrap_contents("<Size>1</Size>")), HasSubstr("has no <Key>"));
    EXPECT_THAT(list_error(wrap_contents("<Key>k</Key>")), HasSubstr("has no <Size>"));
    for (const char* size : {"", "abc", "-1", "1.5", "0x10", "18446744073709551616"}) {
        SCOPED_TRACE(size);
        EXPECT_THAT(list_error(wrap_contents("<Key>k</Key><Size>" + std::string(size) + "</Size>")),
                    HasSubstr("is not a byte count"));
    }
    EXPECT_EQ(
        parse_list_objects_v2(wrap_contents("<Key>k</Key><Size> 18446744073709551615\n</Size>"))
            .objects[0]
            .size,
        18446744073709551615u);
}

TEST(S3Xml, GarbageEmptyAndWrongDocuments) {
    EXPECT_THAT(list_error(""), HasSubstr("not valid XML: empty body"));
    EXPECT_THAT(list_error("   \n"), HasSubstr("not valid XML: no element"));
    EXPECT_THAT(list_error("hello"), HasSubstr("text outside the root element"));
    EXPECT_THAT(list_error("<html><body>502 Bad Gateway</body></html>"),
                HasSubstr("expected <ListBucketResult>, got <html>"));
    EXPECT_THAT(list_error("<ListBucketResult></ListBucket>"), HasSubstr("end tag does not match"));
    EXPECT_THAT(list_error("<ListBucketResult/><ListBucketResult/>"),
                HasSubstr("more than one root element"));
    EXPECT_THAT(list_error("<ListBucketResult></ListBucketResult>junk"),
                HasSubstr("text outside the root element"));
    EXPECT_THAT(list_error("</ListBucketResult>"), HasSubstr("end tag does not match"));
    EXPECT_THAT(list_error("<>"), HasSubstr("missing element name"));
    EXPECT_THAT(list_error("<a b=\"x></a>"), HasSubstr("unterminated attribute value"));
    EXPECT_THAT(list_error("<a <b>"), HasSubstr("'<' inside a tag"));
    EXPECT_THAT(list_error("<a/ >"), HasSubstr("expected '>'"));
    EXPECT_THAT(list_error("<a><!-- x </a>"), HasSubstr("unterminated comment"));
    EXPECT_THAT(list_error("<a><![CDATA[ x </a>"), HasSubstr("unterminated CDATA"));
    EXPECT_THAT(list_error("<?xml "), HasSubstr("unterminated processing instruction"));
    EXPECT_THAT(list_error(std::string_view("<a>\0</a>", 8)),
                HasSubstr("expected <ListBucketResult>, got <a>"));  // NUL is just a byte
}

TEST(S3Xml, BadEntities) {
    for (const char* text : {"&foo;", "&#xD800;", "&#0;", "&#x110000;", "& b", "a&", "&#;", "&#x;",
                             "&#12a;", "&#-1;", "&#99999999999999999999;", "&amp"}) {
        SCOPED_TRACE(text);
        const std::string what =
            list_error(wrap_contents("<Key>" + std::string(text) + "</Key><Size>1</Size>"));
        EXPECT_THAT(what, HasSubstr("not valid XML"));
        // The offset is where the '&' is; "<ListBucketResult><Contents><Key>" is 33 bytes.
        const std::size_t at = 33 + std::string_view(text).find('&');
        EXPECT_THAT(what, HasSubstr("at byte " + std::to_string(at) + " of"));
    }
}

TEST(S3Xml, EveryTruncationIsAnErrorAndNeverReadsPastTheEnd) {
    for (const std::string_view doc : {kAwsExample, kS3rver}) {
        for (std::size_t n = 0; n < doc.size(); ++n) {
            const ExactBuffer buf(doc.substr(0, n));
            try {
                parse_list_objects_v2(buf.view());
                ADD_FAILURE() << "accepted the first " << n << " bytes";
            } catch (const Error&) {
            }
            EXPECT_FALSE(parse_error(buf.view()).has_value());
        }
    }
}

TEST(S3Xml, MutatedInputNeverCrashes) {
    std::mt19937 rng(12345);
    const std::string base(kAwsExample);
    const std::string alphabet = "<>/&;#x\"'=![]?- aZ09";
    for (int round = 0; round < 3000; ++round) {
        std::string doc = base;
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits; ++e) {
            const std::size_t at = rng() % doc.size();
            switch (rng() % 3) {
                case 0:
                    doc[at] = alphabet[rng() % alphabet.size()];
                    break;
                case 1:
                    doc.erase(at, 1 + rng() % 8);
                    break;
                default:
                    doc.insert(at, 1, alphabet[rng() % alphabet.size()]);
            }
            if (doc.empty()) {
                doc = "<";
            }
        }
        const ExactBuffer buf(doc);
        try {
            parse_list_objects_v2(buf.view());
        } catch (const Error&) {
        }
        EXPECT_FALSE(parse_error(buf.view()).has_value());
    }
}

TEST(S3Xml, DeepNestingNeitherRecursesNorCrashes) {
    constexpr int kDepth = 100000;
    std::string open;
    std::string close;
    for (int i = 0; i < kDepth; ++i) {
        open += "<a>";
        close += "</a>";
    }
    EXPECT_THAT(list_error(open), HasSubstr("input ends inside <a>"));
    EXPECT_THAT(list_error(open + close), HasSubstr("expected <ListBucketResult>, got <a>"));
}

TEST(S3Xml, ErrorBodyInsteadOfAListing) {
    const std::string what = list_error(kErrorBody);
    EXPECT_EQ(what,
              "S3 ListObjectsV2 failed: NoSuchBucket: The specified bucket does not exist "
              "(request id 4442587FB7D0A2F9)");
    // Server text is kept to one bounded line.
    const std::string long_message = list_error("<Error><Code>X</Code><Message>line1\nline2" +
                                                std::string(1000, 'm') + "</Message></Error>");
    EXPECT_THAT(long_message, StartsWith("S3 ListObjectsV2 failed: X: line1 line2mmm"));
    EXPECT_LT(long_message.size(), 300u);
}

// --- CreateMultipartUpload ---

TEST(S3Xml, UploadId) {
    EXPECT_EQ(parse_upload_id(kInitiate),
              "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA");
    EXPECT_THROW(parse_upload_id("<InitiateMultipartUploadResult><Bucket>b</Bucket>"
                                 "</InitiateMultipartUploadResult>"),
                 Error);
    EXPECT_THROW(parse_upload_id("<InitiateMultipartUploadResult><UploadId> </UploadId>"
                                 "</InitiateMultipartUploadResult>"),
                 Error);
    EXPECT_THROW(parse_upload_id(kS3rver), Error);
    EXPECT_THROW(parse_upload_id(kInitiate.substr(0, kInitiate.size() - 5)), Error);
    try {
        parse_upload_id(kErrorBody);
        ADD_FAILURE() << "expected an mlk::Error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), StartsWith("S3 CreateMultipartUpload failed: NoSuchBucket: "));
    }
}

// --- error bodies ---

TEST(S3Xml, ParseErrorBody) {
    const auto e = parse_error(kErrorBody);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->code, "NoSuchBucket");
    EXPECT_EQ(e->message, "The specified bucket does not exist");
    EXPECT_EQ(e->request_id, "4442587FB7D0A2F9");

    const auto minimal = parse_error("<Error><Code>AccessDenied</Code></Error>");
    ASSERT_TRUE(minimal.has_value());
    EXPECT_EQ(minimal->code, "AccessDenied");
    EXPECT_EQ(minimal->message, "");
}

TEST(S3Xml, ErrorInsideA200CompleteMultipartUpload) {
    // S3 sends the 200 status at once, pads with whitespace while it works, then may report
    // failure in the body.
    const std::string body =
        std::string(R"(<?xml version="1.0" encoding="UTF-8"?>)") + std::string(64, ' ') + "\n\n" +
        "<Error>\n<Code>InternalError</Code>\n<Message>We encountered an "
        "internal error. Please try again.</Message>\n<RequestId>"
        "656c76696e6727732072657175657374</RequestId>\n<HostId>Uuag1LuByRx9e6j5"
        "Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId>\n</Error>\n";
    const auto e = parse_error(body);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->code, "InternalError");
    EXPECT_EQ(e->message, "We encountered an internal error. Please try again.");
    EXPECT_EQ(e->request_id, "656c76696e6727732072657175657374");
    // Whitespace may also come before the declaration.
    EXPECT_TRUE(parse_error("   \n" + body).has_value());
}

TEST(S3Xml, NotAnErrorBody) {
    EXPECT_FALSE(parse_error("").has_value());
    EXPECT_FALSE(parse_error("garbage").has_value());
    EXPECT_FALSE(parse_error(kS3rver).has_value());
    EXPECT_FALSE(
        parse_error("<CompleteMultipartUploadResult><Location>x</Location><ETag>&quot;e-2&quot;"
                    "</ETag></CompleteMultipartUploadResult>")
            .has_value());
    // Per-key errors of a multi-object delete are not a failed request.
    EXPECT_FALSE(parse_error("<DeleteResult><Error><Key>k</Key><Code>AccessDenied</Code></Error>"
                             "</DeleteResult>")
                     .has_value());
    EXPECT_FALSE(parse_error("<Error><Code>InternalError</Code>").has_value());  // truncated
}

// --- CompleteMultipartUpload ---

TEST(S3Xml, CompleteMultipartBody) {
    EXPECT_EQ(complete_multipart_body({{1, "\"a54357aff0632cce46d942af68356b38\""},
                                       {2, "0c78aef83f66abc1fa1e8477f296d394"},
                                       {5, "we&ird<"}}),
              "<CompleteMultipartUpload>"
              "<Part><PartNumber>1</PartNumber><ETag>\"a54357aff0632cce46d942af68356b38\"</ETag>"
              "</Part>"
              "<Part><PartNumber>2</PartNumber><ETag>\"0c78aef83f66abc1fa1e8477f296d394\"</ETag>"
              "</Part>"
              "<Part><PartNumber>5</PartNumber><ETag>\"we&amp;ird&lt;\"</ETag></Part>"
              "</CompleteMultipartUpload>");
    EXPECT_EQ(complete_multipart_body({{10000, "e"}}),
              "<CompleteMultipartUpload><Part><PartNumber>10000</PartNumber><ETag>\"e\"</ETag>"
              "</Part></CompleteMultipartUpload>");
}

TEST(S3Xml, CompleteMultipartBodyRejectsCallerBugs) {
    using Parts = std::vector<std::pair<int, std::string>>;
    EXPECT_THROW(complete_multipart_body(Parts{}), std::logic_error);
    EXPECT_THROW(complete_multipart_body({{2, "a"}, {1, "b"}}), std::logic_error);
    EXPECT_THROW(complete_multipart_body({{1, "a"}, {1, "b"}}), std::logic_error);
    EXPECT_THROW(complete_multipart_body({{0, "a"}}), std::logic_error);
    EXPECT_THROW(complete_multipart_body({{-3, "a"}}), std::logic_error);
    EXPECT_THROW(complete_multipart_body({{10001, "a"}}), std::logic_error);
    EXPECT_THROW(complete_multipart_body({{1, ""}}), std::logic_error);
    EXPECT_THROW(complete_multipart_body({{1, "\"\""}}), std::logic_error);
}

TEST(S3Xml, XmlEscape) {
    EXPECT_EQ(xml_escape(""), "");
    EXPECT_EQ(xml_escape("plain/key \u20AC"), "plain/key \u20AC");
    EXPECT_EQ(xml_escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
    // Escaping then parsing gives the original back.
    const std::string key = "x & <y> \"z\" 'w' &amp;";
    EXPECT_EQ(
        parse_list_objects_v2(wrap_contents("<Key>" + xml_escape(key) + "</Key><Size>1</Size>"))
            .objects[0]
            .key,
        key);
}

}  // namespace
}  // namespace mlk::storage::s3
