// S3 requests for the off-site copy: every call signed by libcurl (AWS SigV4), checked with a
// checksum the server verifies (Content-MD5), retried on transient failures (connection errors,
// timeouts, 5xx, 429 and SlowDown) with exponential backoff and jitter, each attempt bounded by
// the request timeout. Large files go up as parallel multipart uploads that are aborted when
// they fail, and come down as parallel ranged GETs.
// Thread safety: an S3Client may be used from several threads at once (each request has its own
// curl handle); the transfer functions start their own worker threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/storage/s3/s3_settings.hpp"
#include "mlkeeper/storage/s3/s3_xml.hpp"

namespace mlk::storage::s3 {

// A request that failed for good. what() is one line naming the operation, the s3:// URL, the
// status and S3's error code and message, and the number of attempts; never a secret.
class S3Error : public Error {
  public:
    S3Error(const std::string& message, long status, std::string code)
        : Error(message), status_(status), code_(std::move(code)) {}
    long status() const { return status_; }            // 0: no HTTP answer (connection, timeout)
    const std::string& code() const { return code_; }  // "NoSuchKey", "SignatureDoesNotMatch", ...

  private:
    long status_;
    std::string code_;
};

// Progress of a transfer in bytes, called from worker threads (must be thread safe).
using ByteProgress = std::function<void(std::uint64_t bytes)>;

struct TransferStats {
    std::uint64_t bytes = 0;
    std::string sha256;  // downloads: the SHA-256 of the file written (hashed while it arrives)
    int parts = 1;       // 1 for a single PUT/GET
    int retries = 0;     // attempts beyond the first, over all requests
    double seconds = 0;
};

class S3Client {
  public:
    explicit S3Client(S3Settings settings);

    const S3Settings& settings() const { return settings_; }

    // Uploads a file: one PUT up to part_size, else a multipart upload with `parallel` parts in
    // flight, aborted (no parts left billed) if any part finally fails. Constant memory: parts
    // are read from the file as they are sent.
    TransferStats upload_file(const std::string& key, const std::filesystem::path& file,
                              const std::string& content_type, const ByteProgress& progress = {});
    // A small object from memory (manifests, checksum lines).
    void put_bytes(const std::string& key, const std::string& body,
                   const std::string& content_type);

    // Downloads into `file` (created or truncated): one GET, or `parallel` ranged GETs for
    // objects over part_size, hashing the parts in order as they arrive. kNo skips the fsync,
    // for scratch copies that are deleted when the command ends. Throws S3Error with code
    // "NoSuchKey" for a missing object, mlk::Error naming the file when it cannot be written.
    enum class FileSync { kYes, kNo };
    // `size`, when the caller already knows it (a HEAD or a listing), saves a HEAD.
    TransferStats download_file(const std::string& key, const std::filesystem::path& file,
                                FileSync sync, const ByteProgress& progress = {},
                                std::optional<std::uint64_t> size = std::nullopt);
    std::string get_bytes(const std::string& key);
    // A small object, or nullopt when it does not exist (one GET, no HEAD first).
    std::optional<std::string> get_bytes_if_exists(const std::string& key);

    // Size of the object, or nullopt when it does not exist.
    std::optional<std::uint64_t> head(const std::string& key);
    // Every object under `prefix` (all pages).
    std::vector<ObjectInfo> list(const std::string& prefix);
    void remove(const std::string& key);  // a missing key is not an error (S3 semantics)

    // Attempts beyond the first over all requests so far.
    int retries() const { return retries_.load(); }

  private:
    // The multipart upload of `size` bytes of `fd`; returns the number of parts.
    int upload_parts(const std::string& key, int fd, std::uint64_t size,
                     const std::string& content_type, const ByteProgress& progress);
    TransferStats download_file_to(const std::string& key, const std::filesystem::path& file,
                                   FileSync sync, const ByteProgress& progress,
                                   std::optional<std::uint64_t> size);

    S3Settings settings_;
    std::atomic<int> retries_{0};

    friend struct Request;
};

}  // namespace mlk::storage::s3
