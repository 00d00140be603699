// The HTML page around the charts, terminal tables, and the atomic write of both the report and
// its sidecar (what tests/report_check.py expects to see rendered).
#include "apps/report/report.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/atomic_file.h"
#include "kernels/error.h"

namespace sprig::report {

namespace {

namespace fs = std::filesystem;

const char* const kStyle = R"(
body{font-family:system-ui,'DejaVu Sans','Liberation Sans',Arial,sans-serif;color:#222;
  max-width:1000px;margin:0 auto;padding:20px 28px 48px;line-height:1.45;background:#fff}
h1{font-size:1.7em;margin:0.4em 0 0.1em}
h2{font-size:1.3em;margin-top:1.8em;padding-bottom:3px;border-bottom:1px solid #ddd}
.generated{color:#666;font-size:0.9em;margin-top:0}
pre{background:#f6f6f6;border:1px solid #e2e2e2;padding:10px 12px;overflow-x:auto;
  font-size:12.5px;line-height:1.35}
figure.chart{margin:18px 0}
svg.chart{display:block;max-width:100%;height:auto}
table{border-collapse:collapse;margin:14px 0;font-size:14px}
caption{text-align:left;font-weight:bold;padding-bottom:6px}
th,td{padding:4px 12px;border-bottom:1px solid #e6e6e6;text-align:left;vertical-align:top}
thead th{border-bottom:2px solid #999}
.num{text-align:right;font-variant-numeric:tabular-nums}
)";

size_t text_len(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// "0.91", "-3", "12.5%", "2.0x", "1.2e-3", "0.91 ± 0.02": right-aligned as numbers.
bool is_numeric(const std::string& cell) {
  const char* s = cell.c_str();
  while (*s == ' ') ++s;
  if (*s == '\0') return false;
  char* end = nullptr;
  std::strtod(s, &end);
  if (end == s) return false;
  if (std::strncmp(s, "nan", 3) == 0 || std::strncmp(s, "inf", 3) == 0) return true;
  return *end == '\0' || *end == ' ' || *end == '%' || *end == 'x';
}

std::vector<bool> numeric_columns(const Table& t) {
  std::vector<bool> numeric(t.header.size(), false);
  for (size_t c = 0; c < t.header.size(); ++c) {
    bool all = !t.rows.empty();
    for (const auto& row : t.rows) all = all && (row[c].empty() || is_numeric(row[c]));
    numeric[c] = all;
  }
  return numeric;
}

void validate(const Table& t) {
  for (size_t r = 0; r < t.rows.size(); ++r)
    SPRIG_CHECK(t.rows[r].size() == t.header.size(), "table '", t.title, "': row ", r + 1, " has ",
                t.rows[r].size(), " cells, the header has ", t.header.size());
}

std::string generated_at() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

bool valid_id(const std::string& id) {
  if (id.empty()) return false;
  for (char ch : id)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.')
      return false;
  return true;
}

[[noreturn]] void write_fail(const std::string& path, const std::string& why) {
  throw Error("cannot write report '" + path + "': " + why);
}

// Creates the missing directories of path first (reports/<experiment>.html by default).
void write_atomic(const std::string& path, const std::string& data) {
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec || !fs::is_directory(parent))
      write_fail(path, "cannot create directory '" + parent.string() +
                           "': " + (ec ? ec.message() : std::string("not a directory")));
  }
  write_file_atomically(path, data.data(), data.size(), "cannot write report");
}

// Text as the page shows it: escape_xml's U+FFFD replacements, without the entities, so a
// sidecar name equals the page's data-name attribute as a browser reads it.
std::string as_shown(const std::string& text) {
  const std::string esc = escape_xml(text);
  static const std::pair<const char*, char> kEntities[] = {
      {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#39;", '\''}};
  std::string out;
  for (size_t i = 0; i < esc.size();) {
    bool hit = false;
    for (const auto& [entity, ch] : kEntities) {
      const size_t len = std::strlen(entity);
      if (esc.compare(i, len, entity) == 0) {
        out += ch;
        i += len;
        hit = true;
        break;
      }
    }
    if (!hit) out += esc[i++];
  }
  return out;
}

}  // namespace

std::string fmt(double value, int digits) {
  digits = std::min(std::max(digits, 0), 17);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, value);
  return buf;
}

std::string format_table(const Table& t) {
  validate(t);
  const size_t cols = t.header.size();
  const std::vector<bool> numeric = numeric_columns(t);
  std::vector<size_t> width(cols, 0);
  for (size_t c = 0; c < cols; ++c) {
    width[c] = text_len(t.header[c]);
    for (const auto& row : t.rows) width[c] = std::max(width[c], text_len(row[c]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < cols; ++c) {
      const std::string pad(width[c] - text_len(cells[c]), ' ');
      const bool last = c + 1 == cols;
      if (numeric[c])
        out += pad + cells[c];
      else
        out += cells[c] + (last ? "" : pad);
      if (!last) out += "  ";
    }
    return out + "\n";
  };
  std::string out;
  if (!t.title.empty()) out += t.title + "\n";
  if (cols == 0) return out;
  out += line(t.header);
  std::vector<std::string> rule;
  for (size_t c = 0; c < cols; ++c) rule.push_back(std::string(width[c], '-'));
  out += line(rule);
  for (const auto& row : t.rows) out += line(row);
  return out;
}

Report::Report(std::string title) : title_(std::move(title)) {}

void Report::add_heading(const std::string& text) {
  blocks_.push_back("<h2>" + escape_xml(text) + "</h2>\n");
}

void Report::add_paragraph(const std::string& text) {
  blocks_.push_back("<p>" + escape_xml(text) + "</p>\n");
}

void Report::add_preformatted(const std::string& text) {
  blocks_.push_back("<pre>" + escape_xml(text) + "</pre>\n");
}

void Report::add_table(const Table& t) {
  validate(t);
  const std::vector<bool> numeric = numeric_columns(t);
  auto cell = [&](const char* tag, size_t c, const std::string& text) {
    std::string open = std::string("<") + tag + (numeric[c] ? " class=\"num\"" : "") + ">";
    return open + escape_xml(text) + "</" + tag + ">";
  };
  std::string h = "<table>\n";
  if (!t.title.empty()) h += "<caption>" + escape_xml(t.title) + "</caption>\n";
  h += "<thead><tr>";
  for (size_t c = 0; c < t.header.size(); ++c) h += cell("th", c, t.header[c]);
  h += "</tr></thead>\n<tbody>\n";
  for (const auto& row : t.rows) {
    h += "<tr>";
    for (size_t c = 0; c < row.size(); ++c) h += cell("td", c, row[c]);
    h += "</tr>\n";
  }
  h += "</tbody>\n</table>\n";
  blocks_.push_back(std::move(h));
}

void Report::add_chart(const Chart& chart) {
  Chart c = chart;
  if (c.id.empty()) c.id = "chart" + std::to_string(charts_.size() + 1);
  SPRIG_CHECK(valid_id(c.id), "chart id '", c.id,
              "' may hold only letters, digits, '-', '_' and '.'");
  for (const Chart& other : charts_)
    SPRIG_CHECK(other.id != c.id, "chart id '", c.id, "' is used twice in report '", title_, "'");
  std::string svg = render_svg(c);  // validates before anything is kept
  blocks_.push_back("<figure class=\"chart\">\n" + svg + "</figure>\n");
  charts_.push_back(std::move(c));
}

std::string Report::html() const {
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n";
  // The page may load nothing: a report must read the same offline and anywhere it is copied.
  h += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
       "style-src 'unsafe-inline'; img-src data:\"/>\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n";
  h += "<meta name=\"generator\" content=\"sprig\"/>\n";
  h += "<title>" + escape_xml(title_) + "</title>\n<style>" + kStyle + "</style>\n</head>\n";
  h += "<body>\n<header>\n<h1>" + escape_xml(title_) + "</h1>\n";
  h += "<p class=\"generated\">Generated " + generated_at() + " by sprig</p>\n</header>\n<main>\n";
  for (const std::string& b : blocks_) h += b;
  h += "</main>\n</body>\n</html>\n";
  return h;
}

std::string Report::charts_json() const {
  using Json = nlohmann::json;
  Json charts = Json::array();
  for (const Chart& c : charts_) {
    const std::vector<size_t> points = drawn_points(c), errs = drawn_error_bars(c);
    Json series = Json::array();
    for (size_t i = 0; i < c.series.size(); ++i)
      series.push_back(
          {{"name", as_shown(c.series[i].name)}, {"points", points[i]}, {"error_bars", errs[i]}});
    const char* kind = c.kind == Chart::Kind::Bar       ? "bar"
                       : c.kind == Chart::Kind::Scatter ? "scatter"
                                                        : "line";
    charts.push_back({{"id", c.id},
                      {"svg_id", "chart-" + c.id},
                      {"kind", kind},
                      {"title", as_shown(c.title)},
                      {"series", series}});
  }
  Json doc = {{"format", "sprig-report-charts-1"}, {"title", as_shown(title_)}, {"charts", charts}};
  // Names that are not UTF-8 get U+FFFD, as escape_xml gives them in the page.
  return doc.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

void Report::write(const std::string& path) const {
  SPRIG_CHECK(!path.empty(), "report path is empty");
  write_atomic(path, html());
  write_atomic(path + ".charts.json", charts_json());
}

}  // namespace sprig::report
