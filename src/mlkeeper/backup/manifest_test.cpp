#include "mlkeeper/backup/manifest.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mlkeeper/util/atomic_file.hpp"
#include "mlkeeper/util/fs_ops.hpp"
#include "support/temp_dir.hpp"

namespace mlk::backup {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

const std::string kHexA = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const std::string kHexB = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const std::string kHexC = "18ac3e7343f016890c510e93f935261169d9e3f565436429830faf0934f4f8e4";

ManifestEntry dir(std::string path, std::uint32_t mode = 0755) {
    ManifestEntry e;
    e.path = std::move(path);
    e.type = EntryType::kDir;
    e.mode = mode;
    e.user = "root";
    e.group = "root";
    e.mtime_ns = 1;
    e.dev = 2049;
    e.ino = 1234;
    return e;
}

ManifestEntry file(std::string path, std::uint64_t size, std::string sha256) {
    ManifestEntry e;
    e.path = std::move(path);
    e.type = EntryType::kFile;
    e.size = size;
    e.sha256 = std::move(sha256);
    e.mode = 0644;
    e.uid = 1000;
    e.gid = 1000;
    e.user = "ml";
    e.group = "ml";
    e.mtime_ns = 1763776800123456789LL;
    e.dev = 2049;
    e.ino = 5678;
    return e;
}

ManifestEntry link(std::string path, EntryType type, std::string target) {
    ManifestEntry e = dir(std::move(path), 0777);
    e.type = type;
    e.target = std::move(target);
    return e;
}

// Every field set, every entry type, bytes that are not UTF-8, and text that needs escaping.
Manifest sample() {
    Manifest m;
    m.archive = "models_backup_20261122_020000.tar.zst";
    m.archive_size = 123456789;
    m.archive_sha256 = kHexC;
    m.created_at = "2026-11-22T02:00:00.123Z";
    m.host = "ml-node-01";
    m.tool = {"mlkeeper", "0.1.0"};
    m.source = "/opt/ml/models";
    m.root = "models";
    m.compression = {"zstd", -5};
    m.kind = BackupKind::kIncremental;
    m.parent = "models_backup_20261121_020000.tar.zst";
    m.verified_at = "2026-11-22T02:05:00.000Z";
    m.entries.push_back(dir("models"));
    m.entries.push_back(dir("models/resnet", 02775));
    ManifestEntry model = file("models/resnet/model.pt", 123, kHexA);
    model.sparse = true;
    m.entries.push_back(model);
    ManifestEntry old = file("models/resnet/old.bin", 5, kHexB);
    old.stored_in = "models_backup_20261120_020000.tar.zst";
    m.entries.push_back(old);
    ManifestEntry latin1 = file("models/caf\xe9.bin", 7, kHexC);  // ISO-8859-1, not UTF-8
    latin1.user = "\xff";
    latin1.group = "gr\xfcp";
    m.entries.push_back(latin1);
    m.entries.push_back(
        file("models/q\"b\\s\nn\tt\x01\x7f \xc3\xbcn\xc3\xaf \xe6\x97\xa5.bin", 0, kHexB));
    m.entries.push_back(file("models/overlong\xc0\xaf", 1, kHexB));  // overlong '/'
    m.entries.push_back(file("models/surrogate\xed\xa0\x80", 1, kHexB));
    m.entries.push_back(link("models/latest", EntryType::kSymlink, "resnet"));
    m.entries.push_back(link("models/badlink", EntryType::kSymlink, "/abs/\xfe\xff/x"));
    m.entries.push_back(link("models/b.bin", EntryType::kHardlink, "models/resnet/model.pt"));
    m.entries.push_back(
        link("models/c.bin", EntryType::kHardlink, "models/caf\xe9.bin"));  // b64 target
    ManifestEntry extremes = file("models/extremes", std::uint64_t{1} << 62, kHexA);
    extremes.mtime_ns = -5;  // before 1970
    extremes.uid = std::numeric_limits<std::uint32_t>::max();
    extremes.gid = std::numeric_limits<std::uint32_t>::max() - 1;
    extremes.dev = std::numeric_limits<std::uint64_t>::max();
    extremes.ino = std::numeric_limits<std::uint64_t>::max() - 1;
    extremes.mode = 04755;
    extremes.user.clear();
    extremes.group.clear();
    m.entries.push_back(extremes);
    m.changed_during_backup = {"models/x.log", "models/caf\xe9.bin"};
    m.totals = compute_totals(m.entries);
    m.depends_on = compute_depends_on(m);
    return m;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const ManifestError& e) {
        return e.what();
    }
    return "<no ManifestError>";
}

// Both readers must reject `j` with a message containing `needle`.
void expect_rejected(const json& j, const std::string& needle) {
    SCOPED_TRACE(needle);
    EXPECT_THAT(error_of([&] { manifest_from_json(j); }), HasSubstr(needle));
    EXPECT_THAT(error_of([&] { parse_manifest(j.dump()); }), HasSubstr(needle));
}

void expect_rejected_text(const std::string& text, const std::string& needle) {
    SCOPED_TRACE(needle);
    EXPECT_THAT(error_of([&] { parse_manifest(text); }), HasSubstr(needle));
}

// The JSON object of the entry whose (UTF-8) path is `path`.
json& entry_json(json& j, const std::string& path) {
    for (json& e : j["entries"]) {
        if (e.value("path", "") == path) {
            return e;
        }
    }
    throw std::runtime_error("no entry " + path);
}

TEST(BackupManifest, TextRoundTripKeepsEveryField) {
    const Manifest m = sample();
    const std::string text = serialize_manifest(m);
    const Manifest back = parse_manifest(text);
    EXPECT_EQ(back, m);
    ASSERT_EQ(back.entries.size(), m.entries.size());
    for (std::size_t i = 0; i < m.entries.size(); ++i) {
        EXPECT_EQ(back.entries[i], m.entries[i]) << "entries[" << i << "]";
    }
    EXPECT_EQ(back.changed_during_backup, m.changed_during_backup);
    EXPECT_EQ(serialize_manifest(back), text);  // stable output
}

TEST(BackupManifest, EncryptionRoundTripsAndIsValidated) {
    Manifest m = sample();
    m.archive += ".age";
    m.encryption = Manifest::Encryption{"age-v1", {"age1abc", "age1def"}, false};
    const std::string text = serialize_manifest(m);
    EXPECT_NE(text.find("\"encryption\": {\"format\": \"age-v1\""), std::string::npos) << text;
    EXPECT_EQ(parse_manifest(text), m);
    EXPECT_EQ(parse_manifest_header(text).encryption, m.encryption);
    EXPECT_EQ(manifest_from_json(to_json(m)), m);
    // A plain archive's manifest has no encryption field at all (unchanged for old readers).
    EXPECT_EQ(serialize_manifest(sample()).find("encryption"), std::string::npos);

    m.encryption->recipients = {"ssh-ed25519 AAAA"};
    EXPECT_THROW(serialize_manifest(m), ManifestError);
    m.encryption->recipients.clear();
    EXPECT_THROW(serialize_manifest(m), ManifestError);
    m.encryption->passphrase = true;
    EXPECT_NO_THROW(serialize_manifest(m));
    m.encryption->format = "gpg";
    EXPECT_THROW(serialize_manifest(m), ManifestError);
}

TEST(BackupManifest, DomRoundTripAndTextAgree) {
    const Manifest m = sample();
    const json j = to_json(m);
    EXPECT_EQ(manifest_from_json(j), m);
    EXPECT_EQ(json::parse(serialize_manifest(m)), j);
    // And across: the DOM's text through the streaming reader.
    EXPECT_EQ(parse_manifest(j.dump()), m);
}

TEST(BackupManifest, TextLayout) {
    const std::string text = serialize_manifest(sample());
    // format and version first, so `head` shows what the file is; one line per entry.
    EXPECT_EQ(text.rfind("{\n  \"format\": \"mlkeeper-backup-manifest\",\n  \"version\": 1,\n", 0),
              0u)
        << text.substr(0, 200);
    EXPECT_THAT(text, HasSubstr("\n    {\"path\": \"models\", \"type\": \"dir\", \"mode\": 493, "
                                "\"uid\": 0, \"gid\": 0, \"user\": \"root\", \"group\": \"root\", "
                                "\"mtime_ns\": 1, \"dev\": 2049, \"ino\": 1234},\n"));
    EXPECT_THAT(text, HasSubstr("\"sparse\": true, \"stored_in\": null}"));
    EXPECT_THAT(text, HasSubstr("\"stored_in\": \"models_backup_20261120_020000.tar.zst\"}"));
    EXPECT_THAT(text, HasSubstr("\"kind\": \"incremental\""));
    EXPECT_EQ(text.back(), '\n');
}

TEST(BackupManifest, NonUtf8BytesUseBase64Fields) {
    Manifest m = sample();
    m.source = "/opt/ml/mod\xe8ls";
    m.host = "node\xff";
    const json j = json::parse(serialize_manifest(m));
    EXPECT_FALSE(j.contains("source"));
    EXPECT_EQ(j["source_b64"], "L29wdC9tbC9tb2TobHM=");
    EXPECT_EQ(j["host_b64"], "bm9kZf8=");
    EXPECT_EQ(j["root"], "models");

    const json& latin1 = j["entries"][4];
    EXPECT_FALSE(latin1.contains("path"));
    EXPECT_EQ(latin1["path_b64"], "bW9kZWxzL2NhZukuYmlu");
    EXPECT_EQ(latin1["user_b64"], "/w==");
    EXPECT_EQ(latin1["group_b64"], "Z3L8cA==");
    EXPECT_EQ(j["entries"][6]["path_b64"], "bW9kZWxzL292ZXJsb25nwK8=");      // overlong form
    EXPECT_EQ(j["entries"][7]["path_b64"], "bW9kZWxzL3N1cnJvZ2F0Ze2ggA==");  // surrogate
    EXPECT_EQ(j["entries"][9]["target_b64"], "L2Ficy/+/y94");
    EXPECT_EQ(j["entries"][11]["target_b64"], "bW9kZWxzL2NhZukuYmlu");
    EXPECT_EQ(j["changed_during_backup"][1]["path_b64"], "bW9kZWxzL2NhZukuYmlu");
    // Valid UTF-8 with quotes, backslashes and control characters stays readable text.
    EXPECT_EQ(j["entries"][5]["path"].get<std::string>(),
              "models/q\"b\\s\nn\tt\x01\x7f \xc3\xbcn\xc3\xaf \xe6\x97\xa5.bin");

    const Manifest back = parse_manifest(serialize_manifest(m));
    EXPECT_EQ(back, m);
    EXPECT_EQ(manifest_from_json(to_json(m)), m);
}

TEST(BackupManifest, ReadingAcceptsBase64ForUtf8TooAndRejectsBadBase64) {
    json j = to_json(sample());
    json& e = entry_json(j, "models/latest");
    e.erase("path");
    e["path_b64"] = "bW9kZWxzL2xhdGVzdA==";  // "models/latest"
    EXPECT_EQ(manifest_from_json(j), sample());
    EXPECT_EQ(parse_manifest(j.dump()), sample());

    json both = to_json(sample());
    entry_json(both, "models/latest")["path_b64"] = "bW9kZWxzL2xhdGVzdA==";
    expect_rejected(both, "both \"path\" and \"path_b64\"");

    for (const char* bad : {"bW9kZWxz!", "bW9kZWxzL2xhdGVzdA", "bW9k=Wxz", "bW9kZWxz\n"}) {
        json bad_b64 = to_json(sample());
        json& be = entry_json(bad_b64, "models/latest");
        be.erase("path");
        be["path_b64"] = bad;
        expect_rejected(bad_b64, "path_b64: is not valid base64");
    }
}

TEST(BackupManifest, UnknownFieldsAreIgnored) {
    json j = to_json(sample());
    j["future_scalar"] = 1.5;
    j["future_object"] = {{"entries", json::array({1, 2})}, {"nested", {{"a", {1, {{"b", 2}}}}}}};
    j["future_array"] = json::array({json::object(), json::array(), "x", nullptr});
    j["tool"]["build"] = "abc";
    j["compression"]["threads"] = 8;
    j["totals"]["future_count"] = 3;
    for (json& e : j["entries"]) {
        e["xattrs"] = {{"user.comment", "hi"},
                       {"deep", {{"deeper", json::array({1, {{"x", 1}}})}}}};
        e["acl"] = json::array({json::array({1}), json::object()});
        e["future_flag"] = true;
    }
    EXPECT_EQ(manifest_from_json(j), sample());
    EXPECT_EQ(parse_manifest(j.dump()), sample());
    EXPECT_EQ(parse_manifest(j.dump(2)), sample());
}

TEST(BackupManifest, NewerVersionIsRejected) {
    json j = to_json(sample());
    j["version"] = 2;
    expect_rejected(j, "manifest version: 2 is newer than this mlkeeper reads (1)");
    j["version"] = 0;
    expect_rejected(j, "manifest version: must be at least 1");
    j["version"] = "1";
    expect_rejected(j, "manifest version: must be an integer, got a string");
    j["version"] = 1.0;
    expect_rejected(j, "manifest version: must be an integer");
    j.erase("version");
    expect_rejected(j, "manifest version: missing");

    // A newer document's entries may not make sense to us: the version is what gets reported,
    // even when it comes after the entries.
    expect_rejected_text(R"({"entries": [{"path": "m", "type": "fifo", "new": {}}],
                             "format": "mlkeeper-backup-manifest", "version": 2})",
                         "manifest version: 2 is newer");
}

TEST(BackupManifest, WrongFormatIsRejected) {
    json j = to_json(sample());
    j["format"] = "something-else";
    expect_rejected(j, "manifest format: expected \"mlkeeper-backup-manifest\"");
    j.erase("format");
    expect_rejected(j, "manifest format: missing");
    expect_rejected(json::array({1, 2}), "manifest document: must be a JSON object");
    expect_rejected(json("text"), "manifest document: must be a JSON object");
}

TEST(BackupManifest, MissingRequiredFieldsAreNamed) {
    for (const char* key : {"archive", "archive_size", "archive_sha256", "created_at", "source",
                            "root", "kind", "entries"}) {
        json j = to_json(sample());
        j.erase(key);
        expect_rejected(j, std::string("manifest ") + key + ": missing");
    }
    json j = to_json(sample());
    j["parent"] = nullptr;
    expect_rejected(j, "manifest parent: an incremental backup needs");

    const std::string model = "models/resnet/model.pt";
    for (const char* key : {"type", "mode", "uid", "gid", "mtime_ns", "size", "sha256"}) {
        json e = to_json(sample());
        entry_json(e, model).erase(key);
        expect_rejected(
            e, std::string("manifest entries[2].") + key + ": missing (path \"" + model + "\")");
    }
    json no_path = to_json(sample());
    no_path["entries"][2].erase("path");
    expect_rejected(no_path, "manifest entries[2].path: missing");
    json no_target = to_json(sample());
    entry_json(no_target, "models/latest").erase("target");
    expect_rejected(no_target, "manifest entries[8].target: missing (path \"models/latest\")");
}

TEST(BackupManifest, OptionalFieldsMayBeMissing) {
    Manifest m = sample();
    m.kind = BackupKind::kFull;
    m.parent.reset();
    m.verified_at.reset();
    m.entries[3].stored_in.reset();
    m.totals = compute_totals(m.entries);
    m.depends_on = compute_depends_on(m);
    json j = to_json(m);
    for (const char* key : {"host", "tool", "compression", "parent", "verified_at",
                            "changed_during_backup", "totals"}) {
        j.erase(key);
    }
    for (json& e : j["entries"]) {
        for (const char* key :
             {"user", "user_b64", "group", "group_b64", "dev", "ino", "sparse", "stored_in"}) {
            e.erase(key);
        }
    }
    for (const Manifest& back : {manifest_from_json(j), parse_manifest(j.dump())}) {
        EXPECT_EQ(back.host, "");
        EXPECT_EQ(back.tool.name, "");
        EXPECT_EQ(back.compression, Manifest::Compression{});
        EXPECT_FALSE(back.parent);
        EXPECT_FALSE(back.verified_at);
        EXPECT_TRUE(back.changed_during_backup.empty());
        EXPECT_EQ(back.totals, compute_totals(m.entries));
        ASSERT_EQ(back.entries.size(), m.entries.size());
        EXPECT_EQ(back.entries[2].path, "models/resnet/model.pt");
        EXPECT_EQ(back.entries[2].user, "");
        EXPECT_EQ(back.entries[2].dev, 0u);
        EXPECT_FALSE(back.entries[2].sparse);
        EXPECT_EQ(back.entries[2].sha256, kHexA);
    }
    // Null is the same as missing for optional fields.
    j["host"] = nullptr;
    j["verified_at"] = nullptr;
    EXPECT_EQ(parse_manifest(j.dump()).host, "");
}

TEST(BackupManifest, WrongTypesAreRejected) {
    const auto with = [](const char* key, const json& value) {
        json j = to_json(sample());
        j["entries"][2][key] = value;
        return j;
    };
    expect_rejected(with("size", -1),
                    "entries[2].size: must be a non-negative integer, got a "
                    "negative integer");
    expect_rejected(with("size", 1.5), "entries[2].size: must be a non-negative integer");
    expect_rejected(with("size", "12"),
                    "entries[2].size: must be a non-negative integer, got a "
                    "string");
    expect_rejected(with("size", json::object()),
                    "entries[2].size: must be a non-negative "
                    "integer, got an object or array");
    expect_rejected(with("mode", json::array({1})), "entries[2].mode: must be");
    expect_rejected(with("uid", 4294967296ULL), "entries[2].uid: 4294967296 is larger than");
    expect_rejected(with("sparse", 1), "entries[2].sparse: must be true or false");
    expect_rejected(with("stored_in", 5), "entries[2].stored_in: must be a string");
    expect_rejected(with("type", "fifo"), "entries[2].type: unknown type \"fifo\"");
    expect_rejected(with("path", nullptr), "entries[2].path: missing");  // null = missing
    expect_rejected(with("path", 5), "entries[2].path: must be a string, got an integer");
    expect_rejected(with("mtime_ns", 18446744073709551615ULL), "entries[2].mtime_ns: ");

    json j = to_json(sample());
    j["entries"][1] = "models/resnet";
    expect_rejected(j, "manifest entries[1]: must be an object");
    j["entries"][1] = json::array({1});
    expect_rejected(j, "manifest entries[1]: must be an object");
    j["entries"] = json::object();
    expect_rejected(j, "manifest entries: must be an array");
    j["entries"] = 7;
    expect_rejected(j, "manifest entries: must be an array");

    json k = to_json(sample());
    k["kind"] = "differential";
    expect_rejected(k, "manifest kind: unknown kind \"differential\"");
    k = to_json(sample());
    k["archive_size"] = -3;
    expect_rejected(k, "manifest archive_size: must be a non-negative integer");
    k = to_json(sample());
    k["tool"] = "mlkeeper";
    expect_rejected(k, "manifest tool: must be an object");
    k = to_json(sample());
    k["compression"]["level"] = 1LL << 40;
    expect_rejected(k, "manifest compression.level: 1099511627776 is out of range");
    k = to_json(sample());
    k["changed_during_backup"] = json::array({1});
    expect_rejected(k, "manifest changed_during_backup[0]: must be a string or an object");
    k = to_json(sample());
    k["changed_during_backup"][1]["path_b64"] = "%%";
    expect_rejected(k, "manifest changed_during_backup[1].path_b64: is not valid base64");
    k["changed_during_backup"][1] = json::object();
    expect_rejected(k, "manifest changed_during_backup[1]: an object element needs");
}

TEST(BackupManifest, DuplicateEntriesKeyIsRejectedByTheStreamingReader) {
    const std::string text = serialize_manifest(sample());
    const std::size_t at = text.find("\"entries\"");
    ASSERT_NE(at, std::string::npos);
    // A second "entries" (array, object or scalar) before the real one.
    for (const char* dup :
         {"\"entries\": [], ", "\"entries\": {\"a\": [1]}, ", "\"entries\": 5, "}) {
        std::string doubled = text;
        doubled.insert(at, dup);
        expect_rejected_text(doubled, "manifest entries: appears more than once");
    }
}

TEST(BackupManifest, InvalidJsonIsRejected) {
    const std::string text = serialize_manifest(sample());
    expect_rejected_text(text.substr(0, text.size() / 2), "manifest document: invalid JSON");
    expect_rejected_text(text.substr(0, text.size() - 3), "invalid JSON");
    expect_rejected_text("", "invalid JSON");
    expect_rejected_text(text + "x", "invalid JSON");
    expect_rejected_text("{\"format\": \"\xff\"}", "invalid JSON");  // not UTF-8
    EXPECT_THAT(error_of([&] { parse_manifest("{\n\"a\": tru\n}"); }),
                HasSubstr("parse error at line "));
}

TEST(BackupManifest, TotalsCountByTypeAndStoredOnlyWithoutStoredIn) {
    const Manifest m = sample();
    const Manifest::Totals t = compute_totals(m.entries);
    EXPECT_EQ(t.files, 7u);
    EXPECT_EQ(t.dirs, 2u);
    EXPECT_EQ(t.symlinks, 2u);
    EXPECT_EQ(t.hardlinks, 2u);
    const std::uint64_t all = 123 + 5 + 7 + 0 + 1 + 1 + (std::uint64_t{1} << 62);
    EXPECT_EQ(t.bytes, all);
    EXPECT_EQ(t.stored_files, 6u);       // old.bin lives in an earlier archive
    EXPECT_EQ(t.stored_bytes, all - 5);  // ... and so do its 5 bytes
    EXPECT_EQ(compute_totals({}), Manifest::Totals{});

    const json j = json::parse(serialize_manifest(m));
    EXPECT_EQ(j["totals"], json({{"files", 7},
                                 {"dirs", 2},
                                 {"symlinks", 2},
                                 {"hardlinks", 2},
                                 {"bytes", all},
                                 {"stored_files", 6},
                                 {"stored_bytes", all - 5}}));
}

TEST(BackupManifest, WritersIgnoreStaleTotalsAndReadersRejectWrongOnes) {
    Manifest m = sample();
    m.totals = Manifest::Totals{};  // stale: the writer recomputes
    const Manifest back = parse_manifest(serialize_manifest(m));
    EXPECT_EQ(back.totals, compute_totals(m.entries));

    json j = to_json(sample());
    j["totals"]["stored_bytes"] = 1;
    expect_rejected(j, "manifest totals.stored_bytes: 1 does not match the entries");
    j = to_json(sample());
    j["totals"].erase("files");
    expect_rejected(j, "manifest totals.files: missing");
}

TEST(BackupManifest, ValidationRejectsBrokenManifests) {
    const auto rejects = [](const std::function<void(Manifest&)>& change,
                            const std::string& needle) {
        SCOPED_TRACE(needle);
        Manifest m = sample();
        change(m);
        EXPECT_THAT(error_of([&] { validate_manifest(m); }), HasSubstr(needle));
        EXPECT_THAT(error_of([&] { serialize_manifest(m); }), HasSubstr(needle));
        EXPECT_THAT(error_of([&] { to_json(m); }), HasSubstr(needle));
    };
    rejects([](Manifest& m) { m.entries[2].path = "/etc/passwd"; },
            "entries[2].path: "
            "\"/etc/passwd\" is absolute");
    rejects([](Manifest& m) { m.entries[2].path = "models/../etc"; }, "'..' component");
    rejects([](Manifest& m) { m.entries[2].path = "models/./x"; }, "'.' or '..' component");
    rejects([](Manifest& m) { m.entries[2].path = "models//x"; }, "empty component");
    rejects([](Manifest& m) { m.entries[2].path = "models/x/"; }, "empty component");
    rejects([](Manifest& m) { m.entries[2].path = ""; }, "entries[2].path: \"\" is empty");
    rejects([](Manifest& m) { m.entries[2].path = std::string("models/a\0b", 10); }, "NUL");
    rejects([](Manifest& m) { m.entries[2].path = "modelsx/a"; }, "is not under the root");
    rejects([](Manifest& m) { m.entries[2].path = "other"; }, "is not under the root");
    rejects([](Manifest& m) { m.entries[3].path = m.entries[2].path; },
            "entries[3].path: duplicate path \"models/resnet/model.pt\" (also entries[2])");
    rejects([](Manifest& m) { m.entries[2].sha256 = "abc"; }, "entries[2].sha256: must be 64 hex");
    rejects([](Manifest& m) { m.entries[2].sha256 = std::string(64, 'g'); }, "64 hex digits");
    rejects([](Manifest& m) { m.entries[2].mode = 010644; },
            "entries[2].mode: 4516 has bits "
            "beyond 07777");
    rejects([](Manifest& m) { m.entries[0].size = 4096; }, "entries[0].size: only files");
    rejects([](Manifest& m) { m.entries[0].sha256 = kHexA; }, "entries[0].sha256: only files");
    rejects([](Manifest& m) { m.entries[0].sparse = true; }, "entries[0].sparse: only files");
    rejects([](Manifest& m) { m.entries[0].stored_in = "x"; }, "entries[0].stored_in: only files");
    rejects([](Manifest& m) { m.entries[0].target = "x"; }, "entries[0].target: only symlinks");
    rejects([](Manifest& m) { m.entries[8].target.clear(); },
            "entries[8].target: a symlink "
            "needs a target");
    rejects([](Manifest& m) { m.entries[10].target = "models/nothing"; },
            "entries[10].target: \"models/nothing\" is not a file in this manifest");
    rejects([](Manifest& m) { m.entries[10].target = "models/resnet"; }, "is not a file");
    rejects([](Manifest& m) { m.entries[10].target = "/etc/shadow"; }, "is absolute");
    rejects([](Manifest& m) { m.entries[10].target = m.entries[10].path; }, "link to itself");
    rejects([](Manifest& m) { m.entries[3].stored_in = m.archive; }, "names this archive");
    rejects([](Manifest& m) { m.entries[3].stored_in = "../x.tar.zst"; }, "not a plain file name");
    rejects(
        [](Manifest& m) {
            m.kind = BackupKind::kFull;
            m.parent.reset();
        },
        "entries[3].stored_in: is set in a full backup");
    rejects([](Manifest& m) { m.parent.reset(); }, "parent: an incremental backup needs");
    rejects([](Manifest& m) { m.parent = m.archive; }, "its own parent");
    rejects(
        [](Manifest& m) {
            m.kind = BackupKind::kFull;
            m.entries[3].stored_in.reset();
        },
        "parent: must be null for a full backup");
    rejects([](Manifest& m) { m.archive = "dir/a.tar.zst"; },
            "archive: \"dir/a.tar.zst\" is not "
            "a plain file name");
    rejects([](Manifest& m) { m.archive = "a\xff.tar"; },
            "archive: \"a\\xff.tar\" is not valid "
            "UTF-8");
    rejects([](Manifest& m) { m.archive.clear(); }, "archive: is empty");
    rejects([](Manifest& m) { m.archive_sha256 = ""; }, "archive_sha256: must be 64 hex digits");
    rejects([](Manifest& m) { m.created_at.clear(); }, "created_at: is empty");
    rejects([](Manifest& m) { m.root = "a/b"; }, "root: \"a/b\" must be a single name");
    rejects([](Manifest& m) { m.root = ".."; }, "root: \"..\" has a '.' or '..' component");
    rejects([](Manifest& m) { m.source.clear(); }, "source: is empty");
    rejects([](Manifest& m) { m.verified_at = ""; }, "verified_at: is empty");
    rejects([](Manifest& m) { m.tool.version = "\xff"; }, "tool.version: \"\\xff\" is not valid");
    rejects([](Manifest& m) { m.changed_during_backup.push_back("/abs"); },
            "changed_during_backup[2]: \"/abs\" is absolute");
}

TEST(BackupManifest, ReadersApplyTheSameRules) {
    json j = to_json(sample());
    entry_json(j, "models/resnet/model.pt")["path"] = "models/../../etc/passwd";
    expect_rejected(j, "manifest entries[2].path: \"models/../../etc/passwd\" has a '.' or '..'");
    j = to_json(sample());
    j["entries"].push_back(j["entries"][2]);
    j["totals"]["files"] = 8;
    j["totals"]["bytes"] = j["totals"]["bytes"].get<std::uint64_t>() + 123;
    j["totals"]["stored_files"] = 7;
    j["totals"]["stored_bytes"] = j["totals"]["stored_bytes"].get<std::uint64_t>() + 123;
    expect_rejected(j, "manifest entries[13].path: duplicate path");
    j = to_json(sample());
    j["entries"][2]["sha256"] = "nothex";
    expect_rejected(j,
                    "manifest entries[2].sha256: must be 64 hex digits, got \"nothex\" (path "
                    "\"models/resnet/model.pt\")");
}

TEST(BackupManifest, UpperCaseHexIsReadAsLowerCase) {
    json j = to_json(sample());
    std::string upper = kHexA;
    for (char& c : upper) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    j["entries"][2]["sha256"] = upper;
    EXPECT_EQ(parse_manifest(j.dump()).entries[2].sha256, kHexA);
    EXPECT_EQ(manifest_from_json(j).entries[2].sha256, kHexA);

    Manifest m = sample();
    m.archive_sha256 = upper;
    EXPECT_EQ(json::parse(serialize_manifest(m))["archive_sha256"], kHexA);
}

TEST(BackupManifest, IndexFindsEntriesByPath) {
    const Manifest m = sample();
    const ManifestIndex index(m);
    EXPECT_EQ(index.size(), m.entries.size());
    for (const ManifestEntry& e : m.entries) {
        EXPECT_EQ(index.find(e.path), &e) << e.path;
    }
    EXPECT_EQ(index.find("models/caf\xe9.bin"), &m.entries[4]);
    EXPECT_EQ(index.find("models/missing"), nullptr);
    EXPECT_EQ(index.find(""), nullptr);
    EXPECT_EQ(index.find("models/resnet/model.p"), nullptr);

    Manifest dup = sample();
    dup.entries.push_back(dup.entries[0]);
    EXPECT_THAT(error_of([&] { ManifestIndex bad(dup); }),
                HasSubstr("entries[13].path: duplicate path \"models\" (also entries[0])"));
}

class BackupManifestFile : public ::testing::Test {
  protected:
    mlk::testing::TempDir tmp_;
};

TEST_F(BackupManifestFile, WriteAndReadBack) {
    const fs::path archive = tmp_.path() / "models_backup_20261122_020000.tar.zst";
    const fs::path file = manifest_path_for(archive);
    EXPECT_EQ(file.filename(), "models_backup_20261122_020000.tar.zst.manifest.json");
    EXPECT_EQ(file.parent_path(), tmp_.path());

    write_manifest(file, sample(), 0640);
    EXPECT_EQ(read_manifest(file), sample());
    EXPECT_EQ(util::read_file(file), serialize_manifest(sample()));
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);

    // Overwrite, as verification does when it sets verified_at.
    Manifest m = read_manifest(file);
    m.verified_at = "2026-11-23T00:00:00.000Z";
    write_manifest(file, m, 0640, util::real_fs_ops(), util::Durability::kNoFsync);
    EXPECT_EQ(read_manifest(file).verified_at, "2026-11-23T00:00:00.000Z");
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp_.path()), fs::directory_iterator()), 1);
}

TEST_F(BackupManifestFile, LargeManifestStreamsInPieces) {
    Manifest m = sample();
    m.entries.resize(2);
    for (int i = 0; i < 5000; ++i) {
        m.entries.push_back(file("models/resnet/f" + std::to_string(i), i, kHexA));
    }
    int writes = 0;
    util::FsOps ops = util::real_fs_ops();
    ops.write = [&writes](int fd, const void* buf, std::size_t n) {
        ++writes;
        return ::write(fd, buf, n);
    };
    const fs::path path = tmp_.path() / "big.manifest.json";
    write_manifest(path, m, 0644, ops, util::Durability::kNoFsync);
    EXPECT_GE(writes, 2);  // ~1 MiB pieces (the text is ~1.5 MB), not one big string
    const Manifest back = read_manifest(path);
    EXPECT_EQ(back.entries.size(), m.entries.size());
    EXPECT_EQ(back.totals.files, 5000u);
    EXPECT_EQ(back, parse_manifest(serialize_manifest(m)));
}

TEST_F(BackupManifestFile, CorruptFilesAreNamedInTheError) {
    const fs::path path = tmp_.path() / "a.tar.zst.manifest.json";
    const std::string text = serialize_manifest(sample());
    for (const std::string& bad :
         {text.substr(0, text.size() / 3), std::string(), std::string("not json"),
          std::string("{\"format\": \"mlkeeper-backup-manifest\", \"version\": 1}")}) {
        util::write_file_atomic(path, bad, 0644, util::real_fs_ops(), util::Durability::kNoFsync);
        const std::string err = error_of([&] { read_manifest(path); });
        EXPECT_THAT(err, HasSubstr(path.string() + ": manifest ")) << bad;
    }
    util::write_file_atomic(path, text.substr(0, 100), 0644, util::real_fs_ops(),
                            util::Durability::kNoFsync);
    EXPECT_THAT(error_of([&] { read_manifest(path); }), HasSubstr("invalid JSON"));

    const fs::path missing = tmp_.path() / "missing.manifest.json";
    try {
        read_manifest(missing);
        ADD_FAILURE() << "no error for a missing manifest";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
        EXPECT_THAT(e.what(), HasSubstr(missing.string()));
    }
}

TEST_F(BackupManifestFile, FailedWriteKeepsTheOldManifest) {
    const fs::path path = tmp_.path() / "a.manifest.json";
    write_manifest(path, sample(), 0644, util::real_fs_ops(), util::Durability::kNoFsync);
    const std::string before = util::read_file(path);

    util::FsOps ops = util::real_fs_ops();
    ops.write = [](int, const void*, std::size_t) -> ssize_t {
        errno = ENOSPC;
        return -1;
    };
    Manifest m = sample();
    m.verified_at = "2030-01-01T00:00:00.000Z";
    try {
        write_manifest(path, m, 0644, ops, util::Durability::kNoFsync);
        ADD_FAILURE() << "no error for a full disk";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::no_space_on_device);
    }
    EXPECT_EQ(util::read_file(path), before);

    // An invalid manifest is refused before anything touches the disk.
    m.entries[2].sha256 = "x";
    EXPECT_THAT(error_of([&] { write_manifest(path, m); }), HasSubstr("sha256"));
    EXPECT_EQ(util::read_file(path), before);
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp_.path()), fs::directory_iterator()), 1);
}

TEST(BackupManifest, EnumNames) {
    for (EntryType t :
         {EntryType::kFile, EntryType::kDir, EntryType::kSymlink, EntryType::kHardlink}) {
        EXPECT_EQ(parse_entry_type(to_string(t)), t);
    }
    for (BackupKind k : {BackupKind::kFull, BackupKind::kIncremental}) {
        EXPECT_EQ(parse_backup_kind(to_string(k)), k);
    }
    EXPECT_FALSE(parse_entry_type("File"));
    EXPECT_FALSE(parse_backup_kind(""));
}

}  // namespace
}  // namespace mlk::backup

namespace mlk::backup {
namespace {

TEST(BackupManifestHeader, StopsAtTheEntries) {
    const Manifest m = sample();
    std::string text = serialize_manifest(m);
    const Manifest h = parse_manifest_header(text);
    EXPECT_TRUE(h.entries.empty());
    EXPECT_EQ(h.archive, m.archive);
    EXPECT_EQ(h.parent, m.parent);
    EXPECT_EQ(h.totals, m.totals);
    EXPECT_EQ(h.depends_on, m.depends_on);
    ASSERT_EQ(h.depends_on.size(), 2u);  // the parent and the older archive an entry names
    // Garbage after the "entries" key: a header read never gets there, a full read fails.
    text.resize(text.find("\"entries\"") + 12);
    text += "this is not JSON";
    EXPECT_NO_THROW((void)parse_manifest_header(text));
    EXPECT_THROW((void)parse_manifest(text), ManifestError);
}

TEST(BackupManifestHeader, WithoutDependsOnTheEntriesAreRead) {
    const Manifest m = sample();
    std::string text = serialize_manifest(m);
    const auto start = text.find("  \"depends_on\"");
    ASSERT_NE(start, std::string::npos);
    text.erase(start, text.find('\n', start) + 1 - start);  // as an earlier version wrote it
    const Manifest h = parse_manifest_header(text);
    EXPECT_EQ(h.entries.size(), m.entries.size());  // fell back to a full read
    EXPECT_EQ(h.depends_on, m.depends_on);          // derived from the entries
}

TEST(BackupManifestHeader, KeysInAnotherOrderAreStillReadCorrectly) {
    Manifest m = sample();
    m.verified_at = "2026-11-22T02:00:00.000Z";
    // As `jq -S` would rewrite it: "entries" now comes before "verified_at".
    const std::string sorted = nlohmann::json::parse(serialize_manifest(m)).dump();
    const Manifest h = parse_manifest_header(sorted);
    EXPECT_EQ(h.verified_at, m.verified_at);
    EXPECT_EQ(h.depends_on, m.depends_on);
}

TEST(BackupManifestHeader, DependsOnThatDisagreesWithTheEntriesIsRejected) {
    std::string text = serialize_manifest(sample());
    const auto at = text.find("\"depends_on\": [");
    ASSERT_NE(at, std::string::npos);
    text.insert(at + 15, "\"models_backup_20200101_000000.tar.zst\", ");
    try {
        (void)parse_manifest(text);
        FAIL() << "expected a ManifestError";
    } catch (const ManifestError& e) {
        EXPECT_NE(std::string(e.what()).find("depends_on"), std::string::npos) << e.what();
    }
}

// Listing archives reads every manifest's header: a big manifest is read only up to its header,
// and one laid out otherwise (keys sorted) is still read right, whole.
TEST(BackupManifestHeader, ReadingTheHeaderOfABigManifestReadsOnlyItsStart) {
    mlk::testing::TempDir t;
    Manifest m = sample();
    for (int i = 0; i < 3000; ++i) {
        m.entries.push_back(file("models/run" + std::to_string(i) + "/config.json", 100, kHexA));
    }
    const auto path = t / "big.manifest.json";
    write_manifest(path, m);
    const auto size = std::filesystem::file_size(path);
    ASSERT_GT(size, 512U * 1024);
    std::size_t bytes_read = 0;
    util::FsOps counting = util::real_fs_ops();
    counting.read = [&bytes_read](int fd, void* buf, std::size_t n) {
        const ssize_t got = ::read(fd, buf, n);
        if (got > 0) {
            bytes_read += static_cast<std::size_t>(got);
        }
        return got;
    };
    const Manifest h = read_manifest_header(path, counting);
    EXPECT_LE(bytes_read, 64U * 1024);
    EXPECT_TRUE(h.entries.empty());
    EXPECT_EQ(h.archive, m.archive);
    EXPECT_EQ(h.totals, compute_totals(m.entries));
    EXPECT_EQ(h.depends_on, compute_depends_on(m));

    util::write_file_atomic(path, nlohmann::json::parse(serialize_manifest(m)).dump(2));
    bytes_read = 0;
    const Manifest sorted = read_manifest_header(path, counting);
    EXPECT_GE(bytes_read, std::filesystem::file_size(path));  // the start, then all of it
    EXPECT_EQ(sorted.totals, h.totals);
    EXPECT_EQ(sorted.verified_at, m.verified_at);
}

}  // namespace
}  // namespace mlk::backup
