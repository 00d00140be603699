#include "nn/parameter.h"

#include "engine/backend.h"

namespace sprig::nn {

const char* granularity_name(Granularity g) {
  switch (g) {
    case Granularity::Element:
      return "element";
    case Granularity::Filter:
      return "filter";
    case Granularity::Channel:
      return "channel";
    case Granularity::Block:
      return "block";
    case Granularity::NM:
      return "nm";
  }
  return "?";
}

Granularity parse_granularity(const std::string& s) {
  if (s == "element") return Granularity::Element;
  if (s == "filter" || s == "neuron" || s == "output_channel") return Granularity::Filter;
  if (s == "channel" || s == "input_channel") return Granularity::Channel;
  if (s == "block") return Granularity::Block;
  // "n:m" (old checkpoints) contains ':' too.
  if (s == "nm" || s.find(':') != std::string::npos) return Granularity::NM;
  throw Error("unknown granularity '" + s +
              "' (expected element, filter, neuron, channel, block or N:M such as 2:4)");
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

void Parameter::set_mask(Tensor keep, Granularity g) {
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
