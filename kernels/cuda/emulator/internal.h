#pragma once
// Shared by the emulator's own files (emulator.cpp, libraries.cpp); not for kernels.
#include <mutex>
#include <string>

namespace sprig_emu {

extern std::recursive_mutex g_mu;  // one launch or API call at a time, whichever thread calls
using Lock = std::lock_guard<std::recursive_mutex>;

// Prints a problem found to stderr ("sprig CUDA emulator: ..."); aborts if SPRIG_EMU_ABORT is set.
void report(const std::string& msg);
// false (and a report) when [p, p + bytes) is not inside the bytes in use of one device
// allocation (device) or is device memory (!device).
bool check_range(const char* call, const char* what, const void* p, size_t bytes, bool device);
// false (and a report per allocation) when something wrote out of bounds since the last check.
bool check_canaries(const char* after);

}  // namespace sprig_emu
