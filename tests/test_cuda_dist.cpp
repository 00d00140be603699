// Data-parallel training with gradients on GPUs, summed GPU to GPU through NCCL
// (dist::DeviceComm). CTest runs this suite alone and under `mpirun -np 2` (labels cuda and mpi);
// every rank runs every case and checks what it holds. Under the CUDA emulator NCCL is the
// emulator's stand-in over MPI, so CI runs the device path without a GPU; on a GPU machine it is
// NCCL itself, which needs one GPU per rank: with fewer GPUs than ranks the suite is not run.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "dist/comm.h"
#include "dist/device_comm.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "kernels/cpu/threads.h"
#include "tests/dist_test_util.h"
#include "train/data_parallel.h"
#include "train/trainer.h"

using namespace sprig;

namespace {
const dist::Comm& world() {
  return dist::Comm::world();
}

// This rank's GPU. With fewer GPUs than ranks NCCL cannot run (one GPU per rank): every rank
// exits 77 at once, which CTest records as not run.
Device my_gpu() {
  const int gpus = cuda_device_count();
#ifndef SPRIG_CUDA_EMULATOR
  if (world().size() > gpus) {
    std::printf("SKIPPED: %d ranks on %d GPU(s); NCCL needs one GPU per rank\n", world().size(),
                gpus);
    std::exit(77);
  }
#endif
  return Device::cuda(world().local_rank() % gpus);
}

// 10 classes of 8x8 one-channel images, 330 samples: 5 steps of 64 and a last batch of 10.
data::Dataset synthetic(uint64_t seed, int64_t n = 330) {
  Rng rng(seed);
  data::Dataset d;
  d.images = Tensor::normal({n, 1, 8, 8}, 0.0f, 1.0f, rng);
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[size_t(i)] = int32_t(rng.next_u64() % 10);
  d.labels = Tensor::from_vector_i32(labels, {n});
  d.name = "synthetic";
  return d;
}

// The model after 2 epochs of Adam from seed 3, on `device`, over comm's ranks (null: alone).
nn::Model train_once(Device device, const dist::Comm* comm) {
  nn::Model model = nn::build_model("conv(4,3,pad=1) relu flatten linear(10)", {1, 8, 8}, 3);
  model.to(device);
  train::OptimizerConfig oc;
  oc.name = "adam";
  oc.lr = 1e-3;
  auto opt = train::make_optimizer(oc, model.parameters());
  train::FitConfig fc;
  fc.epochs = 2;
  fc.batch_size = 64;
  fc.seed = 4;
  fc.comm = comm;
  fc.check_replicas = comm != nullptr && comm->size() > 1;
  train::fit(model, *opt, synthetic(1), synthetic(2, 100), train::Task::Classification, fc);
  model.to(Device::cpu());
  return model;
}
}  // namespace

TEST_CASE("NCCL sums a device buffer over every rank") {
  const Device gpu = my_gpu();
  const dist::Comm& c = world();
  if (!dist::DeviceComm::available()) {
    CHECK_THROWS_AS(dist::DeviceComm{c}, Error);
    return;
  }
  dist::DeviceComm dc(c);
  const int n = c.size(), r = c.rank();
  // 300,000 floats (several of NCCL's chunks); halves of small integers add up exactly.
  std::vector<float> mine(300000);
  for (size_t k = 0; k < mine.size(); ++k) mine[k] = float(r + 1) * 0.5f * float(k % 1000);
  Tensor t = Tensor::from_vector(mine, {int64_t(mine.size())}).to(gpu);
  dc.allreduce_sum(t.ptr(), t.numel());
  const std::vector<float> sum = t.to(Device::cpu()).to_vector();
  int wrong = 0;
  for (size_t k = 0; k < sum.size(); ++k)
    wrong += sum[k] != float(n * (n + 1) / 2) * 0.5f * float(k % 1000);
  CHECK(wrong == 0);
}

TEST_CASE("the gradient reducer sums GPU gradients on the GPU: the whole batch's mean") {
  const Device gpu = my_gpu();
  const dist::Comm& c = world();
  const int n = c.size(), r = c.rank();
  // As test_dist's host case: rank k's loss is sum(w * (k + 1)) + sum(v * v) / (k + 1), in
  // buckets of at most 64 bytes; `unused` is in no graph and keeps no gradient.
  auto w = std::make_shared<nn::Parameter>("w", Tensor::full({10}, 1.0f, gpu));
  auto v = std::make_shared<nn::Parameter>("v", Tensor::full({20}, 2.0f, gpu));
  auto unused = std::make_shared<nn::Parameter>("unused", Tensor::full({3}, 1.0f, gpu));
  for (auto& p : {w, v, unused}) p->value.set_requires_grad(true);
  train::GradientReducer reducer(c, {w, v, unused}, 64);
  CHECK(reducer.buckets() >= 3);
  CHECK(reducer.on_device() == (n > 1 && dist::DeviceComm::available()));
  auto shard = [&](int k) { return int64_t(7 * (k + 1) / n - 7 * k / n); };
  Tensor loss = add(sum(mul(w->value, Tensor::full({10}, float(r + 1), gpu))),
                    scale(sum(mul(v->value, v->value)), 1.0f / float(r + 1)));
  reducer.backward(scale(loss, float(shard(r)) / 7.0f));
  double expect_w = 0.0, expect_v = 0.0;
  for (int k = 0; k < n; ++k) {
    expect_w += double(shard(k)) / 7.0 * double(k + 1);
    expect_v += double(shard(k)) / 7.0 * 4.0 / double(k + 1);
  }
  REQUIRE(w->grad().device() == gpu);
  for (float g : w->grad().to(Device::cpu()).to_vector())
    CHECK(g == doctest::Approx(expect_w).epsilon(1e-6));
  for (float g : v->grad().to(Device::cpu()).to_vector())
    CHECK(g == doctest::Approx(expect_v).epsilon(1e-6));
  CHECK_FALSE(unused->grad().defined());
}

TEST_CASE("data-parallel training on GPUs ends with one GPU's weights, and the CPU's") {
  const Device gpu = my_gpu();
  cpu::set_num_threads(1);
  const nn::Model alone = train_once(gpu, nullptr);
  const nn::Model together = train_once(gpu, &world());
  const nn::Model on_cpu = train_once(Device::cpu(), &world());
  const double diff = testing::max_relative_difference(alone, together);
  MESSAGE(world().size(), " rank(s) on GPUs against one GPU after 12 steps: ", diff,
          "; against the CPU's data-parallel run: ",
          testing::max_relative_difference(on_cpu, together));
  CHECK(diff <= 1e-5);
  CHECK(testing::max_relative_difference(on_cpu, together) <= 1e-5);
  CHECK(testing::max_relative_difference(
            nn::build_model("conv(4,3,pad=1) relu flatten linear(10)", {1, 8, 8}, 3), alone) >
        1e-3);
}
