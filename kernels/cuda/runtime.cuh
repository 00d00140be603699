#pragma once
// Entry points of the CUDA runtime layer. CUDA is initialised lazily: nothing here touches the
// driver until one of these is called, so a CUDA build runs on machines without a GPU.
#include <string>

namespace sprig::cuda {

// Number of usable CUDA devices; 0 (with the reason in *why, if given) when none or no driver.
int device_count(std::string* why = nullptr);
// "NVIDIA H100 80GB HBM3 (sm_90)" for device index, or throws std::runtime_error.
std::string device_name(int index);

}  // namespace sprig::cuda
