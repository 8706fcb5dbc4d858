#include "mlkeeper/gpu/format.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "support/fake_nvml.hpp"

namespace mlk::gpu {
namespace {

GpuSample full() {
    GpuSample g;
    g.index = 0;
    g.name = "NVIDIA A100-SXM4-80GB";
    g.uuid = "GPU-aaaa";
    g.temperature_c = 65;
    g.util_gpu_pct = 30;
    g.util_mem_pct = 20;
    g.mem_used_bytes = 20480ULL << 20;
    g.mem_total_bytes = 81920ULL << 20;
    g.power_draw_w = 250.5;
    g.power_limit_w = 400;
    g.fan_pct = 45;
    g.sm_clock_mhz = 1410;
    g.mem_clock_mhz = 1593;
    g.throttle_reasons = 0x4;
    g.ecc = {0, 0, 3, 0};
    g.processes = std::vector<GpuProcess>{{4242, "python", 20000ULL << 20}};
    return g;
}

GpuSample bare(unsigned int index) {
    GpuSample g;
    g.index = index;
    g.name = "Tesla K80";
    return g;
}

Snapshot snap(std::vector<GpuSample> gpus) {
    Snapshot s;
    s.time = std::chrono::system_clock::now();
    s.driver_version = "550.54.15";
    s.gpus = std::move(gpus);
    return s;
}

TEST(GpuFormat, LineLikeGpustat) {
    std::string line = format_line(full(), Thresholds{}, Color::kNo);
    EXPECT_NE(line.find("[0] NVIDIA A100-SXM4-80GB"), std::string::npos) << line;
    EXPECT_NE(line.find("65°C"), std::string::npos) << line;
    EXPECT_NE(line.find("30 %"), std::string::npos) << line;
    EXPECT_NE(line.find("20480 /  81920 MiB"), std::string::npos) << line;
    EXPECT_NE(line.find("[###.......]"), std::string::npos) << line;
    EXPECT_NE(line.find("250 / 400 W"), std::string::npos) << line;
    EXPECT_NE(line.find("python/4242(20000M)"), std::string::npos) << line;
    EXPECT_EQ(line.find('\x1b'), std::string::npos) << "colour without a TTY";
    std::string colored = format_line(full(), Thresholds{}, Color::kYes);
    EXPECT_NE(colored.find("\x1b["), std::string::npos);
}

TEST(GpuFormat, UnavailableIsNa) {
    std::string line = format_line(bare(2), Thresholds{}, Color::kNo, 20);
    EXPECT_NE(line.find("[2] Tesla K80            |"), std::string::npos) << line;
    EXPECT_NE(line.find("n/a"), std::string::npos);
    EXPECT_EQ(line.find("4294967295"), std::string::npos);
    Snapshot s = snap({bare(0)});
    std::string verbose = format_verbose(s, judge(s, Thresholds{}), Thresholds{}, Color::kNo);
    EXPECT_NE(verbose.find("fan             n/a"), std::string::npos) << verbose;
    EXPECT_NE(verbose.find("processes       n/a"), std::string::npos) << verbose;
}

TEST(GpuFormat, LostLine) {
    GpuSample g = bare(1);
    g.lost = true;
    g.error = "GPU is lost (fallen off the bus)";
    std::string line = format_line(g, Thresholds{}, Color::kNo);
    EXPECT_NE(line.find("LOST: GPU is lost"), std::string::npos) << line;
}

TEST(GpuFormat, TextListsProblems) {
    GpuSample hot = full();
    hot.temperature_c = 90;
    Snapshot s = snap({hot, bare(1)});
    std::string text = format_text(s, judge(s, Thresholds{}), Thresholds{}, Color::kNo);
    EXPECT_NE(text.find("driver 550.54.15"), std::string::npos);
    EXPECT_NE(text.find("! critical: GPU 0 (NVIDIA A100-SXM4-80GB) temperature 90°C exceeds 85°C"),
              std::string::npos)
        << text;
    // The names are padded to the longest one so the columns line up.
    EXPECT_NE(text.find("[1] Tesla K80             |"), std::string::npos) << text;
}

TEST(GpuFormat, VerboseShowsEveryFieldAndThresholds) {
    Snapshot s = snap({full()});
    std::string v = format_verbose(s, judge(s, Thresholds{}), Thresholds{}, Color::kNo);
    for (const char* want :
         {"thresholds: temperature warning > 80°C, critical > 85°C; memory > 90%; power > 95%",
          "GPU 0: NVIDIA A100-SXM4-80GB  [ok]", "uuid            GPU-aaaa", "temperature     65°C",
          "utilization     gpu 30%, memory 20%", "memory          20.0 GiB / 80.0 GiB (25.0%)",
          "power           250.5 W / 400.0 W", "fan             45%",
          "sm 1410 MHz, memory 1593 MHz", "sw_power_cap (0x4)",
          "ecc aggregate   3 corrected, 0 uncorrected", "4242  python", "gpu0_temp"}) {
        EXPECT_NE(v.find(want), std::string::npos) << want << "\n" << v;
    }
}

TEST(GpuFormat, JsonShape) {
    GpuSample hot = full();
    hot.temperature_c = 82;
    Snapshot s = snap({hot, bare(1)});
    Thresholds t;
    nlohmann::json j = to_json(s, judge(s, t), t);
    EXPECT_EQ(j["status"], "warning");
    EXPECT_EQ(j["exit_code"], 1);
    EXPECT_EQ(j["driver_version"], "550.54.15");
    EXPECT_EQ(j["gpu_count"], 2);
    EXPECT_EQ(j["thresholds"]["temp_crit_c"], 85.0);
    EXPECT_TRUE(j["timestamp"].get<std::string>().ends_with("Z"));
    ASSERT_EQ(j["gpus"].size(), 2u);
    const auto& g0 = j["gpus"][0];
    EXPECT_EQ(g0["id"], 0);  // the seeds' jq: .gpus[] | "\(.id): \(.temp)°C"
    EXPECT_EQ(g0["temp"], 82);
    EXPECT_EQ(g0["mem_used_mib"], 20480);
    EXPECT_EQ(g0["mem_total_bytes"], 81920ULL << 20);
    EXPECT_DOUBLE_EQ(g0["power_draw_w"].get<double>(), 250.5);
    EXPECT_EQ(g0["throttle"]["reasons"], nlohmann::json::array({"sw_power_cap"}));
    EXPECT_EQ(g0["processes"][0]["name"], "python");
    EXPECT_EQ(g0["status"], "warning");
    ASSERT_EQ(g0["findings"].size(), 1u);
    EXPECT_EQ(g0["findings"][0]["key"], "gpu0_temp");
    EXPECT_EQ(g0["findings"][0]["severity"], "warning");
    EXPECT_EQ(j["findings"].size(), 1u);
    const auto& g1 = j["gpus"][1];
    for (const char* k : {"temp", "util_gpu", "util_mem", "mem_used_bytes", "mem_used_mib",
                          "mem_used_pct", "power_draw_w", "power_limit_w", "fan_pct",
                          "clock_sm_mhz", "throttle", "processes", "uuid", "error"}) {
        EXPECT_TRUE(g1.contains(k)) << k;
        EXPECT_TRUE(g1[k].is_null()) << k;
    }
    EXPECT_TRUE(g1["ecc"]["volatile_uncorrected"].is_null());
    EXPECT_EQ(g1["lost"], false);
}

bool promtool_accepts(const std::string& text, std::string* out) {
    if (!std::filesystem::exists("/usr/bin/promtool")) {
        return true;
    }
    std::string path = ::testing::TempDir() + "gpu_prom_" + std::to_string(::getpid()) + ".prom";
    std::ofstream(path) << text;
    std::string cmd = "timeout 30 /usr/bin/promtool check metrics < " + path + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    char buf[512];
    while (p != nullptr && std::fgets(buf, sizeof buf, p) != nullptr) {
        *out += buf;
    }
    int status = p != nullptr ? ::pclose(p) : -1;
    std::filesystem::remove(path);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST(GpuFormat, PrometheusBaseUnitsAndPromtool) {
    GpuSample lost = bare(2);
    lost.lost = true;
    lost.error = "GPU is lost";
    GpuSample quoted = full();
    quoted.index = 3;
    quoted.name = "weird \"name\"\\";
    Snapshot s = snap({full(), bare(1), lost, quoted});
    std::string text = to_prometheus(s, judge(s, Thresholds{}));
    for (const char* want : {
             "mlkeeper_gpu_devices 4",
             "mlkeeper_gpu_temperature_celsius{gpu=\"0\",uuid=\"GPU-aaaa\",name=\"NVIDIA "
             "A100-SXM4-80GB\"} 65",
             "mlkeeper_gpu_utilization_ratio{gpu=\"0\",uuid=\"GPU-aaaa\",name=\"NVIDIA "
             "A100-SXM4-80GB\"} 0.3",
             "mlkeeper_gpu_memory_used_bytes{gpu=\"0\",uuid=\"GPU-aaaa\",name=\"NVIDIA "
             "A100-SXM4-80GB\"} 21474836480",
             "mlkeeper_gpu_power_draw_watts{gpu=\"0\",uuid=\"GPU-aaaa\",name=\"NVIDIA "
             "A100-SXM4-80GB\"} 250.5",
             "mlkeeper_gpu_sm_clock_hertz{gpu=\"0\",uuid=\"GPU-aaaa\",name=\"NVIDIA "
             "A100-SXM4-80GB\"} 1410000000",
             "mlkeeper_gpu_up{gpu=\"2\",uuid=\"\",name=\"Tesla K80\"} 0",
             "mlkeeper_gpu_clocks_throttled{gpu=\"0\",uuid=\"GPU-aaaa\",name=\"NVIDIA "
             "A100-SXM4-80GB\",reason=\"sw_power_cap\"} 1",
             "# TYPE mlkeeper_gpu_ecc_errors_total counter",
             "name=\"weird \\\"name\\\"\\\\\"",
         }) {
        EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
    }
    // n/a values have no sample at all.
    EXPECT_EQ(text.find("mlkeeper_gpu_temperature_celsius{gpu=\"1\""), std::string::npos);
    EXPECT_EQ(text.find("4294967295"), std::string::npos);
    std::string out;
    EXPECT_TRUE(promtool_accepts(text, &out)) << out << "\n" << text;
}

TEST(GpuFormat, PromtoolCatchesBrokenText) {
    std::string out;
    if (!std::filesystem::exists("/usr/bin/promtool")) {
        GTEST_SKIP() << "promtool not installed";
    }
    EXPECT_FALSE(promtool_accepts("mlkeeper gpu 1\n", &out));
}

// Through the fake library: a driver reporting 0xFFFFFFFF or NOT_SUPPORTED never shows it.
TEST(GpuFormat, NeverPrintsSentinelsEndToEnd) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    testing::Scenario sc("gpu 0 sentinel=temp,fan,power unsupported=ecc,processes,clocks\n");
    Sampler sampler(lib);
    Snapshot s = sampler.sample();
    Judgement j = judge(s, Thresholds{});
    Thresholds t;
    for (const std::string& out :
         {format_text(s, j, t, Color::kNo), format_verbose(s, j, t, Color::kNo),
          to_json(s, j, t).dump(), to_prometheus(s, j)}) {
        EXPECT_EQ(out.find("4294967295"), std::string::npos) << out;
        EXPECT_EQ(out.find("4294967"), std::string::npos) << out;
    }
    nlohmann::json js = to_json(s, j, t);
    EXPECT_TRUE(js["gpus"][0]["temp"].is_null());
    EXPECT_TRUE(js["gpus"][0]["fan_pct"].is_null());
    EXPECT_TRUE(js["gpus"][0]["processes"].is_null());
    EXPECT_FALSE(js["gpus"][0]["power_limit_w"].is_null());
}

}  // namespace
}  // namespace mlk::gpu
