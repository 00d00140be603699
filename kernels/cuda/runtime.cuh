#pragma once
// Entry points of the CUDA runtime layer: devices, the caching allocator, copies, the stream.
// CUDA is initialised lazily: nothing here touches the driver until one of these is called, so a
// CUDA build runs on machines without a GPU. Failures throw sprig::Error naming the CUDA call.
#include <cstddef>
#include <cstdint>
#include <string>

namespace sprig::cuda {

// Number of usable CUDA devices; 0 (with the reason in *why, if given) when none or no driver.
int device_count(std::string* why = nullptr);
// "NVIDIA H100 80GB HBM3 (sm_90)" for device index, or throws.
std::string device_name(int index);
// Makes device index current for this thread (checks that it exists; first use initialises it).
void use_device(int index);

// Caching allocator: freed blocks are kept per (device, rounded size) and reused, so a training
// step after the first does not call cudaMalloc (which synchronises the device). Blocks are
// freed on the stream they were used on, which is the only stream sprig uses, so reuse is safe
// without events. When cudaMalloc fails the cache is emptied and the call retried once.
void* device_alloc(size_t bytes);
void device_free(void* p, size_t bytes);
void empty_cache();  // returns cached blocks to the driver
struct DeviceAllocatorStats {
  int64_t system_allocs = 0, reuses = 0, cached_bytes = 0, in_use_bytes = 0;
};
DeviceAllocatorStats device_allocator_stats();

// Copies on sprig's stream. To-host copies wait for the stream (the values are needed now);
// from-host and device-to-device copies are queued without waiting (from-host copies of up to
// 16 MB go through page-locked staging buffers), and the caller may reuse its buffer at once.
void copy_to_host(void* host_dst, const void* src, size_t bytes);
void copy_from_host(void* dst, const void* host_src, size_t bytes);
void copy_on_device(void* dst, const void* src, size_t bytes);
void zero(void* p, size_t bytes);
// Waits for all queued work; errors from earlier kernels surface here.
void synchronize();

}  // namespace sprig::cuda
