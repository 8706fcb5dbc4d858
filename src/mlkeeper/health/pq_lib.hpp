// libpq, loaded on first use with dlopen("libpq.so.5"): only PostgreSQL probes need it, and
// linking it would make every command pay for its dependencies (ldap, krb5, ...) at start-up.
// Thread safety: pq() is safe from any thread; libpq's ping and conninfo functions are too.
#pragma once

#include <libpq-fe.h>

namespace mlk::health {

struct PqLib {
    PGPing (*ping)(const char* conninfo);
    PGPing (*ping_params)(const char* const* keywords, const char* const* values,
                          int expand_dbname);
    PQconninfoOption* (*conninfo_parse)(const char* conninfo, char** errmsg);
    void (*conninfo_free)(PQconninfoOption* options);
    void (*freemem)(void* ptr);
};

// The loaded library. Throws mlk::Error ("libpq.so.5 cannot be loaded: ...; install libpq5")
// when it is missing; later calls try again.
const PqLib& pq();

}  // namespace mlk::health
