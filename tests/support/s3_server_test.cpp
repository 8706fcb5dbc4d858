// Tests of the S3 test harness itself: s3rver behind s3gate.py, driven by the curl CLI's own
// SigV4 signer (an independent peer of both botocore and mlkeeper's client).
#include "support/s3_server.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "mlkeeper/util/process.hpp"
#include "mlkeeper/util/sha256.hpp"
#include "support/temp_dir.hpp"

namespace mlk::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char* kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct CurlResult {
    int exit_code = -1;  // curl's: 18 partial body, 52 empty reply, 55/56 send/recv failure
    long status = 0;
    double seconds = 0;
    std::string body;
    std::string err;
};

// A deterministic, incompressible-looking body.
std::string make_body(std::size_t n) {
    std::string s(n, '\0');
    std::uint32_t x = 2463534242u;
    for (auto& c : s) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = static_cast<char>(x);
    }
    return s;
}

class S3ServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        try {
            s3_.emplace();
        } catch (const ServerUnavailable& e) {
            GTEST_SKIP() << e.what();
        }
    }

    void TearDown() override {
        if (HasFailure() && s3_) {
            std::cerr << "--- s3gate output ---\n" << s3_->gate_output();
        }
    }

    std::string url(const std::string& key, const std::string& query = "") const {
        return s3_->endpoint() + "/mlk-test/" + key + (query.empty() ? "" : "?" + query);
    }

    // Runs curl signing with --aws-sigv4 as `user` ("KEY:SECRET"); extra args go before the URL.
    CurlResult curl(const std::string& target, std::vector<std::string> args,
                    const std::string& user = "S3RVER:S3RVER",
                    std::optional<std::string> stdin_data = std::nullopt) {
        const auto out = dir_ / "curl.body";
        std::filesystem::remove(out);
        std::vector<std::string> argv = {
            "curl", "-sS",        "--max-time", "20",
            "-o",   out.string(), "-w",         "%{http_code} %{time_total}"};
        if (!user.empty()) {  // empty: anonymous, unsigned
            argv.insert(argv.end(), {"--aws-sigv4", "aws:amz:us-east-1:s3", "--user", user});
        }
        argv.insert(argv.end(), args.begin(), args.end());
        argv.push_back(target);
        util::RunOptions ro;
        ro.timeout = 30s;
        ro.stdin_data = std::move(stdin_data);
        auto r = util::run_process(argv, ro);
        CurlResult c;
        c.exit_code = r.kind == util::ExitKind::kExited ? r.exit_code : -1;
        c.err = r.err + r.error;
        std::sscanf(r.out.c_str(), "%ld %lf", &c.status, &c.seconds);
        c.body = slurp(out);
        return c;
    }

    CurlResult put(const std::string& key, const std::string& body,
                   std::vector<std::string> extra = {}, const std::string& user = "S3RVER:S3RVER") {
        const auto file = dir_.write("upload.bin", body);
        std::vector<std::string> args = {"-T", file.string()};
        args.insert(args.end(), extra.begin(), extra.end());
        bool has_hash = false;
        for (const auto& a : extra)
            has_hash = has_hash || a.starts_with("x-amz-content-sha256");
        if (!has_hash)
            args.insert(args.end(), {"-H", "x-amz-content-sha256: " + util::sha256_hex(body)});
        return curl(url(key), std::move(args), user);
    }

    CurlResult get(const std::string& key, std::vector<std::string> extra = {},
                   const std::string& user = "S3RVER:S3RVER") {
        std::vector<std::string> args = {"-H",
                                         std::string("x-amz-content-sha256: ") + kEmptySha256};
        args.insert(args.end(), extra.begin(), extra.end());
        return curl(url(key), std::move(args), user);
    }

    TempDir dir_;
    std::optional<S3Server> s3_;
};

TEST_F(S3ServerTest, PutThenGetThroughTheGate) {
    // Over 1 MiB, so curl sends "Expect: 100-continue": the gate must answer it at once.
    const auto body = make_body(2 << 20);
    auto p = put("dir/obj.bin", body);
    ASSERT_EQ(p.exit_code, 0) << p.err;
    ASSERT_EQ(p.status, 200) << p.body;
    EXPECT_LT(p.seconds, 0.9) << "curl waited for a 100 Continue that never came";

    auto g = get("dir/obj.bin");
    ASSERT_EQ(g.status, 200) << g.body;
    EXPECT_TRUE(g.body == body) << "got " << g.body.size() << " bytes";
    EXPECT_TRUE(std::filesystem::is_directory(s3_->data_dir() / "mlk-test"));

    // The direct endpoint bypasses the gate (no signature needed, nothing logged).
    auto d = curl(s3_->direct_endpoint() + "/mlk-test/dir/obj.bin", {}, "");
    EXPECT_EQ(d.status, 200);
    EXPECT_EQ(d.body.size(), body.size());
    EXPECT_EQ(s3_->request_log().size(), 2u);
}

TEST_F(S3ServerTest, WrongSecretIsSignatureDoesNotMatch) {
    auto p = put("k", "data", {}, "S3RVER:not-the-secret");
    EXPECT_EQ(p.status, 403);
    EXPECT_NE(p.body.find("<Code>SignatureDoesNotMatch</Code>"), std::string::npos) << p.body;
    // The canonical request is there for a developer to compare with the client's.
    EXPECT_NE(p.body.find("<CanonicalRequest>PUT\n/mlk-test/k\n"), std::string::npos) << p.body;
    EXPECT_EQ(get("k").status, 404) << "a rejected PUT must not reach s3rver";

    auto g = get("k", {}, "S3RVER:not-the-secret");
    EXPECT_EQ(g.status, 403);
    EXPECT_NE(g.body.find("SignatureDoesNotMatch"), std::string::npos) << g.body;
}

TEST_F(S3ServerTest, UnknownKeyAndAnonymousRequestsAreDenied) {
    auto g = get("k", {}, "SOMEONE:S3RVER");
    EXPECT_EQ(g.status, 403);
    EXPECT_NE(g.body.find("<Code>InvalidAccessKeyId</Code>"), std::string::npos) << g.body;

    auto a = get("k", {}, "");
    EXPECT_EQ(a.status, 403);
    EXPECT_NE(a.body.find("<Code>AccessDenied</Code>"), std::string::npos) << a.body;
}

TEST_F(S3ServerTest, PayloadHashIsChecked) {
    auto wrong = put("k", "data", {"-H", std::string("x-amz-content-sha256: ") + kEmptySha256});
    EXPECT_EQ(wrong.status, 400);
    EXPECT_NE(wrong.body.find("<Code>XAmzContentSHA256Mismatch</Code>"), std::string::npos)
        << wrong.body;

    // curl 7.88 does not add the header itself; S3 requires it.
    auto file = dir_.write("b.bin", "data");
    auto missing = curl(url("k"), {"-T", file.string()});
    EXPECT_EQ(missing.status, 400);
    EXPECT_NE(missing.body.find("<Code>InvalidRequest</Code>"), std::string::npos) << missing.body;
    EXPECT_EQ(get("k").status, 404);

    auto unsigned_payload = put("k", "data", {"-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"});
    EXPECT_EQ(unsigned_payload.status, 200) << unsigned_payload.body;
}

TEST_F(S3ServerTest, ContentMd5IsChecked) {
    // base64(md5("hello")) = XUFAKrxLKna5cZ2REBfFkg==
    auto bad = put("k", "hello", {"-H", "Content-MD5: AAAAAAAAAAAAAAAAAAAAAA=="});
    EXPECT_EQ(bad.status, 400);
    EXPECT_NE(bad.body.find("<Code>BadDigest</Code>"), std::string::npos) << bad.body;

    auto malformed = put("k", "hello", {"-H", "Content-MD5: not base64!"});
    EXPECT_EQ(malformed.status, 400);
    EXPECT_NE(malformed.body.find("<Code>InvalidDigest</Code>"), std::string::npos)
        << malformed.body;
    EXPECT_EQ(get("k").status, 404);

    auto good = put("k", "hello", {"-H", "Content-MD5: XUFAKrxLKna5cZ2REBfFkg=="});
    EXPECT_EQ(good.status, 200) << good.body;

    // base64(sha256("hello"))
    auto bad_checksum =
        put("k2", "hello",
            {"-H", "x-amz-checksum-sha256: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="});
    EXPECT_EQ(bad_checksum.status, 400);
    EXPECT_NE(bad_checksum.body.find("BadDigest"), std::string::npos) << bad_checksum.body;
    auto good_checksum =
        put("k2", "hello",
            {"-H", "x-amz-checksum-sha256: LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="});
    EXPECT_EQ(good_checksum.status, 200) << good_checksum.body;
}

TEST_F(S3ServerTest, StatusFaultAnswersTimesThenPasses) {
    ASSERT_EQ(put("k", "v").status, 200);
    s3_->reset();
    s3_->set_faults(R"([{"method": "GET", "path_contains": "/mlk-test/k", "times": 2,
                         "action": "status", "status": 503, "code": "SlowDown"}])");
    // A PUT does not match the GET rule and leaves it unspent.
    EXPECT_EQ(put("k", "v2").status, 200);
    for (int i = 0; i < 2; ++i) {
        auto g = get("k");
        EXPECT_EQ(g.status, 503);
        EXPECT_NE(g.body.find("<Code>SlowDown</Code>"), std::string::npos) << g.body;
    }
    auto g = get("k");
    EXPECT_EQ(g.status, 200);
    EXPECT_EQ(g.body, "v2");

    auto log = s3_->request_log();
    ASSERT_EQ(log.size(), 4u) << log.dump(2);
    EXPECT_EQ(log[0]["status"], 200);
    EXPECT_EQ(log[1]["status"], 503);
    EXPECT_EQ(log[2]["status"], 503);
    EXPECT_EQ(log[3]["status"], 200);
}

TEST_F(S3ServerTest, SignatureIsCheckedBeforeFaults) {
    s3_->set_faults(R"([{"method": "*", "times": -1, "action": "status", "status": 500,
                         "code": "InternalError"}])");
    EXPECT_EQ(get("k", {}, "S3RVER:wrong").status, 403);
    EXPECT_EQ(get("k").status, 500);
    EXPECT_EQ(get("k").status, 500) << "times -1 never runs out";
}

TEST_F(S3ServerTest, LogRecordsEachRequest) {
    const double before =
        std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    ASSERT_EQ(put("a/b.txt", "12345", {"-H", "x-amz-meta-note: hi"}).status, 200);
    ASSERT_EQ(get("a/b.txt", {}, "S3RVER:wrong").status, 403);
    const double after =
        std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();

    auto log = s3_->request_log();
    ASSERT_EQ(log.size(), 2u) << log.dump(2);
    const auto& p = log[0];
    EXPECT_EQ(p["method"], "PUT");
    EXPECT_EQ(p["path"], "/mlk-test/a/b.txt");
    EXPECT_EQ(p["query"], "");
    EXPECT_EQ(p["status"], 200);
    EXPECT_EQ(p["body_bytes"], 5);
    EXPECT_EQ(p["headers"]["x-amz-meta-note"], "hi");
    EXPECT_TRUE(p["headers"].contains("x-amz-date"));
    EXPECT_FALSE(p["headers"].contains("authorization")) << "credentials stay out of the log";
    EXPECT_LE(before, p["start"].get<double>());
    EXPECT_LE(p["start"].get<double>(), p["end"].get<double>());
    EXPECT_LE(p["end"].get<double>(), after) << "start/end are steady_clock seconds";
    EXPECT_EQ(log[1]["method"], "GET");
    EXPECT_EQ(log[1]["status"], 403);

    s3_->reset();
    EXPECT_TRUE(s3_->request_log().empty());
}

TEST_F(S3ServerTest, DropFaultClosesTheConnectionMidUpload) {
    s3_->set_faults(R"([{"method": "PUT", "times": 1, "action": "drop", "after_bytes": 65536}])");
    const auto body = make_body(1 << 20);
    auto dropped = put("big", body);
    EXPECT_NE(dropped.exit_code, 0) << "curl saw status " << dropped.status;
    // No final status: at most the "100 Continue" curl got before it sent the body.
    EXPECT_TRUE(dropped.status == 0 || dropped.status == 100) << dropped.status;

    auto retried = put("big", body);
    EXPECT_EQ(retried.status, 200) << "the rule is spent after one request";

    auto log = s3_->request_log();
    ASSERT_EQ(log.size(), 2u) << log.dump(2);
    EXPECT_EQ(log[0]["status"], 0);
    EXPECT_EQ(log[0]["body_bytes"], 65536);
    EXPECT_EQ(log[1]["body_bytes"], 1 << 20);
}

TEST_F(S3ServerTest, TruncatedResponseEndsEarly) {
    const auto body = make_body(300000);
    ASSERT_EQ(put("t", body).status, 200);
    s3_->set_faults(
        R"([{"method": "GET", "times": 1, "action": "truncate_response", "after_bytes": 1000}])");
    auto g = get("t");
    EXPECT_EQ(g.exit_code, 18) << g.err;  // CURLE_PARTIAL_FILE
    EXPECT_EQ(g.body, body.substr(0, 1000));
    auto again = get("t");
    EXPECT_EQ(again.exit_code, 0);
    EXPECT_TRUE(again.body == body);
}

TEST_F(S3ServerTest, DelayFaultSlowsTheRequest) {
    s3_->set_faults(R"([{"method": "*", "times": 1, "action": "delay", "ms": 400}])");
    auto slow = get("none");
    EXPECT_EQ(slow.status, 404);
    EXPECT_GE(slow.seconds, 0.4);
    auto log = s3_->request_log();
    ASSERT_EQ(log.size(), 1u);
    EXPECT_GE(log[0]["end"].get<double>() - log[0]["start"].get<double>(), 0.4);
}

TEST_F(S3ServerTest, ChunkedUploadAndRangeGet) {
    const auto body = make_body(300000);
    auto p = curl(url("chunked"),
                  {"-T", "-", "-H", "Transfer-Encoding: chunked", "-H",
                   "x-amz-content-sha256: " + util::sha256_hex(body)},
                  "S3RVER:S3RVER", body);
    ASSERT_EQ(p.status, 200) << p.body << p.err;
    auto log = s3_->request_log();
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0]["body_bytes"], 300000);
    EXPECT_EQ(log[0]["headers"]["transfer-encoding"], "chunked");

    auto r = get("chunked", {"-r", "1000-1999"});
    EXPECT_EQ(r.status, 206);
    EXPECT_EQ(r.body, body.substr(1000, 1000));
}

TEST_F(S3ServerTest, MultipartUploadWithCurl) {
    // curl 7.88 signs the query exactly as written, so it must already be canonical: sorted,
    // and "uploads=" rather than "uploads".
    auto init = curl(url("mp", "uploads="),
                     {"-X", "POST", "-H", std::string("x-amz-content-sha256: ") + kEmptySha256});
    ASSERT_EQ(init.status, 200) << init.body;
    const auto b = init.body.find("<UploadId>"), e = init.body.find("</UploadId>");
    ASSERT_NE(b, std::string::npos) << init.body;
    const auto upload_id = init.body.substr(b + 10, e - b - 10);

    const auto part1 = make_body(5 << 20), part2 = std::string("tail");
    std::string complete = "<CompleteMultipartUpload>";
    int n = 0;
    for (const auto* part : {&part1, &part2}) {
        ++n;
        const auto file = dir_.write("part.bin", *part);
        auto p = curl(url("mp", fmt::format("partNumber={}&uploadId={}", n, upload_id)),
                      {"-T", file.string(), "-D", (dir_ / "headers").string(), "-H",
                       "x-amz-content-sha256: " + util::sha256_hex(*part)});
        ASSERT_EQ(p.status, 200) << p.body;
        const auto headers = slurp(dir_ / "headers");
        const auto at = headers.find("ETag: ");
        ASSERT_NE(at, std::string::npos) << headers;
        const auto etag = headers.substr(at + 6, headers.find('\r', at) - at - 6);
        complete += fmt::format("<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>", n, etag);
    }
    complete += "</CompleteMultipartUpload>";
    auto done = curl(url("mp", "uploadId=" + upload_id),
                     {"-X", "POST", "--data-binary", complete, "-H",
                      "x-amz-content-sha256: " + util::sha256_hex(complete)});
    ASSERT_EQ(done.status, 200) << done.body;
    auto g = get("mp");
    EXPECT_EQ(g.status, 200);
    EXPECT_TRUE(g.body == part1 + part2) << g.body.size();
}

TEST_F(S3ServerTest, StaleSignatureIsRequestTimeTooSkewed) {
    // curl always signs with the current time, so botocore signs this one, an hour ago.
    const std::string script = R"(
import datetime, http.client, sys
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
port = int(sys.argv[1])
ts = (datetime.datetime.utcnow() - datetime.timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ")
empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
req = AWSRequest(method="GET", url=f"http://127.0.0.1:{port}/mlk-test/k")
req.headers["Host"] = f"127.0.0.1:{port}"
req.headers["X-Amz-Date"] = ts
req.headers["X-Amz-Content-SHA256"] = empty
req.context["timestamp"] = ts
auth = S3SigV4Auth(Credentials("S3RVER", "S3RVER"), "s3", "us-east-1")
sig = auth.signature(auth.string_to_sign(req, auth.canonical_request(req)), req)
req.headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential=S3RVER/{ts[:8]}/us-east-1/s3/"
    f"aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}")
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
c.request("GET", "/mlk-test/k", headers=dict(req.headers.items()))
r = c.getresponse()
print(r.status, r.read().decode())
)";
    util::RunOptions ro;
    ro.timeout = 30s;
    auto r =
        util::run_process({"/usr/bin/python3", "-c", script, std::to_string(s3_->gate_port())}, ro);
    ASSERT_TRUE(r.ok()) << r.err << r.error;
    EXPECT_TRUE(r.out.starts_with("403 ")) << r.out;
    EXPECT_NE(r.out.find("<Code>RequestTimeTooSkewed</Code>"), std::string::npos) << r.out;
    // The gate's verdict, not s3rver's (which has a skew check of its own).
    EXPECT_NE(r.out.find("<RequestId>s3gate-"), std::string::npos) << r.out;
}

TEST_F(S3ServerTest, BadFaultRulesAreRejected) {
    EXPECT_THROW(s3_->set_faults(R"({"action": "status"})"), std::runtime_error);
    EXPECT_THROW(s3_->set_faults(R"([{"action": "explode"}])"), std::runtime_error);
    EXPECT_THROW(s3_->set_faults(R"([{"action": "status", "method": "FETCH"}])"),
                 std::runtime_error);
    EXPECT_THROW(s3_->set_faults("not json"), std::runtime_error);
    // Nothing was installed: requests pass.
    EXPECT_EQ(get("k").status, 404);
}

TEST_F(S3ServerTest, ResetClearsFaults) {
    s3_->set_faults(R"([{"times": -1, "action": "status", "status": 503, "code": "SlowDown"}])");
    EXPECT_EQ(get("k").status, 503);
    s3_->reset();
    EXPECT_EQ(get("k").status, 404);
    EXPECT_EQ(s3_->request_log().size(), 1u);
}

TEST_F(S3ServerTest, StoppedUpstreamIsServiceUnavailable) {
    ASSERT_EQ(put("k", "v").status, 200);
    s3_->stop_upstream();
    auto g = get("k");
    EXPECT_EQ(g.status, 503);
    EXPECT_NE(g.body.find("<Code>ServiceUnavailable</Code>"), std::string::npos) << g.body;
    EXPECT_EQ(s3_->request_log().size(), 2u) << "the gate itself still answers";
}

TEST(S3Server, CreatesEveryBucketAndStopsBothProcesses) {
    std::optional<S3Server> s3;
    try {
        s3.emplace(std::vector<std::string>{"first-bucket", "second-bucket"});
    } catch (const ServerUnavailable& e) {
        GTEST_SKIP() << e.what();
    }
    EXPECT_TRUE(std::filesystem::is_directory(s3->data_dir() / "first-bucket"));
    EXPECT_TRUE(std::filesystem::is_directory(s3->data_dir() / "second-bucket"));
    EXPECT_FALSE(std::filesystem::exists(s3->data_dir() / "mlk-test"));
    const int gate = s3->gate_port(), upstream = s3->upstream_port();
    EXPECT_NE(gate, upstream);
    EXPECT_TRUE(wait_for_port(gate, 1s));
    s3.reset();
    EXPECT_FALSE(wait_for_port(gate, 100ms));
    EXPECT_FALSE(wait_for_port(upstream, 100ms));
}

}  // namespace
}  // namespace mlk::testing
