#include "mlkeeper/health/system_checks.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

namespace mlk::health {
namespace {

namespace fs = std::filesystem;

// A fake /proc, /sys and /run under a temporary directory.
class FakeRoot {
  public:
    FakeRoot() {
        std::string tmpl = (fs::temp_directory_path() / "mlk-health-XXXXXX").string();
        if (!::mkdtemp(tmpl.data()))
            throw std::runtime_error("mkdtemp");
        root_ = tmpl;
        env.proc_root = root_ / "proc";
        env.sys_root = root_ / "sys";
        env.run_root = root_ / "run";
        env.reboot_required_file = root_ / "run/reboot-required";
        fs::create_directories(env.proc_root);
        fs::create_directories(env.run_root);
    }
    ~FakeRoot() {
        std::error_code ec;
        fs::remove_all(root_, ec);
    }
    void write(const fs::path& p, const std::string& text) {
        fs::create_directories(p.parent_path());
        std::ofstream(p) << text;
    }
    void proc(const std::string& name, const std::string& text) {
        write(env.proc_root / name, text);
    }
    const fs::path& root() const { return root_; }
    HealthEnv env;

  private:
    fs::path root_;
};

std::string meminfo(long total, long avail, long swap_total, long swap_free) {
    return "MemTotal:       " + std::to_string(total) + " kB\nMemFree:  1000 kB\n" +
           "MemAvailable:   " + std::to_string(avail) + " kB\nBuffers: 10 kB\nCached: 20 kB\n" +
           "SwapTotal:      " + std::to_string(swap_total) +
           " kB\nSwapFree:       " + std::to_string(swap_free) + " kB\nHugePages_Total:       0\n";
}

TEST(Memory, PassWarnFailFromMemAvailable) {
    FakeRoot f;
    MemoryOptions o;  // 85 / 95, swap 50 / 80
    f.proc("meminfo", meminfo(1000000, 500000, 0, 0));
    auto r = check_memory(f.env, o);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0].status, Status::kPass);
    EXPECT_DOUBLE_EQ(*r[0].value, 50.0);
    EXPECT_EQ(r[0].unit, "%");
    EXPECT_EQ(r[1].status, Status::kPass);
    EXPECT_NE(r[1].message.find("no swap"), std::string::npos);

    f.proc("meminfo", meminfo(1000000, 100000, 1000, 400));  // 90% used, swap 60%
    r = check_memory(f.env, o);
    EXPECT_EQ(r[0].status, Status::kWarn);
    EXPECT_DOUBLE_EQ(*r[0].threshold, 85);
    EXPECT_EQ(r[1].status, Status::kWarn);
    EXPECT_DOUBLE_EQ(*r[1].value, 60);

    f.proc("meminfo", meminfo(1000000, 10000, 1000, 100));  // 99%, swap 90%
    r = check_memory(f.env, o);
    EXPECT_EQ(r[0].status, Status::kFail);
    EXPECT_DOUBLE_EQ(*r[0].threshold, 95);
    EXPECT_EQ(r[1].status, Status::kFail);
}

TEST(Memory, OldKernelWithoutMemAvailableUsesFreeBuffersCached) {
    FakeRoot f;
    f.proc("meminfo", "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 50 kB\n");
    auto r = check_memory(f.env, {});
    EXPECT_DOUBLE_EQ(*r[0].value, 80.0);
}

TEST(Memory, MissingOrGarbledMeminfoIsAnError) {
    FakeRoot f;
    auto r = check_memory(f.env, {});
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].ran, Ran::kError);
    EXPECT_EQ(r[0].status, Status::kWarn);
    f.proc("meminfo", "garbage\n");
    r = check_memory(f.env, {});
    EXPECT_EQ(r[0].ran, Ran::kError);
}

TEST(Cpu, LoadPerCpuFromFakeProcAndSys) {
    FakeRoot f;
    f.write(f.env.sys_root / "devices/system/cpu/online", "0-3\n");
    EXPECT_EQ(online_cpus(f.env), 4u);
    f.proc("loadavg", "2.00 1.50 1.00 3/200 12345\n");
    auto r = check_cpu_load(f.env, {100, 200});
    EXPECT_EQ(r.status, Status::kPass);
    EXPECT_DOUBLE_EQ(*r.value, 50);
    EXPECT_NE(r.message.find("2.00 1.50 1.00 on 4 CPUs"), std::string::npos) << r.message;
    f.proc("loadavg", "6.00 1.50 1.00 3/200 12345\n");
    EXPECT_EQ(check_cpu_load(f.env, {100, 200}).status, Status::kWarn);
    f.proc("loadavg", "9.00 1.50 1.00 3/200 12345\n");
    EXPECT_EQ(check_cpu_load(f.env, {100, 200}).status, Status::kFail);
    f.write(f.env.sys_root / "devices/system/cpu/online", "0-1,4,6-7\n");
    EXPECT_EQ(online_cpus(f.env), 5u);
    f.write(f.env.sys_root / "devices/system/cpu/online", "bogus\n");
    EXPECT_GE(online_cpus(f.env), 1u);  // falls back to sysconf
}

TEST(Cpu, MissingLoadavgIsAnError) {
    FakeRoot f;
    EXPECT_EQ(check_cpu_load(f.env, {100, 200}).ran, Ran::kError);
}

TEST(Uptime, FormatsDaysAndReboot) {
    FakeRoot f;
    f.proc("uptime", "273784.52 1000.00\n");
    auto r = check_uptime(f.env);
    EXPECT_EQ(r.status, Status::kPass);
    EXPECT_EQ(r.message, "Uptime: 3 days 4:03");
    EXPECT_EQ(check_reboot_required(f.env).status, Status::kPass);
    f.write(f.env.reboot_required_file, "*** System restart required ***\n");
    f.write(f.env.reboot_required_file.string() + ".pkgs", "linux-image-6.1\nlibc6\n");
    auto rr = check_reboot_required(f.env);
    EXPECT_EQ(rr.status, Status::kWarn);
    EXPECT_EQ(rr.message, "Reboot required (linux-image-6.1, libc6)");
}

TEST(Oom, CountsSinceLastRunOrBoot) {
    FakeRoot f;
    f.proc("vmstat", "nr_free_pages 100\noom_kill 7\npgfault 9\n");
    std::optional<std::uint64_t> now;
    auto r = check_oom(f.env, std::nullopt, &now);
    EXPECT_EQ(now, 7u);
    EXPECT_EQ(r.status, Status::kWarn);
    EXPECT_EQ(r.message, "OOM kills: 7 since boot");
    r = check_oom(f.env, 7u);
    EXPECT_EQ(r.status, Status::kPass);
    EXPECT_DOUBLE_EQ(*r.value, 0);
    r = check_oom(f.env, 5u);
    EXPECT_EQ(r.message, "OOM kills: 2 since the last run");
    r = check_oom(f.env, 50u);  // counter went down: rebooted since
    EXPECT_EQ(r.message, "OOM kills: 7 since boot (rebooted)");
    f.proc("vmstat", "nr_free_pages 100\n");
    EXPECT_EQ(check_oom(f.env, std::nullopt, &now).ran, Ran::kSkipped);
    EXPECT_FALSE(now);
}

TEST(Mounts, ParseDecodesEscapesAndSkipsGarbage) {
    auto m = parse_mounts(
        "/dev/sda1 / ext4 rw 0 0\n"
        "/dev/sdb1 /mnt/my\\040disk xfs rw 0 0\n"
        "broken\n"
        "tmpfs /dev/shm tmpfs rw 0 0\n");
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m[1].mount_point, "/mnt/my disk");
    EXPECT_EQ(m[1].fs_type, "xfs");
    EXPECT_TRUE(is_pseudo_fs("tmpfs"));
    EXPECT_TRUE(is_pseudo_fs("overlay"));
    EXPECT_FALSE(is_pseudo_fs("ext4"));
}

TEST(Disks, SkipsPseudoDedupsByDeviceAndHonoursIncludes) {
    FakeRoot f;
    const auto root = f.root().string();
    f.proc("self/mounts",
           "proc /proc proc rw 0 0\n"
           "/dev/vda / ext4 rw 0 0\n"
           "/dev/vda / ext4 rw 0 0\n"  // same mount twice
           "/dev/vda " +
               root +
               " ext4 rw 0 0\n"  // same device (bind)
               "tmpfs /dev/shm tmpfs rw 0 0\n");
    auto r = check_disks(f.env, {});
    ASSERT_FALSE(r.empty());
    for (const auto& c : r) {
        EXPECT_TRUE(c.check == "Disk usage /" || c.check == "Inode usage /") << c.check;
    }
    DiskOptions o;
    o.include_fstypes = {"tmpfs"};
    o.exclude_mounts = {"/", root};
    r = check_disks(f.env, o);
    ASSERT_FALSE(r.empty());
    EXPECT_EQ(r[0].check, "Disk usage /dev/shm");
    o = {};
    o.include_mounts = {"/nonexistent-mount"};
    r = check_disks(f.env, o);
    EXPECT_EQ(r.back().ran, Ran::kError);
    EXPECT_NE(r.back().message.find("not a mounted filesystem"), std::string::npos);
}

TEST(Disks, OnlyPseudoFilesystemsFallsBackToRoot) {
    FakeRoot f;
    f.proc("self/mounts", "overlay / overlay rw 0 0\n");
    auto r = check_disks(f.env, {});
    ASSERT_FALSE(r.empty());
    EXPECT_EQ(r[0].check, "Disk usage /");
}

TEST(Disks, StatvfsFailureIsAnError) {
    auto r = check_filesystem("/nonexistent/path/x", {});
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].ran, Ran::kError);
}

// A real 4 MiB tmpfs filled past the thresholds (needs root and mount(2)).
class SmallTmpfs : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "mlk-tmpfs-XXXXXX").string();
        ASSERT_TRUE(::mkdtemp(tmpl.data()));
        dir_ = tmpl;
        if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=4m,nr_inodes=100") != 0) {
            GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << std::strerror(errno);
        }
        mounted_ = true;
    }
    void TearDown() override {
        if (mounted_)
            ::umount2(dir_.c_str(), MNT_DETACH);
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    void fill(std::size_t bytes) {
        std::ofstream out(dir_ / "fill", std::ios::binary | std::ios::trunc);
        std::string chunk(4096, 'x');
        for (std::size_t n = 0; n < bytes; n += chunk.size())
            out << chunk;
    }
    fs::path dir_;
    bool mounted_ = false;
};

TEST_F(SmallTmpfs, DiskThresholds) {
    DiskOptions o;  // 80 / 90
    auto r = check_filesystem(dir_.string(), o);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0].status, Status::kPass);
    fill(3400 * 1024);  // ~83%
    r = check_filesystem(dir_.string(), o);
    EXPECT_EQ(r[0].status, Status::kWarn) << r[0].message;
    EXPECT_DOUBLE_EQ(*r[0].threshold, 80);
    fill(3900 * 1024);  // ~95%
    r = check_filesystem(dir_.string(), o);
    EXPECT_EQ(r[0].status, Status::kFail) << r[0].message;
    EXPECT_DOUBLE_EQ(*r[0].threshold, 90);
    o.usage = {97, 99};  // the thresholds really are the ones passed in
    EXPECT_EQ(check_filesystem(dir_.string(), o)[0].status, Status::kPass);

    // Seen through the mount table only when tmpfs is included.
    HealthEnv env;
    DiskOptions inc;
    inc.include_mounts = {dir_.string()};
    bool found = false;
    for (const auto& c : check_disks(env, inc)) {
        if (c.check == "Disk usage " + dir_.string()) {
            found = true;
            EXPECT_EQ(c.status, Status::kFail);
        }
    }
    EXPECT_TRUE(found);
    for (const auto& c : check_disks(env, {})) {
        EXPECT_NE(c.check, "Disk usage " + dir_.string());
    }
}

TEST_F(SmallTmpfs, InodeThresholds) {
    for (int i = 0; i < 85; ++i) {
        std::ofstream(dir_ / ("f" + std::to_string(i))) << "";
    }
    auto r = check_filesystem(dir_.string(), {});
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[1].check, "Inode usage " + dir_.string());
    EXPECT_EQ(r[1].status, Status::kWarn) << r[1].message;
}

}  // namespace
}  // namespace mlk::health
