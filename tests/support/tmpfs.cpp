#include "support/tmpfs.hpp"

#include <sys/mount.h>
#include <unistd.h>

namespace mlk::testing {

std::unique_ptr<ScopedTmpfs> ScopedTmpfs::mount(const std::filesystem::path& dir,
                                                const std::string& size) {
    std::filesystem::create_directories(dir);
    const std::string opts = "size=" + size;
    if (::geteuid() != 0 || ::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
        return nullptr;
    }
    return std::unique_ptr<ScopedTmpfs>(new ScopedTmpfs(dir));
}

ScopedTmpfs::~ScopedTmpfs() {
    ::umount2(dir_.c_str(), MNT_DETACH);
}

}  // namespace mlk::testing
