#include "mlkeeper/storage/s3/s3_client.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <system_error>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "mlkeeper/core/http_client.hpp"
#include "mlkeeper/util/sha256.hpp"

namespace mlk::storage::s3 {

using core::HttpError;
using core::HttpRequest;
using core::HttpResponse;
using Query = std::vector<std::pair<std::string, std::string>>;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kReadChunk = 1 << 20;
constexpr int kMaxParts = 10000;

// An open file for positional reads and writes, closed by the destructor.
class Fd {
  public:
    Fd(const std::filesystem::path& p, int flags)
        : fd_(::open(p.c_str(), flags | O_CLOEXEC, 0600)) {
        if (fd_ < 0) {
            throw std::system_error(errno, std::generic_category(), "open " + p.string());
        }
    }
    ~Fd() { ::close(fd_); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

  private:
    int fd_;
};

std::size_t pread_some(int fd, char* buf, std::size_t n, std::uint64_t offset) {
    for (;;) {
        const ssize_t r = ::pread(fd, buf, n, static_cast<off_t>(offset));
        if (r >= 0) {
            return static_cast<std::size_t>(r);
        }
        if (errno != EINTR) {
            throw std::system_error(errno, std::generic_category(), "read");
        }
    }
}

void pwrite_all(int fd, std::string_view data, std::uint64_t offset) {
    while (!data.empty()) {
        const ssize_t w = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::system_error(errno, std::generic_category(), "write");
        }
        data.remove_prefix(static_cast<std::size_t>(w));
        offset += static_cast<std::uint64_t>(w);
    }
}

std::string base64(const unsigned char* data, std::size_t n) {
    std::string out(4 * ((n + 2) / 3), '\0');
    const int len =
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
    out.resize(static_cast<std::size_t>(len));
    return out;
}

// Base64 MD5 (Content-MD5) of bytes, or of `length` bytes of `fd` from `offset`.
class Md5 {
  public:
    Md5() : ctx_(EVP_MD_CTX_new()) {
        if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_md5(), nullptr) != 1) {
            EVP_MD_CTX_free(ctx_);
            throw std::runtime_error("OpenSSL MD5 is not available");
        }
    }
    ~Md5() { EVP_MD_CTX_free(ctx_); }
    Md5(const Md5&) = delete;
    Md5& operator=(const Md5&) = delete;
    void update(const void* p, std::size_t n) { EVP_DigestUpdate(ctx_, p, n); }
    std::string finish_base64() {
        std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
        unsigned int len = 0;
        EVP_DigestFinal_ex(ctx_, md.data(), &len);
        return base64(md.data(), len);
    }

  private:
    EVP_MD_CTX* ctx_;
};

std::string md5_base64(std::string_view data) {
    Md5 m;
    m.update(data.data(), data.size());
    return m.finish_base64();
}

std::string md5_base64(int fd, std::uint64_t offset, std::uint64_t length) {
    Md5 m;
    std::vector<char> buf(kReadChunk);
    while (length > 0) {
        const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(length, buf.size()));
        const auto got = pread_some(fd, buf.data(), want, offset);
        if (got == 0) {
            throw std::runtime_error("the file shrank while it was being uploaded");
        }
        m.update(buf.data(), got);
        offset += got;
        length -= got;
    }
    return m.finish_base64();
}

// One line, bounded, with any secret scrubbed (servers may echo what they received).
std::string clean(std::string text, const Credentials& c) {
    for (const std::string* secret : {&c.secret_access_key, &c.session_token}) {
        if (secret->size() >= 4) {
            for (auto at = text.find(*secret); at != std::string::npos; at = text.find(*secret)) {
                text.replace(at, secret->size(), "REDACTED");
            }
        }
    }
    std::replace_if(
        text.begin(), text.end(), [](char ch) { return ch == '\n' || ch == '\r'; }, ' ');
    if (text.size() > 240) {
        text.resize(240);
        text += "...";
    }
    return text;
}

bool transient_status(long status, const std::string& code) {
    return status >= 500 || status == 429 || code == "SlowDown" || code == "RequestTimeout" ||
           code == "InternalError" || code == "ServiceUnavailable";
}

bool transient_transport(const HttpError& e) {
    switch (e.kind()) {
        case HttpError::Kind::kConnect:
        case HttpError::Kind::kTimeout:
            return true;
        case HttpError::Kind::kTls:
            return false;
        case HttpError::Kind::kOther:
            return e.curl_code() == CURLE_SEND_ERROR || e.curl_code() == CURLE_RECV_ERROR ||
                   e.curl_code() == CURLE_GOT_NOTHING || e.curl_code() == CURLE_PARTIAL_FILE ||
                   e.curl_code() == CURLE_HTTP2 || e.curl_code() == CURLE_HTTP2_STREAM;
    }
    return false;
}

bool auth_code(const std::string& code) {
    return code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" ||
           code == "AccessDenied" || code == "ExpiredToken" || code == "InvalidToken" ||
           code == "TokenRefreshRequired";
}

// Runs fn(0) .. fn(count - 1) on up to `parallel` threads. After the first exception no new
// index is started; the running ones finish, and that first exception is rethrown.
void for_each_part(int count, int parallel, const std::function<void(int)>& fn) {
    std::atomic<int> next{0};
    std::atomic<bool> failed{false};
    std::mutex error_mu;
    std::exception_ptr error;
    auto worker = [&] {
        for (int i = next++; i < count && !failed.load(); i = next++) {
            try {
                fn(i);
            } catch (...) {
                std::lock_guard lock(error_mu);
                if (!error) {
                    error = std::current_exception();
                }
                failed = true;
            }
        }
    };
    {
        std::vector<std::jthread> pool;
        for (int t = 0; t < std::min(parallel, count); ++t) {
            pool.emplace_back(worker);
        }
    }
    if (error) {
        std::rethrow_exception(error);
    }
}

}  // namespace

// One S3 operation, retried as a whole. The body comes from `body` or from a range of a file;
// a 2xx response body goes to `body` of the response or into a file at an offset.
struct Request {
    std::string method;
    std::string key;
    Query query;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    int body_fd = -1;  // with body_fd: the bytes [body_offset, body_offset + body_length)
    std::uint64_t body_offset = 0;
    std::uint64_t body_length = 0;
    int sink_fd = -1;  // with sink_fd: a 2xx body is written there from sink_offset on
    std::uint64_t sink_offset = 0;
    const ByteProgress* progress = nullptr;  // bytes sent or received
    std::vector<long> ok = {200};

    HttpResponse run(S3Client& client) const;

  private:
    HttpRequest build(const S3Settings& s) const;
};

HttpRequest Request::build(const S3Settings& s) const {
    HttpRequest r;
    r.method = method;
    r.url = object_url(s, key, query);
    r.headers = headers;
    // Bodies in memory are signed with their hash; file bodies are streamed unsigned and
    // protected by Content-MD5 instead (hashing twice would halve the upload rate).
    r.headers.emplace_back("x-amz-content-sha256",
                           body_fd >= 0 ? std::string("UNSIGNED-PAYLOAD") : util::sha256_hex(body));
    if (!s.credentials.session_token.empty()) {
        r.headers.emplace_back("x-amz-security-token", s.credentials.session_token);
    }
    r.sigv4 = core::AwsSigV4{"aws:amz:" + s.region + ":s3", s.credentials.access_key_id,
                             s.credentials.secret_access_key};
    r.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(s.request_timeout);
    r.connect_timeout = std::chrono::seconds(10);
    r.stall_timeout = std::chrono::seconds(60);
    r.ca_file = s.ca_file;
    return r;
}

HttpResponse Request::run(S3Client& client) const {
    const S3Settings& s = client.settings_;
    const std::string where = fmt::format("S3 {} {}", method, s3_url(s.bucket, key));
    thread_local std::mt19937_64 rng{std::random_device{}()};
    std::string last;
    long last_status = 0;
    std::string last_code;
    for (int attempt = 1;; ++attempt) {
        HttpRequest r = build(s);
        std::uint64_t read_pos = body_offset;
        const std::uint64_t read_end = body_offset + body_length;
        if (body_fd >= 0) {
            r.body_size = body_length;
            r.body_reader = [&, fd = body_fd](char* buf, std::size_t max) -> std::size_t {
                const auto want =
                    static_cast<std::size_t>(std::min<std::uint64_t>(max, read_end - read_pos));
                if (want == 0) {
                    return 0;
                }
                const auto got = pread_some(fd, buf, want, read_pos);
                if (got == 0) {
                    throw std::runtime_error("the file shrank while it was being uploaded");
                }
                read_pos += got;
                if (progress != nullptr && *progress) {
                    (*progress)(got);
                }
                return got;
            };
        } else {
            r.body = body;
        }
        std::uint64_t write_pos = sink_offset;
        if (sink_fd >= 0) {
            r.body_writer = [&, fd = sink_fd](std::string_view chunk) {
                pwrite_all(fd, chunk, write_pos);
                write_pos += chunk.size();
                if (progress != nullptr && *progress) {
                    (*progress)(chunk.size());
                }
            };
        }
        bool retry = false;
        try {
            HttpResponse resp = core::http_request(r);
            if (std::find(ok.begin(), ok.end(), resp.status) != ok.end()) {
                // CompleteMultipartUpload may fail with 200 and an <Error> body.
                auto err = resp.status == 200 && sink_fd < 0 &&
                                   resp.body.find("<Error>") != std::string::npos
                               ? parse_error(resp.body)
                               : std::nullopt;
                if (!err) {
                    return resp;
                }
                last_status = 200;
                last_code = err->code;
                last = fmt::format("{}: {}", err->code, err->message);
                retry = transient_status(500, err->code);
            } else {
                auto err = parse_error(resp.body);
                last_status = resp.status;
                last_code = err ? err->code : "";
                last = err ? fmt::format("{} {}: {}", resp.status, err->code, err->message)
                           : fmt::format("HTTP {}", resp.status);
                retry = transient_status(resp.status, last_code);
            }
        } catch (const HttpError& e) {
            last_status = 0;
            last_code.clear();
            last = e.detail();
            retry = transient_transport(e);
        }
        if (!retry || attempt >= s.attempts) {
            std::string msg = fmt::format("{}: {}", where, clean(last, s.credentials));
            if (attempt > 1) {
                msg += fmt::format(" (after {} attempts)", attempt);
            }
            if (auth_code(last_code)) {
                msg += fmt::format(" -- check the access key {} (from {}) and its secret",
                                   mask_key_id(s.credentials.access_key_id), s.credentials.source);
            }
            throw S3Error(msg, last_status, last_code);
        }
        // Exponential backoff with "equal jitter": half the step fixed, half random.
        const auto step = s.retry_base * (1LL << std::min(attempt - 1, 10));
        const auto capped = std::min<std::chrono::milliseconds>(step, std::chrono::seconds(30));
        std::uniform_int_distribution<long long> jitter(0, capped.count() / 2);
        const auto wait = std::chrono::milliseconds(capped.count() / 2 + jitter(rng));
        spdlog::warn("{}: {}; retrying in {} ms (attempt {} of {})", where,
                     clean(last, s.credentials), wait.count(), attempt + 1, s.attempts);
        client.retries_.fetch_add(1);
        std::this_thread::sleep_for(wait);
    }
}

S3Client::S3Client(S3Settings settings) : settings_(std::move(settings)) {}

void S3Client::put_bytes(const std::string& key, const std::string& body,
                         const std::string& content_type) {
    Request r;
    r.method = "PUT";
    r.key = key;
    r.body = body;
    r.headers = {{"Content-Type", content_type}, {"Content-MD5", md5_base64(body)}};
    r.run(*this);
}

TransferStats S3Client::upload_file(const std::string& key, const std::filesystem::path& file,
                                    const std::string& content_type, const ByteProgress& progress) {
    const auto start = Clock::now();
    const int retries_before = retries_.load();
    Fd fd(file, O_RDONLY);
    const std::uint64_t size = std::filesystem::file_size(file);
    TransferStats st;
    st.bytes = size;
    if (size <= settings_.part_size) {
        Request r;
        r.method = "PUT";
        r.key = key;
        r.body_fd = fd.get();
        r.body_length = size;
        r.progress = &progress;
        r.headers = {{"Content-Type", content_type},
                     {"Content-MD5", md5_base64(fd.get(), 0, size)},
                     {"x-amz-storage-class", settings_.storage_class}};
        r.run(*this);
    } else {
        st.parts = upload_parts(key, fd.get(), size, content_type, progress);
    }
    if (auto remote = head(key); !remote || *remote != size) {
        throw S3Error(fmt::format("S3 PUT {}: the stored object has {} bytes, the file {}",
                                  s3_url(settings_.bucket, key),
                                  remote ? std::to_string(*remote) : "no", size),
                      0, "");
    }
    st.retries = retries_.load() - retries_before;
    st.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return st;
}

int S3Client::upload_parts(const std::string& key, int fd_in, std::uint64_t size,
                           const std::string& content_type, const ByteProgress& progress) {
    std::uint64_t part = settings_.part_size;
    if ((size + part - 1) / part > kMaxParts) {
        const std::uint64_t mib = 1ULL << 20;
        part = ((size + kMaxParts - 1) / kMaxParts + mib - 1) / mib * mib;
    }
    const int parts = static_cast<int>((size + part - 1) / part);

    Request init;
    init.method = "POST";
    init.key = key;
    init.query = {{"uploads", ""}};
    init.headers = {{"Content-Type", content_type},
                    {"x-amz-storage-class", settings_.storage_class}};
    const std::string upload_id = parse_upload_id(init.run(*this).body);

    std::vector<std::string> etags(static_cast<std::size_t>(parts));
    auto send_part = [&](int i) {
        const std::uint64_t offset = static_cast<std::uint64_t>(i) * part;
        const std::uint64_t length = std::min(part, size - offset);
        Request r;
        r.method = "PUT";
        r.key = key;
        r.query = {{"partNumber", std::to_string(i + 1)}, {"uploadId", upload_id}};
        r.body_fd = fd_in;
        r.body_offset = offset;
        r.body_length = length;
        r.progress = &progress;
        r.headers = {{"Content-MD5", md5_base64(fd_in, offset, length)}};
        auto resp = r.run(*this);
        const std::string* etag = resp.header("ETag");
        if (etag == nullptr || etag->empty()) {
            throw S3Error(fmt::format("S3 PUT {} part {}: the server sent no ETag",
                                      s3_url(settings_.bucket, key), i + 1),
                          resp.status, "");
        }
        std::string e = *etag;
        e.erase(std::remove(e.begin(), e.end(), '"'), e.end());
        etags[static_cast<std::size_t>(i)] = e;
    };
    try {
        for_each_part(parts, settings_.parallel, send_part);
        std::vector<std::pair<int, std::string>> list;
        for (int i = 0; i < parts; ++i) {
            list.emplace_back(i + 1, etags[static_cast<std::size_t>(i)]);
        }
        Request done;
        done.method = "POST";
        done.key = key;
        done.query = {{"uploadId", upload_id}};
        done.body = complete_multipart_body(list);
        done.headers = {{"Content-Type", "application/xml"},
                        {"Content-MD5", md5_base64(done.body)}};
        done.run(*this);
    } catch (...) {
        // Parts of an upload never completed stay stored (and billed) until aborted.
        try {
            Request abort;
            abort.method = "DELETE";
            abort.key = key;
            abort.query = {{"uploadId", upload_id}};
            abort.ok = {204, 200, 404};
            abort.run(*this);
            spdlog::info("aborted the multipart upload of {}", s3_url(settings_.bucket, key));
        } catch (const std::exception& e) {
            spdlog::error("could not abort the multipart upload {} of {}: {}", upload_id,
                          s3_url(settings_.bucket, key), e.what());
        }
        throw;
    }
    return parts;
}

std::optional<std::uint64_t> S3Client::head(const std::string& key) {
    Request r;
    r.method = "HEAD";
    r.key = key;
    r.ok = {200, 404};
    auto resp = r.run(*this);
    if (resp.status == 404) {
        return std::nullopt;
    }
    const std::string* len = resp.header("Content-Length");
    if (len == nullptr) {
        throw S3Error(fmt::format("S3 HEAD {}: no Content-Length", s3_url(settings_.bucket, key)),
                      resp.status, "");
    }
    return std::stoull(*len);
}

std::string S3Client::get_bytes(const std::string& key) {
    Request r;
    r.method = "GET";
    r.key = key;
    return r.run(*this).body;
}

std::optional<std::string> S3Client::get_bytes_if_exists(const std::string& key) {
    Request r;
    r.method = "GET";
    r.key = key;
    r.ok = {200, 404};
    auto resp = r.run(*this);
    if (resp.status == 404) {
        return std::nullopt;
    }
    return std::move(resp.body);
}

TransferStats S3Client::download_file(const std::string& key, const std::filesystem::path& file,
                                      FileSync sync, const ByteProgress& progress,
                                      std::optional<std::uint64_t> size) {
    try {
        return download_file_to(key, file, sync, progress, size);
    } catch (const std::system_error& e) {
        throw Error(fmt::format("S3 GET {}: cannot write {}: {}", s3_url(settings_.bucket, key),
                                file.string(), e.code().message()));
    }
}

namespace {

// Hashes [from, to) of `fd` (bytes already written), appending to `sha`.
void hash_range(int fd, std::uint64_t from, std::uint64_t to, util::Sha256& sha,
                std::vector<char>& buf) {
    while (from < to) {
        const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(to - from, buf.size()));
        const auto got = pread_some(fd, buf.data(), want, from);
        if (got == 0) {
            throw std::runtime_error("the downloaded file shrank while it was hashed");
        }
        sha.update(buf.data(), got);
        from += got;
    }
}

}  // namespace

TransferStats S3Client::download_file_to(const std::string& key, const std::filesystem::path& file,
                                         FileSync sync, const ByteProgress& progress,
                                         std::optional<std::uint64_t> size) {
    const auto start = Clock::now();
    const int retries_before = retries_.load();
    if (!size) {
        size = head(key);
    }
    if (!size) {
        throw S3Error(fmt::format("S3 GET {}: no such object", s3_url(settings_.bucket, key)), 404,
                      "NoSuchKey");
    }
    Fd fd(file, O_RDWR | O_CREAT | O_TRUNC);
    TransferStats st;
    st.bytes = *size;
    util::Sha256 sha;
    std::vector<char> buf(kReadChunk);
    if (*size <= settings_.part_size) {
        Request r;
        r.method = "GET";
        r.key = key;
        r.sink_fd = fd.get();
        r.progress = &progress;
        r.run(*this);
        hash_range(fd.get(), 0, *size, sha, buf);
    } else {
        if (::ftruncate(fd.get(), static_cast<off_t>(*size)) != 0) {
            throw std::system_error(errno, std::generic_category(), "truncate " + file.string());
        }
        const std::uint64_t part = settings_.part_size;
        const int parts = static_cast<int>((*size + part - 1) / part);
        st.parts = parts;
        // Ranges arrive out of order on the workers; this thread hashes each part as soon as
        // every part before it is in, so hashing overlaps the transfer instead of following it.
        std::mutex mu;
        std::condition_variable cv;
        std::vector<bool> done(static_cast<std::size_t>(parts), false);
        bool finished = false;
        std::exception_ptr error;
        std::jthread workers([&] {
            try {
                for_each_part(parts, settings_.parallel, [&](int i) {
                    const std::uint64_t offset = static_cast<std::uint64_t>(i) * part;
                    const std::uint64_t last = std::min(offset + part, *size) - 1;
                    Request r;
                    r.method = "GET";
                    r.key = key;
                    r.headers = {{"Range", fmt::format("bytes={}-{}", offset, last)}};
                    r.ok = {206};
                    r.sink_fd = fd.get();
                    r.sink_offset = offset;
                    r.progress = &progress;
                    r.run(*this);
                    std::lock_guard lock(mu);
                    done[static_cast<std::size_t>(i)] = true;
                    cv.notify_one();
                });
            } catch (...) {
                std::lock_guard lock(mu);
                error = std::current_exception();
            }
            std::lock_guard lock(mu);
            finished = true;
            cv.notify_one();
        });
        for (int i = 0; i < parts; ++i) {
            {
                std::unique_lock lock(mu);
                cv.wait(lock, [&] { return done[static_cast<std::size_t>(i)] || finished; });
                if (!done[static_cast<std::size_t>(i)]) {
                    break;  // the workers failed; their error is rethrown below
                }
            }
            const std::uint64_t offset = static_cast<std::uint64_t>(i) * part;
            hash_range(fd.get(), offset, std::min(offset + part, *size), sha, buf);
        }
        workers.join();
        if (error) {
            std::rethrow_exception(error);
        }
    }
    struct stat sb {};
    if (::fstat(fd.get(), &sb) != 0 || static_cast<std::uint64_t>(sb.st_size) != *size) {
        throw S3Error(fmt::format("S3 GET {}: received {} of {} bytes",
                                  s3_url(settings_.bucket, key), sb.st_size, *size),
                      0, "");
    }
    if (sync == FileSync::kYes && ::fsync(fd.get()) != 0) {
        throw std::system_error(errno, std::generic_category(), "fsync " + file.string());
    }
    st.sha256 = sha.finish_hex();
    st.retries = retries_.load() - retries_before;
    st.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return st;
}

std::vector<ObjectInfo> S3Client::list(const std::string& prefix) {
    std::vector<ObjectInfo> out;
    std::string token;
    do {
        Request r;
        r.method = "GET";
        r.key = "";
        r.query = {{"list-type", "2"}, {"prefix", prefix}};
        if (!token.empty()) {
            r.query.emplace_back("continuation-token", token);
        }
        auto page = parse_list_objects_v2(r.run(*this).body);
        for (auto& o : page.objects) {
            out.push_back(std::move(o));
        }
        token = page.truncated ? page.next_continuation_token : "";
    } while (!token.empty());
    return out;
}

void S3Client::remove(const std::string& key) {
    Request r;
    r.method = "DELETE";
    r.key = key;
    r.ok = {204, 200, 404};
    r.run(*this);
}

}  // namespace mlk::storage::s3
