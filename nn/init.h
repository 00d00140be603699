#pragma once
// Weight initialisers (fan_in / fan_out as PyTorch computes them for Linear and Conv2d weights).
#include "engine/rng.h"
#include "engine/tensor.h"

namespace sprig::nn::init {

// fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field.
int64_t fan_in(const Shape& shape);
int64_t fan_out(const Shape& shape);

void uniform_(Tensor& t, float lo, float hi, Rng& rng);
void normal_(Tensor& t, float mean, float stddev, Rng& rng);
// He et al. 2015, for ReLU networks: gain sqrt(2 / (1 + a^2)), std = gain / sqrt(fan_in).
void kaiming_uniform_(Tensor& t, Rng& rng, float a = 0.0f);
void kaiming_normal_(Tensor& t, Rng& rng, float a = 0.0f);
// Glorot & Bengio 2010: std = gain * sqrt(2 / (fan_in + fan_out)).
void xavier_uniform_(Tensor& t, Rng& rng, float gain = 1.0f);
void xavier_normal_(Tensor& t, Rng& rng, float gain = 1.0f);

}  // namespace sprig::nn::init
