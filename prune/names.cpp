// Names of criteria and granularities, as the command line spells them.
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

Granularity parse_granularity(const std::string& s) {
  if (s == "element") return Granularity::Element;
  if (s == "filter" || s == "neuron") return Granularity::Filter;
  if (s == "channel") return Granularity::Channel;
  if (s == "block") return Granularity::Block;
  if (s == "nm" || s.find(':') != std::string::npos) return Granularity::NM;
  throw Error("unknown granularity '" + s +
              "' (expected element, filter, neuron, channel, block or N:M such as 2:4)");
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

const char* granularity_name(Granularity g) {
  switch (g) {
    case Granularity::Element:
      return "element";
    case Granularity::Filter:
      return "filter";
    case Granularity::Channel:
      return "channel";
    case Granularity::Block:
      return "block";
    case Granularity::NM:
      return "nm";
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
