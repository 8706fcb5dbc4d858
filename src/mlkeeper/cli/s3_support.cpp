#include "mlkeeper/cli/s3_support.hpp"

#include <cerrno>
#include <cstdlib>
#include <system_error>

#include "mlkeeper/storage/s3/credentials.hpp"
#include "mlkeeper/util/host.hpp"

namespace mlk::cli {

storage::s3::S3Settings s3_settings(const Context& ctx, const std::string& bucket) {
    return storage::s3::settings_from_config(ctx.config(), storage::s3::process_env(),
                                             util::host_name(), bucket);
}

DownloadDir::DownloadDir(const std::filesystem::path& parent) {
    std::filesystem::create_directories(parent);
    std::string templ = (parent / ".mlkeeper-download-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) {
        throw std::system_error(errno, std::generic_category(), "mkdtemp in " + parent.string());
    }
    path_ = templ;
}

DownloadDir::~DownloadDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

}  // namespace mlk::cli
