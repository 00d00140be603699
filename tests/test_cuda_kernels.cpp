// The CUDA backend's kernels that no op reaches, against the CPU backend and the references.
// Built with tests/cuda_main.cpp, which exits 77 (CTest: not run) without a usable GPU.
//   - optimizer steps (masked and not, every option) over several steps
//   - add_relu (NaN, in place), fill_scaled, mask_zero, count_nonzero, all_finite, labels_in_range,
//   sum, sum_rows
//     (one row, one column, many rows)
//   - unit_scores / fpgm_scores for every layout and element score
//   - gemm: all transposes, padded leading dimensions, alpha and beta (0 must not read C),
//     against cpu::gemm_ref with a proven error bound
//   - avgpool2d, global_avgpool, shortcut (bit for bit) and batchnorm train / eval / backward
//     (null affine, null running statistics, any subset of the gradients)
//   - int8 inference: quantize_activations (codes bit for bit), linear_u8s8_dequantize and
//     conv2d_u8s8_dequantize against the CPU's exact int32 references and epilogue
// Ops and their gradients are in tests/test_cuda_ops.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/rng.h"
#include "kernels/cpu/conv_int8.h"
#include "kernels/cpu/criteria.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/pool.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/reduce.h"
#include "kernels/cuda/quantize.cuh"
#include "kernels/cuda/runtime.cuh"
#include "tests/cuda_test_util.h"

using namespace sprig;
using namespace sprig::testing;

TEST_CASE("sgd_step and adam_step match the CPU over several steps, with and without a mask") {
  const int64_t n = 4099;  // not a multiple of the block size
  struct Config {
    const char* name;
    bool adam;
    float lr, momentum, dampening, weight_decay;
    bool nesterov, decoupled;
  };
  const Config configs[] = {
      {"sgd", false, 0.1f, 0.0f, 0.0f, 0.0f, false, false},
      {"sgd weight decay", false, 0.05f, 0.0f, 0.0f, 0.01f, false, false},
      {"sgd momentum dampening", false, 0.05f, 0.9f, 0.1f, 0.0f, false, false},
      {"sgd nesterov weight decay", false, 0.05f, 0.9f, 0.0f, 1e-3f, true, false},
      {"adam", true, 1e-2f, 0.0f, 0.0f, 0.0f, false, false},
      {"adam l2", true, 1e-2f, 0.0f, 0.0f, 0.1f, false, false},
      {"adamw", true, 1e-2f, 0.0f, 0.0f, 0.1f, false, true},
  };
  for (const Config& cfg : configs)
    for (bool masked : {false, true}) {
      INFO((std::string(cfg.name) + (masked ? " masked" : " dense")));
      Rng rng(7);
      std::vector<float> w = random_values(n, rng);
      std::vector<uint8_t> keep(size_t(n), 1);
      for (auto& k : keep) k = rng.uniform() < 0.3f ? 0 : 1;
      if (masked)  // the mask invariant holds on entry, as Parameter::set_mask makes it
        for (int64_t i = 0; i < n; ++i)
          if (!keep[size_t(i)]) w[size_t(i)] = 0.0f;
      const bool has_velocity = !cfg.adam && cfg.momentum != 0.0f;
      // Host state (n each) and device copies.
      std::vector<float> m(size_t(n), 0.0f), v(size_t(n), 0.0f);
      Tensor wd = Tensor::from_vector(w, {n}).to(kGpu);
      Tensor md = Tensor::zeros({n}, DType::F32, kGpu), vd = Tensor::zeros({n}, DType::F32, kGpu);
      Tensor keepd = u8_tensor(keep).to(kGpu);
      const uint8_t* mask_h = masked ? keep.data() : nullptr;
      const uint8_t* mask_d = masked ? keepd.ptr_as<uint8_t>() : nullptr;
      for (int64_t step = 1; step <= 5; ++step) {
        // Gradients are nonzero at pruned positions too: the step itself must ignore them.
        const std::vector<float> g = random_values(n, rng, -2.0f, 2.0f);
        Tensor gd = Tensor::from_vector(g, {n}).to(kGpu);
        if (cfg.adam) {
          cpu_be().adam_step(n, w.data(), g.data(), m.data(), v.data(), mask_h, cfg.lr, 0.9f,
                             0.999f, 1e-8f, cfg.weight_decay, step, cfg.decoupled);
          gpu_be().adam_step(n, wd.ptr(), gd.ptr(), md.ptr(), vd.ptr(), mask_d, cfg.lr, 0.9f,
                             0.999f, 1e-8f, cfg.weight_decay, step, cfg.decoupled);
        } else {
          cpu_be().sgd_step(n, w.data(), g.data(), has_velocity ? m.data() : nullptr, mask_h,
                            cfg.lr, cfg.momentum, cfg.dampening, cfg.weight_decay, cfg.nesterov,
                            step == 1);
          gpu_be().sgd_step(n, wd.ptr(), gd.ptr(), has_velocity ? md.ptr() : nullptr, mask_d,
                            cfg.lr, cfg.momentum, cfg.dampening, cfg.weight_decay, cfg.nesterov,
                            step == 1);
        }
      }
      // Per element the same float operations in the same order; FMA contraction on the GPU
      // gives a few ulp per step. So 1e-5 relative, plus 1e-6 of the buffer's largest value for
      // entries that cancel to near 0 (w - lr * d with both ~1 keeps the ulp of 1).
      const std::vector<float> wg = wd.to_vector(), mg = md.to_vector(), vg = vd.to_vector();
      auto close = [&](const std::vector<float>& got, const std::vector<float>& want,
                       const std::string& what) {
        double largest = 0.0;
        for (float x : want) largest = std::max(largest, double(std::fabs(x)));
        int64_t bad = 0;
        for (int64_t i = 0; i < n; ++i) {
          const double e = std::fabs(double(got[size_t(i)]) - double(want[size_t(i)]));
          if (!(e <= 1e-5 * std::fabs(double(want[size_t(i)])) + 1e-6 * largest)) ++bad;
        }
        CHECK_MESSAGE(bad == 0, what, ": ", bad, " of ", n, " differ");
      };
      close(wg, w, "weights");
      if (cfg.adam || has_velocity) close(mg, m, cfg.adam ? "exp_avg" : "velocity");
      if (cfg.adam) close(vg, v, "exp_avg_sq");
      if (masked) {
        int64_t nonzero_pruned = 0;
        for (int64_t i = 0; i < n; ++i)
          if (!keep[size_t(i)])
            nonzero_pruned +=
                wg[size_t(i)] != 0.0f || mg[size_t(i)] != 0.0f || vg[size_t(i)] != 0.0f;
        CHECK(nonzero_pruned == 0);
      }
    }
}

TEST_CASE("fill_scaled, mask_zero and count_nonzero match plain loops") {
  Rng rng(11);
  for (int64_t n : {int64_t(1), int64_t(255), int64_t(256), int64_t(1000003)}) {
    INFO("n = ", n);
    // fill_scaled reads its scalar from device memory.
    Tensor scalar = Tensor::full({1}, -3.25f, kGpu);
    Tensor out = Tensor::full({n + 1}, 7.0f, kGpu);  // one guard value past n
    gpu_be().fill_scaled(n, scalar.ptr(), 0.5f, out.ptr());
    const std::vector<float> o = out.to_vector();
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) wrong += o[size_t(i)] != -1.625f;
    CHECK(wrong == 0);
    CHECK(o[size_t(n)] == 7.0f);

    std::vector<float> x = random_values(n, rng);
    std::vector<uint8_t> keep(static_cast<size_t>(n));
    for (auto& k : keep) k = rng.uniform() < 0.5f ? 0 : uint8_t(1 + rng.below(255));
    x[0] = std::numeric_limits<float>::quiet_NaN();  // masked or not, a NaN stays put or goes
    Tensor xd = Tensor::from_vector(x, {n}).to(kGpu);
    gpu_be().mask_zero(n, u8_tensor(keep).to(kGpu).ptr_as<uint8_t>(), xd.ptr());
    std::vector<float> want = x;
    cpu_be().mask_zero(n, keep.data(), want.data());
    const std::vector<float> got = xd.to_vector();
    int64_t differ = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float a = got[size_t(i)], b = want[size_t(i)];
      differ += !(a == b || (std::isnan(a) && std::isnan(b)));
    }
    CHECK(differ == 0);

    // count_nonzero: zeros, -0, NaN, inf and a denormal.
    std::vector<float> z = random_values(n, rng);
    for (int64_t i = 0; i < n; i += 3) z[size_t(i)] = 0.0f;
    if (n > 5) {
      z[1] = -0.0f;
      z[2] = std::numeric_limits<float>::quiet_NaN();
      z[4] = -std::numeric_limits<float>::infinity();
      z[5] = std::numeric_limits<float>::denorm_min();
    }
    CHECK(gpu_be().count_nonzero(n, Tensor::from_vector(z, {n}).to(kGpu).ptr()) ==
          cpu_be().count_nonzero(n, z.data()));
  }
  CHECK(gpu_be().count_nonzero(0, Tensor::zeros({1}, DType::F32, kGpu).ptr()) == 0);
}

TEST_CASE("add_relu matches the CPU's, NaN and -0 included, in place too") {
  Rng rng(12);
  for (int64_t n : {int64_t(1), int64_t(257), int64_t(100003)}) {
    INFO("n = ", n);
    std::vector<float> a = random_values(n, rng), b = random_values(n, rng);
    a[0] = std::numeric_limits<float>::quiet_NaN();
    if (n > 2) a[1] = -0.0f, b[1] = 0.0f, a[2] = 1.0f, b[2] = -1.0f;
    std::vector<float> want(a.size());
    cpu_be().add_relu(n, a.data(), b.data(), want.data());
    Tensor ad = Tensor::from_vector(a, {n}).to(kGpu), bd = Tensor::from_vector(b, {n}).to(kGpu);
    Tensor out = Tensor::empty({n}, DType::F32, kGpu);
    gpu_be().add_relu(n, ad.ptr(), bd.ptr(), out.ptr());
    gpu_be().add_relu(n, ad.ptr(), bd.ptr(), ad.ptr());  // out aliasing an input
    for (const Tensor& t : {out, ad}) {
      const std::vector<float> got = t.to_vector();
      int64_t differ = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float g = got[size_t(i)], w = want[size_t(i)];
        differ +=
            !((g == w && std::signbit(g) == std::signbit(w)) || (std::isnan(g) && std::isnan(w)));
      }
      CHECK(differ == 0);
    }
  }
}

TEST_CASE("all_finite finds a NaN or an infinity anywhere") {
  const int64_t n = (1 << 20) + 3;
  Rng rng(12);
  const std::vector<float> x = random_values(n, rng);
  CHECK(gpu_be().all_finite(n, Tensor::from_vector(x, {n}).to(kGpu).ptr()));
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()})
    for (int64_t at : {int64_t(0), int64_t(777), n / 2, n - 1}) {
      INFO("value ", bad, " at ", at);
      std::vector<float> y = x;
      y[size_t(at)] = bad;
      Tensor yd = Tensor::from_vector(y, {n}).to(kGpu);
      CHECK_FALSE(gpu_be().all_finite(n, yd.ptr()));
      if (at > 0) CHECK(gpu_be().all_finite(at, yd.ptr()));  // the prefix before it is fine
    }
  CHECK(gpu_be().all_finite(0, Tensor::zeros({1}, DType::F32, kGpu).ptr()));
}

TEST_CASE("labels_in_range on the GPU") {
  for (int64_t N : {int64_t(1), int64_t(64), int64_t(100003)}) {
    INFO("N = ", N);
    Rng rng(static_cast<uint64_t>(N));
    std::vector<int32_t> l(static_cast<size_t>(N));
    for (auto& v : l) v = int32_t(rng.below(10));
    auto on_gpu = [&](const std::vector<int32_t>& labels, int64_t C) {
      Tensor t = Tensor::from_vector_i32(labels, {N}).to(kGpu);
      return gpu_be().labels_in_range(N, t.ptr_as<int32_t>(), C);
    };
    CHECK(on_gpu(l, 10));
    for (int32_t bad : {-1, 10, std::numeric_limits<int32_t>::min(), 1 << 30})
      for (int64_t at : {int64_t(0), N - 1, N / 2}) {
        std::vector<int32_t> b = l;
        b[size_t(at)] = bad;
        CHECK_MESSAGE(!on_gpu(b, 10), "label ", bad, " at ", at);
        CHECK(on_gpu(b, 10) == cpu_be().labels_in_range(N, b.data(), 10));
      }
  }
}

TEST_CASE("sum and sum_rows: one row, one column, many rows") {
  struct RC {
    int64_t rows, cols;
  };
  for (RC s : {RC{1, 1}, RC{1, 1000}, RC{1000, 1}, RC{4097, 129}, RC{100000, 3}, RC{3, 70000}}) {
    INFO("rows ", s.rows, " cols ", s.cols);
    Rng rng(uint64_t(s.rows * 7 + s.cols));
    const int64_t n = s.rows * s.cols;
    const std::vector<float> x = random_values(n, rng);
    Tensor xd = Tensor::from_vector(x, {n}).to(kGpu);
    // Both sides accumulate each column in double: a float rounding apart at most, so 1e-6 of
    // the column's magnitude (which also covers columns that cancel to ~0).
    std::vector<float> want(static_cast<size_t>(s.cols));
    cpu::sum_rows_ref(s.rows, s.cols, x.data(), want.data());
    Tensor out = Tensor::empty({s.cols}, DType::F32, kGpu);
    gpu_be().sum_rows(s.rows, s.cols, xd.ptr(), out.ptr());
    const std::vector<float> got = out.to_vector();
    for (int64_t c = 0; c < s.cols; ++c) {
      double mag = 0.0;
      for (int64_t r = 0; r < s.rows; ++r) mag += std::fabs(double(x[size_t(r * s.cols + c)]));
      REQUIRE_MESSAGE(std::fabs(double(got[size_t(c)]) - double(want[size_t(c)])) <= 1e-6 * mag,
                      "column ", c, ": gpu ", got[size_t(c)], " vs ", want[size_t(c)]);
    }
    if (s.rows == 1) CHECK(got == x);  // a sum of one value is that value

    Tensor total = Tensor::empty({}, DType::F32, kGpu);
    gpu_be().sum(n, xd.ptr(), -0.5f, total.ptr());
    double mag = 0.0;
    for (float v : x) mag += std::fabs(double(v));
    CHECK(std::fabs(double(total.item()) - (-0.5 * cpu::sum_ref(n, x.data()))) <= 1e-6 * mag);
  }
}

TEST_CASE("unit_scores and fpgm_scores for every layout match the CPU") {
  using L = UnitLayout;
  struct Geo {
    L::Kind kind;
    int64_t rows, cols, kk, br, bc;
  };
  const Geo geos[] = {
      {L::Element, 7, 13, 1, 1, 1},   {L::Row, 16, 72, 1, 1, 1},     {L::Row, 1, 5, 1, 1, 1},
      {L::Row, 300, 784, 1, 1, 1},    {L::Channel, 16, 72, 9, 1, 1}, {L::Channel, 5, 3, 1, 1, 1},
      {L::Channel, 8, 200, 25, 1, 1}, {L::Block, 10, 784, 1, 1, 4},  {L::Block, 9, 14, 1, 4, 4},
      {L::Block, 33, 70, 1, 8, 16},   {L::Block, 3, 3, 1, 5, 5},
  };
  const ElementScore scores[] = {ElementScore::AbsWeight, ElementScore::AbsGrad,
                                 ElementScore::AbsWeightGrad, ElementScore::SquareWeight};
  for (const Geo& geo : geos) {
    L layout;
    layout.kind = geo.kind;
    layout.rows = geo.rows;
    layout.cols = geo.cols;
    layout.kk = geo.kk;
    layout.br = geo.br;
    layout.bc = geo.bc;
    INFO("layout kind ", int(geo.kind), " ", geo.rows, "x", geo.cols, " kk ", geo.kk, " block ",
         geo.br, "x", geo.bc);
    Rng rng(uint64_t(geo.rows * 1000 + geo.cols));
    const int64_t n = geo.rows * geo.cols, U = layout.units();
    std::vector<float> w = random_values(n, rng), g = random_values(n, rng);
    w[size_t(n / 2)] = 0.0f;  // pruned weights score 0
    Tensor wd = Tensor::from_vector(w, {n}).to(kGpu), gd = Tensor::from_vector(g, {n}).to(kGpu);
    for (ElementScore e : scores) {
      INFO("element score ", int(e));
      std::vector<float> want(static_cast<size_t>(U));
      cpu_be().unit_scores(layout, e, w.data(), g.data(), want.data());
      Tensor out = Tensor::empty({U}, DType::F32, kGpu);
      gpu_be().unit_scores(layout, e, wd.ptr(), gd.ptr(), out.ptr());
      // Both sum each unit's scores in double in the same order (kernels/cuda/criteria.cu):
      // equal to a rounding.
      check_close(out.to_vector(), want, 1e-6, false, "unit_scores");
    }
    if (geo.kind == L::Row || geo.kind == L::Channel) {
      std::vector<float> want(static_cast<size_t>(U));
      cpu_be().fpgm_scores(layout, w.data(), want.data());
      Tensor out = Tensor::empty({U}, DType::F32, kGpu);
      gpu_be().fpgm_scores(layout, wd.ptr(), out.ptr());
      // Sums of U square roots of double sums: a few float roundings.
      check_close(out.to_vector(), want, 1e-5, true, "fpgm_scores");
    }
  }
}

TEST_CASE("gemm: every transpose, padded leading dimensions, alpha and beta, vs cpu::gemm_ref") {
  struct Dims {
    int64_t M, N, K;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float sentinel = 12345.0f;
  uint64_t seed = 1;
  for (Dims d : {Dims{1, 1, 1}, Dims{7, 5, 3}, Dims{33, 17, 65}, Dims{128, 96, 200},
                 Dims{5, 300, 2}, Dims{257, 3, 129}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (float beta : {0.0f, 1.0f, -0.75f}) {
          const float alpha = beta == 1.0f ? 0.5f : 1.0f;
          INFO("M ", d.M, " N ", d.N, " K ", d.K, " ta ", ta, " tb ", tb, " alpha ", alpha,
               " beta ", beta);
          Rng rng(++seed);
          // Stored shapes and padded row strides; padding is NaN, so a read of it shows.
          const int64_t a_rows = ta ? d.K : d.M, a_cols = ta ? d.M : d.K;
          const int64_t b_rows = tb ? d.N : d.K, b_cols = tb ? d.K : d.N;
          const int64_t lda = a_cols + 3, ldb = b_cols + 1, ldc = d.N + 5;
          std::vector<float> A(size_t(a_rows * lda), nan), B(size_t(b_rows * ldb), nan);
          std::vector<float> C(size_t(d.M * ldc), sentinel);
          for (int64_t r = 0; r < a_rows; ++r)
            for (int64_t c = 0; c < a_cols; ++c) A[size_t(r * lda + c)] = rng.uniform(-1, 1);
          for (int64_t r = 0; r < b_rows; ++r)
            for (int64_t c = 0; c < b_cols; ++c) B[size_t(r * ldb + c)] = rng.uniform(-1, 1);
          // beta == 0 must not read C: its values are NaN then.
          for (int64_t r = 0; r < d.M; ++r)
            for (int64_t c = 0; c < d.N; ++c)
              C[size_t(r * ldc + c)] = beta == 0.0f ? nan : rng.uniform(-1, 1);

          std::vector<float> want = C;
          cpu::gemm_ref(ta, tb, d.M, d.N, d.K, alpha, A.data(), lda, B.data(), ldb, beta,
                        want.data(), ldc);
          // The magnitude of each output: the same product on |A|, |B|, |C|.
          auto absv = [](std::vector<float> v) {
            for (auto& x : v) x = std::isnan(x) ? 0.0f : std::fabs(x);
            return v;
          };
          std::vector<float> mag = absv(C);
          cpu::gemm_ref(ta, tb, d.M, d.N, d.K, std::fabs(alpha), absv(A).data(), lda,
                        absv(B).data(), ldb, std::fabs(beta), mag.data(), ldc);

          Tensor Ad = Tensor::from_vector(A, {int64_t(A.size())}).to(kGpu);
          Tensor Bd = Tensor::from_vector(B, {int64_t(B.size())}).to(kGpu);
          Tensor Cd = Tensor::from_vector(C, {int64_t(C.size())}).to(kGpu);
          gpu_be().gemm(ta, tb, d.M, d.N, d.K, alpha, Ad.ptr(), lda, Bd.ptr(), ldb, beta, Cd.ptr(),
                        ldc);
          const std::vector<float> got = Cd.to_vector();
          // Any order of summing K products errs by at most ~(K + 2) float roundings of the
          // magnitude (Higham); twice that is a bound, not a guess.
          const double u = std::ldexp(1.0, -24);
          int64_t bad = 0, touched_padding = 0;
          for (int64_t r = 0; r < d.M; ++r)
            for (int64_t c = 0; c < ldc; ++c) {
              const size_t i = size_t(r * ldc + c);
              if (c >= d.N) {
                touched_padding += got[i] != sentinel;
                continue;
              }
              const double tol = 2.0 * double(d.K + 2) * u * double(mag[i]);
              if (!(std::fabs(double(got[i]) - double(want[i])) <= tol)) {
                if (bad < 3) MESSAGE("C[", r, "][", c, "]: gpu ", got[i], " vs ref ", want[i]);
                ++bad;
              }
            }
          CHECK(bad == 0);
          CHECK(touched_padding == 0);
        }
}

TEST_CASE("avgpool2d, global_avgpool and shortcut match the CPU bit for bit") {
  // The GPU adds in the CPU's order (kernels/cuda/pool.cu) with no multiplies to fuse, so the
  // results are equal, not close. Outputs start as device NaN, so a skipped element shows.
  Rng rng(21);
  for (int64_t kernel : {1, 2, 3})
    for (int64_t stride : {1, 2, 3})
      for (int64_t pad : {0, 1}) {
        if (pad * 2 > kernel) continue;
        for (Pool2dShape s : {Pool2dShape{1, 1, 5, 3, kernel, stride, pad},
                              Pool2dShape{3, 2, 7, 9, kernel, stride, pad}}) {
          INFO("avgpool N ", s.N, " C ", s.C, " H ", s.H, " W ", s.W, " kernel ", kernel,
               " stride ", stride, " pad ", pad);
          const int64_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.C * s.P() * s.Q();
          const std::vector<float> x = random_values(nx, rng), dy = random_values(ny, rng);
          std::vector<float> y(static_cast<size_t>(ny)), dx(static_cast<size_t>(nx));
          cpu_be().avgpool2d_forward(s, x.data(), y.data());
          cpu_be().avgpool2d_backward(s, dy.data(), dx.data());
          Tensor yd = Tensor::empty({ny}, DType::F32, kGpu),
                 dxd = Tensor::empty({nx}, DType::F32, kGpu);
          gpu_be().avgpool2d_forward(s, Tensor::from_vector(x, {nx}).to(kGpu).ptr(), yd.ptr());
          gpu_be().avgpool2d_backward(s, Tensor::from_vector(dy, {ny}).to(kGpu).ptr(), dxd.ptr());
          CHECK(yd.to_vector() == y);
          CHECK(dxd.to_vector() == dx);
        }
      }

  for (int64_t planes : {1, 7, 300})
    for (int64_t hw : {1, 49, 1000}) {
      INFO("global_avgpool planes ", planes, " hw ", hw);
      const std::vector<float> x = random_values(planes * hw, rng), dy = random_values(planes, rng);
      std::vector<float> y(static_cast<size_t>(planes)), dx(static_cast<size_t>(planes * hw));
      cpu_be().global_avgpool_forward(planes, hw, x.data(), y.data());
      cpu_be().global_avgpool_backward(planes, hw, dy.data(), dx.data());
      Tensor yd = Tensor::empty({planes}, DType::F32, kGpu);
      Tensor dxd = Tensor::empty({planes * hw}, DType::F32, kGpu);
      gpu_be().global_avgpool_forward(
          planes, hw, Tensor::from_vector(x, {planes * hw}).to(kGpu).ptr(), yd.ptr());
      gpu_be().global_avgpool_backward(planes, hw, Tensor::from_vector(dy, {planes}).to(kGpu).ptr(),
                                       dxd.ptr());
      CHECK(yd.to_vector() == y);
      CHECK(dxd.to_vector() == dx);
    }

  for (ShortcutShape s :
       {ShortcutShape{1, 1, 1, 1, 1, 1, 0}, ShortcutShape{2, 3, 5, 7, 3, 1, 0},
        ShortcutShape{2, 3, 5, 7, 7, 2, 2}, ShortcutShape{1, 4, 8, 8, 8, 2, 0},
        ShortcutShape{3, 4, 9, 6, 9, 3, 5}, ShortcutShape{2, 16, 32, 32, 32, 2, 8}}) {
    INFO("shortcut N ", s.N, " C ", s.C, " H ", s.H, " W ", s.W, " K ", s.K, " stride ", s.stride,
         " pad_lo ", s.pad_lo);
    const int64_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.K * s.P() * s.Q();
    const std::vector<float> x = random_values(nx, rng), dy = random_values(ny, rng);
    std::vector<float> y(static_cast<size_t>(ny)), dx(static_cast<size_t>(nx));
    cpu::shortcut_forward_ref(s, x.data(), y.data());
    cpu::shortcut_backward_ref(s, dy.data(), dx.data());
    Tensor yd = Tensor::empty({ny}, DType::F32, kGpu), dxd = Tensor::empty({nx}, DType::F32, kGpu);
    gpu_be().shortcut_forward(s, Tensor::from_vector(x, {nx}).to(kGpu).ptr(), yd.ptr());
    gpu_be().shortcut_backward(s, Tensor::from_vector(dy, {ny}).to(kGpu).ptr(), dxd.ptr());
    CHECK(yd.to_vector() == y);
    CHECK(dxd.to_vector() == dx);
  }
}

namespace {

// |got - want| <= tol[i] for every element; NaN fails.
void check_within(const std::vector<float>& got, const std::vector<float>& want,
                  const std::vector<double>& tol, const std::string& what) {
  REQUIRE_MESSAGE(got.size() == want.size(), what, ": ", got.size(), " values vs ", want.size());
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(double(got[i]) - double(want[i])) <= tol[i])) {
      if (bad < 5)
        MESSAGE(what, " [", i, "]: gpu ", got[i], " vs cpu ", want[i], " (tolerance ", tol[i], ")");
      ++bad;
    }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " of ", got.size(), " values differ");
}

Tensor on_gpu(const std::vector<float>& v) {
  return Tensor::from_vector(v, {int64_t(v.size())}).to(kGpu);
}

}  // namespace

TEST_CASE("batchnorm forward (train, eval) and backward match the CPU") {
  using S = BatchNormShape;
  const float eps = 1e-5f, momentum = 0.1f;
  uint64_t seed = 30;
  for (S s : {S{1, 1, 1}, S{1, 3, 1}, S{5, 1, 1}, S{1, 1, 7}, S{4, 5, 9}, S{2, 6, 289},
              S{64, 32, 1}, S{3, 1, 1000}, S{2, 3, 257}})
    for (bool train : {true, false})
      for (bool affine : {true, false}) {
        INFO("N ", s.N, " C ", s.C, " HW ", s.HW, " train ", train, " affine ", affine);
        Rng rng(++seed);
        const int64_t n = s.N * s.HW, total = s.N * s.C * s.HW;
        const std::vector<float> x = random_values(total, rng), dy = random_values(total, rng);
        const std::vector<float> gamma = random_values(s.C, rng), beta = random_values(s.C, rng);
        const std::vector<float> rm0 = random_values(s.C, rng);
        const std::vector<float> rv0 = random_values(s.C, rng, 0.25f, 1.25f);
        const float* g = affine ? gamma.data() : nullptr;
        const float* b = affine ? beta.data() : nullptr;

        // CPU (the fast kernels, which tests/test_kernels_norm.cpp holds to the references).
        std::vector<float> y(static_cast<size_t>(total)), mean(size_t(s.C)), invstd(size_t(s.C));
        std::vector<float> rm = rm0, rv = rv0;
        if (train)
          cpu_be().batchnorm_forward_train(s, x.data(), g, b, eps, momentum, rm.data(), rv.data(),
                                           y.data(), mean.data(), invstd.data());
        else
          cpu_be().batchnorm_forward_eval(s, x.data(), g, b, rm.data(), rv.data(), eps, y.data(),
                                          mean.data(), invstd.data());
        std::vector<float> dx(static_cast<size_t>(total)), dgamma(size_t(s.C)), dbeta(size_t(s.C));
        cpu_be().batchnorm_backward(s, train, x.data(), g, mean.data(), invstd.data(), dy.data(),
                                    dx.data(), dgamma.data(), dbeta.data());

        // GPU. Outputs start as device NaN.
        Tensor xd = on_gpu(x), dyd = on_gpu(dy), gd = on_gpu(gamma), bd = on_gpu(beta);
        Tensor rmd = on_gpu(rm0), rvd = on_gpu(rv0);
        Tensor yd = Tensor::empty({total}, DType::F32, kGpu);
        Tensor meand = Tensor::empty({s.C}, DType::F32, kGpu);
        Tensor invstdd = Tensor::empty({s.C}, DType::F32, kGpu);
        const float* gp = affine ? gd.ptr() : nullptr;
        const float* bp = affine ? bd.ptr() : nullptr;
        if (train)
          gpu_be().batchnorm_forward_train(s, xd.ptr(), gp, bp, eps, momentum, rmd.ptr(), rvd.ptr(),
                                           yd.ptr(), meand.ptr(), invstdd.ptr());
        else
          gpu_be().batchnorm_forward_eval(s, xd.ptr(), gp, bp, rmd.ptr(), rvd.ptr(), eps, yd.ptr(),
                                          meand.ptr(), invstdd.ptr());
        Tensor dxd = Tensor::empty({total}, DType::F32, kGpu);
        Tensor dgd = Tensor::empty({s.C}, DType::F32, kGpu);
        Tensor dbd = Tensor::empty({s.C}, DType::F32, kGpu);
        gpu_be().batchnorm_backward(s, train, xd.ptr(), gp, meand.ptr(), invstdd.ptr(), dyd.ptr(),
                                    dxd.ptr(), dgd.ptr(), dbd.ptr());

        // Both take the statistics and sums in double (in different orders) and round them once
        // (1e-6 of the terms' magnitudes); y and dx are a few float roundings of their terms
        // (1e-5, ~80 ulps, of the terms' magnitudes).
        std::vector<double> tol_y(static_cast<size_t>(total)), tol_dx(static_cast<size_t>(total));
        std::vector<double> tol_mean(size_t(s.C)), tol_is(size_t(s.C)), tol_rm(size_t(s.C)),
            tol_rv(size_t(s.C)), tol_dg(size_t(s.C)), tol_db(size_t(s.C));
        for (int64_t c = 0; c < s.C; ++c) {
          const double gm = affine ? std::fabs(gamma[size_t(c)]) : 1.0;
          const double bm = affine ? std::fabs(beta[size_t(c)]) : 0.0;
          const double m = mean[size_t(c)], is = invstd[size_t(c)];
          double ax = 0, ady = 0, adyx = 0;
          auto idx = [&](int64_t j) { return size_t(((j / s.HW) * s.C + c) * s.HW + j % s.HW); };
          for (int64_t j = 0; j < n; ++j) {
            const size_t i = idx(j);
            ax += std::fabs(x[i]);
            ady += std::fabs(dy[i]);
            adyx += std::fabs(dy[i] * (x[i] - m) * is);
          }
          for (int64_t j = 0; j < n; ++j) {
            const size_t i = idx(j);
            const double span = std::fabs(x[i]) + std::fabs(m);
            tol_y[i] = 1e-5 * (span * is * gm + bm);
            double terms = std::fabs(dy[i]);
            if (train) terms += (span * is * adyx + ady) / double(n);
            tol_dx[i] = 1e-5 * gm * is * terms;
          }
          tol_mean[size_t(c)] = 1e-6 * ax / double(n);
          tol_is[size_t(c)] = 1e-6 * is;
          tol_rm[size_t(c)] = 1e-6 * (std::fabs(rm0[size_t(c)]) + ax / double(n));
          tol_rv[size_t(c)] = 1e-6 * (std::fabs(rv0[size_t(c)]) + std::fabs(rv[size_t(c)]));
          tol_dg[size_t(c)] = 1e-6 * adyx;
          tol_db[size_t(c)] = 1e-6 * ady;
        }
        check_within(yd.to_vector(), y, tol_y, "y");
        check_within(meand.to_vector(), mean, tol_mean, "save_mean");
        check_within(invstdd.to_vector(), invstd, tol_is, "save_invstd");
        check_within(rmd.to_vector(), rm, tol_rm, "running_mean");
        check_within(rvd.to_vector(), rv, tol_rv, "running_var");
        check_within(dxd.to_vector(), dx, tol_dx, "dx");
        check_within(dgd.to_vector(), dgamma, tol_dg, "dgamma");
        check_within(dbd.to_vector(), dbeta, tol_db, "dbeta");

        // Null running statistics (train) and any subset of the gradients: the same values
        // (the GPU is deterministic), the outputs not asked for untouched.
        if (train) {
          Tensor y2 = Tensor::empty({total}, DType::F32, kGpu);
          Tensor m2 = Tensor::empty({s.C}, DType::F32, kGpu);
          Tensor i2 = Tensor::empty({s.C}, DType::F32, kGpu);
          gpu_be().batchnorm_forward_train(s, xd.ptr(), gp, bp, eps, momentum, nullptr, nullptr,
                                           y2.ptr(), m2.ptr(), i2.ptr());
          CHECK(y2.to_vector() == yd.to_vector());
          CHECK(m2.to_vector() == meand.to_vector());
          CHECK(i2.to_vector() == invstdd.to_vector());
        }
        for (int mask = 0; mask < 7; ++mask) {  // 7 = all three, done above
          INFO("backward outputs mask ", mask);
          Tensor dx2 = Tensor::full({total}, 7.0f, kGpu);
          Tensor dg2 = Tensor::full({s.C}, 7.0f, kGpu), db2 = Tensor::full({s.C}, 7.0f, kGpu);
          gpu_be().batchnorm_backward(s, train, xd.ptr(), gp, meand.ptr(), invstdd.ptr(), dyd.ptr(),
                                      mask & 1 ? dx2.ptr() : nullptr,
                                      mask & 2 ? dg2.ptr() : nullptr,
                                      mask & 4 ? db2.ptr() : nullptr);
          const std::vector<float> sevens_x(size_t(total), 7.0f), sevens_c(size_t(s.C), 7.0f);
          CHECK(dx2.to_vector() == (mask & 1 ? dxd.to_vector() : sevens_x));
          CHECK(dg2.to_vector() == (mask & 2 ? dgd.to_vector() : sevens_c));
          CHECK(db2.to_vector() == (mask & 4 ? dbd.to_vector() : sevens_c));
        }
      }
}

namespace {

// Host bytes on the GPU and back (device_alloc / copies of runtime.cuh), freed at scope exit.
template <typename T>
struct DeviceArray {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceArray(size_t count) : n(count) {
    p = static_cast<T*>(cuda::device_alloc(std::max<size_t>(1, n) * sizeof(T)));
  }
  explicit DeviceArray(const std::vector<T>& h) : DeviceArray(h.size()) {
    cuda::copy_from_host(p, h.data(), n * sizeof(T));
  }
  ~DeviceArray() { cuda::device_free(p, std::max<size_t>(1, n) * sizeof(T)); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    cuda::copy_to_host(h.data(), p, n * sizeof(T));
    return h;
  }
};

// Each output against the CPU epilogue of the same exact sums: an ulp or so of its terms
// (a_scale x w_scale x sum and the bias; the sum of the two may cancel to ~0).
void check_epilogue(const std::vector<float>& got, const std::vector<float>& want,
                    const std::vector<int32_t>& sums, int64_t channel_stride, int64_t channels,
                    float a_scale, const std::vector<float>& w_scales, const float* bias) {
  REQUIRE(got.size() == want.size());
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const int64_t c = (int64_t(i) / channel_stride) % channels;
    const double terms = std::fabs(double(a_scale) * w_scales[size_t(c)] * sums[i]) +
                         (bias ? std::fabs(bias[c]) : 0.0);
    worst = std::max(worst, std::fabs(double(got[i]) - want[i]) / (1e-6 + terms));
  }
  CHECK(worst < 1e-6);
}

}  // namespace

TEST_CASE("int8 inference kernels: codes bit for bit, sums exact, the CPU's epilogue") {
  Rng rng(31);
  // quantize_activations: half-way points, their neighbours, specials, an odd length.
  const cpu::ActivationQuant a = cpu::activation_quant_from_range(-1.3f, 2.9f);
  std::vector<float> x(1001);
  for (size_t i = 0; i < x.size(); ++i) {
    const float half = (float(int(i % 300) - 100) + 0.5f) * a.scale;
    x[i] = i % 3 == 0 ? half : i % 3 == 1 ? std::nextafter(half, 1e9f) : rng.uniform(-3.0f, 4.0f);
  }
  x[7] = std::nanf("");
  x[8] = INFINITY;
  x[9] = -INFINITY;
  std::vector<uint8_t> want_q(x.size());
  cpu::quantize_activations_ref(x.data(), int64_t(x.size()), a, want_q.data());
  DeviceArray<float> xd(x);
  DeviceArray<uint8_t> qd(x.size());
  cuda::quantize_activations(int64_t(x.size()), xd.p, a.scale, a.zero, qd.p);
  CHECK(qd.get() == want_q);

  // linear_u8s8_dequantize: K not a multiple of 4 or of 64, one row, one column, several tiles.
  struct LinearCase {
    int64_t M, N, K;
    int32_t zero;
  };
  for (LinearCase c : {LinearCase{1, 1, 1, 0}, LinearCase{1, 10, 7, 255}, LinearCase{5, 17, 33, 7},
                       LinearCase{37, 40, 130, 128}, LinearCase{64, 33, 784, 64}}) {
    CAPTURE(c.M);
    CAPTURE(c.N);
    CAPTURE(c.K);
    std::vector<uint8_t> A(size_t(c.M * c.K));  // (M, K)
    std::vector<int8_t> W(size_t(c.N * c.K));   // (N, K)
    for (auto& v : A) v = uint8_t(rng.uniform(0.0f, 255.99f));
    for (auto& v : W) v = int8_t(int(rng.uniform(-127.99f, 127.99f)));
    A[0] = 255;
    W[0] = -127;
    std::vector<int32_t> sums(size_t(c.M * c.N)), row_sums(size_t(c.N), 0);  // (M, N), (N)
    cpu::gemm_u8s8_ref(c.M, c.N, c.K, A.data(), c.K, c.zero, W.data(), c.K, sums.data(), c.N);
    for (int64_t n = 0; n < c.N; ++n)
      for (int64_t k = 0; k < c.K; ++k) row_sums[size_t(n)] += W[size_t(n * c.K + k)];
    std::vector<float> w_scales(size_t(c.N)), bias(size_t(c.N));  // (N)
    for (int64_t n = 0; n < c.N; ++n) {
      w_scales[size_t(n)] = 1e-3f * float(n % 5 + 1);
      bias[size_t(n)] = 0.2f - 0.03f * float(n % 13);
    }
    DeviceArray<uint8_t> Ad(A);
    DeviceArray<int32_t> words(cuda::int8_weight_words(W.data(), c.N, c.K)), rs(row_sums);
    DeviceArray<float> scales_d(w_scales), bias_d(bias);
    for (bool relu : {false, true}) {
      const float* b = relu ? bias.data() : nullptr;
      std::vector<float> want(sums.size());  // (M, N)
      cpu::dequantize_bias_relu(c.M, c.N, sums.data(), c.N, 0.01f, w_scales.data(), b, relu,
                                want.data(), c.N);
      DeviceArray<float> yd(want.size());
      cuda::linear_u8s8_dequantize(c.M, c.N, c.K, Ad.p, c.zero, words.p, rs.p, 0.01f, scales_d.p,
                                   relu ? bias_d.p : nullptr, relu, yd.p);
      check_epilogue(yd.get(), want, sums, 1, c.N, 0.01f, w_scales, b);
    }
  }

  // conv2d_u8s8_dequantize: strides, padding (reads as the zero point), dilation, 1x1, 5x5.
  const Conv2dShape shapes[] = {{2, 3, 7, 9, 5, 3, 3, 1, 1, 1},
                                {2, 3, 9, 7, 17, 3, 3, 2, 1, 1},
                                {2, 2, 13, 11, 3, 3, 3, 1, 2, 2},
                                {1, 33, 6, 5, 17, 1, 1, 1, 0, 1},
                                {2, 3, 7, 7, 2, 5, 5, 3, 2, 1}};
  for (const Conv2dShape& s : shapes) {
    CAPTURE(s.C);
    CAPTURE(s.K);
    CAPTURE(s.stride);
    std::vector<uint8_t> xq(size_t(s.N * s.C * s.H * s.W));  // (N, C, H, W)
    std::vector<int8_t> w(size_t(s.K * s.C * s.R * s.S));    // (K, C, R, S)
    for (auto& v : xq) v = uint8_t(rng.uniform(0.0f, 255.99f));
    for (auto& v : w) v = int8_t(int(rng.uniform(-127.99f, 127.99f)));
    const int64_t PQ = s.P() * s.Q();
    std::vector<float> w_scales(size_t(s.K)), bias(size_t(s.K));  // (K)
    for (int64_t k = 0; k < s.K; ++k) {
      w_scales[size_t(k)] = 2e-3f * float(k % 3 + 1);
      bias[size_t(k)] = 0.1f * float(k % 4) - 0.15f;
    }
    DeviceArray<uint8_t> xd8(xq);
    DeviceArray<int8_t> wd(w);
    DeviceArray<float> scales_d(w_scales), bias_d(bias);
    for (int32_t zero : {0, 9, 255}) {
      std::vector<int32_t> sums(size_t(s.N * s.K * PQ));  // (N, K, P, Q)
      cpu::conv2d_u8s8_ref(s, xq.data(), zero, w.data(), sums.data());
      std::vector<float> want(sums.size());
      cpu::dequantize_channels_bias_relu(s.N, s.K, PQ, sums.data(), 0.02f, w_scales.data(),
                                         bias.data(), true, want.data());
      DeviceArray<float> yd(want.size());
      cuda::conv2d_u8s8_dequantize(s, xd8.p, zero, wd.p, 0.02f, scales_d.p, bias_d.p, true, yd.p);
      check_epilogue(yd.get(), want, sums, PQ, s.K, 0.02f, w_scales, bias.data());
    }
  }
  CHECK_THROWS_AS(cuda::linear_u8s8_dequantize(1, 1, 1, nullptr, 256, nullptr, nullptr, 1.0f,
                                               nullptr, nullptr, false, nullptr),
                  Error);
}
