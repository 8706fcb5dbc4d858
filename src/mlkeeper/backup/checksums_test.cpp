#include "mlkeeper/backup/checksums.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mlkeeper/util/atomic_file.hpp"
#include "mlkeeper/util/fs_ops.hpp"
#include "mlkeeper/util/process.hpp"

namespace mlk::backup {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// SHA-256 of "abc" (FIPS 180-2 test vector) and of the empty string.
const std::string kAbc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const std::string kEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const std::string kHex1 = std::string(64, '1');
const std::string kHex2 = std::string(64, '2');
const std::string kHex3 = std::string(64, '3');

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "<no exception>";
}

class BackupChecksums : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = ::testing::TempDir() + "mlk_checksums_XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
        dir_ = tmpl;
        file_ = dir_ / "checksums.txt";
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    void put(const fs::path& path, const std::string& text) {
        util::write_file_atomic(path, text, 0644, util::real_fs_ops(), util::Durability::kNoFsync);
    }
    std::string content() const { return util::read_file(file_); }
    void upsert(const std::string& name, const std::string& hex) {
        upsert_checksum(file_, name, hex, util::real_fs_ops(), util::Durability::kNoFsync);
    }
    void remove(const std::string& name) {
        remove_checksum(file_, name, util::real_fs_ops(), util::Durability::kNoFsync);
    }

    // Runs the real sha256sum in dir_ (bounded: no test may hang).
    util::RunResult sha256sum(const std::vector<std::string>& args) const {
        std::vector<std::string> argv{"sha256sum"};
        argv.insert(argv.end(), args.begin(), args.end());
        util::RunOptions opts;
        opts.timeout = std::chrono::seconds(20);
        opts.cwd = dir_;
        opts.env_set = {{"LC_ALL", "C"}};
        return util::run_process(argv, opts);
    }

    fs::path dir_;
    fs::path file_;
};

TEST_F(BackupChecksums, FormatsLinesLikeSha256sum) {
    EXPECT_EQ(format_checksum_line("a.tar.zst", kAbc), kAbc + "  a.tar.zst\n");
    std::string upper = kAbc;
    for (char& c : upper) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    EXPECT_EQ(format_checksum_line("a", upper), kAbc + "  a\n");
    EXPECT_EQ(format_checksum_line("a b*c", kAbc), kAbc + "  a b*c\n");
    EXPECT_EQ(format_checksum_line(" lead", kAbc), kAbc + "   lead\n");
    // GNU escaping: a leading backslash, then \\ \n \r inside the name.
    EXPECT_EQ(format_checksum_line("a\\b", kAbc), "\\" + kAbc + "  a\\\\b\n");
    EXPECT_EQ(format_checksum_line("a\nb", kAbc), "\\" + kAbc + "  a\\nb\n");
    EXPECT_EQ(format_checksum_line("a\rb\\", kAbc), "\\" + kAbc + "  a\\rb\\\\\n");

    EXPECT_THROW(format_checksum_line("a", kAbc.substr(1)), std::invalid_argument);
    EXPECT_THROW(format_checksum_line("a", kAbc + "0"), std::invalid_argument);
    EXPECT_THROW(format_checksum_line("a", std::string(64, 'g')), std::invalid_argument);
    EXPECT_THROW(format_checksum_line("", kAbc), std::invalid_argument);
    EXPECT_THAT(error_of([] { format_checksum_line(std::string("a\0b", 3), kAbc); }),
                HasSubstr("NUL"));
}

TEST_F(BackupChecksums, MissingFileReadsAsEmpty) {
    EXPECT_TRUE(read_checksums(file_).empty());
    remove("x");  // nothing to remove: no file appears
    EXPECT_FALSE(fs::exists(file_));
}

TEST_F(BackupChecksums, UnreadableFileIsAnError) {
    fs::create_directory(file_);  // a directory where the file should be
    try {
        read_checksums(file_);
        ADD_FAILURE() << "no error";
    } catch (const std::system_error& e) {
        EXPECT_THAT(e.what(), HasSubstr(file_.string()));
    }
}

TEST_F(BackupChecksums, UpsertAppendsReplacesInPlaceAndRemoveKeepsTheRest) {
    upsert("a.tar.zst", kHex1);
    EXPECT_EQ(content(), kHex1 + "  a.tar.zst\n");
    struct stat st {};
    ASSERT_EQ(::stat(file_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644u);

    upsert("b.tar.zst", kHex2);
    upsert("c.tar.gz", kHex3);
    EXPECT_EQ(content(),
              kHex1 + "  a.tar.zst\n" + kHex2 + "  b.tar.zst\n" + kHex3 + "  c.tar.gz\n");

    upsert("b.tar.zst", kHex1);  // replaced where it stands
    EXPECT_EQ(content(),
              kHex1 + "  a.tar.zst\n" + kHex1 + "  b.tar.zst\n" + kHex3 + "  c.tar.gz\n");

    remove("a.tar.zst");
    EXPECT_EQ(content(), kHex1 + "  b.tar.zst\n" + kHex3 + "  c.tar.gz\n");
    remove("c.tar.gz");
    remove("not-there");
    EXPECT_EQ(content(), kHex1 + "  b.tar.zst\n");
    EXPECT_EQ(read_checksums(file_), (std::map<std::string, std::string>{{"b.tar.zst", kHex1}}));
    remove("b.tar.zst");
    EXPECT_EQ(content(), "");
    EXPECT_TRUE(read_checksums(file_).empty());
    EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(BackupChecksums, NoWriteWhenNothingChanges) {
    int renames = 0;
    util::FsOps ops = util::real_fs_ops();
    ops.rename = [&renames](const char* from, const char* to) {
        ++renames;
        return ::rename(from, to);
    };
    upsert_checksum(file_, "a", kHex1, ops, util::Durability::kNoFsync);
    EXPECT_EQ(renames, 1);
    upsert_checksum(file_, "a", kHex1, ops, util::Durability::kNoFsync);
    remove_checksum(file_, "b", ops, util::Durability::kNoFsync);
    EXPECT_EQ(renames, 1);
    upsert_checksum(file_, "a", kHex2, ops, util::Durability::kNoFsync);
    EXPECT_EQ(renames, 2);
}

TEST_F(BackupChecksums, OtherLinesStayByteForByte) {
    const std::string escaped = "\\" + kHex3 + "  we\\\\ird\\nname";
    const std::string before = "# written by hand\n" +                    // comment
                               std::string("\n") +                        // blank line
                               kHex1 + " *bin.tar.zst\r\n" +              // binary marker, CRLF
                               "SHA256 (tagged.tar) = " + kHex2 + "\n" +  // --tag format
                               escaped + "\n" + kHex2 + "  last.tar";     // no final newline
    put(file_, before);
    const auto sums = read_checksums(file_);
    EXPECT_EQ(sums, (std::map<std::string, std::string>{{"bin.tar.zst", kHex1},
                                                        {"tagged.tar", kHex2},
                                                        {"we\\ird\nname", kHex3},
                                                        {"last.tar", kHex2}}));

    upsert("new.tar.zst", kAbc);
    EXPECT_EQ(content(), before + "\n" + kAbc + "  new.tar.zst\n");

    upsert("tagged.tar", kEmpty);  // only that line changes, to our format
    EXPECT_EQ(content(), "# written by hand\n\n" + kHex1 + " *bin.tar.zst\r\n" + kEmpty +
                             "  tagged.tar\n" + escaped + "\n" + kHex2 + "  last.tar\n" + kAbc +
                             "  new.tar.zst\n");
    remove("we\\ird\nname");
    EXPECT_EQ(content(), "# written by hand\n\n" + kHex1 + " *bin.tar.zst\r\n" + kEmpty +
                             "  tagged.tar\n" + kHex2 + "  last.tar\n" + kAbc + "  new.tar.zst\n");
}

TEST_F(BackupChecksums, DuplicateNames) {
    put(file_, kHex1 + "  a\n" + kHex2 + "  b\n" + kHex1 + "  a\n");
    EXPECT_EQ(read_checksums(file_).at("a"), kHex1);  // the same hash twice is harmless

    put(file_, kHex1 + "  a\n" + kHex2 + "  b\n" + kHex3 + "  a\n");
    EXPECT_EQ(error_of([&] { read_checksums(file_); }),
              file_.string() +
                  ":3: \"a\" is listed again with a different checksum (first on "
                  "line 1)");
    upsert("a", kHex2);  // heals: one line, in the first one's place
    EXPECT_EQ(content(), kHex2 + "  a\n" + kHex2 + "  b\n");

    put(file_, kHex1 + "  a\n" + kHex2 + "  b\n" + kHex3 + "  a\n");
    remove("a");
    EXPECT_EQ(content(), kHex2 + "  b\n");
}

TEST_F(BackupChecksums, MalformedLinesAreRejectedWithFileAndLine) {
    const std::string good = kHex1 + "  ok1\n" + kHex2 + "  ok2\n";
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"abc  short.tar", "expected \"<64 hex digits>  <file name>\""},
        {std::string(64, 'g') + "  x", "expected \"<64 hex digits>"},
        {kHex1 + " one-space", "expected two spaces"},
        {kHex1 + "\ttab", "expected two spaces"},
        {kHex1 + "  ", "missing the file name"},
        {kHex1 + "0  x", "expected two spaces"},  // 65 hex digits
        {"\\" + kHex1 + "  a\\tb", "bad escape"},
        {"\\" + kHex1 + "  a\\", "bad escape"},
        {"SHA256 (x) = abc", "the checksum is not 64 hex digits"},
        {"SHA256 (x)", "expected \"SHA256 (<file name>) = <64 hex digits>\""},
        {"SHA256 () = " + kHex1, "missing the file name"},
        {"  " + kHex1 + "  indented", "expected \"<64 hex digits>"},
    };
    for (const auto& [line, problem] : cases) {
        SCOPED_TRACE(line);
        put(file_, good + line + "\n" + kHex3 + "  after\n");
        const std::string err = error_of([&] { read_checksums(file_); });
        EXPECT_THAT(err, HasSubstr(file_.string() + ":3: " + problem));
        // A file we do not understand is never rewritten.
        EXPECT_THAT(error_of([&] { upsert("new", kHex1); }), HasSubstr(":3: "));
        EXPECT_THAT(error_of([&] { remove("ok1"); }), HasSubstr(":3: "));
        EXPECT_EQ(content(), good + line + "\n" + kHex3 + "  after\n");
    }
}

TEST_F(BackupChecksums, KeepsPermissionsOfAnExistingFile) {
    upsert("a", kHex1);
    ASSERT_EQ(::chmod(file_.c_str(), 0600), 0);
    upsert("b", kHex2);
    struct stat st {};
    ASSERT_EQ(::stat(file_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(BackupChecksums, FailedWriteLeavesTheFileAlone) {
    upsert("a", kHex1);
    util::FsOps ops = util::real_fs_ops();
    ops.write = [](int, const void*, std::size_t) -> ssize_t {
        errno = ENOSPC;
        return -1;
    };
    try {
        upsert_checksum(file_, "b", kHex2, ops, util::Durability::kNoFsync);
        ADD_FAILURE() << "no error";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::no_space_on_device);
    }
    EXPECT_EQ(content(), kHex1 + "  a\n");
    EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

// The point of the file: `cd dest && sha256sum -c checksums.txt` must work, names with
// backslashes and newlines included, and must fail when an archive changes.
TEST_F(BackupChecksums, RealSha256sumChecksTheFile) {
    const std::vector<std::string> names = {"models_backup_20261122_020000.tar.zst",
                                            "models_backup_20261123_020000.tar.gz",
                                            "back\\slash",
                                            "new\nline",
                                            "carriage\rreturn",
                                            "sp ace*star"};
    for (std::size_t i = 0; i < names.size(); ++i) {
        put(dir_ / names[i], i == 0 ? "abc" : "archive " + std::to_string(i));
    }
    const util::RunResult gnu = sha256sum([&] {
        std::vector<std::string> args{"--"};
        args.insert(args.end(), names.begin(), names.end());
        return args;
    }());
    if (gnu.kind == util::ExitKind::kFailedToStart) {
        GTEST_SKIP() << "sha256sum not available: " << gnu.error;
    }
    ASSERT_TRUE(gnu.ok()) << gnu.err;

    // Hashes as sha256sum computed them, read back through our parser.
    put(dir_ / "gnu.txt", gnu.out);
    const auto gnu_sums = read_checksums(dir_ / "gnu.txt");
    ASSERT_EQ(gnu_sums.size(), names.size());
    EXPECT_EQ(gnu_sums.at(names[0]), kAbc);  // the known vector: the tool and we agree

    for (const std::string& name : names) {
        upsert(name, gnu_sums.at(name));
    }
    // Byte for byte what sha256sum itself writes, escapes included.
    EXPECT_EQ(content(), gnu.out);

    util::RunResult check = sha256sum({"-c", "--strict", "checksums.txt"});
    EXPECT_TRUE(check.ok()) << check.out << check.err;

    put(dir_ / names[1], "tampered");
    check = sha256sum({"-c", "checksums.txt"});
    EXPECT_EQ(check.kind, util::ExitKind::kExited);
    EXPECT_EQ(check.exit_code, 1);
    EXPECT_THAT(check.out, HasSubstr(names[1] + ": FAILED"));

    // Retention drops the archive and its line: the rest checks clean again.
    remove(names[1]);
    fs::remove(dir_ / names[1]);
    check = sha256sum({"-c", "--strict", "checksums.txt"});
    EXPECT_TRUE(check.ok()) << check.out << check.err;
    EXPECT_EQ(read_checksums(file_).size(), names.size() - 1);
}

}  // namespace
}  // namespace mlk::backup
