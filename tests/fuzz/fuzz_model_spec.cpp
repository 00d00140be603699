// libFuzzer target: the model spec parser (nn/model.h). The input is a spec string, built for
// a small image shape (1, 12, 12) and a flat one (10). A spec that builds must give a canonical
// spec that builds again to the same parameters and output shape, and a forward pass on a
// batch of 2 must produce that output shape. Specs whose sizes could reach gigabytes are
// skipped (fuzz_util.h, spec_bound): they are valid, only too big to build here.
// Expected failures are sprig::Error; anything else aborts the run.
#include <cstdlib>
#include <string>

#include "engine/autograd.h"
#include "kernels/error.h"
#include "engine/rng.h"
#include "nn/model.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

void check(const std::string& spec, const sprig::Shape& input) {
  // Zoo names expand to their spec, so bound what will actually be built.
  std::string text = sprig::nn::zoo_spec(spec);
  if (text.empty()) text = spec;
  const sprig::fuzz::SpecBound bound = sprig::fuzz::spec_bound(text, input);
  if (bound.params > 4e6 || bound.features > 4e6) return;
  sprig::nn::Model m;
  try {
    m = sprig::nn::build_model(spec, input, 1);
  } catch (const sprig::Error&) {
    return;
  }
  const sprig::Shape out = m.output_shape();
  sprig::nn::Model again = sprig::nn::build_model(m.spec, input, 1);  // must not throw
  if (again.spec != m.spec || again.num_parameters() != m.num_parameters() ||
      again.output_shape() != out)
    std::abort();
  if (bound.im2col > 4e6) return;
  sprig::NoGradGuard no_grad;
  sprig::Shape batch = input;
  batch.insert(batch.begin(), 2);
  sprig::Rng rng(7);
  sprig::Tensor y = m.forward(sprig::Tensor::uniform(batch, -1.0f, 1.0f, rng));
  sprig::Shape want = out;
  want.insert(want.begin(), 2);
  if (y.shape() != want) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sprig::fuzz::ReleaseCache release;
  const std::string spec(reinterpret_cast<const char*>(data), size);
  check(spec, {1, 12, 12});
  check(spec, {10});
  return 0;
}
