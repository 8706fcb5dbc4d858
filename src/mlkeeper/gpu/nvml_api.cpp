#include "mlkeeper/gpu/nvml_api.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

#include <fmt/format.h>

#include "mlkeeper/util/shared_lib.hpp"

namespace mlk::gpu::nvml {

std::string_view return_name(Return r) {
    switch (r) {
        case kSuccess:
            return "NVML_SUCCESS";
        case kErrorUninitialized:
            return "NVML_ERROR_UNINITIALIZED";
        case kErrorInvalidArgument:
            return "NVML_ERROR_INVALID_ARGUMENT";
        case kErrorNotSupported:
            return "NVML_ERROR_NOT_SUPPORTED";
        case kErrorNoPermission:
            return "NVML_ERROR_NO_PERMISSION";
        case kErrorNotFound:
            return "NVML_ERROR_NOT_FOUND";
        case kErrorInsufficientSize:
            return "NVML_ERROR_INSUFFICIENT_SIZE";
        case kErrorDriverNotLoaded:
            return "NVML_ERROR_DRIVER_NOT_LOADED";
        case kErrorTimeout:
            return "NVML_ERROR_TIMEOUT";
        case kErrorLibraryNotFound:
            return "NVML_ERROR_LIBRARY_NOT_FOUND";
        case kErrorFunctionNotFound:
            return "NVML_ERROR_FUNCTION_NOT_FOUND";
        case kErrorGpuIsLost:
            return "NVML_ERROR_GPU_IS_LOST";
        case kErrorResetRequired:
            return "NVML_ERROR_RESET_REQUIRED";
        case kErrorLibRmVersionMismatch:
            return "NVML_ERROR_LIB_RM_VERSION_MISMATCH";
        case kErrorNoData:
            return "NVML_ERROR_NO_DATA";
        case kErrorGpuNotFound:
            return "NVML_ERROR_GPU_NOT_FOUND";
        case kErrorUnknown:
            return "NVML_ERROR_UNKNOWN";
        default:
            return "NVML_ERROR";
    }
}

namespace {

using InitFn = Return (*)();
using ErrorStringFn = const char* (*)(Return);
using StringFn = Return (*)(char*, unsigned int);
using CountFn = Return (*)(unsigned int*);
using HandleFn = Return (*)(unsigned int, Device*);
using DevStringFn = Return (*)(Device, char*, unsigned int);
using DevUintFn = Return (*)(Device, unsigned int*);
using DevEnumUintFn = Return (*)(Device, int, unsigned int*);
using MemoryFn = Return (*)(Device, Memory*);
using MemoryV2Fn = Return (*)(Device, MemoryV2*);
using UtilFn = Return (*)(Device, Utilization*);
using DevUllFn = Return (*)(Device, unsigned long long*);
using EccFn = Return (*)(Device, int, int, unsigned long long*);
using ProcsFn = Return (*)(Device, unsigned int*, void*);
using EventSetCreateFn = Return (*)(EventSetHandle*);
using EventSetFreeFn = Return (*)(EventSetHandle);
using RegisterEventsFn = Return (*)(Device, unsigned long long, EventSetHandle);
using EventWaitFn = Return (*)(EventSetHandle, void*, unsigned int);

struct DlCloser {
    void operator()(void* h) const {
        if (h != nullptr) {
            ::dlclose(h);
        }
    }
};

}  // namespace

struct Nvml::Fns {
    InitFn init = nullptr;
    InitFn shutdown = nullptr;
    ErrorStringFn error_string = nullptr;
    StringFn driver_version = nullptr;
    CountFn count = nullptr;
    HandleFn handle = nullptr;
    DevStringFn name = nullptr;
    DevStringFn uuid = nullptr;
    DevEnumUintFn temperature = nullptr;
    MemoryFn memory = nullptr;
    MemoryV2Fn memory_v2 = nullptr;
    UtilFn utilization = nullptr;
    DevUintFn power_usage = nullptr;
    DevUintFn power_limit = nullptr;
    DevUintFn fan_speed = nullptr;
    DevEnumUintFn clock = nullptr;
    DevUllFn throttle = nullptr;
    EccFn ecc = nullptr;
    ProcsFn processes = nullptr;
    int processes_version = 0;  // 1, 2 or 3: which struct layout `processes` fills
    EventSetCreateFn event_set_create = nullptr;
    EventSetFreeFn event_set_free = nullptr;
    DevUllFn supported_events = nullptr;
    RegisterEventsFn register_events = nullptr;
    EventWaitFn event_wait = nullptr;
    int event_wait_version = 0;  // 2: fills EventData, 1: EventDataV1, 0: no events
};

Nvml::Nvml(const std::string& library) : library_(library), fns_(std::make_unique<Fns>()) {
    // RTLD_LOCAL: NVML's symbols stay out of the global namespace (a fake and a real library
    // could otherwise shadow each other).
    std::unique_ptr<void, DlCloser> lib(::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL));
    if (!lib) {
        const char* why = ::dlerror();
        throw NvmlError(LoadFailure::kLibraryNotFound, kSuccess,
                        fmt::format("cannot load the NVIDIA management library {}: {} (no NVIDIA "
                                    "driver installed? set [gpu] nvml_library or "
                                    "MLKEEPER_NVML_LIBRARY to its path)",
                                    library, why != nullptr ? why : "unknown error"));
    }
    void* h = lib.get();
    auto require = [&](auto fn, std::string_view what) {
        if (fn == nullptr) {
            throw NvmlError(LoadFailure::kSymbolMissing, kSuccess,
                            fmt::format("{} has no {}: the NVIDIA driver is too old or the file "
                                        "is not NVML; install a current driver or point [gpu] "
                                        "nvml_library at libnvidia-ml.so.1",
                                        library, what));
        }
        return fn;
    };
    Fns& f = *fns_;
    f.init = require(util::find_symbol<InitFn>(h, {"nvmlInit_v2", "nvmlInit"}, &init_symbol_),
                     "nvmlInit_v2 or nvmlInit");
    f.shutdown = require(util::find_symbol<InitFn>(h, {"nvmlShutdown"}, nullptr), "nvmlShutdown");
    f.count = require(util::find_symbol<CountFn>(h, {"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"},
                                                 &count_symbol_),
                      "nvmlDeviceGetCount_v2 or nvmlDeviceGetCount");
    f.handle = require(
        util::find_symbol<HandleFn>(
            h, {"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"}, &handle_symbol_),
        "nvmlDeviceGetHandleByIndex_v2 or nvmlDeviceGetHandleByIndex");
    f.name = require(util::find_symbol<DevStringFn>(h, {"nvmlDeviceGetName"}, nullptr),
                     "nvmlDeviceGetName");
    f.uuid = require(util::find_symbol<DevStringFn>(h, {"nvmlDeviceGetUUID"}, nullptr),
                     "nvmlDeviceGetUUID");
    f.temperature =
        require(util::find_symbol<DevEnumUintFn>(h, {"nvmlDeviceGetTemperature"}, nullptr),
                "nvmlDeviceGetTemperature");
    f.memory = require(util::find_symbol<MemoryFn>(h, {"nvmlDeviceGetMemoryInfo"}, nullptr),
                       "nvmlDeviceGetMemoryInfo");
    f.memory_v2 = util::find_symbol<MemoryV2Fn>(h, {"nvmlDeviceGetMemoryInfo_v2"}, nullptr);
    f.utilization =
        require(util::find_symbol<UtilFn>(h, {"nvmlDeviceGetUtilizationRates"}, nullptr),
                "nvmlDeviceGetUtilizationRates");
    f.error_string = util::find_symbol<ErrorStringFn>(h, {"nvmlErrorString"}, nullptr);
    f.driver_version = util::find_symbol<StringFn>(h, {"nvmlSystemGetDriverVersion"}, nullptr);
    f.power_usage = util::find_symbol<DevUintFn>(h, {"nvmlDeviceGetPowerUsage"}, nullptr);
    f.power_limit = util::find_symbol<DevUintFn>(h, {"nvmlDeviceGetEnforcedPowerLimit"}, nullptr);
    f.fan_speed = util::find_symbol<DevUintFn>(h, {"nvmlDeviceGetFanSpeed"}, nullptr);
    f.clock = util::find_symbol<DevEnumUintFn>(h, {"nvmlDeviceGetClockInfo"}, nullptr);
    f.throttle = util::find_symbol<DevUllFn>(
        h, {"nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"},
        nullptr);
    f.ecc = util::find_symbol<EccFn>(h, {"nvmlDeviceGetTotalEccErrors"}, nullptr);
    f.processes = util::find_symbol<ProcsFn>(
        h,
        {"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2",
         "nvmlDeviceGetComputeRunningProcesses"},
        &processes_symbol_);
    if (f.processes != nullptr) {
        f.processes_version = processes_symbol_.ends_with("_v3")   ? 3
                              : processes_symbol_.ends_with("_v2") ? 2
                                                                   : 1;
    }
    // Events only as a whole: a library with some of these calls but not all has none.
    f.event_set_create = util::find_symbol<EventSetCreateFn>(h, {"nvmlEventSetCreate"}, nullptr);
    f.event_set_free = util::find_symbol<EventSetFreeFn>(h, {"nvmlEventSetFree"}, nullptr);
    f.register_events =
        util::find_symbol<RegisterEventsFn>(h, {"nvmlDeviceRegisterEvents"}, nullptr);
    f.supported_events =
        util::find_symbol<DevUllFn>(h, {"nvmlDeviceGetSupportedEventTypes"}, nullptr);
    f.event_wait = util::find_symbol<EventWaitFn>(h, {"nvmlEventSetWait_v2", "nvmlEventSetWait"},
                                                  &event_wait_symbol_);
    if (f.event_set_create != nullptr && f.event_set_free != nullptr &&
        f.register_events != nullptr && f.event_wait != nullptr) {
        f.event_wait_version = event_wait_symbol_.ends_with("_v2") ? 2 : 1;
    } else {
        f.event_set_create = nullptr;
        f.event_set_free = nullptr;
        f.register_events = nullptr;
        f.supported_events = nullptr;
        f.event_wait = nullptr;
        event_wait_symbol_.clear();
    }

    Return r = f.init();
    if (r != kSuccess) {
        std::string why = f.error_string != nullptr && f.error_string(r) != nullptr
                              ? f.error_string(r)
                              : std::string(return_name(r));
        bool no_driver = r == kErrorDriverNotLoaded || r == kErrorLibraryNotFound;
        throw NvmlError(no_driver ? LoadFailure::kNoDriver : LoadFailure::kInitFailed, r,
                        fmt::format("{} failed: {} ({}){}", init_symbol_, why, return_name(r),
                                    no_driver ? ": the NVIDIA kernel driver is not loaded"
                                    : r == kErrorLibRmVersionMismatch
                                        ? ": the driver was upgraded without a reboot; reboot "
                                          "or reload the nvidia kernel module"
                                        : ""));
    }
    handle_ = lib.release();
}

Nvml::~Nvml() {
    if (handle_ != nullptr) {
        fns_->shutdown();
        ::dlclose(handle_);
    }
}

std::string Nvml::error_string(Return r) const {
    if (fns_->error_string != nullptr) {
        if (const char* s = fns_->error_string(r)) {
            return s;
        }
    }
    return std::string(return_name(r));
}

Return Nvml::driver_version(std::string* out) const {
    if (fns_->driver_version == nullptr) {
        return kErrorFunctionNotFound;
    }
    char buf[kDriverVersionBufferSize] = {};
    Return r = fns_->driver_version(buf, sizeof buf);
    if (r == kSuccess) {
        *out = std::string(buf, ::strnlen(buf, sizeof buf));
    }
    return r;
}

Return Nvml::device_count(unsigned int* count) const {
    return fns_->count(count);
}

Return Nvml::handle_by_index(unsigned int index, Device* device) const {
    return fns_->handle(index, device);
}

namespace {

Return read_string(DevStringFn fn, Device d, unsigned int size, std::string* out) {
    std::vector<char> buf(size, '\0');
    Return r = fn(d, buf.data(), size);
    if (r == kSuccess) {
        *out = std::string(buf.data(), ::strnlen(buf.data(), size));
    }
    return r;
}

}  // namespace

Return Nvml::name(Device d, std::string* out) const {
    return read_string(fns_->name, d, kDeviceNameBufferSize, out);
}

Return Nvml::uuid(Device d, std::string* out) const {
    return read_string(fns_->uuid, d, kDeviceUuidBufferSize, out);
}

Return Nvml::temperature(Device d, unsigned int* celsius) const {
    return fns_->temperature(d, kTemperatureGpu, celsius);
}

Return Nvml::memory(Device d, Memory* out) const {
    if (fns_->memory_v2 != nullptr) {
        MemoryV2 v2{};
        v2.version = kMemoryV2Version;
        if (fns_->memory_v2(d, &v2) == kSuccess) {
            *out = Memory{v2.total, v2.free, v2.used};
            return kSuccess;
        }
    }
    return fns_->memory(d, out);
}

Return Nvml::utilization(Device d, Utilization* out) const {
    return fns_->utilization(d, out);
}

Return Nvml::power_usage(Device d, unsigned int* milliwatts) const {
    return fns_->power_usage != nullptr ? fns_->power_usage(d, milliwatts) : kErrorFunctionNotFound;
}

Return Nvml::enforced_power_limit(Device d, unsigned int* milliwatts) const {
    return fns_->power_limit != nullptr ? fns_->power_limit(d, milliwatts) : kErrorFunctionNotFound;
}

Return Nvml::fan_speed(Device d, unsigned int* percent) const {
    return fns_->fan_speed != nullptr ? fns_->fan_speed(d, percent) : kErrorFunctionNotFound;
}

Return Nvml::clock(Device d, int clock_type, unsigned int* mhz) const {
    return fns_->clock != nullptr ? fns_->clock(d, clock_type, mhz) : kErrorFunctionNotFound;
}

Return Nvml::throttle_reasons(Device d, unsigned long long* mask) const {
    return fns_->throttle != nullptr ? fns_->throttle(d, mask) : kErrorFunctionNotFound;
}

Return Nvml::total_ecc_errors(Device d, int error_type, int counter_type,
                              unsigned long long* count) const {
    return fns_->ecc != nullptr ? fns_->ecc(d, error_type, counter_type, count)
                                : kErrorFunctionNotFound;
}

namespace {

template <typename Info>
Return list_processes(ProcsFn fn, Device d, std::vector<RawProcess>* out) {
    // Processes may start between the sizing call and the next one, so grow with headroom and
    // retry a few times rather than once.
    std::vector<Info> buf(16);
    for (int attempt = 0; attempt < 5; ++attempt) {
        auto count = static_cast<unsigned int>(buf.size());
        Return r = fn(d, &count, buf.data());
        if (r == kErrorInsufficientSize) {
            buf.resize(std::max<std::size_t>(count, buf.size()) + 16);
            continue;
        }
        if (r != kSuccess) {
            return r;
        }
        out->clear();
        for (unsigned int i = 0; i < count && i < buf.size(); ++i) {
            out->push_back(RawProcess{buf[i].pid, buf[i].used_gpu_memory});
        }
        return kSuccess;
    }
    return kErrorInsufficientSize;
}

}  // namespace

Return Nvml::compute_processes(Device d, std::vector<RawProcess>* out) const {
    switch (fns_->processes_version) {
        case 3:
        case 2:
            return list_processes<ProcessInfoV2>(fns_->processes, d, out);
        case 1:
            return list_processes<ProcessInfoV1>(fns_->processes, d, out);
        default:
            return kErrorFunctionNotFound;
    }
}

EventSet::EventSet(EventSet&& other) noexcept
    : nvml_(std::exchange(other.nvml_, nullptr)), handle_(std::exchange(other.handle_, nullptr)) {}

EventSet& EventSet::operator=(EventSet&& other) noexcept {
    if (this != &other) {
        reset();
        nvml_ = std::exchange(other.nvml_, nullptr);
        handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
}

void EventSet::reset() {
    if (handle_ != nullptr && nvml_ != nullptr) {
        nvml_->free_event_set(handle_);
    }
    nvml_ = nullptr;
    handle_ = nullptr;
}

bool Nvml::has_events() const {
    return fns_->event_wait_version != 0;
}

Return Nvml::create_event_set(EventSet* out) const {
    out->reset();
    if (!has_events()) {
        return kErrorFunctionNotFound;
    }
    EventSetHandle h = nullptr;
    Return r = fns_->event_set_create(&h);
    if (r == kSuccess) {
        out->nvml_ = this;
        out->handle_ = h;
    }
    return r;
}

Return Nvml::free_event_set(EventSetHandle set) const {
    return has_events() ? fns_->event_set_free(set) : kErrorFunctionNotFound;
}

Return Nvml::supported_event_types(Device d, unsigned long long* mask) const {
    return fns_->supported_events != nullptr ? fns_->supported_events(d, mask)
                                             : kErrorFunctionNotFound;
}

Return Nvml::register_events(Device d, unsigned long long event_types, const EventSet& set) const {
    if (!has_events()) {
        return kErrorFunctionNotFound;
    }
    if (!set) {
        return kErrorInvalidArgument;
    }
    return fns_->register_events(d, event_types, set.handle());
}

Return Nvml::wait_event(const EventSet& set, EventData* out, unsigned int timeout_ms) const {
    if (!has_events()) {
        return kErrorFunctionNotFound;
    }
    if (!set) {
        return kErrorInvalidArgument;
    }
    if (fns_->event_wait_version == 2) {
        return fns_->event_wait(set.handle(), out, timeout_ms);
    }
    // The old call writes only the shorter struct; handing it an EventData would also work, but
    // would leave the instance ids to whatever was there.
    EventDataV1 v1{};
    Return r = fns_->event_wait(set.handle(), &v1, timeout_ms);
    *out = EventData{v1.device, v1.event_type, v1.event_data, kNoInstance, kNoInstance};
    return r;
}

}  // namespace mlk::gpu::nvml
