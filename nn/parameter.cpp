#include "nn/parameter.h"

namespace sprig::nn {

const char* granularity_name(MaskGranularity g) {
  switch (g) {
    case MaskGranularity::Element:
      return "element";
    case MaskGranularity::OutputChannel:
      return "output_channel";
    case MaskGranularity::InputChannel:
      return "input_channel";
    case MaskGranularity::Block:
      return "block";
    case MaskGranularity::NM:
      return "n:m";
  }
  return "?";
}

Parameter::Parameter(std::string n, Tensor v) : name(std::move(n)), value(std::move(v)) {
  value.set_requires_grad(true);
}

int64_t Parameter::count_nonzero() const {
  const float* p = value.data();
  int64_t nz = 0;
  for (int64_t i = 0; i < value.numel(); ++i) nz += p[i] != 0.0f;
  return nz;
}

static void zero_where_masked(const Tensor& t, const uint8_t* keep) {
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!keep[i]) p[i] = 0.0f;
}

void Parameter::apply_mask() {
  if (!mask) return;
  const uint8_t* keep = mask->keep.data_as<uint8_t>();
  zero_where_masked(value, keep);
  for (auto& kv : state)
    if (kv.second.shape() == value.shape()) zero_where_masked(kv.second, keep);
}

void Parameter::set_mask(Tensor keep, MaskGranularity g) {
  SPRIG_CHECK(keep.dtype() == DType::U8 && keep.shape() == value.shape(), "mask for ", name,
              " must be uint8 with shape ", to_string(value.shape()), ", got ", keep.str());
  mask = std::make_shared<Mask>(Mask{g, std::move(keep)});
  apply_mask();
}

}  // namespace sprig::nn
