#include "support/tree.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <random>

#include "mlkeeper/util/sha256.hpp"
#include "mlkeeper/util/walk.hpp"

namespace mlk::testing {
namespace fs = std::filesystem;

void write_random_file(const fs::path& p, std::size_t n, unsigned seed) {
    fs::create_directories(p.parent_path());
    std::mt19937_64 rng(seed);
    std::string data(n, '\0');
    for (std::size_t i = 0; i < n; i += 8) {
        auto v = rng();
        for (std::size_t k = 0; k < 8 && i + k < n; ++k) {
            data[i + k] = static_cast<char>(v >> (8 * k));
        }
    }
    std::ofstream(p, std::ios::binary) << data;
}

fs::path make_model_tree(const fs::path& dir, const std::string& name) {
    auto root = dir / name;
    fs::create_directories(root / "resnet50");
    fs::create_directories(root / "bert base" / "tokenizer");
    fs::create_directories(root / "empty-dir");
    write_random_file(root / "resnet50" / "model.pt", 300'000, 1);
    std::ofstream(root / "resnet50" / "config.json") << R"({"layers": 50})";
    std::ofstream(root / "bert base" / "tokenizer" / "vocab.txt") << "[PAD]\n[UNK]\nhello\n";
    std::ofstream(root / "bert base" / "weights ü.bin") << std::string(5000, 'w');
    std::ofstream(root / "run.sh") << "#!/bin/sh\necho run\n";
    fs::permissions(root / "run.sh", fs::perms(0755));
    std::ofstream(root / "readonly.txt") << "do not touch";
    fs::permissions(root / "readonly.txt", fs::perms(0444));
    std::string long_name(120, 'L');
    std::ofstream(root / "bert base" / (long_name + ".json")) << "{}";
    fs::create_symlink("resnet50", root / "latest");
    fs::create_symlink("does-not-exist", root / "dangling");
    fs::create_hard_link(root / "resnet50" / "config.json", root / "config-hardlink.json");
    {
        // 8 MiB sparse file with data at 1 MiB and at the very end.
        int fd = ::open((root / "sparse.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        (void)::pwrite(fd, "data", 4, 1 << 20);
        (void)::pwrite(fd, "tail", 4, (8 << 20) - 4);
        ::close(fd);
    }
    return root;
}

std::map<std::string, std::string> snapshot(const fs::path& root) {
    std::map<std::string, std::string> out;
    std::map<std::pair<dev_t, ino_t>, std::string> first_path;
    util::walk_tree(
        root, root.filename().string(),
        [&](const util::WalkEntry& e) {
            const auto& st = e.st;
            std::string d;
            if (S_ISDIR(st.st_mode)) {
                d = "dir";
            } else if (S_ISLNK(st.st_mode)) {
                d = "link->" + fs::read_symlink(e.path).string();
            } else if (S_ISREG(st.st_mode)) {
                d = "file size=" + std::to_string(st.st_size) +
                    " sha=" + util::sha256_file_hex(e.path);
                if (st.st_nlink > 1) {
                    auto [it, inserted] =
                        first_path.emplace(std::make_pair(st.st_dev, st.st_ino), e.rel);
                    d += " linkgroup=" + it->second;
                }
            }
            d += " mode=" + std::to_string(st.st_mode & 07777);
            if (!S_ISLNK(st.st_mode)) {
                d += " mtime=" + std::to_string(st.st_mtim.tv_sec);
            }
            out[e.rel] = d;
            return util::WalkAction::kContinue;
        },
        [](const util::WalkError&) {});
    return out;
}

}  // namespace mlk::testing
