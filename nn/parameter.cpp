#include "nn/parameter.h"

#include "engine/backend.h"

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
  return backend_for(value.device()).count_nonzero(value.numel(), value.ptr());
}

void Parameter::apply_mask() {
  if (!mask) return;
  const Backend& be = backend_for(value.device());
  const uint8_t* keep = mask->keep.ptr_as<uint8_t>();  // same shape as value
  be.mask_zero(value.numel(), keep, value.ptr());
  for (auto& kv : state)
    if (kv.second.shape() == value.shape()) be.mask_zero(value.numel(), keep, kv.second.ptr());
}

void Parameter::set_mask(Tensor keep, MaskGranularity g) {
  SPRIG_CHECK(keep.dtype() == DType::U8 && keep.shape() == value.shape(), "mask for ", name,
              " must be uint8 with shape ", to_string(value.shape()), ", got ", keep.str());
  mask = std::make_shared<Mask>(Mask{g, keep.to(value.device())});
  apply_mask();
}

void Parameter::to(Device d) {
  if (value.device() == d) return;
  Tensor grad = value.grad();
  value = value.to(d);
  value.set_requires_grad(true);
  if (grad.defined()) value.impl()->grad = grad.to(d).impl_ptr();
  if (mask) mask->keep = mask->keep.to(d);
  for (auto& kv : state) kv.second = kv.second.to(d);
}

}  // namespace sprig::nn
