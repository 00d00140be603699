#pragma once
// Experiment reports: one self-contained HTML file (inline CSS and SVG, no scripts or network
// fetches) with charts and tables, and the same tables as plain text for the terminal.
#include <string>
#include <vector>

namespace sprig::report {

struct Series {
  std::string name;           // legend entry
  std::vector<double> x, y;   // equal lengths; NaN y values leave a gap
  std::vector<double> y_err;  // empty, or one half-width per point (drawn as error bars)
};

struct Chart {
  enum class Kind { Line, Scatter, Bar };
  Kind kind = Kind::Line;
  std::string id;  // unique in a report; the SVG gets id="chart-<id>"
  std::string title, x_label, y_label;
  std::vector<Series> series;
  std::vector<std::string> categories;  // Bar: one label per x position (x = 0, 1, ...)
  bool log_x = false;
};

struct Table {
  std::string title;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;  // each as long as header
};

// One chart as an SVG element. Each series is a <g class="series" data-name="..."> holding its
// points or bars, so tests can count what was drawn.
std::string render_svg(const Chart& chart);
// A table with aligned columns for the terminal.
std::string format_table(const Table& table);

// Points (Line, Scatter) or bars (Bar) render_svg draws for each series: those with finite x and
// y (and x > 0 on a log axis). Throws sprig::Error when a series' lengths disagree.
std::vector<size_t> drawn_points(const Chart& chart);
// Of those, the ones drawn with an error bar (finite y_err > 0).
std::vector<size_t> drawn_error_bars(const Chart& chart);
// Axis ticks at 1-2-5 steps that enclose [lo, hi] (at most about max_ticks of them).
std::vector<double> nice_ticks(double lo, double hi, int max_ticks = 6);
// Ticks on a log axis: decades enclosing [lo, hi] (lo > 0), with 2 and 5 between them when the
// range spans at most two decades.
std::vector<double> log_ticks(double lo, double hi);
// Escapes text for HTML/XML content and attribute values; invalid UTF-8 and control characters
// become U+FFFD, so the result is always well-formed.
std::string escape_xml(const std::string& text);

class Report {
 public:
  explicit Report(std::string title);
  void add_heading(const std::string& text);
  void add_paragraph(const std::string& text);     // plain text, escaped
  void add_preformatted(const std::string& text);  // e.g. a model summary
  void add_table(const Table& table);
  void add_chart(const Chart& chart);
  std::string html() const;
  // What the charts should show, for tests/report_check.py: each chart's id, kind and series
  // (name and number of points drawn), as JSON.
  std::string charts_json() const;
  // Writes html() to path through a temporary file renamed into place (creating the parent
  // directory when missing), then charts_json() to path + ".charts.json" the same way.
  void write(const std::string& path) const;

 private:
  std::string title_;
  std::vector<std::string> blocks_;  // rendered HTML fragments, in order
  std::vector<Chart> charts_;        // as added (ids filled in), for charts_json()
};

// Formats a number for tables: fixed with `digits` decimals.
std::string fmt(double value, int digits = 2);

}  // namespace sprig::report
