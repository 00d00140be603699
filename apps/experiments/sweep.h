#pragma once
// Small pieces the gradual-vs-instant and friedman experiments share: summary statistics over
// repeated runs, checks on list-valued flags and number formats for labels.
#include <cstdint>
#include <string>
#include <vector>

namespace sprig::app::experiments {

// Mean and spread of repeated measurements. std is the sample standard deviation (n - 1 in the
// denominator; 0 for a single value), which is what the error bars show.
struct Spread {
  double mean = 0.0, std = 0.0, min = 0.0, max = 0.0;
  size_t n = 0;
};
Spread spread(const std::vector<double>& values);

// Throws sprig::Error naming the flag when a list-valued flag is empty or repeats a value.
void check_distinct(const std::string& flag, const std::vector<double>& values);
void check_distinct(const std::string& flag, const std::vector<int>& values);

// "0.95" -> "95%", "0.875" -> "87.5%": sparsities for labels and run names.
std::string percent_label(double fraction);

// printf's %g: params and short labels.
std::string format_g(double v);

// Signed percentage points with one decimal ("+1.2 pp", "-0.4 pp").
std::string signed_pp(double pp);

}  // namespace sprig::app::experiments
