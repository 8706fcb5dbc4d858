#include "mlkeeper/core/curl_lib.hpp"

#include <dlfcn.h>

#include <string>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/shared_lib.hpp"

namespace mlk::core {
namespace {

constexpr const char* kSoname = "libcurl.so.4";

void bind(void* handle, auto& slot, const char* symbol) {
    try {
        util::bind_symbol(handle, slot, symbol, kSoname);
    } catch (const std::runtime_error& e) {
        throw Error(e.what() + std::string("; reinstall libcurl4 (7.68 or newer)"));
    }
}

CurlLib load() {
    // Never dlclose()d: handles and curl's own threads may outlive any owner we could pick.
    void* h = dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
        const char* why = dlerror();
        throw Error(std::string(kSoname) + " cannot be loaded (" + (why ? why : "unknown error") +
                    "); install libcurl4 to send alerts and use HTTP or S3");
    }
    CurlLib lib{};
    bind(h, lib.easy_init, "curl_easy_init");
    bind(h, lib.easy_setopt, "curl_easy_setopt");
    bind(h, lib.easy_perform, "curl_easy_perform");
    bind(h, lib.easy_getinfo, "curl_easy_getinfo");
    bind(h, lib.easy_cleanup, "curl_easy_cleanup");
    bind(h, lib.easy_strerror, "curl_easy_strerror");
    bind(h, lib.slist_append, "curl_slist_append");
    bind(h, lib.slist_free_all, "curl_slist_free_all");
    bind(h, lib.version_info, "curl_version_info");
    CURLcode (*global_init)(long) = nullptr;
    bind(h, global_init, "curl_global_init");
    // Not thread safe by contract, so it runs inside the magic static that guards the load.
    if (const CURLcode rc = global_init(CURL_GLOBAL_DEFAULT); rc != CURLE_OK) {
        throw Error(std::string("curl_global_init failed: ") + lib.easy_strerror(rc));
    }
    return lib;
}

}  // namespace

const CurlLib& curl() {
    // A throwing initializer leaves the static uninitialized, so a later call tries again and
    // reports the same error; loading is cheap to repeat when it fails.
    static const CurlLib lib = load();
    return lib;
}

}  // namespace mlk::core
