#pragma once
// Pruning criteria on the GPU (mirrors kernels/cpu/criteria.h); out is in device memory.
#include "kernels/shapes.h"

namespace sprig::cuda {

void unit_scores(const UnitLayout& layout, ElementScore e, const float* w, const float* g,
                 float* out);
void fpgm_scores(const UnitLayout& layout, const float* w, float* out);

}  // namespace sprig::cuda
