// What the backup commands share for the off-site copy: S3 settings from [backup.s3]
// and the environment's credentials, and a scratch directory for downloads that is removed
// when the command ends.
// Thread safety: single-threaded command code.
#pragma once

#include <filesystem>
#include <string>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/storage/s3/s3_client.hpp"

namespace mlk::cli {

// [backup.s3] with the environment's credentials, for an S3Client. Throws ConfigError
// (exit 78) when the bucket or the credentials are missing.
storage::s3::S3Settings s3_settings(const Context& ctx, const std::string& bucket = {});

// A fresh directory "<parent>/.mlkeeper-download-XXXXXX", removed with its contents by the
// destructor.
class DownloadDir {
  public:
    explicit DownloadDir(const std::filesystem::path& parent);
    ~DownloadDir();
    DownloadDir(const DownloadDir&) = delete;
    DownloadDir& operator=(const DownloadDir&) = delete;
    const std::filesystem::path& path() const { return path_; }

  private:
    std::filesystem::path path_;
};

}  // namespace mlk::cli
