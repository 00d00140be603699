// Names of criteria and group reductions, as the command line spells them (granularities:
// nn/parameter.cpp).
#include "prune/prune.h"

namespace sprig::prune {

Criterion parse_criterion(const std::string& s) {
  if (s == "magnitude") return Criterion::Magnitude;
  if (s == "gradient") return Criterion::Gradient;
  if (s == "taylor") return Criterion::Taylor;
  if (s == "random") return Criterion::Random;
  if (s == "l1") return Criterion::L1Norm;
  if (s == "l2") return Criterion::L2Norm;
  if (s == "fpgm") return Criterion::FPGM;
  if (s == "bn-scale") return Criterion::BnScale;
  throw Error("unknown pruning method '" + s +
              "' (expected magnitude, gradient, taylor, random, l1, l2, fpgm or bn-scale)");
}

const char* criterion_name(Criterion c) {
  switch (c) {
    case Criterion::Magnitude:
      return "magnitude";
    case Criterion::Gradient:
      return "gradient";
    case Criterion::Taylor:
      return "taylor";
    case Criterion::Random:
      return "random";
    case Criterion::L1Norm:
      return "l1";
    case Criterion::L2Norm:
      return "l2";
    case Criterion::FPGM:
      return "fpgm";
    case Criterion::BnScale:
      return "bn-scale";
  }
  return "?";
}

GroupReduce parse_group_reduce(const std::string& s) {
  if (s == "mean") return GroupReduce::Mean;
  if (s == "sum") return GroupReduce::Sum;
  throw Error("unknown group reduction '" + s + "' (expected mean or sum)");
}

const char* group_reduce_name(GroupReduce r) {
  return r == GroupReduce::Sum ? "sum" : "mean";
}

}  // namespace sprig::prune
