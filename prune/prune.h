#pragma once
// Pruning: score the prunable units of each weight with a criterion, choose the lowest-scoring
// units per layer or globally, and install masks (nn::Parameter::mask) that zero them. Names
// follow torch.nn.utils.prune where the concept exists there.
//
// Filter pruning works on dependency groups (prune/groups.h): a channel is one unit of the
// network, however many layers make it (a residual stream: the stem, every block's last conv and
// BatchNorm, option-B shortcuts), scored by reducing its members' scores (GroupReduce) and
// pruned in all of them at once: their weight rows, biases and BatchNorm scales and shifts are
// masked, so it is exactly zero and shrink() removes it with every consumer's inputs. Amounts,
// counts and min_keep apply per group (Layer scope) or across groups (Global scope); channels
// tied to the model's inputs or outputs are never pruned. In a plain chain a group is one layer.
//
// Units by granularity (weights viewed as 2-D (rows, cols) = (out, in * kh * kw)):
//   element  one weight                                  scores shaped like the weight
//   filter   one output channel / neuron (a row)         scores (out)
//   channel  one input channel (all kh*kw columns of it) scores (in)
//   block    a block_rows x block_cols tile of the 2-D view, edge tiles smaller
//                                                        scores (ceil(rows/br), ceil(cols/bc))
//   nm       N of every M consecutive weights along a row are kept (2:4 by default); the amount
//            is implied (1 - N/M) and scope is always per group
// Filter pruning also masks the layer's bias entry for that filter, so the unit's output is
// exactly 0 and shrink() can remove it without changing the model's outputs.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nn/model.h"

namespace sprig::prune {

enum class Criterion {
  Magnitude,  // |w|; filters and channels: the L1 norm of the unit (same as L1Norm);
              // blocks: the mean |w| over the tile (so small edge tiles are not favoured)
  Gradient,   // |dL/dw| (accumulated gradient); filters and channels: sum, blocks: mean
  Taylor,     // element/block/channel: |w * dL/dw| (first-order Taylor, weight x gradient);
              // filter: Molchanov et al. 2017 activation scores passed in by the caller
  Random,     // uniform random scores from PruneSpec::seed
  L1Norm,     // Li et al. 2017: sum |w| over the unit (blocks: mean)
  L2Norm,     // sqrt(sum w^2) over the unit (blocks: root mean square)
  FPGM,       // He et al. 2019: units closest to the geometric median of the layer's units
              // (smallest sum of Euclidean distances to all other units) are pruned first
  BnScale,    // Liu et al. 2017 (network slimming): |gamma| of the BatchNorm on each channel;
              // filter granularity only (train with sprig train --bn-l1 to make it sparse)
};
// How the member scores of one channel of a dependency group (one per producing layer, or per
// BatchNorm for BnScale) become its score, as Torch-Pruning's group importance.
enum class GroupReduce { Mean, Sum };
// The spec's granularity is the one the installed masks record (nn/parameter.h), so there is
// one enum, with one name and one parse function (nn::granularity_name, nn::parse_granularity).
using nn::Granularity;
enum class Scope { Layer, Global };

// magnitude|gradient|taylor|random|l1|l2|fpgm|bn-scale
Criterion parse_criterion(const std::string& s);
// "2:4" -> {2, 4}; errors unless 0 < N <= M, both integers.
std::pair<int64_t, int64_t> parse_nm(const std::string& s);
const char* criterion_name(Criterion c);
GroupReduce parse_group_reduce(const std::string& s);  // mean|sum
const char* group_reduce_name(GroupReduce r);

struct PruneSpec {
  Criterion criterion = Criterion::Magnitude;
  Granularity granularity = Granularity::Element;
  Scope scope = Scope::Layer;
  // Target fraction of each layer's units (Layer scope) or of all chosen units (Global scope)
  // that is pruned after this call, counting units already pruned (they stay pruned). So an
  // iterative schedule passes cumulative targets 0.5, 0.75, ... In [0, 1].
  double amount = 0.0;
  int64_t count = -1;       // >= 0: prune this many units in total instead of a fraction
  double threshold = -1.0;  // >= 0: prune every unit whose score is below it instead
  int64_t min_keep = 1;     // units each layer (filter pruning: each group) keeps
  GroupReduce group_reduce = GroupReduce::Mean;  // filter pruning: member scores -> channel
  int64_t n = 2, m = 4;                          // N:M
  int64_t block_rows = 1, block_cols = 4;
  // Weight names to prune (e.g. "0.weight"); empty = every conv and linear weight.
  std::vector<std::string> include;
  std::vector<std::string> exclude;
  // Filter/channel pruning never removes the last layer's outputs (they are the classes) nor
  // the first layer's inputs (they are the data).
  uint64_t seed = 0;
};

struct LayerReport {
  std::string name;  // weight name, e.g. "2.weight"
  int64_t units = 0, pruned_units = 0;
  int64_t params = 0, nonzero = 0;  // of the weight (and its bias) after pruning
};
// Filter pruning: what happened to one dependency group.
struct GroupReport {
  std::string name;                 // its first producer's path, e.g. "conv1"
  std::vector<std::string> layers;  // every producer and BatchNorm on its channels, model order
  int64_t units = 0;                // channels that may be pruned (not tied to inputs/outputs)
  int64_t pruned = 0;               // of those, pruned after this call (earlier ones included)
  // Channels this call pruned, each named by its first producer: "layer2.0.conv2[5]".
  std::vector<std::string> removed;
  std::string kept;  // when nothing could be pruned in it: why (else "")
};
struct PruneReport {
  std::vector<LayerReport> layers;
  std::vector<GroupReport> groups;  // filter pruning only
  int64_t params = 0, nonzero = 0;  // whole model after pruning
  double sparsity() const { return params ? 1.0 - double(nonzero) / double(params) : 0.0; }
};

// Scores of the units of one weight (see the table above); higher = more important.
// activation_scores: for Taylor filter pruning, the (out) scores from prune/data_criteria.h.
Tensor unit_scores(const nn::Parameter& weight, Criterion c, Granularity g, const PruneSpec& spec,
                   const Tensor* activation_scores = nullptr);

// Prunes model according to spec. For Criterion::Taylor with Granularity::Filter,
// activation_scores maps weight names to their (out) scores. Gradient-based criteria read
// each weight's grad(), which the caller fills (prune/data_criteria.h).
PruneReport prune_model(nn::Model& model, const PruneSpec& spec,
                        const std::map<std::string, Tensor>& activation_scores = {});

// Checks spec against model without changing anything: amount, count, threshold, N:M, the
// include/exclude names, that something is left to prune, and that the criterion applies to
// the granularity. Data-dependent problems (a missing gradient) are only found when pruning.
void validate_spec(const nn::Model& model, const PruneSpec& spec);

// The weights prune_model would consider under spec (include/exclude applied), in model order.
std::vector<std::pair<std::string, nn::ParameterPtr>> prunable_weights(const nn::Model& model,
                                                                       const PruneSpec& spec);

// torch.nn.utils.prune equivalents on a single parameter (amount as in PruneSpec).
void l1_unstructured(nn::Parameter& p, double amount);
void random_unstructured(nn::Parameter& p, double amount, uint64_t seed);
// n = 1 or 2 (the norm), dim = 0 (filters / neurons) or 1 (input channels).
void ln_structured(nn::Parameter& p, double amount, int n, int dim);
void global_unstructured(const std::vector<nn::Parameter*>& params, double amount,
                         Criterion c = Criterion::Magnitude);
// Makes pruning permanent: drops the mask and keeps the zeros.
void remove(nn::Parameter& p);
void remove(nn::Model& model);

// Fraction of zero weights over all parameters of the model.
double sparsity(const nn::Model& model);

}  // namespace sprig::prune
