// libcurl, loaded on first use with dlopen("libcurl.so.4"). Linking it directly costs every
// command about 4 ms of dynamic linking (libcurl pulls in gnutls, krb5, ldap, ssh2, ...) although
// only alerts, webhooks and S3 talk to the network; a `health` run takes ~13 ms in all.
// Call sites use curl() the way they would use the C API; <curl/curl.h> still supplies the types.
// Thread safety: curl() is safe from any thread; the first call also runs curl_global_init once.
#pragma once

#include <curl/curl.h>

#include <memory>

namespace mlk::core {

struct CurlLib {
    CURL* (*easy_init)();
    CURLcode (*easy_setopt)(CURL*, CURLoption, ...);
    CURLcode (*easy_perform)(CURL*);
    CURLcode (*easy_getinfo)(CURL*, CURLINFO, ...);
    void (*easy_cleanup)(CURL*);
    const char* (*easy_strerror)(CURLcode);
    curl_slist* (*slist_append)(curl_slist*, const char*);
    void (*slist_free_all)(curl_slist*);
    curl_version_info_data* (*version_info)(CURLversion);
};

// The loaded library. Throws mlk::Error ("libcurl.so.4 cannot be loaded: ...; install libcurl4")
// if it is missing or lacks a symbol, or if curl_global_init fails; later calls rethrow the same.
const CurlLib& curl();

struct CurlEasyDeleter {
    void operator()(CURL* h) const { curl().easy_cleanup(h); }
};
struct CurlSlistDeleter {
    void operator()(curl_slist* l) const { curl().slist_free_all(l); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyDeleter>;
using CurlSlist = std::unique_ptr<curl_slist, CurlSlistDeleter>;

}  // namespace mlk::core
