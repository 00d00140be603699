#pragma once
// Experiment reports: one self-contained HTML file (inline CSS and SVG, no scripts or network
// fetches) with charts and tables, and the same tables as plain text for the terminal.
#include <string>
#include <vector>

namespace sprig::report {

struct Series {
  std::string name;                 // legend entry
  std::vector<double> x, y;         // equal lengths; NaN y values leave a gap
  std::vector<double> y_err;        // empty, or one half-width per point (drawn as error bars)
};

struct Chart {
  enum class Kind { Line, Scatter, Bar };
  Kind kind = Kind::Line;
  std::string id;                   // unique in a report; the SVG gets id="chart-<id>"
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

class Report {
 public:
  explicit Report(std::string title);
  void add_heading(const std::string& text);
  void add_paragraph(const std::string& text);  // plain text, escaped
  void add_preformatted(const std::string& text);  // e.g. a model summary
  void add_table(const Table& table);
  void add_chart(const Chart& chart);
  std::string html() const;
  // Writes html() to path through a temporary file renamed into place.
  void write(const std::string& path) const;

 private:
  std::string title_;
  std::vector<std::string> blocks_;  // rendered HTML fragments, in order
};

// Formats a number for tables: fixed with `digits` decimals.
std::string fmt(double value, int digits = 2);

}  // namespace sprig::report
