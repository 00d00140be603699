// Devices in every build (CPU-only and CUDA, with or without a GPU):
//   - without a usable GPU, asking for CUDA memory (Tensor::empty/zeros, Tensor::to,
//     Model::to, backend_for) throws sprig::Error whose message carries cuda_available's reason
//   - parse_device accepts cpu, cuda, cuda:N and names anything else
//   - CPU-side invariants of the device API: to(cpu) on a CPU tensor is the same storage,
//     copy_/clone/item/to_vector, ptr() == data() on the CPU, data() on the wrong dtype throws
//   - the CPU Backend's fill_scaled, mask_zero, count_nonzero, labels_in_range, all_finite, sum
//     and copies against plain loops
// The CUDA side of the same API is tested by tests/test_cuda_ops.cpp on a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "nn/model.h"

using namespace sprig;

namespace {

// The message of the sprig::Error that f throws; fails the test when it throws nothing.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("threw a non-sprig exception: ", e.what());
    return "";
  }
  FAIL("expected a sprig::Error, nothing was thrown");
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::vector<float> random_values(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(-2.0f, 2.0f);
  return v;
}

}  // namespace

TEST_SUITE("device without a GPU") {
  TEST_CASE("CUDA tensors throw an error that says why CUDA is unavailable") {
    std::string why;
    if (cuda_available(&why)) {
      // A machine with a GPU: the same calls must work, and round-trip the values.
      Tensor h = Tensor::from_vector({1.0f, -2.0f, 3.5f}, {3});
      Tensor d = h.to(Device::cuda());
      CHECK(d.device() == Device::cuda());
      CHECK(d.to_vector() == h.to_vector());
      CHECK(Tensor::zeros({4}, DType::F32, Device::cuda()).to_vector() ==
            std::vector<float>(4, 0.0f));
      return;
    }
    REQUIRE_FALSE(why.empty());
    MESSAGE("CUDA unavailable: ", why);

    const std::string e1 = error_of([] { Tensor::empty({2, 3}, DType::F32, Device::cuda()); });
    CHECK_MESSAGE(contains(e1, why), e1);
    const std::string e2 = error_of([] { Tensor::zeros({5}, DType::I32, Device::cuda()); });
    CHECK_MESSAGE(contains(e2, why), e2);
    const std::string e3 = error_of([] { Tensor::full({5}, 1.0f, Device::cuda(1)); });
    CHECK_MESSAGE(contains(e3, why), e3);
    const std::string e4 = error_of([] { Tensor::ones({2}).to(Device::cuda()); });
    CHECK_MESSAGE(contains(e4, why), e4);
    const std::string e5 = error_of([] { backend_for(Device::cuda()); });
    CHECK_MESSAGE(contains(e5, why), e5);
    // The reason is specific: a CPU-only build says how it was built, a CUDA build names
    // what the driver said (no device, no driver).
#ifdef SPRIG_HAVE_CUDA
    CHECK_FALSE(contains(why, "SPRIG_CUDA=OFF"));
#endif
    // The CPU is untouched by the failures.
    CHECK(Tensor::ones({3}).to_vector() == std::vector<float>(3, 1.0f));
  }

  TEST_CASE("Model::to(cuda) throws cleanly and leaves a usable CPU model") {
    std::string why;
    if (cuda_available(&why)) return;  // covered by tests/test_cuda_train.cpp
    nn::Model model = nn::build_model("mlp", {1, 28, 28}, 0);
    const std::vector<float> before = model.parameters().front()->value.to_vector();
    const std::string e = error_of([&] { model.to(Device::cuda()); });
    CHECK_MESSAGE(contains(e, why), e);
    // The first parameter failed to move, so nothing moved: the model still runs on the CPU.
    CHECK(model.device() == Device::cpu());
    for (auto& p : model.parameters()) CHECK(p->device() == Device::cpu());
    CHECK(model.parameters().front()->value.to_vector() == before);
    Rng rng(1);
    Tensor y = model.forward(Tensor::uniform({2, 1, 28, 28}, 0.0f, 1.0f, rng));
    CHECK(y.shape() == Shape{2, 10});
    CHECK(y.device() == Device::cpu());
  }
}

TEST_CASE("parse_device accepts cpu, cuda and cuda:N and names anything else") {
  CHECK(parse_device("cpu") == Device::cpu());
  CHECK(parse_device("cuda") == Device::cuda(0));
  CHECK(parse_device("cuda:0") == Device::cuda(0));
  CHECK(parse_device("cuda:3") == Device::cuda(3));
  CHECK(parse_device("cuda:3").index == 3);
  CHECK(parse_device("cuda:3").str() == "cuda:3");
  CHECK(Device::cpu().str() == "cpu");
  CHECK(Device::cuda() != Device::cuda(1));
  CHECK(Device::cpu() != Device::cuda());
  for (const char* bad : {"", "gpu", "CPU", "cuda:", "cuda:-1", "cuda:x", "cuda:1x", "cuda0",
                          " cpu", "cuda:1 ", "tpu:0", "cuda:+1", "cuda: 1", "cuda:0x1"}) {
    const std::string e = error_of([&] { parse_device(bad); });
    CHECK_MESSAGE(contains(e, "'" + std::string(bad) + "'"), e);
    CHECK_MESSAGE(contains(e, "cuda:N"), e);  // says what is accepted
  }
  // An index past int (or any plausible GPU count) is refused, never wrapped to cuda:0.
  CHECK(parse_device("cuda:1023") == Device::cuda(1023));
  for (const char* big : {"cuda:1024", "cuda:4294967296", "cuda:99999999999999999999999"}) {
    const std::string e = error_of([&] { parse_device(big); });
    CHECK_MESSAGE(contains(e, "'" + std::string(big) + "'"), e);
    CHECK_MESSAGE(contains(e, "out of range"), e);
  }
}

TEST_SUITE("device API on the CPU") {
  TEST_CASE(
      "CPU tensors of 2 MiB or more start on a huge-page boundary, smaller ones on 64 bytes") {
    // The allocator asks for huge pages from 2 MiB (engine/backend_cpu.cpp); a block that is
    // not aligned to one could not be backed by them.
    for (int64_t n : {int64_t(1) << 19, (int64_t(1) << 19) + 3, int64_t(3) << 20}) {
      Tensor t = Tensor::empty({n});  // n floats: 2 MiB, just over, 12 MiB
      CHECK(reinterpret_cast<uintptr_t>(t.data()) % (uintptr_t(2) << 20) == 0);
      t.data()[n - 1] = 1.0f;  // the whole block is writable
    }
    Tensor small = Tensor::empty({1000});
    CHECK(reinterpret_cast<uintptr_t>(small.data()) % 64 == 0);
  }

  TEST_CASE("to(cpu) on a CPU tensor returns the same storage, with its autograd identity") {
    Tensor t = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
    t.set_requires_grad(true);
    Tensor u = t.to(Device::cpu());
    CHECK(u.impl() == t.impl());  // the very same tensor, not a copy
    CHECK(u.ptr() == t.ptr());
    CHECK(u.requires_grad());
    // A view keeps its offset through to(cpu).
    Tensor v = t.detach().reshape({6});
    CHECK(v.to(Device::cpu()).ptr() == t.ptr());
  }

  TEST_CASE("clone and copy_ make independent buffers with equal values") {
    const std::vector<float> vals = random_values(37, 3);
    Tensor a = Tensor::from_vector(vals, {37});
    a.set_requires_grad(true);
    Tensor b = a.clone();
    CHECK(b.ptr() != a.ptr());
    CHECK(b.to_vector() == vals);
    CHECK_FALSE(b.requires_grad());  // no autograd history
    CHECK(b.is_leaf());
    b.data()[0] = 100.0f;
    CHECK(a.data()[0] == vals[0]);  // writing the clone does not touch the original

    Tensor c = Tensor::zeros({37});
    c.copy_(a);
    CHECK(c.to_vector() == vals);
    CHECK(c.ptr() != a.ptr());

    // int32 and uint8 copy too.
    Tensor li = Tensor::from_vector_i32({3, -1, 7}, {3});
    Tensor lc = li.clone();
    CHECK(lc.to_vector_i32() == std::vector<int32_t>{3, -1, 7});
    CHECK(lc.data_as<int32_t>() != li.data_as<int32_t>());

    // Mismatched shapes and dtypes name both tensors.
    const std::string e1 = error_of([&] { Tensor::zeros({36}).copy_(a); });
    CHECK_MESSAGE(contains(e1, "copy_"), e1);
    CHECK_MESSAGE(contains(e1, "(37)"), e1);
    const std::string e2 = error_of([&] { Tensor::zeros({3}).copy_(li); });
    CHECK_MESSAGE(contains(e2, "copy_"), e2);
  }

  TEST_CASE("copy_ into a view writes through to the viewed storage") {
    Tensor base = Tensor::zeros({2, 3});
    Tensor flat = base.reshape({6});
    flat.copy_(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {6}));
    CHECK(base.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});
  }

  TEST_CASE("item, to_vector, ptr and data agree on the CPU") {
    Tensor s = sum(Tensor::from_vector({1.5f, 2.25f, -0.75f}, {3}));
    CHECK(s.shape() == Shape{});
    CHECK(s.item() == 3.0f);
    CHECK(Tensor::full({1, 1}, -4.5f).item() == -4.5f);
    const std::string e = error_of([] { Tensor::zeros({2}).item(); });
    CHECK_MESSAGE(contains(e, "item()"), e);

    Tensor t = Tensor::from_vector({7, 8, 9}, {3});
    CHECK(t.ptr() == t.data());
    CHECK(t.to_vector() == std::vector<float>{7, 8, 9});
    CHECK(t.device() == Device::cpu());
    // ptr/data check the dtype.
    Tensor i = Tensor::zeros({3}, DType::I32);
    CHECK_THROWS_AS(i.ptr(), Error);
    CHECK_THROWS_AS(i.data(), Error);
    CHECK_THROWS_AS(t.data_as<int32_t>(), Error);
    CHECK(i.ptr_as<int32_t>() == i.data_as<int32_t>());
    // str() names the device, which the GPU errors rely on.
    CHECK_MESSAGE(contains(t.str(), "cpu"), t.str());
  }

  TEST_CASE("zeros and full on the CPU, every dtype") {
    Tensor f = Tensor::full({4, 5}, 2.5f, Device::cpu());
    CHECK(f.to_vector() == std::vector<float>(20, 2.5f));
    Tensor zi = Tensor::zeros({6}, DType::I32, Device::cpu());
    CHECK(zi.to_vector_i32() == std::vector<int32_t>(6, 0));
    Tensor zu = Tensor::zeros({9}, DType::U8, Device::cpu());
    for (int64_t k = 0; k < 9; ++k) CHECK(zu.data_as<uint8_t>()[k] == 0);
    Tensor e = Tensor::empty({0, 3});
    CHECK(e.numel() == 0);
    CHECK(e.to_vector().empty());
  }

  TEST_CASE("Model::to(cpu) and Parameter::to(cpu) are no-ops on a CPU model") {
    nn::Model model = nn::build_model("cnn2", {1, 28, 28}, 0);
    std::vector<const void*> before;
    for (auto& p : model.parameters()) before.push_back(p->value.impl());
    model.to(Device::cpu());
    CHECK(model.device() == Device::cpu());
    size_t k = 0;
    for (auto& p : model.parameters()) CHECK(p->value.impl() == before[k++]);
  }
}

TEST_SUITE("CPU backend against plain loops") {
  const Backend& be = backend_for(Device::cpu());

  TEST_CASE("the CPU backend is the CPU's") {
    CHECK(be.device() == Device::cpu());
    CHECK(&backend_for(Device::cpu()) == &be);
  }

  TEST_CASE("fill_scaled writes factor * scalar[0] everywhere") {
    for (int64_t n : {0, 1, 7, 1000}) {
      const float scalar = 1.75f, factor = -0.5f;
      std::vector<float> out(size_t(n) + 1, 42.0f);  // one guard value past the end
      be.fill_scaled(n, &scalar, factor, out.data());
      for (int64_t i = 0; i < n; ++i) CHECK(out[size_t(i)] == factor * scalar);
      CHECK(out[size_t(n)] == 42.0f);
    }
  }

  TEST_CASE("mask_zero zeroes exactly the entries whose keep byte is 0") {
    const int64_t n = 1031;
    Rng rng(5);
    std::vector<float> x = random_values(n, 6), want = x;
    std::vector<uint8_t> keep(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      // Any nonzero byte keeps, not only 1.
      keep[size_t(i)] = rng.uniform() < 0.4f ? 0 : uint8_t(1 + rng.below(255));
      if (!keep[size_t(i)]) want[size_t(i)] = 0.0f;
    }
    x[0] = std::numeric_limits<float>::quiet_NaN();
    keep[0] = 0;  // a masked NaN becomes 0 too
    want[0] = 0.0f;
    be.mask_zero(n, keep.data(), x.data());
    for (int64_t i = 0; i < n; ++i) REQUIRE(x[size_t(i)] == want[size_t(i)]);
  }

  TEST_CASE("count_nonzero counts x != 0 (NaN counts, -0 does not)") {
    std::vector<float> x = random_values(500, 8);
    for (size_t i = 0; i < x.size(); i += 3) x[i] = 0.0f;
    x[1] = -0.0f;
    x[2] = std::numeric_limits<float>::quiet_NaN();
    x[4] = std::numeric_limits<float>::infinity();
    x[5] = std::numeric_limits<float>::denorm_min();
    int64_t want = 0;
    for (float v : x) want += v != 0.0f;
    CHECK(be.count_nonzero(int64_t(x.size()), x.data()) == want);
    CHECK(be.count_nonzero(0, x.data()) == 0);
    CHECK(be.count_nonzero(1, x.data()) == 0);  // x[0] was zeroed
  }

  TEST_CASE("labels_in_range is true exactly when every label is in [0, C)") {
    std::vector<int32_t> labels = {0, 3, 9, 1, 9, 0};
    CHECK(be.labels_in_range(6, labels.data(), 10));
    CHECK_FALSE(be.labels_in_range(6, labels.data(), 9));  // 9 is out of [0, 9)
    CHECK(be.labels_in_range(0, labels.data(), 1));
    labels[5] = -1;
    CHECK_FALSE(be.labels_in_range(6, labels.data(), 10));
    CHECK(be.labels_in_range(5, labels.data(), 10));  // the bad label is past n
    // Against a plain loop on random labels, some out of range.
    Rng rng(9);
    for (int trial = 0; trial < 50; ++trial) {
      const int64_t N = 1 + int64_t(rng.below(40)), C = 1 + int64_t(rng.below(12));
      std::vector<int32_t> l(static_cast<size_t>(N));
      bool ok = true;
      for (auto& v : l) {
        v = int32_t(rng.below(uint64_t(C) + 2)) - (trial % 7 == 0 ? 1 : 0);
        ok = ok && v >= 0 && v < C;
      }
      CHECK(be.labels_in_range(N, l.data(), C) == ok);
    }
  }

  TEST_CASE("all_finite and sum against plain loops") {
    std::vector<float> x = random_values(777, 10);
    CHECK(be.all_finite(int64_t(x.size()), x.data()));
    double want = 0.0;
    for (float v : x) want += double(v);
    float out = 0.0f;
    be.sum(int64_t(x.size()), x.data(), 0.25f, &out);
    CHECK(out == doctest::Approx(0.25 * want).epsilon(1e-6));
    x[500] = std::numeric_limits<float>::infinity();
    CHECK_FALSE(be.all_finite(int64_t(x.size()), x.data()));
    CHECK(be.all_finite(500, x.data()));
    x[500] = std::numeric_limits<float>::quiet_NaN();
    CHECK_FALSE(be.all_finite(int64_t(x.size()), x.data()));
  }

  TEST_CASE("copies and zero on the CPU backend") {
    // (CPU storage comes from the tensor allocator, not Backend::alloc.)
    const std::vector<float> src = random_values(64, 11);
    std::vector<float> buf(64, -1.0f);
    float* p = buf.data();
    be.copy_from_host(p, src.data(), 64 * sizeof(float));
    std::vector<float> back(64);
    be.copy_to_host(back.data(), p, 64 * sizeof(float));
    CHECK(back == src);
    std::vector<float> dst(64);
    be.copy(dst.data(), p, 64 * sizeof(float));
    CHECK(dst == src);
    be.zero(p, 32 * sizeof(float));
    be.synchronize();  // a no-op, but callable
    be.copy_to_host(back.data(), p, 64 * sizeof(float));
    for (size_t i = 0; i < 64; ++i) CHECK(back[i] == (i < 32 ? 0.0f : src[i]));
  }
}
