#pragma once
// Training-time augmentation of image batches: random crop with padding and random horizontal
// flip, per sample (torchvision's RandomCrop(size, padding=pad) then RandomHorizontalFlip(),
// the usual CIFAR-10 recipe). The draws of a batch come from a stream that is a pure function
// of (seed, epoch, batch), so a run, and a run resumed from any step, sees the same images.
#include <cstdint>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace sprig::data {

struct CropFlip {
  int64_t dy = 0, dx = 0;  // top-left corner of the crop in the padded image, each in [0, 2 pad]
  bool flip = false;       // mirror left-right after cropping
};

// For each of n samples, in order: dy = rng.below(2 pad + 1), dx = rng.below(2 pad + 1),
// flip = rng.below(2) == 1.
std::vector<CropFlip> draw_crop_flip(int64_t n, int64_t pad, Rng& rng);

// x (N, C, H, W) -> (N, C, H, W): sample i padded by `pad` on every side with fill[c] in
// channel c, cropped to H x W at (dy, dx) and mirrored when flip. `fill` holds C values: the
// normalised value of a black pixel (-mean / std), since the batches are normalised already
// and torchvision pads before normalising.
Tensor crop_flip(const Tensor& x, const std::vector<CropFlip>& draws, int64_t pad,
                 const std::vector<float>& fill);

// The seed of the augmentation stream of batch `batch` (from 0) of epoch `epoch` (from 0).
uint64_t augment_seed(uint64_t seed, int64_t epoch, int64_t batch);

}  // namespace sprig::data
