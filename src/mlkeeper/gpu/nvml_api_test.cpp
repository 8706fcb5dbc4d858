#include "mlkeeper/gpu/nvml_api.hpp"

#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "support/fake_nvml.hpp"

namespace mlk::gpu::nvml {
namespace {

using gpu::testing::Scenario;

size_t count_of(const std::string& text, const std::string& needle) {
    size_t n = 0;
    for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) {
        ++n;
    }
    return n;
}

TEST(NvmlApi, ReturnNamesMatchNvmlHeader) {
    EXPECT_EQ(return_name(3), "NVML_ERROR_NOT_SUPPORTED");
    EXPECT_EQ(return_name(7), "NVML_ERROR_INSUFFICIENT_SIZE");
    EXPECT_EQ(return_name(9), "NVML_ERROR_DRIVER_NOT_LOADED");
    EXPECT_EQ(return_name(15), "NVML_ERROR_GPU_IS_LOST");
    EXPECT_EQ(return_name(999), "NVML_ERROR_UNKNOWN");
    EXPECT_EQ(return_name(12345), "NVML_ERROR");
}

TEST(NvmlApi, MissingLibraryMeansNoDriver) {
    try {
        Nvml n("/nonexistent/dir/libnvidia-ml.so.1");
        FAIL() << "loaded a library that does not exist";
    } catch (const NvmlError& e) {
        EXPECT_EQ(e.failure(), LoadFailure::kLibraryNotFound);
        EXPECT_TRUE(e.means_no_driver());
        EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/libnvidia-ml.so.1"),
                  std::string::npos);
        EXPECT_NE(std::string(e.what()).find("MLKEEPER_NVML_LIBRARY"), std::string::npos);
    }
}

TEST(NvmlApi, MissingRequiredSymbolIsAClearError) {
    MLK_REQUIRE_FAKE_NVML(lib, "notemp");
    Scenario sc("gpu 0\n");
    try {
        Nvml n(lib);
        FAIL() << "a library without nvmlDeviceGetTemperature was accepted";
    } catch (const NvmlError& e) {
        EXPECT_EQ(e.failure(), LoadFailure::kSymbolMissing);
        EXPECT_FALSE(e.means_no_driver());
        EXPECT_NE(std::string(e.what()).find("nvmlDeviceGetTemperature"), std::string::npos);
    }
    // Symbols are checked before nvmlInit, so nothing was initialised and left behind.
    EXPECT_EQ(sc.read_init_log(), "");
}

TEST(NvmlApi, DriverNotLoadedMeansNoDriver) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("init_error=9\n");
    try {
        Nvml n(lib);
        FAIL() << "init error ignored";
    } catch (const NvmlError& e) {
        EXPECT_EQ(e.failure(), LoadFailure::kNoDriver);
        EXPECT_EQ(e.code(), kErrorDriverNotLoaded);
        EXPECT_TRUE(e.means_no_driver());
    }
}

TEST(NvmlApi, VersionMismatchIsAnInitFailureWithAdvice) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("init_error=18\n");
    try {
        Nvml n(lib);
        FAIL() << "init error ignored";
    } catch (const NvmlError& e) {
        EXPECT_EQ(e.failure(), LoadFailure::kInitFailed);
        EXPECT_FALSE(e.means_no_driver());
        EXPECT_NE(std::string(e.what()).find("version mismatch"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("reboot"), std::string::npos);
    }
}

TEST(NvmlApi, InitAndShutdownArePaired) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0\n");
    {
        Nvml n(lib);
        EXPECT_EQ(sc.read_init_log(), "init nvmlInit_v2\n");
    }
    EXPECT_EQ(sc.read_init_log(), "init nvmlInit_v2\nshutdown\n");
}

TEST(NvmlApi, PrefersNewestSymbols) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0\n");
    Nvml n(lib);
    EXPECT_EQ(n.init_symbol(), "nvmlInit_v2");
    EXPECT_EQ(n.count_symbol(), "nvmlDeviceGetCount_v2");
    EXPECT_EQ(n.handle_symbol(), "nvmlDeviceGetHandleByIndex_v2");
    EXPECT_EQ(n.processes_symbol(), "nvmlDeviceGetComputeRunningProcesses_v3");
}

// Reads the processes of GPU 0 and checks them against the scenario: a wrong struct layout for
// the chosen symbol would garble the pids and sizes.
void expect_processes(const Nvml& n) {
    Device d = nullptr;
    ASSERT_EQ(n.handle_by_index(0, &d), kSuccess);
    std::vector<RawProcess> procs;
    ASSERT_EQ(n.compute_processes(d, &procs), kSuccess);
    ASSERT_EQ(procs.size(), 3u);
    EXPECT_EQ(procs[0].pid, 101u);
    EXPECT_EQ(procs[0].used_gpu_memory, 1024ULL << 20);
    EXPECT_EQ(procs[1].pid, 202u);
    EXPECT_EQ(procs[1].used_gpu_memory, kValueNotAvailable);
    EXPECT_EQ(procs[2].pid, 303u);
    EXPECT_EQ(procs[2].used_gpu_memory, 7ULL << 20);
}

TEST(NvmlApi, FallsBackFromV3ToV2) {
    MLK_REQUIRE_FAKE_NVML(lib, "nov3");
    Scenario sc("gpu 0 procs=101:1024,202:na,303:7\n");
    Nvml n(lib);
    EXPECT_EQ(n.processes_symbol(), "nvmlDeviceGetComputeRunningProcesses_v2");
    EXPECT_EQ(n.init_symbol(), "nvmlInit_v2");
    expect_processes(n);
}

TEST(NvmlApi, FallsBackToV1WithV1StructLayout) {
    MLK_REQUIRE_FAKE_NVML(lib, "v1");
    Scenario sc("gpu 0 procs=101:1024,202:na,303:7\ngpu 1\n");
    Nvml n(lib);
    EXPECT_EQ(n.init_symbol(), "nvmlInit");
    EXPECT_EQ(n.count_symbol(), "nvmlDeviceGetCount");
    EXPECT_EQ(n.handle_symbol(), "nvmlDeviceGetHandleByIndex");
    EXPECT_EQ(n.processes_symbol(), "nvmlDeviceGetComputeRunningProcesses");
    unsigned int count = 0;
    ASSERT_EQ(n.device_count(&count), kSuccess);
    EXPECT_EQ(count, 2u);
    expect_processes(n);
    EXPECT_EQ(sc.read_init_log(), "init nvmlInit\n");
}

// Current drivers reserve part of the memory: nvmlDeviceGetMemoryInfo (v1) counts it as used
// (an idle H100 showed 480 MiB used), the _v2 call and nvidia-smi do not.
TEST(NvmlApi, MemoryLeavesOutTheReservedPartWhereTheDriverCan) {
    const std::string scenario =
        "gpu 0 mem_used_mib=1000 mem_reserved_mib=480 mem_total_mib=81559\n";
    {
        MLK_REQUIRE_FAKE_NVML(lib, "");
        Scenario sc(scenario);
        Nvml n(lib);
        Device d = nullptr;
        ASSERT_EQ(n.handle_by_index(0, &d), kSuccess);
        Memory m{};
        ASSERT_EQ(n.memory(d, &m), kSuccess);
        EXPECT_EQ(m.used, 1000ULL << 20);
        EXPECT_EQ(m.total, 81559ULL << 20);
        EXPECT_EQ(m.free, (81559ULL - 1480) << 20);
    }
    MLK_REQUIRE_FAKE_NVML(lib, "v1");
    Scenario sc(scenario);
    Nvml n(lib);
    Device d = nullptr;
    ASSERT_EQ(n.handle_by_index(0, &d), kSuccess);
    Memory m{};
    ASSERT_EQ(n.memory(d, &m), kSuccess);
    EXPECT_EQ(m.used, 1480ULL << 20);
}

TEST(NvmlApi, V3UsesV2Layout) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 procs=101:1024,202:na,303:7\n");
    Nvml n(lib);
    expect_processes(n);
}

TEST(NvmlApi, GrowsTheProcessBufferOnInsufficientSize) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    std::string procs;
    for (int i = 1; i <= 50; ++i) {
        procs += (i > 1 ? "," : "") + std::to_string(1000 + i) + ":" + std::to_string(i);
    }
    Scenario sc("gpu 0 procs=" + procs + "\n");
    Nvml n(lib);
    Device d = nullptr;
    ASSERT_EQ(n.handle_by_index(0, &d), kSuccess);
    std::vector<RawProcess> out;
    ASSERT_EQ(n.compute_processes(d, &out), kSuccess);
    ASSERT_EQ(out.size(), 50u);
    EXPECT_EQ(out[49].pid, 1050u);
    EXPECT_EQ(out[49].used_gpu_memory, 50ULL << 20);
}

TEST(NvmlApi, StringsAndErrors) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("driver=535.104.05\ngpu 0 name=\"NVIDIA H100 80GB HBM3\" uuid=GPU-abc\n");
    Nvml n(lib);
    std::string s;
    ASSERT_EQ(n.driver_version(&s), kSuccess);
    EXPECT_EQ(s, "535.104.05");
    Device d = nullptr;
    ASSERT_EQ(n.handle_by_index(0, &d), kSuccess);
    ASSERT_EQ(n.name(d, &s), kSuccess);
    EXPECT_EQ(s, "NVIDIA H100 80GB HBM3");
    ASSERT_EQ(n.uuid(d, &s), kSuccess);
    EXPECT_EQ(s, "GPU-abc");
    EXPECT_EQ(n.handle_by_index(5, &d), kErrorInvalidArgument);
    EXPECT_EQ(n.error_string(kErrorGpuIsLost), "GPU is lost");
    EXPECT_EQ(count_of(sc.read_init_log(), "init"), 1u);
}

// Waits on `set` until `n` events came or a wait timed out; the fake's timeouts are short.
std::vector<EventData> drain(const Nvml& n, const EventSet& set, std::size_t max_events,
                             Return* last) {
    std::vector<EventData> out;
    for (std::size_t i = 0; i <= max_events; ++i) {
        EventData e{};
        *last = n.wait_event(set, &e, 100);
        if (*last != kSuccess) {
            break;
        }
        out.push_back(e);
    }
    return out;
}

TEST(NvmlApi, XidEventsComeInOrderAcrossGpusThenTheWaitTimesOut) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 xid=13,31\ngpu 1 xid=79\n");
    Nvml n(lib);
    ASSERT_TRUE(n.has_events());
    EXPECT_EQ(n.event_wait_symbol(), "nvmlEventSetWait_v2");
    Device d0 = nullptr;
    Device d1 = nullptr;
    ASSERT_EQ(n.handle_by_index(0, &d0), kSuccess);
    ASSERT_EQ(n.handle_by_index(1, &d1), kSuccess);
    unsigned long long mask = 0;
    ASSERT_EQ(n.supported_event_types(d0, &mask), kSuccess);
    EXPECT_NE(mask & kEventTypeXidCriticalError, 0u);
    EventSet set;
    ASSERT_EQ(n.create_event_set(&set), kSuccess);
    ASSERT_TRUE(set);
    ASSERT_EQ(n.register_events(d0, kEventTypeXidCriticalError, set), kSuccess);
    ASSERT_EQ(n.register_events(d1, kEventTypeXidCriticalError, set), kSuccess);
    Return last = kSuccess;
    auto events = drain(n, set, 10, &last);
    EXPECT_EQ(last, kErrorTimeout);
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events[0].device, d0);
    EXPECT_EQ(events[0].event_type, kEventTypeXidCriticalError);
    EXPECT_EQ(events[0].event_data, 13u);
    EXPECT_EQ(events[0].gpu_instance_id, kNoInstance);
    EXPECT_EQ(events[0].compute_instance_id, kNoInstance);
    EXPECT_EQ(events[1].device, d0);
    EXPECT_EQ(events[1].event_data, 31u);
    EXPECT_EQ(events[2].device, d1);
    EXPECT_EQ(events[2].event_data, 79u);
}

TEST(NvmlApi, OnlyRegisteredGpusDeliverEvents) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 xid=13\ngpu 1 xid=79\n");
    Nvml n(lib);
    Device d1 = nullptr;
    ASSERT_EQ(n.handle_by_index(1, &d1), kSuccess);
    EventSet set;
    ASSERT_EQ(n.create_event_set(&set), kSuccess);
    ASSERT_EQ(n.register_events(d1, kEventTypeXidCriticalError, set), kSuccess);
    Return last = kSuccess;
    auto events = drain(n, set, 10, &last);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].device, d1);
    EXPECT_EQ(events[0].event_data, 79u);
}

TEST(NvmlApi, RegisteringAGpuWithoutEventsIsNotSupported) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 unsupported=events xid=13\ngpu 1 lost=1\n");
    Nvml n(lib);
    Device d0 = nullptr;
    Device d1 = nullptr;
    ASSERT_EQ(n.handle_by_index(0, &d0), kSuccess);
    ASSERT_EQ(n.handle_by_index(1, &d1), kSuccess);
    unsigned long long mask = ~0ULL;
    ASSERT_EQ(n.supported_event_types(d0, &mask), kSuccess);
    EXPECT_EQ(mask & kEventTypeXidCriticalError, 0u);
    EventSet set;
    ASSERT_EQ(n.create_event_set(&set), kSuccess);
    EXPECT_EQ(n.register_events(d0, kEventTypeXidCriticalError, set), kErrorNotSupported);
    EXPECT_EQ(n.register_events(d1, kEventTypeXidCriticalError, set), kErrorGpuIsLost);
    EventData e{};
    EXPECT_EQ(n.wait_event(set, &e, 50), kErrorTimeout);
    // An empty set is an argument error, not a crash inside the driver.
    EventSet empty;
    EXPECT_EQ(n.register_events(d0, kEventTypeXidCriticalError, empty), kErrorInvalidArgument);
    EXPECT_EQ(n.wait_event(empty, &e, 50), kErrorInvalidArgument);
}

TEST(NvmlApi, EventSetsAreFreedOnceAndBeforeShutdown) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0\n");
    {
        Nvml n(lib);
        EventSet a;
        ASSERT_EQ(n.create_event_set(&a), kSuccess);
        EventSet b(std::move(a));
        EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from sets are empty
        EXPECT_TRUE(b);
        EventSet c;
        ASSERT_EQ(n.create_event_set(&c), kSuccess);
        c = std::move(b);                             // frees c's own set
        ASSERT_EQ(n.create_event_set(&c), kSuccess);  // frees the moved-in one
        EXPECT_EQ(count_of(sc.read_init_log(), "eventset create"), 3u);
        EXPECT_EQ(count_of(sc.read_init_log(), "eventset free"), 2u);
    }
    EXPECT_EQ(sc.read_init_log(),
              "init nvmlInit_v2\neventset create\neventset create\neventset free\n"
              "eventset free\neventset create\neventset free\nshutdown\n");
}

TEST(NvmlApi, AWaitErrorFromTheDriverIsPassedOn) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 xid=e15,48\n");
    Nvml n(lib);
    Device d0 = nullptr;
    ASSERT_EQ(n.handle_by_index(0, &d0), kSuccess);
    EventSet set;
    ASSERT_EQ(n.create_event_set(&set), kSuccess);
    ASSERT_EQ(n.register_events(d0, kEventTypeXidCriticalError, set), kSuccess);
    EventData e{};
    EXPECT_EQ(n.wait_event(set, &e, 50), kErrorGpuIsLost);
    ASSERT_EQ(n.wait_event(set, &e, 50), kSuccess);
    EXPECT_EQ(e.event_data, 48u);
}

// Older drivers: nvmlEventSetWait fills the shorter struct, and the ids must not be garbage.
TEST(NvmlApi, OldWaitUsesTheShortStruct) {
    MLK_REQUIRE_FAKE_NVML(lib, "nov3");
    Scenario sc("gpu 0 xid=31\n");
    Nvml n(lib);
    ASSERT_TRUE(n.has_events());
    EXPECT_EQ(n.event_wait_symbol(), "nvmlEventSetWait");
    Device d0 = nullptr;
    ASSERT_EQ(n.handle_by_index(0, &d0), kSuccess);
    EventSet set;
    ASSERT_EQ(n.create_event_set(&set), kSuccess);
    ASSERT_EQ(n.register_events(d0, kEventTypeXidCriticalError, set), kSuccess);
    EventData e{};
    e.gpu_instance_id = 7;
    e.compute_instance_id = 7;
    ASSERT_EQ(n.wait_event(set, &e, 50), kSuccess);
    EXPECT_EQ(e.device, d0);
    EXPECT_EQ(e.event_type, kEventTypeXidCriticalError);
    EXPECT_EQ(e.event_data, 31u);
    EXPECT_EQ(e.gpu_instance_id, kNoInstance);
    EXPECT_EQ(e.compute_instance_id, kNoInstance);
    EXPECT_EQ(n.wait_event(set, &e, 50), kErrorTimeout);
}

TEST(NvmlApi, LibraryWithoutEventsStillLoads) {
    MLK_REQUIRE_FAKE_NVML(lib, "v1");
    Scenario sc("gpu 0 xid=13\n");
    Nvml n(lib);
    EXPECT_FALSE(n.has_events());
    EXPECT_EQ(n.event_wait_symbol(), "");
    Device d0 = nullptr;
    ASSERT_EQ(n.handle_by_index(0, &d0), kSuccess);
    EventSet set;
    EXPECT_EQ(n.create_event_set(&set), kErrorFunctionNotFound);
    EXPECT_FALSE(set);
    unsigned long long mask = 0;
    EXPECT_EQ(n.supported_event_types(d0, &mask), kErrorFunctionNotFound);
    EXPECT_EQ(n.register_events(d0, kEventTypeXidCriticalError, set), kErrorFunctionNotFound);
    EventData e{};
    EXPECT_EQ(n.wait_event(set, &e, 50), kErrorFunctionNotFound);
}

}  // namespace
}  // namespace mlk::gpu::nvml
