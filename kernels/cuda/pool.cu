// 2-D pooling and the option-A shortcut, NCHW, on the GPU, with kernels/cpu/pool.cpp's
// conventions. Max pooling: the window is clipped to the image (padding is never chosen), the
// index starts at the first in-image element, a NaN wins, otherwise only a strictly larger value
// replaces the best. Average pooling adds in the CPU's order and divides by kernel * kernel.
// Every backward pass is a gather, one thread per input element, so overlapping windows
// (stride < kernel) need no atomics and every sum has a fixed order.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/pool.cuh"

namespace sprig::cuda {

using detail::blocks_for;
using detail::first_index;
using detail::grid_stride;
using detail::kThreads;
using detail::stream;

namespace {

// One thread per output. x (N, C, H, W), y and argmax (N, C, P, Q)
__global__ void maxpool2d_forward_kernel(Pool2dShape s, int64_t P, int64_t Q, const float* x,
                                         float* y, int32_t* argmax) {
  const int64_t PQ = P * Q, total = s.N * s.C * PQ;
  for (int64_t o = first_index(); o < total; o += grid_stride()) {
    const int64_t plane = o / PQ, pq = o % PQ, p = pq / Q, q = pq % Q;
    const float* xp = x + plane * s.H * s.W;  // (H, W)
    int64_t h0 = p * s.stride - s.pad, h1 = min(h0 + s.kernel, s.H);
    int64_t w0 = q * s.stride - s.pad, w1 = min(w0 + s.kernel, s.W);
    h0 = max(h0, int64_t(0));
    w0 = max(w0, int64_t(0));
    float best = -INFINITY;
    // A window entirely in the padding keeps -1, as on the CPU.
    int32_t idx = h0 < h1 && w0 < w1 ? int32_t(h0 * s.W + w0) : -1;
    for (int64_t h = h0; h < h1; h++)
      for (int64_t w = w0; w < w1; w++) {
        float v = xp[h * s.W + w];
        if (v > best || isnan(v)) {
          best = v;
          idx = int32_t(h * s.W + w);
        }
      }
    y[o] = best;
    if (argmax) argmax[o] = idx;  // null: no backward wants it
  }
}

// One thread per input: adds, in output order, dy of every window that covers this input and
// chose it. dy and argmax (N, C, P, Q), dx (N, C, H, W)
__global__ void maxpool2d_backward_kernel(Pool2dShape s, int64_t P, int64_t Q, const float* dy,
                                          const int32_t* argmax, float* dx) {
  const int64_t HW = s.H * s.W, PQ = P * Q, total = s.N * s.C * HW;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t plane = i / HW, hw = i % HW, h = hw / s.W, w = hw % s.W;
    // Output p covers h when p * stride - pad <= h < p * stride - pad + kernel.
    const int64_t hk = h + s.pad - s.kernel + 1, wk = w + s.pad - s.kernel + 1;
    const int64_t p0 = hk <= 0 ? 0 : (hk + s.stride - 1) / s.stride;
    const int64_t q0 = wk <= 0 ? 0 : (wk + s.stride - 1) / s.stride;
    const int64_t p1 = min((h + s.pad) / s.stride, P - 1);
    const int64_t q1 = min((w + s.pad) / s.stride, Q - 1);
    const float* dyp = dy + plane * PQ;       // (P, Q)
    const int32_t* ap = argmax + plane * PQ;  // (P, Q)
    float g = 0.0f;
    for (int64_t p = p0; p <= p1; p++)
      for (int64_t q = q0; q <= q1; q++)
        if (ap[p * Q + q] == hw) g += dyp[p * Q + q];
    dx[i] = g;
  }
}

// One thread per output: the in-image part of the window, row-major, as on the CPU.
// x (N, C, H, W), y (N, C, P, Q)
__global__ void avgpool2d_forward_kernel(Pool2dShape s, int64_t P, int64_t Q, const float* x,
                                         float* y) {
  const int64_t PQ = P * Q, total = s.N * s.C * PQ;
  const float area = float(s.kernel * s.kernel);
  for (int64_t o = first_index(); o < total; o += grid_stride()) {
    const int64_t plane = o / PQ, pq = o % PQ, p = pq / Q, q = pq % Q;
    const float* xp = x + plane * s.H * s.W;  // (H, W)
    int64_t h0 = p * s.stride - s.pad, h1 = min(h0 + s.kernel, s.H);
    int64_t w0 = q * s.stride - s.pad, w1 = min(w0 + s.kernel, s.W);
    h0 = max(h0, int64_t(0));
    w0 = max(w0, int64_t(0));
    float acc = 0.0f;
    for (int64_t h = h0; h < h1; h++)
      for (int64_t w = w0; w < w1; w++) acc += xp[h * s.W + w];
    y[o] = acc / area;
  }
}

// One thread per input: the dy of every window covering it, in output order, then one
// division (the CPU's order). dy (N, C, P, Q), dx (N, C, H, W)
__global__ void avgpool2d_backward_kernel(Pool2dShape s, int64_t P, int64_t Q, const float* dy,
                                          float* dx) {
  const int64_t HW = s.H * s.W, PQ = P * Q, total = s.N * s.C * HW;
  const float area = float(s.kernel * s.kernel);
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t plane = i / HW, hw = i % HW, h = hw / s.W, w = hw % s.W;
    const int64_t hk = h + s.pad - s.kernel + 1, wk = w + s.pad - s.kernel + 1;
    const int64_t p0 = hk <= 0 ? 0 : (hk + s.stride - 1) / s.stride;
    const int64_t q0 = wk <= 0 ? 0 : (wk + s.stride - 1) / s.stride;
    const int64_t p1 = min((h + s.pad) / s.stride, P - 1);
    const int64_t q1 = min((w + s.pad) / s.stride, Q - 1);
    const float* dyp = dy + plane * PQ;  // (P, Q)
    float g = 0.0f;
    for (int64_t p = p0; p <= p1; p++)
      for (int64_t q = q0; q <= q1; q++) g += dyp[p * Q + q];
    dx[i] = g / area;
  }
}

// One thread per plane adds its values in order in double, exactly as the CPU does.
// x (planes, hw), y (planes)
__global__ void global_avgpool_forward_kernel(int64_t planes, int64_t hw, const float* x,
                                              float* y) {
  for (int64_t p = first_index(); p < planes; p += grid_stride()) {
    const float* xp = x + p * hw;  // (hw)
    double acc = 0.0;
    for (int64_t i = 0; i < hw; i++) acc += double(xp[i]);
    y[p] = float(acc / double(hw));
  }
}

// dy (planes), dx (planes, hw)
__global__ void global_avgpool_backward_kernel(int64_t planes, int64_t hw, const float* dy,
                                               float* dx) {
  const float div = float(hw);
  for (int64_t i = first_index(); i < planes * hw; i += grid_stride()) dx[i] = dy[i / hw] / div;
}

// One thread per output. x (N, C, H, W), y (N, K, P, Q)
__global__ void shortcut_forward_kernel(ShortcutShape s, int64_t P, int64_t Q, const float* x,
                                        float* y) {
  const int64_t PQ = P * Q, total = s.N * s.K * PQ;
  for (int64_t o = first_index(); o < total; o += grid_stride()) {
    const int64_t plane = o / PQ, pq = o % PQ, p = pq / Q, q = pq % Q;
    const int64_t n = plane / s.K, c = plane % s.K - s.pad_lo;
    y[o] = c >= 0 && c < s.C ? x[((n * s.C + c) * s.H + p * s.stride) * s.W + q * s.stride] : 0.0f;
  }
}

// One thread per input. dy (N, K, P, Q), dx (N, C, H, W)
__global__ void shortcut_backward_kernel(ShortcutShape s, int64_t P, int64_t Q, const float* dy,
                                         float* dx) {
  const int64_t HW = s.H * s.W, total = s.N * s.C * HW;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t plane = i / HW, hw = i % HW, h = hw / s.W, w = hw % s.W;
    const int64_t n = plane / s.C, c = plane % s.C;
    const bool picked = h % s.stride == 0 && w % s.stride == 0;
    dx[i] = picked ? dy[((n * s.K + s.pad_lo + c) * P + h / s.stride) * Q + w / s.stride] : 0.0f;
  }
}

}  // namespace

void maxpool2d_forward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax) {
  const int64_t P = s.P(), Q = s.Q(), total = s.N * s.C * P * Q;
  if (total <= 0) return;
  maxpool2d_forward_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(s, P, Q, x, y, argmax);
  SPRIG_CUDA_LAUNCHED("maxpool2d_forward_kernel");
}

void maxpool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* argmax, float* dx) {
  const int64_t P = s.P(), Q = s.Q(), total = s.N * s.C * s.H * s.W;
  if (total <= 0) return;
  maxpool2d_backward_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(s, P, Q, dy, argmax, dx);
  SPRIG_CUDA_LAUNCHED("maxpool2d_backward_kernel");
}

void avgpool2d_forward(const Pool2dShape& s, const float* x, float* y) {
  const int64_t P = s.P(), Q = s.Q(), total = s.N * s.C * P * Q;
  if (total <= 0) return;
  avgpool2d_forward_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(s, P, Q, x, y);
  SPRIG_CUDA_LAUNCHED("avgpool2d_forward_kernel");
}

void avgpool2d_backward(const Pool2dShape& s, const float* dy, float* dx) {
  const int64_t P = s.P(), Q = s.Q(), total = s.N * s.C * s.H * s.W;
  if (total <= 0) return;
  avgpool2d_backward_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(s, P, Q, dy, dx);
  SPRIG_CUDA_LAUNCHED("avgpool2d_backward_kernel");
}

void global_avgpool_forward(int64_t planes, int64_t hw, const float* x, float* y) {
  if (planes <= 0) return;
  global_avgpool_forward_kernel<<<blocks_for(planes), kThreads, 0, stream()>>>(planes, hw, x, y);
  SPRIG_CUDA_LAUNCHED("global_avgpool_forward_kernel");
}

void global_avgpool_backward(int64_t planes, int64_t hw, const float* dy, float* dx) {
  const int64_t total = planes * hw;
  if (total <= 0) return;
  global_avgpool_backward_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(planes, hw, dy, dx);
  SPRIG_CUDA_LAUNCHED("global_avgpool_backward_kernel");
}

void shortcut_forward(const ShortcutShape& s, const float* x, float* y) {
  const int64_t P = s.P(), Q = s.Q(), total = s.N * s.K * P * Q;
  if (total <= 0) return;
  shortcut_forward_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(s, P, Q, x, y);
  SPRIG_CUDA_LAUNCHED("shortcut_forward_kernel");
}

void shortcut_backward(const ShortcutShape& s, const float* dy, float* dx) {
  const int64_t P = s.P(), Q = s.Q(), total = s.N * s.C * s.H * s.W;
  if (total <= 0) return;
  shortcut_backward_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(s, P, Q, dy, dx);
  SPRIG_CUDA_LAUNCHED("shortcut_backward_kernel");
}

}  // namespace sprig::cuda
