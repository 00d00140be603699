#pragma once
// BatchNorm folding for inference: a BatchNorm that directly follows a Conv2d or a Linear in the
// same block is merged into that layer's weights and bias and removed, so a packed ResNet runs
// one kernel per conv (He et al.'s conv-bn pairs) and its sparse kernels see the folded weights.
#include "nn/model.h"

namespace sprig::infer {

// With s = gamma / sqrt(running_var + eps) per output channel k, eval mode's
//   bn(conv(x))_k = s_k * (W_k x + b_k - running_mean_k) + beta_k
// becomes a conv with W'_k = s_k * W_k and b'_k = s_k * (b_k - running_mean_k) + beta_k (a conv
// without a bias gains one). Zeros stay zeros, so a pruned weight keeps its sparsity and mask.
// model.spec is rebuilt; unnamed layers after a removed BatchNorm move down one index (their
// parameter names with them). Weights must be on the CPU. Returns how many were folded.
int fold_batchnorm(nn::Model& model);

}  // namespace sprig::infer
