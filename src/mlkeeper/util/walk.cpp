#include "mlkeeper/util/walk.hpp"

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <system_error>
#include <vector>

namespace mlk::util {
namespace {

struct DirCloser {
    void operator()(DIR* d) const { ::closedir(d); }
};

struct Walker {
    const WalkVisitor& visit;
    const WalkErrorHandler& on_error;
    CrossMounts cross;
    dev_t root_dev = 0;

    void descend(const WalkEntry& dir) {
        std::unique_ptr<DIR, DirCloser> d(::opendir(dir.path.c_str()));
        if (!d) {
            on_error({dir.path, errno});
            return;
        }
        std::vector<std::string> names;
        errno = 0;
        while (const dirent* e = ::readdir(d.get())) {
            if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
                names.emplace_back(e->d_name);
            }
            errno = 0;
        }
        if (errno != 0) {
            on_error({dir.path, errno});
        }
        d.reset();
        std::sort(names.begin(), names.end());
        for (const auto& name : names) {
            WalkEntry child;
            child.path = dir.path / name;
            child.rel = dir.rel + "/" + name;
            child.depth = dir.depth + 1;
            if (::lstat(child.path.c_str(), &child.st) != 0) {
                on_error({child.path, errno});  // vanished since readdir
                continue;
            }
            enter(child);
        }
    }

    void enter(const WalkEntry& e) {
        if (visit(e) == WalkAction::kSkipSubtree || !S_ISDIR(e.st.st_mode)) {
            return;
        }
        if (cross == CrossMounts::kNo && e.st.st_dev != root_dev) {
            return;
        }
        descend(e);
    }
};

}  // namespace

void walk_tree(const std::filesystem::path& root, const std::string& root_rel,
               const WalkVisitor& visit, const WalkErrorHandler& on_error, CrossMounts cross) {
    WalkEntry top;
    top.path = root;
    top.rel = root_rel;
    if (::lstat(root.c_str(), &top.st) != 0) {
        throw std::system_error(errno, std::generic_category(), "cannot read " + root.string());
    }
    Walker w{visit, on_error, cross, top.st.st_dev};
    w.enter(top);
}

}  // namespace mlk::util
