#include "mlkeeper/backup/codec.hpp"
#include "support/temp_dir.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace mlk::backup {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::size_t kBlock = kGzipBlockSize;

class StringSink final : public ByteSink {
  public:
    void write(const void* data, std::size_t n) override {
        data_.append(static_cast<const char*>(data), n);
    }
    std::string data_;
};

// Accepts `budget` bytes, then fails like a full disk.
class FullDiskSink final : public ByteSink {
  public:
    explicit FullDiskSink(std::size_t budget) : budget_(budget) {}
    void write(const void* /*data*/, std::size_t n) override {
        if (n > budget_) {
            budget_ = 0;
            throw std::system_error(ENOSPC, std::generic_category(), "write /backups/x.tar");
        }
        budget_ -= n;
    }

  private:
    std::size_t budget_;
};

std::string random_data(std::size_t n, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::string s(n, '\0');
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const std::uint64_t v = rng();
        std::memcpy(s.data() + i, &v, 8);
    }
    for (; i < n; ++i) {
        s[i] = static_cast<char>(rng() & 0xFF);
    }
    return s;
}

// Log-like text: compresses well but is not trivially repetitive.
std::string compressible_data(std::size_t n, unsigned seed) {
    static const char* const kWords[] = {"epoch",      "loss", "accuracy", "step",  "lr",
                                         "checkpoint", "gpu",  "memory",   "saved", "warmup"};
    std::mt19937 rng(seed);
    std::string s;
    s.reserve(n + 64);
    while (s.size() < n) {
        s += kWords[rng() % 10];
        s += '=';
        s += std::to_string(rng() % 10000);
        s += (rng() % 8 == 0) ? '\n' : ' ';
    }
    s.resize(n);
    return s;
}

// Feeds `data` to the compressor in irregular pieces, so block boundaries fall mid-write.
std::string compress(Codec codec, int level, unsigned threads, const std::string& data) {
    StringSink sink;
    auto c = make_compressor(codec, level, threads, sink);
    std::mt19937 rng(42);
    std::size_t off = 0;
    while (off < data.size()) {
        const std::size_t n = std::min<std::size_t>(data.size() - off, 1 + rng() % 300'000);
        c->write(data.data() + off, n);
        off += n;
    }
    c->finish();
    EXPECT_EQ(c->bytes_in(), data.size());
    EXPECT_EQ(c->bytes_out(), sink.data_.size());
    return std::move(sink.data_);
}

// A source over a string that returns at most `chunk` bytes per call.
Decompressor::Source string_source(const std::string& s, std::size_t chunk = 1 << 16) {
    auto pos = std::make_shared<std::size_t>(0);
    return [&s, pos, chunk](void* buf, std::size_t cap) {
        const std::size_t n = std::min({cap, chunk, s.size() - *pos});
        std::memcpy(buf, s.data() + *pos, n);
        *pos += n;
        return n;
    };
}

std::string decompress(const std::string& compressed, std::size_t src_chunk = 1 << 16,
                       std::size_t read_cap = 100'000) {
    Decompressor d(string_source(compressed, src_chunk));
    std::string out;
    std::vector<char> buf(read_cap);
    for (;;) {
        const std::size_t n = d.read(buf.data(), buf.size());
        if (n == 0) {
            break;
        }
        EXPECT_LE(n, read_cap);
        out.append(buf.data(), n);
    }
    EXPECT_EQ(d.read(buf.data(), buf.size()), 0U) << "end of stream must stay the end";
    return out;
}

// Runs `fn` on another thread and aborts the whole test binary if it takes longer than `limit`
// (a hang in a compressor's shutdown must not hang the suite).
template <typename F>
void run_with_deadline(std::chrono::seconds limit, F fn) {
    std::packaged_task<void()> task(std::move(fn));
    auto fut = task.get_future();
    std::thread t(std::move(task));
    if (fut.wait_for(limit) != std::future_status::ready) {
        std::fprintf(stderr, "test exceeded its %llds deadline (deadlock?)\n",
                     static_cast<long long>(limit.count()));
        std::abort();
    }
    t.join();
    fut.get();  // rethrows assertion helpers' exceptions, if any
}

using mlk::testing::TempDir;

void write_file(const fs::path& p, const std::string& data) {
    std::ofstream f(p, std::ios::binary);
    f.write(data.data(), static_cast<std::streamsize>(data.size()));
    f.close();
    ASSERT_TRUE(f) << "write " << p;
}

struct ToolResult {
    int exit_code = -1;
    std::string output;
};

ToolResult run_tool(const std::string& cmd) {
    ToolResult r;
    FILE* f = ::popen(cmd.c_str(), "r");
    if (f == nullptr) {
        return r;
    }
    char buf[1 << 16];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        r.output.append(buf, n);
    }
    const int status = ::pclose(f);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

bool have_tool(const char* name) {
    return run_tool(std::string("command -v ") + name + " >/dev/null 2>&1").exit_code == 0;
}

// What the real command-line tool makes of a compressed stream.
std::string tool_decompress(Codec codec, const std::string& compressed, int* exit_code) {
    TempDir dir;
    const fs::path p = dir.path() / (codec == Codec::kZstd ? "x.zst" : "x.gz");
    write_file(p, compressed);
    const std::string cmd =
        std::string(codec == Codec::kZstd ? "zstd -q -d -c '" : "gzip -d -c '") + p.string() +
        "' 2>/dev/null";
    ToolResult r = run_tool(cmd);
    *exit_code = r.exit_code;
    return std::move(r.output);
}

// Number of gzip members, counted with zlib directly.
int count_gzip_members(const std::string& gz) {
    z_stream z{};
    if (inflateInit2(&z, 15 + 16) != Z_OK) {
        return -1;
    }
    int members = 0;
    std::vector<unsigned char> out(1 << 16);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
    z.avail_in = static_cast<uInt>(gz.size());
    while (z.avail_in > 0) {
        z.next_out = out.data();
        z.avail_out = static_cast<uInt>(out.size());
        const int rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
            ++members;
            inflateReset(&z);
        } else if (rc != Z_OK) {
            members = -1;
            break;
        }
    }
    inflateEnd(&z);
    return members;
}

// ---------------------------------------------------------------------------------------------

TEST(Codec, NamesAndExtensions) {
    EXPECT_EQ(extension(Codec::kZstd), ".tar.zst");
    EXPECT_EQ(extension(Codec::kGzip), ".tar.gz");
    EXPECT_EQ(codec_from_name("zstd"), Codec::kZstd);
    EXPECT_EQ(codec_from_name("gzip"), Codec::kGzip);
    EXPECT_EQ(codec_from_name(codec_name(Codec::kZstd)), Codec::kZstd);
    EXPECT_EQ(codec_from_name(codec_name(Codec::kGzip)), Codec::kGzip);
    EXPECT_EQ(codec_from_name("gz"), std::nullopt);
    EXPECT_EQ(codec_from_name("ZSTD"), std::nullopt);
    EXPECT_EQ(codec_from_name(""), std::nullopt);
}

TEST(Codec, InvalidLevelsThrow) {
    StringSink sink;
    EXPECT_THROW(make_compressor(Codec::kGzip, 0, 1, sink), std::invalid_argument);
    EXPECT_THROW(make_compressor(Codec::kGzip, 10, 2, sink), std::invalid_argument);
    EXPECT_THROW(make_compressor(Codec::kZstd, 23, 1, sink), std::invalid_argument);
    EXPECT_THROW(make_compressor(Codec::kZstd, -1'000'000, 1, sink), std::invalid_argument);
    EXPECT_NO_THROW(make_compressor(Codec::kZstd, -5, 1, sink));
    EXPECT_NO_THROW(make_compressor(Codec::kZstd, 19, 1, sink));
    EXPECT_THROW(detail::make_gzip_compressor(6, 1, sink, 0), std::invalid_argument);
    EXPECT_TRUE(sink.data_.empty());
}

struct RoundTripCase {
    Codec codec;
    unsigned threads;
};

class RoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(RoundTrip, SizesAroundTheBlockAndRealTools) {
    const auto [codec, threads] = GetParam();
    const int level = codec == Codec::kZstd ? 3 : 6;
    const bool tool = have_tool(codec == Codec::kZstd ? "zstd" : "gzip");
    for (std::size_t size :
         {std::size_t{0}, std::size_t{1}, kBlock - 1, kBlock, kBlock + 1, std::size_t{10} << 20}) {
        for (int kind = 0; kind < 2; ++kind) {
            SCOPED_TRACE("size " + std::to_string(size) + (kind == 0 ? " random" : " text"));
            const std::string data = kind == 0 ? random_data(size, static_cast<unsigned>(size))
                                               : compressible_data(size, 7);
            const std::string z = compress(codec, level, threads, data);
            if (kind == 1 && size > 1000) {
                EXPECT_LT(z.size(), data.size() / 2);
            }
            EXPECT_TRUE(decompress(z) == data) << "round trip differs";
            if (codec == Codec::kGzip) {
                const int members =
                    static_cast<int>(std::max<std::size_t>(1, (size + kBlock - 1) / kBlock));
                EXPECT_EQ(count_gzip_members(z), members);
            }
            if (tool) {
                int rc = -1;
                const std::string out = tool_decompress(codec, z, &rc);
                EXPECT_EQ(rc, 0);
                EXPECT_TRUE(out == data) << "the real tool decodes other bytes";
            }
        }
    }
    if (!tool) {
        GTEST_SKIP() << "zstd/gzip binary missing: checked our decoder only";
    }
}

INSTANTIATE_TEST_SUITE_P(
    All, RoundTrip,
    ::testing::Values(RoundTripCase{Codec::kZstd, 1}, RoundTripCase{Codec::kZstd, 2},
                      RoundTripCase{Codec::kZstd, 4}, RoundTripCase{Codec::kGzip, 1},
                      RoundTripCase{Codec::kGzip, 2}, RoundTripCase{Codec::kGzip, 4}),
    [](const auto& test_info) {
        return std::string(codec_name(test_info.param.codec)) + "_" +
               std::to_string(test_info.param.threads) + "threads";
    });

TEST(Codec, GzipTestFlagAcceptsMultiMember) {
    if (!have_tool("gzip")) {
        GTEST_SKIP() << "no gzip binary";
    }
    TempDir dir;
    const fs::path p = dir.path() / "x.gz";
    write_file(p, compress(Codec::kGzip, 6, 2, compressible_data(3 * kBlock + 5, 1)));
    EXPECT_EQ(run_tool("gzip -t '" + p.string() + "' 2>&1").exit_code, 0);
}

TEST(Codec, ZeroThreadsMeansAllCores) {
    const std::string data = compressible_data(3 * kBlock, 3);
    EXPECT_TRUE(decompress(compress(Codec::kZstd, 3, 0, data)) == data);
    EXPECT_TRUE(decompress(compress(Codec::kGzip, 6, 0, data)) == data);
}

TEST(Codec, DecoderHandlesTinySourceReadsAndTinyCaps) {
    const std::string data = compressible_data(200'000, 5);
    for (Codec codec : {Codec::kZstd, Codec::kGzip}) {
        const std::string z = compress(codec, 3, 2, data);
        EXPECT_TRUE(decompress(z, 1, 100'000) == data) << codec_name(codec);
        EXPECT_TRUE(decompress(z, 1 << 16, 1) == data) << codec_name(codec);
        EXPECT_TRUE(decompress(z, 7, 13) == data) << codec_name(codec);
    }
}

TEST(Codec, GzipLevelsChangeTheSize) {
    const std::string data = compressible_data(4 << 20, 11);
    const std::size_t fast = compress(Codec::kGzip, 1, 2, data).size();
    const std::size_t best = compress(Codec::kGzip, 9, 2, data).size();
    EXPECT_LT(best, fast);
    EXPECT_LT(best, fast * 95 / 100) << "level 9 should be clearly smaller on text";
}

TEST(Codec, GzipOutputIsTheSameForAnyThreadCountAndWritePattern) {
    const std::string data = compressible_data(5 * kBlock + 12345, 13) + random_data(kBlock, 2);
    const std::string one = compress(Codec::kGzip, 6, 1, data);
    for (unsigned threads : {2U, 3U, 4U, 8U}) {
        EXPECT_TRUE(compress(Codec::kGzip, 6, threads, data) == one) << threads << " threads";
    }
    // One big write instead of irregular pieces.
    StringSink sink;
    auto c = make_compressor(Codec::kGzip, 6, 4, sink);
    c->write(data.data(), data.size());
    c->finish();
    EXPECT_TRUE(sink.data_ == one);
}

TEST(Codec, ZstdOutputIsTheSameForAnyWorkerCount) {
    // zstd's multithreaded mode is deterministic for nbWorkers >= 1 (not vs 0, which we never use).
    const std::string data = compressible_data(6 << 20, 17);
    const std::string one = compress(Codec::kZstd, 3, 1, data);
    EXPECT_TRUE(compress(Codec::kZstd, 3, 4, data) == one);
}

// ---------------------------------------------------------------------------------------------
// libarchive interop

struct TarEntry {
    std::string name;
    std::string data;
};

std::string make_tar(const std::vector<TarEntry>& entries) {
    archive* a = archive_write_new();
    EXPECT_EQ(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    std::size_t total = 0;
    for (const auto& e : entries) {
        total += e.data.size() + 4096;
    }
    std::string buf(total + (1 << 20), '\0');
    std::size_t used = 0;
    EXPECT_EQ(archive_write_open_memory(a, buf.data(), buf.size(), &used), ARCHIVE_OK);
    for (const auto& e : entries) {
        archive_entry* entry = archive_entry_new();
        archive_entry_set_pathname(entry, e.name.c_str());
        archive_entry_set_size(entry, static_cast<la_int64_t>(e.data.size()));
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_perm(entry, 0644);
        EXPECT_EQ(archive_write_header(a, entry), ARCHIVE_OK) << archive_error_string(a);
        EXPECT_EQ(archive_write_data(a, e.data.data(), e.data.size()),
                  static_cast<la_ssize_t>(e.data.size()));
        archive_entry_free(entry);
    }
    EXPECT_EQ(archive_write_close(a), ARCHIVE_OK) << archive_error_string(a);
    archive_write_free(a);
    buf.resize(used);
    return buf;
}

// Reads a compressed tar with libarchive's own filters (it detects gzip/zstd itself).
std::vector<TarEntry> read_tar_with_libarchive(const std::string& compressed, std::string* filter) {
    std::vector<TarEntry> out;
    archive* a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_all(a);
    EXPECT_EQ(archive_read_open_memory(a, compressed.data(), compressed.size()), ARCHIVE_OK)
        << archive_error_string(a);
    archive_entry* entry = nullptr;
    int rc;
    while ((rc = archive_read_next_header(a, &entry)) == ARCHIVE_OK) {
        TarEntry e{archive_entry_pathname(entry), {}};
        char buf[65536];
        la_ssize_t n;
        while ((n = archive_read_data(a, buf, sizeof buf)) > 0) {
            e.data.append(buf, static_cast<std::size_t>(n));
        }
        EXPECT_EQ(n, 0) << archive_error_string(a);
        out.push_back(std::move(e));
    }
    EXPECT_EQ(rc, ARCHIVE_EOF) << archive_error_string(a);
    *filter = archive_filter_name(a, 0);
    archive_read_free(a);
    return out;
}

void expect_same_entries(const std::vector<TarEntry>& got, const std::vector<TarEntry>& want) {
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(got[i].name, want[i].name);
        EXPECT_TRUE(got[i].data == want[i].data) << want[i].name << " differs";
    }
}

TEST(CodecLibarchive, ReadsMultiMemberGzipTar) {
    const std::vector<TarEntry> entries{
        {"models/a.safetensors", random_data(2 * kBlock + 777, 21)},
        {"models/empty", ""},
        {"models/config.json", compressible_data(5000, 22)},
        {"models/b.bin", random_data(kBlock + 3, 23)},
    };
    const std::string tar = make_tar(entries);

    // Real block size: members of 1 MiB, so entries span member boundaries.
    const std::string gz = compress(Codec::kGzip, 6, 4, tar);
    ASSERT_GE(count_gzip_members(gz), 4);
    std::string filter;
    expect_same_entries(read_tar_with_libarchive(gz, &filter), entries);
    EXPECT_EQ(filter, "gzip");

    // Tiny members (4 KiB): hundreds of boundaries, including inside tar headers.
    StringSink sink;
    auto c = detail::make_gzip_compressor(6, 3, sink, 4096);
    c->write(tar.data(), tar.size());
    c->finish();
    ASSERT_GT(count_gzip_members(sink.data_), 500);
    expect_same_entries(read_tar_with_libarchive(sink.data_, &filter), entries);
}

TEST(CodecLibarchive, ReadsMultithreadedZstdTar) {
    const std::vector<TarEntry> entries{
        {"a", random_data(3 * kBlock, 31)},
        {"b", compressible_data(9 << 20, 32)},
    };
    const std::string zst = compress(Codec::kZstd, 3, 4, make_tar(entries));
    std::string filter;
    expect_same_entries(read_tar_with_libarchive(zst, &filter), entries);
    EXPECT_EQ(filter, "zstd");
}

// ---------------------------------------------------------------------------------------------
// Failures while compressing

TEST(CodecFaults, SinkErrorPropagatesAndDestructionDoesNotHang) {
    const std::string data = random_data(10 << 20, 41);
    for (Codec codec : {Codec::kZstd, Codec::kGzip}) {
        for (unsigned threads : {1U, 2U, 4U}) {
            for (std::size_t budget : {std::size_t{0}, std::size_t{100}, std::size_t{3} << 20}) {
                SCOPED_TRACE(std::string(codec_name(codec)) + " threads " +
                             std::to_string(threads) + " budget " + std::to_string(budget));
                run_with_deadline(60s, [&] {
                    FullDiskSink sink(budget);
                    auto c = make_compressor(codec, 3, threads, sink);
                    bool thrown = false;
                    try {
                        for (std::size_t off = 0; off < data.size(); off += 100'000) {
                            c->write(data.data() + off,
                                     std::min<std::size_t>(100'000, data.size() - off));
                        }
                        c->finish();
                    } catch (const std::system_error& e) {
                        thrown = true;
                        EXPECT_EQ(e.code().value(), ENOSPC);
                        EXPECT_NE(std::string(e.what()).find("/backups/x.tar"), std::string::npos);
                    }
                    EXPECT_TRUE(thrown) << "the sink's error was swallowed";
                    EXPECT_THROW(c->write("x", 1), std::logic_error);
                    EXPECT_THROW(c->finish(), std::logic_error);
                    c.reset();  // must join workers promptly
                });
            }
        }
    }
}

struct InjectedFailure : std::runtime_error {
    InjectedFailure() : std::runtime_error("injected worker failure") {}
};

TEST(CodecFaults, WorkerExceptionReachesTheCaller) {
    for (unsigned threads : {1U, 2U, 4U}) {
        for (std::uint64_t bad_block : {0ULL, 3ULL, 20ULL}) {
            SCOPED_TRACE("threads " + std::to_string(threads) + " bad block " +
                         std::to_string(bad_block));
            run_with_deadline(60s, [&] {
                StringSink sink;
                auto c = detail::make_gzip_compressor(6, threads, sink, 4096, [&](std::uint64_t i) {
                    if (i == bad_block) {
                        throw InjectedFailure();
                    }
                });
                const std::string data = compressible_data(100 * 4096, 3);
                bool thrown = false;
                try {
                    c->write(data.data(), data.size());
                    c->finish();
                } catch (const InjectedFailure&) {
                    thrown = true;
                }
                EXPECT_TRUE(thrown);
                // Everything before the bad block was written, in order, and nothing after it.
                EXPECT_EQ(count_gzip_members(sink.data_), static_cast<int>(bad_block));
                EXPECT_THROW(c->write("x", 1), std::logic_error);
            });
        }
    }
}

TEST(CodecFaults, WorkerFailureInTheLastBlockSurfacesFromFinish) {
    run_with_deadline(60s, [] {
        StringSink sink;
        auto c = detail::make_gzip_compressor(6, 2, sink, 4096, [](std::uint64_t i) {
            if (i == 2) {
                throw InjectedFailure();
            }
        });
        const std::string data = compressible_data(2 * 4096 + 10, 3);
        EXPECT_NO_THROW(c->write(data.data(), data.size()));
        EXPECT_THROW(c->finish(), InjectedFailure);
    });
}

TEST(CodecFaults, DestroyWithoutFinishWhileWorkersAreBusy) {
    run_with_deadline(60s, [] {
        for (Codec codec : {Codec::kZstd, Codec::kGzip}) {
            StringSink sink;
            auto c = make_compressor(codec, 3, 4, sink);
            const std::string data = random_data(9 << 20, 5);
            c->write(data.data(), data.size());
            c.reset();
        }
    });
}

// With the first block held back, the caller must stop after 2*threads blocks are in flight
// instead of queueing the whole input in memory.
TEST(CodecFaults, GzipBackpressureBoundsBlocksInFlight) {
    constexpr unsigned kThreads = 2;
    constexpr std::size_t kSmall = 4096;
    std::mutex mu;
    std::condition_variable cv;
    bool release = false;
    std::set<std::uint64_t> started;
    StringSink sink;
    auto c = detail::make_gzip_compressor(6, kThreads, sink, kSmall, [&](std::uint64_t i) {
        std::unique_lock lock(mu);
        started.insert(i);
        cv.notify_all();
        if (i == 0) {
            // Bounded: if the test fails to release us, give up rather than hang.
            cv.wait_for(lock, 20s, [&] { return release; });
        }
    });
    const std::string data = compressible_data(50 * kSmall, 8);
    std::thread writer([&] {
        c->write(data.data(), data.size());
        c->finish();
    });
    {
        std::unique_lock lock(mu);
        EXPECT_TRUE(cv.wait_for(lock, 10s, [&] { return started.size() >= 2 * kThreads; }));
    }
    std::this_thread::sleep_for(300ms);  // time for a broken limit to show
    {
        std::lock_guard lock(mu);
        EXPECT_EQ(started.size(), 2 * kThreads) << "more blocks in flight than allowed";
        EXPECT_EQ(*started.rbegin(), 2 * kThreads - 1);
        release = true;
    }
    cv.notify_all();
    writer.join();
    EXPECT_TRUE(decompress(sink.data_) == data);
    EXPECT_EQ(count_gzip_members(sink.data_), 50);
}

// ---------------------------------------------------------------------------------------------
// Decompression of bad input

std::string decompress_or_error(const std::string& z, bool* threw, std::string* what) {
    *threw = false;
    try {
        return decompress(z);
    } catch (const std::runtime_error& e) {
        *threw = true;
        *what = e.what();
        return {};
    }
}

TEST(Decompressor, DetectsCodec) {
    const std::string data = "hello";
    EXPECT_EQ(Decompressor(string_source(compress(Codec::kZstd, 3, 1, data))).codec(),
              Codec::kZstd);
    EXPECT_EQ(Decompressor(string_source(compress(Codec::kGzip, 6, 1, data))).codec(),
              Codec::kGzip);
}

TEST(Decompressor, RejectsUnknownAndEmptyInput) {
    const std::string tar(1024, '\0');
    try {
        Decompressor d(string_source(tar));
        FAIL() << "expected an error";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("unrecognised"), std::string::npos) << e.what();
    }
    const std::string empty;
    try {
        Decompressor d(string_source(empty));
        FAIL() << "expected an error";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
    }
    const std::string partial_magic("\x28\xB5", 2);
    const std::string gzip_first_byte("\x1F", 1);
    for (const std::string* partial : {&partial_magic, &gzip_first_byte}) {
        try {
            Decompressor d(string_source(*partial));
            FAIL() << "expected an error";
        } catch (const std::runtime_error& e) {
            EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(Decompressor(nullptr), std::invalid_argument);
}

TEST(Decompressor, ZeroCapIsAnError) {
    const std::string z = compress(Codec::kZstd, 3, 1, "abc");
    Decompressor d(string_source(z));
    char c;
    EXPECT_THROW(d.read(&c, 0), std::invalid_argument);
}

TEST(Decompressor, ReadsConcatenatedStreams) {
    const std::string a = compressible_data(300'000, 1);
    const std::string b = random_data(200'000, 2);
    for (Codec codec : {Codec::kZstd, Codec::kGzip}) {
        const std::string z = compress(codec, 3, 2, a) + compress(codec, 3, 1, b);
        EXPECT_TRUE(decompress(z) == a + b) << codec_name(codec);
    }
    // A zstd skippable frame between two frames is allowed by the format.
    std::string skippable("\x50\x2A\x4D\x18\x03\x00\x00\x00xyz", 11);
    EXPECT_TRUE(decompress(compress(Codec::kZstd, 3, 1, a) + skippable +
                           compress(Codec::kZstd, 3, 1, b)) == a + b);
}

TEST(Decompressor, ReadsStreamsMadeByTheRealTools) {
    const std::string data = compressible_data(3 << 20, 9);
    for (Codec codec : {Codec::kZstd, Codec::kGzip}) {
        const char* tool = codec == Codec::kZstd ? "zstd" : "gzip";
        if (!have_tool(tool)) {
            continue;
        }
        TempDir dir;
        const fs::path p = dir.path() / "in";
        write_file(p, data);
        const ToolResult r = run_tool(std::string(tool) + " -c -q '" + p.string() + "'");
        ASSERT_EQ(r.exit_code, 0) << tool;
        EXPECT_TRUE(decompress(r.output) == data) << tool;
    }
}

TEST(Decompressor, TrailingGarbageThrows) {
    const std::string data = compressible_data(100'000, 4);
    for (Codec codec : {Codec::kZstd, Codec::kGzip}) {
        const std::string z = compress(codec, 3, 2, data);
        for (const std::string& tail :
             {std::string(512, '\0'), std::string("garbage!"), std::string(1, '\n'),
              std::string("\x28\xB5\x2F", 3), std::string("\x1F", 1)}) {
            bool threw = false;
            std::string what;
            decompress_or_error(z + tail, &threw, &what);
            EXPECT_TRUE(threw) << codec_name(codec) << " accepted " << tail.size()
                               << " bytes of trailing garbage";
        }
        bool threw = false;
        std::string what;
        decompress_or_error(z + "garbage!", &threw, &what);
        EXPECT_NE(what.find("trailing garbage"), std::string::npos) << what;
    }
}

TEST(Decompressor, TruncationThrows) {
    const std::string data = compressible_data(3 * kBlock + 100, 6) + random_data(kBlock / 2, 6);
    for (Codec codec : {Codec::kZstd, Codec::kGzip}) {
        const std::string z = compress(codec, 3, 2, data);
        std::vector<std::size_t> cuts{1,
                                      2,
                                      3,
                                      4,
                                      5,
                                      10,
                                      18,
                                      100,
                                      z.size() / 3,
                                      z.size() / 2,
                                      z.size() - 100,
                                      z.size() - 8,
                                      z.size() - 4,
                                      z.size() - 1};
        for (std::size_t cut : cuts) {
            bool threw = false;
            std::string what;
            decompress_or_error(z.substr(0, cut), &threw, &what);
            EXPECT_TRUE(threw) << codec_name(codec) << " cut at " << cut << " of " << z.size();
            if (cut >= 10) {
                EXPECT_NE(what.find("compressed stream ends early: the archive is truncated"),
                          std::string::npos)
                    << codec_name(codec) << " cut at " << cut << ": " << what;
            }
        }
    }
}

// Independent gzip members mean a cut exactly between two members leaves a valid, shorter
// gzip stream: no decoder can see that. The archive's own SHA-256 (manifest) must catch it.
// This test pins the limitation so that a change to it is deliberate.
TEST(Decompressor, GzipCutAtAMemberBoundaryIsNotDetectable) {
    const std::string data = random_data(2 * kBlock, 3);
    const std::string first = compress(Codec::kGzip, 6, 1, data.substr(0, kBlock));
    const std::string z = compress(Codec::kGzip, 6, 1, data);
    ASSERT_EQ(z.compare(0, first.size(), first), 0);
    EXPECT_TRUE(decompress(z.substr(0, first.size())) == data.substr(0, kBlock));
}

// Offsets where each gzip member starts, plus the end of the stream.
std::vector<std::size_t> gzip_member_bounds(const std::string& gz) {
    std::vector<std::size_t> bounds{0};
    z_stream z{};
    if (inflateInit2(&z, 15 + 16) != Z_OK) {
        return {};
    }
    std::vector<unsigned char> out(1 << 16);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
    z.avail_in = static_cast<uInt>(gz.size());
    while (z.avail_in > 0) {
        z.next_out = out.data();
        z.avail_out = static_cast<uInt>(out.size());
        const int rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
            bounds.push_back(gz.size() - z.avail_in);
            inflateReset(&z);
        } else if (rc != Z_OK) {
            break;
        }
    }
    inflateEnd(&z);
    return bounds;
}

enum class Outcome { kThrew, kSameData, kWrongData };

Outcome decode_flipped(const std::string& z, std::size_t pos, unsigned char x,
                       const std::string& original) {
    std::string bad = z;
    bad[pos] = static_cast<char>(static_cast<unsigned char>(bad[pos]) ^ x);
    try {
        return decompress(bad) == original ? Outcome::kSameData : Outcome::kWrongData;
    } catch (const std::runtime_error&) {
        return Outcome::kThrew;
    }
}

// The checksums cover the decompressed data, so the guarantee is: a damaged stream never
// decodes to different data without an error. A flip can leave the decoded data bit-identical
// (gzip MTIME/XFL/OS/FTEXT, zstd's unused header bit and window size, table entries for unused
// symbols, padding bits); measured exhaustively, that is 0.01% (zstd) to 0.05% (gzip) of all
// single-byte flips, and such a stream still restores correctly. Flips in the magic numbers and
// in the checksum/length trailers are always detected.
TEST(Decompressor, ByteFlipsNeverYieldWrongData) {
    const std::string data = compressible_data(2 * kBlock, 51) + random_data(kBlock / 2, 52);
    std::mt19937 rng(20240601);
    for (Codec codec : {Codec::kZstd, Codec::kGzip}) {
        SCOPED_TRACE(std::string(codec_name(codec)));
        const std::string z = compress(codec, 3, 2, data);
        auto random_x = [&] { return static_cast<unsigned char>(1 + rng() % 255); };

        int threw = 0;
        for (int i = 0; i < 200; ++i) {
            const std::size_t pos = rng() % z.size();
            const unsigned char x = random_x();
            const Outcome o = decode_flipped(z, pos, x, data);
            EXPECT_NE(o, Outcome::kWrongData) << "flip 0x" << std::hex << int{x} << " at "
                                              << std::dec << pos << " decoded to different data";
            threw += o == Outcome::kThrew ? 1 : 0;
        }
        EXPECT_GE(threw, 195) << "far more undetected flips than measured";

        // Must-detect positions: magic numbers and checksum trailers.
        std::vector<std::size_t> must_detect{0, 1};
        if (codec == Codec::kZstd) {
            must_detect.insert(must_detect.end(),
                               {2, 3, z.size() - 4, z.size() - 3, z.size() - 2, z.size() - 1});
        } else {
            const std::vector<std::size_t> bounds = gzip_member_bounds(z);
            ASSERT_EQ(bounds.size(), 4U) << "3 members expected";
            for (std::size_t m = 0; m + 1 < bounds.size(); ++m) {
                must_detect.push_back(bounds[m]);
                must_detect.push_back(bounds[m] + 1);
                for (std::size_t k = 1; k <= 8; ++k) {
                    must_detect.push_back(bounds[m + 1] - k);  // CRC-32 and ISIZE
                }
            }
        }
        for (std::size_t pos : must_detect) {
            for (unsigned char x : {0x01, 0x80, 0xFF, static_cast<int>(random_x())}) {
                EXPECT_EQ(decode_flipped(z, pos, x, data), Outcome::kThrew)
                    << "flip 0x" << std::hex << int{x} << " at " << std::dec << pos;
            }
        }
    }
}

}  // namespace
}  // namespace mlk::backup
