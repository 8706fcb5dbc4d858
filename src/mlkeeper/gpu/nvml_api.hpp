// The few NVML types and constants mlkeeper uses (ABI values copied from nvml.h, so there is no
// build-time NVIDIA dependency) and Nvml, which dlopen()s the library at run time, resolves its
// versioned symbols and pairs nvmlInit with nvmlShutdown. Thread safety: NVML itself is
// thread-safe, but an Nvml object is meant for one thread (the sampler or XID watcher that owns
// it); an EventSet belongs to the thread of its Nvml.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mlk::gpu::nvml {

// nvmlReturn_t (an enum: int-sized in the C ABI).
using Return = int;
inline constexpr Return kSuccess = 0;
inline constexpr Return kErrorUninitialized = 1;
inline constexpr Return kErrorInvalidArgument = 2;
inline constexpr Return kErrorNotSupported = 3;
inline constexpr Return kErrorNoPermission = 4;
inline constexpr Return kErrorNotFound = 6;
inline constexpr Return kErrorInsufficientSize = 7;
inline constexpr Return kErrorDriverNotLoaded = 9;
inline constexpr Return kErrorTimeout = 10;
inline constexpr Return kErrorLibraryNotFound = 12;
inline constexpr Return kErrorFunctionNotFound = 13;
inline constexpr Return kErrorGpuIsLost = 15;
inline constexpr Return kErrorResetRequired = 16;
inline constexpr Return kErrorLibRmVersionMismatch = 18;
inline constexpr Return kErrorNoData = 21;
inline constexpr Return kErrorGpuNotFound = 28;
inline constexpr Return kErrorUnknown = 999;

using Device = struct nvmlDevice_st*;  // nvmlDevice_t: opaque handle

inline constexpr int kTemperatureGpu = 0;          // NVML_TEMPERATURE_GPU
inline constexpr int kClockGraphics = 0;           // NVML_CLOCK_GRAPHICS
inline constexpr int kClockSm = 1;                 // NVML_CLOCK_SM
inline constexpr int kClockMem = 2;                // NVML_CLOCK_MEM
inline constexpr int kMemoryErrorCorrected = 0;    // NVML_MEMORY_ERROR_TYPE_CORRECTED
inline constexpr int kMemoryErrorUncorrected = 1;  // NVML_MEMORY_ERROR_TYPE_UNCORRECTED
inline constexpr int kVolatileEcc = 0;             // NVML_VOLATILE_ECC
inline constexpr int kAggregateEcc = 1;            // NVML_AGGREGATE_ECC

// nvmlClocksThrottleReason* bit masks (nvmlDeviceGetCurrentClocksThrottleReasons).
inline constexpr std::uint64_t kThrottleGpuIdle = 0x1;
inline constexpr std::uint64_t kThrottleApplicationsClocksSetting = 0x2;
inline constexpr std::uint64_t kThrottleSwPowerCap = 0x4;
inline constexpr std::uint64_t kThrottleHwSlowdown = 0x8;
inline constexpr std::uint64_t kThrottleSyncBoost = 0x10;
inline constexpr std::uint64_t kThrottleSwThermalSlowdown = 0x20;
inline constexpr std::uint64_t kThrottleHwThermalSlowdown = 0x40;
inline constexpr std::uint64_t kThrottleHwPowerBrakeSlowdown = 0x80;
inline constexpr std::uint64_t kThrottleDisplayClockSetting = 0x100;

// NVML_VALUE_NOT_AVAILABLE as the process list reports it (usedGpuMemory on some systems).
inline constexpr unsigned long long kValueNotAvailable = ~0ULL;
inline constexpr unsigned int kDeviceNameBufferSize = 96;  // NVML_DEVICE_NAME_V2_BUFFER_SIZE
inline constexpr unsigned int kDeviceUuidBufferSize = 96;  // NVML_DEVICE_UUID_V2_BUFFER_SIZE
inline constexpr unsigned int kDriverVersionBufferSize = 80;

struct Memory {  // nvmlMemory_t (v1)
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
};
// nvmlMemory_v2_t: `used` leaves out what the driver reserves (v1 counts it), so it matches
// nvidia-smi's memory.used on current drivers.
struct MemoryV2 {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
};
inline constexpr unsigned int kMemoryV2Version = sizeof(MemoryV2) | (2U << 24);  // nvmlMemory_v2
struct Utilization {  // nvmlUtilization_t, percent over the last sample period
    unsigned int gpu;
    unsigned int memory;
};
struct ProcessInfoV1 {  // nvmlProcessInfo_v1_t: nvmlDeviceGetComputeRunningProcesses (v1)
    unsigned int pid;
    unsigned long long used_gpu_memory;
};
struct ProcessInfoV2 {  // nvmlProcessInfo_v2_t == nvmlProcessInfo_t: the _v2 and _v3 calls
    unsigned int pid;
    unsigned long long used_gpu_memory;
    unsigned int gpu_instance_id;
    unsigned int compute_instance_id;
};
static_assert(sizeof(Memory) == 24 && sizeof(MemoryV2) == 40 && sizeof(Utilization) == 8);
static_assert(sizeof(ProcessInfoV1) == 16 && sizeof(ProcessInfoV2) == 24);

using EventSetHandle = struct nvmlEventSet_st*;  // nvmlEventSet_t: opaque handle

// nvmlEventType* bits (nvmlDeviceRegisterEvents, nvmlDeviceGetSupportedEventTypes).
inline constexpr unsigned long long kEventTypeSingleBitEccError = 0x1;
inline constexpr unsigned long long kEventTypeDoubleBitEccError = 0x2;
inline constexpr unsigned long long kEventTypePState = 0x4;
inline constexpr unsigned long long kEventTypeXidCriticalError = 0x8;
inline constexpr unsigned long long kEventTypeClock = 0x10;

// What nvmlEventSetWait_v2 reports for a GPU that is not split into MIG instances.
inline constexpr unsigned int kNoInstance = 0xFFFFFFFFu;

struct EventData {  // nvmlEventData_t as nvmlEventSetWait_v2 fills it
    Device device;
    unsigned long long event_type;  // one kEventType* bit
    unsigned long long event_data;  // the XID number for kEventTypeXidCriticalError
    unsigned int gpu_instance_id;
    unsigned int compute_instance_id;
};
struct EventDataV1 {  // the pre-MIG nvmlEventData_t of nvmlEventSetWait: no instance ids
    Device device;
    unsigned long long event_type;
    unsigned long long event_data;
};
static_assert(sizeof(EventData) == 32 && sizeof(EventDataV1) == 24);

// NVML's own name for a code ("NVML_ERROR_GPU_IS_LOST"), for messages when nvmlErrorString is
// unavailable and for logs.
std::string_view return_name(Return r);

// What went wrong opening NVML, so the command can tell "no NVIDIA driver here" (fine by default)
// from a broken installation (an error).
enum class LoadFailure {
    kLibraryNotFound,  // dlopen failed: no driver installed
    kSymbolMissing,    // the library lacks a function we need: too old, or not NVML
    kNoDriver,         // nvmlInit: NVML_ERROR_DRIVER_NOT_LOADED / LIBRARY_NOT_FOUND
    kInitFailed,       // nvmlInit failed otherwise (driver/library mismatch, permissions, ...)
};

class NvmlError : public std::runtime_error {
  public:
    NvmlError(LoadFailure failure, Return code, const std::string& message)
        : std::runtime_error(message), failure_(failure), code_(code) {}
    LoadFailure failure() const { return failure_; }
    Return code() const { return code_; }  // kSuccess when not from an NVML call
    // No library or no kernel driver: the machine simply has no NVIDIA GPU to watch.
    bool means_no_driver() const {
        return failure_ == LoadFailure::kLibraryNotFound || failure_ == LoadFailure::kNoDriver;
    }

  private:
    LoadFailure failure_;
    Return code_;
};

// A process on a GPU as NVML reports it (before /proc lookups).
struct RawProcess {
    unsigned int pid = 0;
    unsigned long long used_gpu_memory = kValueNotAvailable;
};

class Nvml;

// An nvmlEventSet_t, freed (nvmlEventSetFree) when destroyed; empty until Nvml::create_event_set
// fills it. It must not outlive the Nvml that created it.
class EventSet {
  public:
    EventSet() = default;
    ~EventSet() { reset(); }
    EventSet(EventSet&& other) noexcept;
    EventSet& operator=(EventSet&& other) noexcept;
    EventSet(const EventSet&) = delete;
    EventSet& operator=(const EventSet&) = delete;

    explicit operator bool() const { return handle_ != nullptr; }
    EventSetHandle handle() const { return handle_; }
    void reset();

  private:
    friend class Nvml;
    const Nvml* nvml_ = nullptr;
    EventSetHandle handle_ = nullptr;
};

// The loaded library: dlopen + nvmlInit on construction, nvmlShutdown + dlclose on destruction.
// Required symbols (init, shutdown, device count, handles, name, UUID, temperature, memory,
// utilization) must exist or the constructor throws NvmlError(kSymbolMissing); the rest are
// optional, and a call to a missing one returns kErrorFunctionNotFound (shown as n/a).
class Nvml {
  public:
    // `library` is a file name for the dynamic linker's search ("libnvidia-ml.so.1") or a path.
    explicit Nvml(const std::string& library);
    ~Nvml();
    Nvml(const Nvml&) = delete;
    Nvml& operator=(const Nvml&) = delete;

    const std::string& library() const { return library_; }
    // Which symbol each versioned call resolved to, e.g. "nvmlDeviceGetComputeRunningProcesses_v2".
    const std::string& init_symbol() const { return init_symbol_; }
    const std::string& count_symbol() const { return count_symbol_; }
    const std::string& handle_symbol() const { return handle_symbol_; }
    const std::string& processes_symbol() const { return processes_symbol_; }
    // "nvmlEventSetWait_v2", "nvmlEventSetWait", or empty when the library has no events.
    const std::string& event_wait_symbol() const { return event_wait_symbol_; }

    std::string error_string(Return r) const;
    Return driver_version(std::string* out) const;
    Return device_count(unsigned int* count) const;
    Return handle_by_index(unsigned int index, Device* device) const;
    Return name(Device d, std::string* out) const;
    Return uuid(Device d, std::string* out) const;
    Return temperature(Device d, unsigned int* celsius) const;
    // nvmlDeviceGetMemoryInfo_v2 where the driver has it (used without the reserved part, as
    // nvidia-smi shows), else nvmlDeviceGetMemoryInfo.
    Return memory(Device d, Memory* out) const;
    Return utilization(Device d, Utilization* out) const;
    Return power_usage(Device d, unsigned int* milliwatts) const;
    Return enforced_power_limit(Device d, unsigned int* milliwatts) const;
    Return fan_speed(Device d, unsigned int* percent) const;
    Return clock(Device d, int clock_type, unsigned int* mhz) const;
    Return throttle_reasons(Device d, unsigned long long* mask) const;
    Return total_ecc_errors(Device d, int error_type, int counter_type,
                            unsigned long long* count) const;
    // Every running compute process, growing the buffer on NVML_ERROR_INSUFFICIENT_SIZE, through
    // whichever of _v3/_v2/v1 the library has (with the struct layout of that version).
    Return compute_processes(Device d, std::vector<RawProcess>* out) const;

    // Events (XID errors). Optional as a group: without nvmlEventSetCreate, nvmlEventSetFree,
    // nvmlDeviceRegisterEvents and one of the waits, has_events() is false and every call below
    // returns kErrorFunctionNotFound.
    bool has_events() const;
    // Replaces `out` (freeing what it held) with a new set.
    Return create_event_set(EventSet* out) const;
    // The kEventType* bits the GPU can report (nvmlDeviceGetSupportedEventTypes).
    Return supported_event_types(Device d, unsigned long long* mask) const;
    Return register_events(Device d, unsigned long long event_types, const EventSet& set) const;
    // Blocks up to `timeout_ms` for the next event of the set: kErrorTimeout when none came.
    // Through nvmlEventSetWait (older drivers) the instance ids read kNoInstance.
    Return wait_event(const EventSet& set, EventData* out, unsigned int timeout_ms) const;

  private:
    friend class EventSet;
    Return free_event_set(EventSetHandle set) const;

    struct Fns;
    void* handle_ = nullptr;
    std::string library_;
    std::string init_symbol_, count_symbol_, handle_symbol_, processes_symbol_;
    std::string event_wait_symbol_;
    std::unique_ptr<Fns> fns_;
};

}  // namespace mlk::gpu::nvml
