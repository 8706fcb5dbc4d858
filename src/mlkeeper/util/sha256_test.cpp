#include "mlkeeper/util/sha256.hpp"

#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

namespace mlk::util {
namespace {

namespace fs = std::filesystem;

constexpr const char* kEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr const char* kAbc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr const char* kTwoBlocks =
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
constexpr const char* kMillionA =
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

std::string random_bytes(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (char& c : s) {
        c = static_cast<char>(rng() & 0xFF);
    }
    return s;
}

TEST(Sha256, KnownVectors) {
    EXPECT_EQ(sha256_hex(""), kEmpty);
    EXPECT_EQ(sha256_hex("abc"), kAbc);
    EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"), kTwoBlocks);
    EXPECT_EQ(sha256_hex(std::string(1'000'000, 'a')), kMillionA);
}

TEST(Sha256, MillionAFedInOddChunks) {
    Sha256 h;
    const std::string chunk(997, 'a');
    std::size_t left = 1'000'000;
    while (left > 0) {
        const std::size_t n = std::min(left, chunk.size());
        h.update(chunk.data(), n);
        left -= n;
    }
    EXPECT_EQ(h.finish_hex(), kMillionA);
}

TEST(Sha256, ChunkedEqualsOneShot) {
    const std::string data = random_bytes(300'000, 1);
    const std::string expected = sha256_hex(data);
    for (std::size_t chunk : {1UL, 63UL, 64UL, 65UL, 4096UL, 299'999UL}) {
        Sha256 h;
        for (std::size_t off = 0; off < data.size(); off += chunk) {
            h.update(std::string_view(data).substr(off, chunk));
        }
        EXPECT_EQ(h.finish_hex(), expected) << "chunk " << chunk;
    }
}

TEST(Sha256, DigestBytesMatchHex) {
    Sha256 h;
    h.update("abc");
    const Sha256::Digest d = h.finish();
    EXPECT_EQ(to_hex(d), kAbc);
    EXPECT_EQ(d[0], 0xba);
    EXPECT_EQ(d[31], 0xad);
}

TEST(Sha256, ResetStartsOverAndMisuseThrows) {
    Sha256 h;
    h.update("garbage");
    h.reset();
    h.update("abc");
    EXPECT_EQ(h.finish_hex(), kAbc);
    EXPECT_THROW(h.finish(), std::logic_error);
    EXPECT_THROW(h.update("x"), std::logic_error);
    h.reset();
    EXPECT_EQ(h.finish_hex(), kEmpty);
}

TEST(Sha256, MoveKeepsStateAndEmptiesSource) {
    Sha256 a;
    a.update("ab");
    Sha256 b(std::move(a));
    b.update("c");
    EXPECT_EQ(b.finish_hex(), kAbc);
    EXPECT_THROW(a.update("x"), std::logic_error);  // NOLINT(bugprone-use-after-move): tested
    a.reset();
    EXPECT_EQ(a.finish_hex(), kEmpty);

    Sha256 c;
    c.update("a");
    Sha256 d;
    d = std::move(c);
    d.update("bc");
    EXPECT_EQ(d.finish_hex(), kAbc);
}

TEST(Sha256, ToHex) {
    const std::vector<std::uint8_t> bytes{0x00, 0x0f, 0xa0, 0xff};
    EXPECT_EQ(to_hex(bytes), "000fa0ff");
    EXPECT_EQ(to_hex({}), "");
}

class Sha256FileTest : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = ::testing::TempDir() + "mlk_sha256_XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
        dir_ = tmpl;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    fs::path write(const std::string& name, const std::string& data) {
        const fs::path p = dir_ / name;
        std::ofstream f(p, std::ios::binary);
        f.write(data.data(), static_cast<std::streamsize>(data.size()));
        f.close();
        EXPECT_TRUE(f) << "write " << p;
        return p;
    }
    fs::path dir_;
};

// The system tool is the reference: prints "<hex>  <name>".
std::string sha256sum_tool(const fs::path& p) {
    const std::string cmd = "sha256sum '" + p.string() + "'";
    FILE* f = ::popen(cmd.c_str(), "r");
    if (f == nullptr) {
        return "popen failed";
    }
    char buf[65] = {};
    const std::size_t n = std::fread(buf, 1, 64, f);
    ::pclose(f);
    return std::string(buf, n);
}

TEST_F(Sha256FileTest, MatchesSha256sumAcrossChunkBoundaries) {
    // Sizes around the 1 MiB read chunk, plus empty.
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, (std::size_t{1} << 20) - 1,
                             std::size_t{1} << 20, (std::size_t{3} << 20) + 17}) {
        const std::string data = random_bytes(size, static_cast<unsigned>(size));
        const fs::path p = write("f" + std::to_string(size), data);
        const std::string ours = sha256_file_hex(p);
        EXPECT_EQ(ours, sha256_hex(data)) << size;
        EXPECT_EQ(ours, sha256sum_tool(p)) << size;
    }
    EXPECT_EQ(sha256_file_hex(write("abc", "abc")), kAbc);
}

TEST_F(Sha256FileTest, MissingFileThrowsNamingPath) {
    const fs::path p = dir_ / "nope";
    try {
        sha256_file_hex(p);
        FAIL() << "expected std::system_error";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
        EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    }
}

TEST_F(Sha256FileTest, DirectoryThrows) {
    try {
        sha256_file_hex(dir_);
        FAIL() << "expected std::system_error";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::is_a_directory);
        EXPECT_NE(std::string(e.what()).find(dir_.string()), std::string::npos) << e.what();
    }
}

TEST_F(Sha256FileTest, ReadErrorMidFileThrowsAndClosesFd) {
    const fs::path p = write("big", random_bytes((std::size_t{2} << 20) + 5, 7));
    FsOps ops = real_fs_ops();
    int reads = 0;
    int closes = 0;
    ops.read = [&](int fd, void* buf, std::size_t count) -> ssize_t {
        if (++reads == 2) {
            errno = EIO;
            return -1;
        }
        return real_fs_ops().read(fd, buf, count);
    };
    ops.close = [&](int fd) {
        ++closes;
        return real_fs_ops().close(fd);
    };
    try {
        sha256_file_hex(p, ops);
        FAIL() << "expected std::system_error";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), EIO);
        EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    }
    EXPECT_EQ(closes, 1);
}

TEST_F(Sha256FileTest, RetriesEintrOnRead) {
    const std::string data = random_bytes(5000, 9);
    const fs::path p = write("eintr", data);
    FsOps ops = real_fs_ops();
    int reads = 0;
    ops.read = [&](int fd, void* buf, std::size_t count) -> ssize_t {
        if (++reads == 1) {
            errno = EINTR;
            return -1;
        }
        // Short reads too: the hash must not depend on how the kernel splits the data.
        return real_fs_ops().read(fd, buf, std::min<std::size_t>(count, 1000));
    };
    EXPECT_EQ(sha256_file_hex(p, ops), sha256_hex(data));
}

}  // namespace
}  // namespace mlk::util
