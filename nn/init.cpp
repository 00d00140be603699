#include "nn/init.h"

#include <cmath>

namespace sprig::nn::init {

static int64_t receptive_field(const Shape& s) {
  int64_t r = 1;
  for (size_t i = 2; i < s.size(); ++i) r *= s[i];
  return r;
}

int64_t fan_in(const Shape& s) {
  SPRIG_CHECK(s.size() >= 2, "fan_in needs a weight with at least 2 dims, got ", to_string(s));
  return s[1] * receptive_field(s);
}

int64_t fan_out(const Shape& s) {
  SPRIG_CHECK(s.size() >= 2, "fan_out needs a weight with at least 2 dims, got ", to_string(s));
  return s[0] * receptive_field(s);
}

void uniform_(Tensor& t, float lo, float hi, Rng& rng) {
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = rng.uniform(lo, hi);
}

void normal_(Tensor& t, float mean, float stddev, Rng& rng) {
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = mean + stddev * rng.normal();
}

static float kaiming_std(const Tensor& t, float a) {
  float gain = std::sqrt(2.0f / (1.0f + a * a));
  return gain / std::sqrt(float(fan_in(t.shape())));
}

void kaiming_uniform_(Tensor& t, Rng& rng, float a) {
  float bound = std::sqrt(3.0f) * kaiming_std(t, a);  // U(-b, b) has std b / sqrt(3)
  uniform_(t, -bound, bound, rng);
}

void kaiming_normal_(Tensor& t, Rng& rng, float a) {
  normal_(t, 0.0f, kaiming_std(t, a), rng);
}

static float xavier_std(const Tensor& t, float gain) {
  return gain * std::sqrt(2.0f / float(fan_in(t.shape()) + fan_out(t.shape())));
}

void xavier_uniform_(Tensor& t, Rng& rng, float gain) {
  float bound = std::sqrt(3.0f) * xavier_std(t, gain);
  uniform_(t, -bound, bound, rng);
}

void xavier_normal_(Tensor& t, Rng& rng, float gain) {
  normal_(t, 0.0f, xavier_std(t, gain), rng);
}

}  // namespace sprig::nn::init
