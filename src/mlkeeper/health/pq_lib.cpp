#include "mlkeeper/health/pq_lib.hpp"

#include <dlfcn.h>

#include <string>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/shared_lib.hpp"

namespace mlk::health {
namespace {

constexpr const char* kSoname = "libpq.so.5";

void bind(void* handle, auto& slot, const char* symbol) {
    try {
        util::bind_symbol(handle, slot, symbol, kSoname);
    } catch (const std::runtime_error& e) {
        throw Error(e.what() + std::string("; reinstall libpq5"));
    }
}

PqLib load() {
    void* h = dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);  // never closed: probes may still run
    if (h == nullptr) {
        const char* why = dlerror();
        throw Error(std::string(kSoname) + " cannot be loaded (" + (why ? why : "unknown error") +
                    "); install libpq5 to probe PostgreSQL");
    }
    PqLib lib{};
    bind(h, lib.ping, "PQping");
    bind(h, lib.ping_params, "PQpingParams");
    bind(h, lib.conninfo_parse, "PQconninfoParse");
    bind(h, lib.conninfo_free, "PQconninfoFree");
    bind(h, lib.freemem, "PQfreemem");
    return lib;
}

}  // namespace

const PqLib& pq() {
    static const PqLib lib = load();
    return lib;
}

}  // namespace mlk::health
