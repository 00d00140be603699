#include "datasets/augment.h"

#include "datasets/dataloader.h"

namespace sprig::data {

std::vector<CropFlip> draw_crop_flip(int64_t n, int64_t pad, Rng& rng) {
  SPRIG_CHECK(n >= 0 && pad >= 0, "draw_crop_flip: n and pad must be >= 0, got ", n, " and ", pad);
  std::vector<CropFlip> draws(static_cast<size_t>(n));
  for (CropFlip& d : draws) {
    d.dy = int64_t(rng.below(uint64_t(2 * pad + 1)));
    d.dx = int64_t(rng.below(uint64_t(2 * pad + 1)));
    d.flip = rng.below(2) == 1;
  }
  return draws;
}

Tensor crop_flip(const Tensor& x, const std::vector<CropFlip>& draws, int64_t pad,
                 const std::vector<float>& fill) {
  SPRIG_CHECK(x.defined() && x.device().is_cpu() && x.dtype() == DType::F32 && x.dim() == 4,
              "crop_flip: needs a float32 (N, C, H, W) batch on the cpu, got ",
              x.defined() ? to_string(x.shape()) : std::string("none"));
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  SPRIG_CHECK(int64_t(draws.size()) == N, "crop_flip: ", draws.size(), " draws for ", N,
              " samples");
  SPRIG_CHECK(int64_t(fill.size()) == C, "crop_flip: ", fill.size(), " fill values for ", C,
              " channels");
  SPRIG_CHECK(pad >= 0, "crop_flip: pad must be >= 0, got ", pad);
  Tensor out = Tensor::empty(x.shape());
  const float* in = x.data();  // (N, C, H, W)
  float* o = out.data();       // (N, C, H, W)
  for (int64_t i = 0; i < N; ++i) {
    const CropFlip& d = draws[size_t(i)];
    SPRIG_CHECK(d.dy >= 0 && d.dy <= 2 * pad && d.dx >= 0 && d.dx <= 2 * pad, "crop_flip: offset (",
                d.dy, ", ", d.dx, ") outside [0, ", 2 * pad, "]");
    for (int64_t c = 0; c < C; ++c) {
      const float* src = in + (i * C + c) * H * W;  // (H, W)
      float* dst = o + (i * C + c) * H * W;         // (H, W)
      for (int64_t y = 0; y < H; ++y) {
        // Output row y is padded row dy + y, i.e. source row dy + y - pad.
        const int64_t sy = d.dy + y - pad;
        for (int64_t xo = 0; xo < W; ++xo) {
          const int64_t xc = d.flip ? W - 1 - xo : xo;  // column in the crop
          const int64_t sx = d.dx + xc - pad;
          const bool inside = sy >= 0 && sy < H && sx >= 0 && sx < W;
          dst[y * W + xo] = inside ? src[sy * W + sx] : fill[size_t(c)];
        }
      }
    }
  }
  return out;
}

uint64_t augment_seed(uint64_t seed, int64_t epoch, int64_t batch) {
  // Salted, so the augmentation stream is unrelated to the shuffling stream of the same seed.
  const uint64_t salt = 0x61756775'6d656e74ull;  // "augment"
  return mix64(mix64(seed ^ salt) ^ mix64((uint64_t(epoch) << 32) ^ uint64_t(batch)));
}

}  // namespace sprig::data
