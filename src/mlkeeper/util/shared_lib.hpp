// dlsym helpers for the libraries mlkeeper loads on demand (NVML, libcurl, libpq): typed lookups
// with versioned fallbacks, so each loader is a list of names rather than casts.
// Thread safety: dlsym is thread safe; these hold no state.
#pragma once

#include <dlfcn.h>

#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mlk::util {

// The first of `names` the library exports (list the newest version first), or nullptr; `chosen`
// receives the name found.
template <typename Fn>
Fn find_symbol(void* lib, std::initializer_list<const char*> names, std::string* chosen = nullptr) {
    for (const char* n : names) {
        if (void* p = ::dlsym(lib, n)) {
            if (chosen != nullptr) {
                *chosen = n;
            }
            return reinterpret_cast<Fn>(p);
        }
    }
    return nullptr;
}

// Sets `slot` to the symbol `name`; throws std::runtime_error("<soname> has no symbol <name>").
template <typename Fn>
void bind_symbol(void* lib, Fn& slot, const char* name, std::string_view soname) {
    slot = find_symbol<Fn>(lib, {name});
    if (slot == nullptr) {
        throw std::runtime_error(std::string(soname) + " has no symbol " + name);
    }
}

}  // namespace mlk::util
