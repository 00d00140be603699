// sprig bench conv: times cpu::conv2d_forward and cpu::conv2d_backward (dx, dw and db) on one
// random batch and prints the median milliseconds and GFLOP/s of each. The defaults are the
// 3x3 convolutions of ResNet-20's first stage on Fashion-MNIST at batch 128.
// With --sparsity S it instead zeroes exactly that fraction of the weights (random positions)
// and times the dense forward against cpu::csr_conv2d on the same weights, interleaved in
// rounds, and prints both medians and their ratio.
// With --int8 it times the float forward against the two int8 convolutions an int8 layer can
// run (each with its input quantised and its output dequantised with the bias, as the int8
// executor runs them): im2col + gemm_u8s8, and the direct kernel where the CPU suits it.
// With --direct it times the float forward's kernels against each other, interleaved in rounds:
// im2col + gemm, the direct kernel (conv_direct.cpp) and, for 3x3 at stride 1, Winograd
// (conv_winograd.cpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "engine/rng.h"
#include "infer/pack.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/conv_int8.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/sparse.h"
#include "kernels/cpu/threads.h"
#include "kernels/error.h"

namespace sprig::app {

namespace {

struct BenchConvArgs {
  Conv2dShape s{128, 16, 28, 28, 16, 3, 3, 1, 1, 1};
  int threads = 0, repeats = 10, rounds = 5;
  double sparsity = -1;  // < 0: dense forward and backward; else dense vs sparse forward
  bool lanes = false;    // with sparsity: the sparse conv from and to sample lanes
  bool int8 = false;     // float forward vs the int8 convolutions
  bool direct = false;   // float forward: im2col + gemm vs direct (vs Winograd)
  bool json = false;
};

// The fields both modes report: kernel, shape, threads and repeats.
nlohmann::json shape_json(const BenchConvArgs& a, const char* kernel) {
  const Conv2dShape& s = a.s;
  return {{"kernel", kernel},
          {"n", s.N},
          {"c", s.C},
          {"h", s.H},
          {"w", s.W},
          {"k", s.K},
          {"r", s.R},
          {"stride", s.stride},
          {"pad", s.pad},
          {"threads", cpu::num_threads()},
          {"repeats", a.repeats}};
}

// "conv2d N=128 C=16 28x28 K=16 3x3 stride 1 pad 1"
std::string shape_text(const Conv2dShape& s) {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "conv2d N=%lld C=%lld %lldx%lld K=%lld %lldx%lld stride %lld pad %lld",
                (long long)s.N, (long long)s.C, (long long)s.H, (long long)s.W, (long long)s.K,
                (long long)s.R, (long long)s.S, (long long)s.stride, (long long)s.pad);
  return buf;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Two kernels timed in `rounds` alternating medians of `repeats` runs: the median round of each,
// and the median and range of the per-round ratio a_ms / b_ms.
struct AbRounds {
  double a_ms, b_ms, ratio, ratio_min, ratio_max;
};
AbRounds ab_rounds(const BenchConvArgs& args, const std::function<void()>& a,
                   const std::function<void()>& b) {
  std::vector<double> a_ms, b_ms, ratio;
  for (int r = 0; r < args.rounds; r++) {
    a_ms.push_back(infer::time_median_ms(a, args.repeats));
    b_ms.push_back(infer::time_median_ms(b, args.repeats));
    ratio.push_back(a_ms.back() / b_ms.back());
  }
  auto [lo, hi] = std::minmax_element(ratio.begin(), ratio.end());
  return {median_of(a_ms), median_of(b_ms), median_of(ratio), *lo, *hi};
}

double max_abs_diff(const std::vector<float>& u, const std::vector<float>& v) {
  double d = 0;
  for (size_t i = 0; i < u.size(); i++) d = std::max(d, double(std::fabs(u[i] - v[i])));
  return d;
}

// w packed once for the kernel conv2d_forward runs under `how` (Auto: the one it picks), as a
// packed model holds it (PackedLayer::conv_packed_w), not on every call as training's forward
// does; empty (so null) for im2col + gemm, which reads w as it is.
std::vector<float> packed_weights(const Conv2dShape& s, const std::vector<float>& w,
                                  cpu::ConvForward how = cpu::ConvForward::Auto) {
  const cpu::ConvForward kernel = cpu::conv2d_forward_kernel(s, how);
  std::vector<float> wp(size_t(cpu::conv2d_packed_size(s, kernel)));
  if (!wp.empty()) cpu::conv2d_forward_pack(s, kernel, w.data(), wp.data());
  return wp;
}

// Dense conv2d_forward against csr_conv2d on the same weights with exactly a.sparsity of them
// zeroed: `rounds` alternating medians of `repeats` runs each; the median round is reported.
int run_bench_sparse_conv(const BenchConvArgs& a) {
  const Conv2dShape& s = a.s;
  const int64_t CRS = s.C * s.R * s.S;
  std::vector<float> x(s.N * s.C * s.H * s.W), w(s.K * CRS), b(s.K);  // (N,C,H,W), (K,CRS), (K)
  std::vector<float> yd(s.N * s.K * s.P() * s.Q()), ys(yd.size());    // (N,K,P,Q)
  Rng rng(1);
  for (auto* v : {&x, &w, &b})
    for (float& e : *v) e = rng.uniform(-1.0f, 1.0f);
  for (float& e : w)
    if (e == 0.0f) e = 0.5f;  // a kept weight is never 0, so the sparsity is exact
  zero_random_units(s.K * CRS, a.sparsity, rng, [&](int64_t i) { w[size_t(i)] = 0.0f; });
  const cpu::CsrMatrix csr = cpu::csr_from_dense(s.K, CRS, w.data());
  // --lanes: x and y in sample lanes (as consecutive sparse convs hand them to each other).
  const cpu::LanesShape xa{s.N, s.C, s.H, s.W, s.pad}, ya{s.N, s.K, s.P(), s.Q(), s.pad};
  Tensor xl, yl;
  if (a.lanes) {
    SPRIG_CHECK(cpu::csr_conv2d_lanes_fit(csr, s),
                "bench conv --lanes: this shape and sparsity do not run 16 samples to a vector");
    xl = Tensor::empty({xa.floats()});
    yl = Tensor::empty({ya.floats()});
    cpu::to_lanes(xa, x.data(), xl.data());
  }
  const std::vector<float> wp = packed_weights(s, w);
  const AbRounds t = ab_rounds(
      a,
      [&] {
        cpu::conv2d_forward(s, x.data(), w.data(), b.data(), yd.data(), false,
                            cpu::ConvForward::Auto, wp.empty() ? nullptr : wp.data());
      },
      [&] {
        if (a.lanes)
          cpu::csr_conv2d_lanes(csr, s, xl.data(), s.pad, b.data(), yl.data(), s.pad, false);
        else
          cpu::csr_conv2d(csr, s, x.data(), b.data(), ys.data());
      });
  if (a.lanes) cpu::from_lanes(ya, yl.data(), ys.data());
  const double max_diff = max_abs_diff(yd, ys);
  if (a.json) {
    nlohmann::json j = shape_json(a, "csr_conv2d");
    j.update({{"sparsity", a.sparsity},
              {"lanes", a.lanes},
              {"nnz", csr.nnz()},
              {"rounds", a.rounds},
              {"dense_ms", t.a_ms},
              {"sparse_ms", t.b_ms},
              {"speedup", t.ratio},
              {"speedup_min", t.ratio_min},
              {"speedup_max", t.ratio_max},
              {"max_abs_diff", max_diff}});
    print_json_line(j);
  } else {
    std::printf(
        "%s, %.1f%% zeros, %d threads: dense %.4f ms, csr%s %.4f ms, speed-up %.2fx (rounds "
        "%.2f-%.2f), max |diff| %.2g\n",
        shape_text(s).c_str(), 100 * a.sparsity, cpu::num_threads(), t.a_ms,
        a.lanes ? " (sample lanes in and out)" : "", t.b_ms, t.ratio, t.ratio_min, t.ratio_max,
        max_diff);
  }
  return 0;
}

// Float conv2d_forward against the int8 layer's two kernels on the same weights, quantised
// (per-channel int8 weights, the input's range as its uint8 range), `rounds` interleaved rounds.
int run_bench_int8_conv(const BenchConvArgs& a) {
  const Conv2dShape& s = a.s;
  const int64_t CRS = s.C * s.R * s.S, PQ = s.P() * s.Q();
  std::vector<float> x(s.N * s.C * s.H * s.W), w(s.K * CRS), b(s.K);  // (N,C,H,W), (K,CRS), (K)
  Rng rng(1);
  for (auto* v : {&x, &w, &b})
    for (float& e : *v) e = rng.uniform(-1.0f, 1.0f);
  std::vector<int8_t> wq(w.size());  // (K, CRS)
  std::vector<float> scales(s.K);    // (K)
  cpu::quantize_weights_per_channel(w.data(), s.K, CRS, wq.data(), scales.data());
  const cpu::ActivationQuant aq = cpu::activation_quant_from_range(-1.0f, 1.0f);
  const cpu::PackedInt8Weights gemm_w = cpu::pack_int8_weights(wq.data(), s.K, CRS, CRS);
  const bool direct = cpu::conv2d_u8s8_direct_suits(s);
  cpu::DirectConvInt8Weights direct_w;
  if (direct) direct_w = cpu::pack_conv_int8_direct(wq.data(), s.K, s.C, s.R, s.S);
  std::vector<uint8_t> xq(x.size());                                  // (N, C, H, W)
  std::vector<int32_t> acc(s.N * s.K * PQ);                           // (N, K, P, Q)
  std::vector<float> yf(acc.size()), yi(acc.size()), yd(acc.size());  // (N, K, P, Q)
  auto im2col = [&] {
    cpu::quantize_activations(x.data(), int64_t(x.size()), aq, xq.data());
    cpu::conv2d_u8s8(s, xq.data(), aq.zero, gemm_w, acc.data());
    cpu::dequantize_channels_bias_relu(s.N, s.K, PQ, acc.data(), aq.scale, scales.data(), b.data(),
                                       false, yi.data());
  };
  auto direct_run = [&] {
    cpu::quantize_activations(x.data(), int64_t(x.size()), aq, xq.data());
    cpu::conv2d_u8s8_direct_dequantize(s, xq.data(), aq.zero, direct_w, aq.scale, scales.data(),
                                       b.data(), false, yd.data());
  };
  const std::vector<float> wp = packed_weights(s, w);
  auto float_run = [&] {
    cpu::conv2d_forward(s, x.data(), w.data(), b.data(), yf.data(), false, cpu::ConvForward::Auto,
                        wp.empty() ? nullptr : wp.data());
  };
  std::vector<double> float_ms, im2col_ms, direct_ms;
  for (int r = 0; r < a.rounds; r++) {
    float_ms.push_back(infer::time_median_ms(float_run, a.repeats));
    im2col_ms.push_back(infer::time_median_ms(im2col, a.repeats));
    if (direct) direct_ms.push_back(infer::time_median_ms(direct_run, a.repeats));
  }
  // The two int8 kernels compute the same sums; the float result differs by quantisation.
  double max_diff = 0;
  for (size_t i = 0; direct && i < yi.size(); i++)
    max_diff = std::max(max_diff, double(std::fabs(yi[i] - yd[i])));
  const double fms = median_of(float_ms), ims = median_of(im2col_ms);
  const double dms = direct ? median_of(direct_ms) : 0.0;
  if (a.json) {
    nlohmann::json j = shape_json(a, "conv2d_u8s8");
    j.update({{"rounds", a.rounds},
              {"float_ms", fms},
              {"int8_im2col_ms", ims},
              {"float_over_im2col", fms / ims},
              {"direct", direct},
              {"max_abs_diff_direct_im2col", max_diff}});
    if (direct) j.update({{"int8_direct_ms", dms}, {"float_over_direct", fms / dms}});
    print_json_line(j);
  } else {
    std::printf("%s, %d threads: float %.4f ms, int8 im2col %.4f ms (%.2fx)", shape_text(s).c_str(),
                cpu::num_threads(), fms, ims, fms / ims);
    if (direct)
      std::printf(", int8 direct %.4f ms (%.2fx), max |direct - im2col| %.2g\n", dms, fms / dms,
                  max_diff);
    else
      std::printf(", int8 direct does not suit this CPU or shape\n");
  }
  return 0;
}

// The float forward's kernels against each other, interleaved in `rounds` rounds: im2col + gemm,
// and the direct and Winograd kernels where they can run the shape, each on its weights packed
// once. Speed-ups and differences are against im2col + gemm.
int run_bench_direct_conv(const BenchConvArgs& a) {
  const Conv2dShape& s = a.s;
  SPRIG_CHECK(cpu::conv2d_direct_suits(s), "bench conv --direct: the direct kernel cannot run ",
              shape_text(s), " (a 1x1 kernel is a plain gemm; and it needs AVX2 or AVX-512)");
  std::vector<float> x(s.N * s.C * s.H * s.W), w(s.K * s.C * s.R * s.S), b(s.K);  // (N,C,H,W)...
  Rng rng(1);
  for (auto* v : {&x, &w, &b})
    for (float& e : *v) e = rng.uniform(-1.0f, 1.0f);
  // JSON keys: im2col_ms; direct_ms, speedup...; winograd_ms, winograd_speedup...
  struct Kernel {
    const char* name;
    cpu::ConvForward how;
    const char* ms_key;        // "<key>_ms"
    const char* ratio_key;     // prefix of its speedup* and max_abs_diff (none for im2col)
    std::vector<float> wp, y;  // packed weights, (N, K, P, Q)
    std::vector<double> ms, ratio;
  };
  std::vector<Kernel> ks;
  ks.push_back({"im2col+gemm", cpu::ConvForward::Im2colGemm, "im2col", nullptr, {}, {}, {}, {}});
  ks.push_back({"direct", cpu::ConvForward::Direct, "direct", "", {}, {}, {}, {}});
  if (cpu::conv2d_winograd_suits(s))
    ks.push_back({"winograd", cpu::ConvForward::Winograd, "winograd", "winograd_", {}, {}, {}, {}});
  for (Kernel& k : ks) {
    k.wp = packed_weights(s, w, k.how);
    k.y.resize(size_t(s.N * s.K * s.P() * s.Q()));
  }
  for (int r = 0; r < a.rounds; r++)
    for (Kernel& k : ks) {
      k.ms.push_back(infer::time_median_ms(
          [&] {
            cpu::conv2d_forward(s, x.data(), w.data(), b.data(), k.y.data(), false, k.how,
                                k.wp.empty() ? nullptr : k.wp.data());
          },
          a.repeats));
      k.ratio.push_back(ks[0].ms.back() / k.ms.back());
    }
  const double gflop = 2e-9 * double(s.N) * s.K * s.C * s.R * s.S * s.P() * s.Q();
  nlohmann::json j = shape_json(a, "conv2d_direct");
  j["rounds"] = a.rounds;
  if (!a.json)
    std::printf("%s, %d threads, %d rounds:\n", shape_text(s).c_str(), cpu::num_threads(),
                a.rounds);
  for (Kernel& k : ks) {
    const double ms = median_of(k.ms), diff = max_abs_diff(ks[0].y, k.y);
    auto [lo, hi] = std::minmax_element(k.ratio.begin(), k.ratio.end());
    j[std::string(k.ms_key) + "_ms"] = ms;
    const std::string pre = k.ratio_key ? k.ratio_key : "";
    if (k.ratio_key)
      j.update({{pre + "speedup", median_of(k.ratio)},
                {pre + "speedup_min", *lo},
                {pre + "speedup_max", *hi},
                {pre + "max_abs_diff", diff}});
    if (!a.json)
      std::printf(
          "  %-12s %.4f ms (%.1f GFLOP/s as direct multiply-adds), speed-up %.2fx (rounds "
          "%.2f-%.2f), max |diff| %.2g\n",
          k.name, ms, gflop / (ms * 1e-3), median_of(k.ratio), *lo, *hi, diff);
  }
  if (a.json) print_json_line(j);
  return 0;
}

int run_bench_conv(BenchConvArgs a) {
  Conv2dShape& s = a.s;
  s.S = s.R;
  SPRIG_CHECK(s.P() > 0 && s.Q() > 0, "bench conv: a ", s.R, "x", s.S, " kernel with stride ",
              s.stride, " and padding ", s.pad, " leaves no output of a ", s.H, "x", s.W, " input");
  // x, dy, dx are the big buffers; stay well under 1 GiB.
  SPRIG_CHECK(s.N * std::max(s.C * s.H * s.W, s.K * s.P() * s.Q()) <= (int64_t(1) << 26),
              "bench conv: the batch is too big (more than 2^26 floats per activation)");
  use_threads(a.threads);
  SPRIG_CHECK(int(a.int8) + int(a.direct) + int(a.sparsity >= 0) <= 1,
              "bench conv: --int8, --direct and --sparsity are separate modes");
  SPRIG_CHECK(!a.lanes || a.sparsity >= 0, "bench conv: --lanes needs --sparsity");
  if (a.sparsity >= 0) return run_bench_sparse_conv(a);
  if (a.direct) return run_bench_direct_conv(a);
  if (a.int8) return run_bench_int8_conv(a);

  std::vector<float> x(s.N * s.C * s.H * s.W), w(s.K * s.C * s.R * s.S), b(s.K);  // (N,C,H,W)...
  std::vector<float> y(s.N * s.K * s.P() * s.Q()), dy(y.size());                  // (N,K,P,Q)
  std::vector<float> dx(x.size()), dw(w.size()), db(s.K);
  Rng rng(1);
  for (auto* v : {&x, &w, &b, &dy})
    for (float& e : *v) e = rng.uniform(-1.0f, 1.0f);
  double fwd_ms = infer::time_median_ms(
      [&] { cpu::conv2d_forward(s, x.data(), w.data(), b.data(), y.data()); }, a.repeats);
  double bwd_ms = infer::time_median_ms(
      [&] {
        cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
      },
      a.repeats);
  // Multiply-adds of one product; backward does two (dx and dw).
  const double macs = double(s.N) * s.K * s.C * s.R * s.S * s.P() * s.Q();
  const double fwd_gflops = 2 * macs / (fwd_ms * 1e-3) * 1e-9;
  const double bwd_gflops = 4 * macs / (bwd_ms * 1e-3) * 1e-9;
  if (a.json) {
    nlohmann::json j = shape_json(a, "conv2d");
    j.update({{"forward_ms", fwd_ms},
              {"backward_ms", bwd_ms},
              {"forward_gflops", fwd_gflops},
              {"backward_gflops", bwd_gflops}});
    print_json_line(j);
  } else {
    std::printf(
        "%s, %d threads: forward %.3f ms (%.1f GFLOP/s), backward %.3f ms (%.1f GFLOP/s), "
        "medians of %d\n",
        shape_text(s).c_str(), cpu::num_threads(), fwd_ms, fwd_gflops, bwd_ms, bwd_gflops,
        a.repeats);
  }
  return 0;
}

}  // namespace

Command add_bench_conv_command(CLI::App& app) {
  auto a = std::make_shared<BenchConvArgs>();
  auto dim = IntRange(int64_t(1), int64_t(1) << 16);
  app.add_option("--n", a->s.N, "batch size")->check(dim)->capture_default_str();
  app.add_option("--c", a->s.C, "input channels")->check(dim)->capture_default_str();
  app.add_option("--h", a->s.H, "input height")->check(dim)->capture_default_str();
  app.add_option("--w", a->s.W, "input width")->check(dim)->capture_default_str();
  app.add_option("--k", a->s.K, "output channels")->check(dim)->capture_default_str();
  app.add_option("--r", a->s.R, "kernel size (square)")
      ->check(IntRange(1, 31))
      ->capture_default_str();
  app.add_option("--stride", a->s.stride)->check(IntRange(1, 31))->capture_default_str();
  app.add_option("--pad", a->s.pad)->check(IntRange(0, 31))->capture_default_str();
  app.add_option("--threads", a->threads, "OpenMP threads (0: OpenMP's default)")
      ->check(IntRange(0, 1024))
      ->capture_default_str();
  app.add_option("--repeats", a->repeats, "timed runs after the warm-up; the median is reported")
      ->check(IntRange(1, 100000))
      ->capture_default_str();
  app.add_option("--sparsity", a->sparsity,
                 "time the dense forward against csr_conv2d with this fraction of weights zeroed")
      ->check(CLI::Range(0.0, 1.0));
  app.add_flag("--lanes", a->lanes,
               "with --sparsity: csr_conv2d takes and gives its activations in sample lanes");
  app.add_flag("--int8", a->int8,
               "time the float forward against the int8 convolutions (im2col + gemm, direct)");
  app.add_flag("--direct", a->direct,
               "time the float forward's im2col + gemm against its direct kernel and, for 3x3 at "
               "stride 1, Winograd");
  app.add_option("--rounds", a->rounds, "with --sparsity, --int8 or --direct: alternating rounds")
      ->check(IntRange(1, 1000))
      ->capture_default_str();
  app.add_flag("--json", a->json, "print one JSON object (shape, threads, ms and GFLOP/s)");
  return [a] { return run_bench_conv(*a); };
}

}  // namespace sprig::app
