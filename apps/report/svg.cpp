// Charts as inline SVG: 1-2-5 ticks, one <g class="series"> per series, legend on the right.
// Text widths are estimated (no font metrics here), generously, so labels do not collide.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "apps/report/report.h"
#include "kernels/error.h"
#include "engine/text.h"

namespace sprig::report {

namespace {

constexpr double kWidth = 720;
constexpr double kMinPlotHeight = 290;
constexpr double kCharW = 7.0;  // average glyph width of 12px sans-serif, rounded up
constexpr double kLegendRow = 18;
constexpr size_t kMaxLegendChars = 28;
constexpr size_t kMaxCategoryChars = 24;
// Okabe & Ito's colour-blind-safe palette; grey replaces their yellow, which is unreadable on
// white. Past eight series the colours repeat with dashed lines.
const char* const kPalette[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00",
                                "#CC79A7", "#56B4E9", "#000000", "#999999"};
constexpr size_t kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);
const char* const kFont = "system-ui, 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif";

// SVG coordinates: two decimals, never NaN (every caller maps through a non-degenerate axis).
std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.2f", std::isfinite(v) ? v : 0.0);
  return buf;
}

// Data values in tooltips.
std::string value_text(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// Code points, not bytes, so "±" counts once.
size_t text_len(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string truncate(const std::string& s, size_t max_chars) {
  if (text_len(s) <= max_chars) return s;
  size_t n = 0, i = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && n++ == max_chars - 1) break;
  }
  return s.substr(0, i) + "\xE2\x80\xA6";  // U+2026 ellipsis
}

// Exponent form for very large or small magnitudes: "1e6", "2.5e-5".
std::string exp_label(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  std::string s = buf;
  size_t e = s.find('e');
  if (e == std::string::npos) return s;
  std::string mant = s.substr(0, e), ex = s.substr(e + 1);
  bool neg = ex[0] == '-';
  ex = ex.substr(1);
  while (ex.size() > 1 && ex[0] == '0') ex.erase(0, 1);
  return mant + "e" + (neg ? "-" : "") + ex;
}

int step_decimals(double step) {
  return std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
}

// One style per axis: exponents when its largest tick is huge or tiny, else fixed decimals.
std::string tick_label(double v, double step, bool log, bool exponent) {
  if (!log && std::fabs(v) < std::fabs(step) * 1e-9) v = 0;  // no "-0.0"
  if (exponent || (log && (std::fabs(v) >= 1e6 || std::fabs(v) < 1e-4)))
    return v == 0 ? "0" : exp_label(v);
  char buf[40];
  if (log)
    std::snprintf(buf, sizeof buf, "%.6g", v);
  else
    std::snprintf(buf, sizeof buf, "%.*f", step_decimals(step), v);
  return buf;
}

double x_at(const Series& s, size_t i) {
  return s.x.empty() ? static_cast<double>(i) : s.x[i];
}

bool is_bar(const Chart& c) {
  return c.kind == Chart::Kind::Bar;
}
bool log_axis(const Chart& c) {
  return c.log_x && !is_bar(c);
}

bool drawable(const Chart& c, const Series& s, size_t i) {
  double x = x_at(s, i), y = s.y[i];
  return std::isfinite(x) && std::isfinite(y) && (!log_axis(c) || x > 0);
}

double err_at(const Series& s, size_t i) {
  if (s.y_err.empty()) return 0;
  double e = s.y_err[i];
  return std::isfinite(e) && e > 0 ? e : 0;
}

void validate(const Chart& c) {
  for (const Series& s : c.series) {
    SPRIG_CHECK(s.x.empty() || s.x.size() == s.y.size(), "chart '", c.id, "', series '", s.name,
                "': ", s.x.size(), " x values for ", s.y.size(), " y values");
    SPRIG_CHECK(s.y_err.empty() || s.y_err.size() == s.y.size(), "chart '", c.id, "', series '",
                s.name, "': ", s.y_err.size(), " y_err values for ", s.y.size(), " y values");
    if (!is_bar(c)) continue;
    for (size_t i = 0; i < s.y.size(); ++i) {
      double x = x_at(s, i);
      if (!std::isfinite(x)) continue;
      bool index = x >= 0 && x == std::floor(x) && x < 1e9;
      bool known = c.categories.empty() || x < static_cast<double>(c.categories.size());
      SPRIG_CHECK(index && known, "chart '", c.id, "', series '", s.name, "': bar x value ", x,
                  " is not a category index (0..",
                  c.categories.empty() ? std::string("N") : std::to_string(c.categories.size()),
                  "-1)");
    }
  }
}

struct Axis {
  double lo = 0, hi = 1;  // data values at p0 and p1
  double p0 = 0, p1 = 1;  // pixels
  bool log = false;
  double map(double v) const {
    double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                   : (v - lo) / (hi - lo);
    return p0 + t * (p1 - p0);
  }
};

struct Ticks {
  std::vector<double> values;
  std::vector<std::string> labels;
  size_t max_chars = 0;
};

Ticks make_ticks(double lo, double hi, bool log, int max_ticks) {
  Ticks t;
  t.values = log ? log_ticks(lo, hi) : nice_ticks(lo, hi, max_ticks);
  double step = t.values.size() > 1 ? t.values[1] - t.values[0] : 1;
  double largest = 0;
  for (double v : t.values) largest = std::max(largest, std::fabs(v));
  const bool exponent = !log && (largest >= 1e6 || largest < 1e-3);
  for (double v : t.values) {
    t.labels.push_back(tick_label(v, step, log, exponent));
    t.max_chars = std::max(t.max_chars, t.labels.back().size());
  }
  return t;
}

// Where the data lies, ignoring what is not drawn; error bars widen the y range.
struct Extent {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  bool any = false;
};

Extent data_extent(const Chart& c) {
  Extent e;
  for (const Series& s : c.series) {
    for (size_t i = 0; i < s.y.size(); ++i) {
      if (!drawable(c, s, i)) continue;
      double x = x_at(s, i), y = s.y[i], err = err_at(s, i);
      e.any = true;
      e.xlo = std::min(e.xlo, x);
      e.xhi = std::max(e.xhi, x);
      e.ylo = std::min(e.ylo, y - err);
      e.yhi = std::max(e.yhi, y + err);
    }
  }
  return e;
}

const char* colour(size_t i) {
  return kPalette[i % kPaletteSize];
}
std::string dash(size_t i) {
  return i < kPaletteSize ? "" : " stroke-dasharray=\"6 3\"";
}

std::string text_el(double x, double y, const std::string& anchor, const std::string& cls,
                    const std::string& text, const std::string& extra = "") {
  return "<text class=\"" + cls + "\" x=\"" + num(x) + "\" y=\"" + num(y) + "\" text-anchor=\"" +
         anchor + "\"" + extra + ">" + escape_xml(text) + "</text>\n";
}

std::string error_bar(double x, double ytop, double ybot, const char* col) {
  const double cap = 4;
  return "<path class=\"err\" d=\"M" + num(x) + "," + num(ytop) + "V" + num(ybot) + "M" +
         num(x - cap) + "," + num(ytop) + "H" + num(x + cap) + "M" + num(x - cap) + "," +
         num(ybot) + "H" + num(x + cap) + "\" stroke=\"" + col +
         "\" stroke-width=\"1.3\" fill=\"none\"/>\n";
}

std::string tooltip(const Series& s, const std::string& x_text, double y, double err) {
  std::string t = s.name.empty() ? "" : s.name + "\n";
  t += x_text + ", y = " + value_text(y);
  if (err > 0) t += " \xC2\xB1 " + value_text(err);
  return "<title>" + escape_xml(t) + "</title>";
}

}  // namespace

std::string escape_xml(const std::string& text) {
  static const char* const kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&quot;";
          break;
        case '\'':
          out += "&#39;";
          break;
        default:
          // XML 1.0 allows only tab, newline and carriage return below 0x20.
          if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            out += kReplacement;
          else
            out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    const size_t len = utf8_char_length(text, i);
    if (len > 1) {
      // U+FFFE and U+FFFF are valid UTF-8 but not XML characters.
      const bool xml_char = !(len == 3 && c == 0xEF && p[i + 1] == 0xBF && p[i + 2] >= 0xBE);
      if (xml_char)
        out.append(text, i, len);
      else
        out += kReplacement;
      i += len;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int max_ticks) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (lo > hi) std::swap(lo, hi);
  max_ticks = std::max(max_ticks, 2);
  if (hi - lo <= 1e-12 * std::max(std::fabs(lo), std::fabs(hi))) {
    double d = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= d;
    hi += d;
  }
  if (!std::isfinite(hi - lo)) return {lo, hi};  // beyond what a step can describe
  double mag = std::pow(10.0, std::floor(std::log10((hi - lo) / (max_ticks - 1))));
  for (;; mag *= 10) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double step = m * mag;
      // The small slack keeps 0.6 / 0.2 = 2.9999999999999996 from adding a tick.
      const double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
      if (last - first + 1 > max_ticks) continue;
      const int dec = step_decimals(step);
      const double scale = dec <= 15 ? std::pow(10.0, dec) : 0;
      std::vector<double> ticks;
      for (double k = first; k <= last; k += 1) {
        double v = k * step;
        if (scale > 0) v = std::round(v * scale) / scale;  // 0.6, not 0.6000000000000001
        ticks.push_back(v);
      }
      if (ticks.size() < 2) ticks.push_back(ticks.back() + step);
      return ticks;
    }
  }
}

std::vector<double> log_ticks(double lo, double hi) {
  if (!(lo > 0) || !std::isfinite(lo)) lo = 1;
  if (!(hi > 0) || !std::isfinite(hi)) hi = lo;
  if (lo > hi) std::swap(lo, hi);
  int elo = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  int ehi = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  if (ehi <= elo) ehi = elo + 1;
  std::vector<double> ticks;
  const int decades = ehi - elo;
  if (decades <= 2) {
    for (int e = elo; e < ehi; ++e)
      for (double m : {1.0, 2.0, 5.0}) ticks.push_back(m * std::pow(10.0, e));
    ticks.push_back(std::pow(10.0, ehi));
    return ticks;
  }
  const int stride = (decades + 6) / 7;  // at most eight labels
  ehi = elo + (decades + stride - 1) / stride * stride;
  for (int e = elo; e <= ehi; e += stride) ticks.push_back(std::pow(10.0, e));
  return ticks;
}

std::vector<size_t> drawn_points(const Chart& chart) {
  validate(chart);
  std::vector<size_t> counts;
  for (const Series& s : chart.series) {
    size_t n = 0;
    for (size_t i = 0; i < s.y.size(); ++i) n += drawable(chart, s, i);
    counts.push_back(n);
  }
  return counts;
}

std::vector<size_t> drawn_error_bars(const Chart& chart) {
  validate(chart);
  std::vector<size_t> counts;
  for (const Series& s : chart.series) {
    size_t n = 0;
    for (size_t i = 0; i < s.y.size(); ++i) n += drawable(chart, s, i) && err_at(s, i) > 0;
    counts.push_back(n);
  }
  return counts;
}

std::string render_svg(const Chart& c) {
  validate(c);
  const bool bar = is_bar(c);
  const Extent ext = data_extent(c);

  // y axis: bars grow from zero, so zero is always in range.
  double ylo = ext.any ? ext.ylo : 0, yhi = ext.any ? ext.yhi : 1;
  if (bar) {
    ylo = std::min(ylo, 0.0);
    yhi = std::max(yhi, 0.0);
    if (ylo == 0 && yhi == 0) yhi = 1;
  }
  const Ticks yt = make_ticks(ylo, yhi, false, 7);

  // Bar slots: one per category (or per index up to the largest x when unlabelled).
  size_t slots = c.categories.size();
  std::vector<std::string> cat_labels;
  if (bar) {
    if (slots == 0 && ext.any) slots = static_cast<size_t>(ext.xhi) + 1;
    for (size_t i = 0; i < slots; ++i)
      cat_labels.push_back(
          truncate(c.categories.empty() ? std::to_string(i) : c.categories[i], kMaxCategoryChars));
  }

  // Legend on the right, when any series has a name.
  size_t legend_chars = 0;
  bool legend = false;
  for (const Series& s : c.series) {
    legend = legend || !s.name.empty();
    legend_chars = std::max(legend_chars, std::min(text_len(s.name), kMaxLegendChars));
  }
  const double legend_w = legend ? 30 + legend_chars * kCharW + 10 : 0;

  const double left = 10 + (c.y_label.empty() ? 0 : 22) + yt.max_chars * kCharW + 10;
  const double right = legend ? legend_w + 12 : 24;
  const double top = c.title.empty() ? 16 : 40;
  const double x0 = left, x1 = kWidth - right;
  const double plot_w = x1 - x0;

  // Category labels turn 40 degrees when they would not fit side by side.
  size_t cat_chars = 0;
  for (const std::string& l : cat_labels) cat_chars = std::max(cat_chars, text_len(l));
  const double slot_w = slots ? plot_w / slots : plot_w;
  // Category labels that do not fit side by side turn 40 degrees, or 90 when slots are too
  // narrow for that (each turned line of text needs about 15px across); past that only every
  // k-th label shows.
  const double kLineGap = 15;
  const int angle = !bar || cat_chars * kCharW + 6 <= slot_w ? 0
                    : slot_w * 0.643 >= kLineGap             ? 40
                                                             : 90;
  const size_t label_every =
      angle == 90 ? static_cast<size_t>(std::ceil(kLineGap / std::max(slot_w, 1e-3))) : 1;
  const double xtick_h = angle == 0    ? 22
                         : angle == 40 ? cat_chars * kCharW * 0.643 + 16
                                       : cat_chars * kCharW + 14;
  const double bottom = 8 + xtick_h + (c.x_label.empty() ? 0 : 22) + 8;

  const double plot_h = std::max(kMinPlotHeight, legend ? c.series.size() * kLegendRow + 12 : 0.0);
  const double y0 = top, y1 = top + plot_h;
  const double height = y1 + bottom;

  // Curves keep a few pixels off the frame so points on the range's ends stay visible; bars
  // stand on the frame.
  const double pad = bar ? 0 : 10;
  Axis ya;
  ya.lo = yt.values.front();
  ya.hi = yt.values.back();
  ya.p0 = y1 - pad;
  ya.p1 = y0 + pad;

  // x axis for lines and scatter: fewer ticks when their labels would crowd.
  Axis xa;
  Ticks xt;
  if (!bar) {
    xa.log = log_axis(c);
    double xlo = ext.any ? ext.xlo : (xa.log ? 1 : 0), xhi = ext.any ? ext.xhi : (xa.log ? 10 : 1);
    for (int max_ticks = 8; max_ticks >= 2; --max_ticks) {
      xt = make_ticks(xlo, xhi, xa.log, max_ticks);
      if (xt.values.size() * (xt.max_chars * kCharW + 12) <= plot_w - 2 * pad || xa.log) break;
    }
    xa.lo = xt.values.front();
    xa.hi = xt.values.back();
    xa.p0 = x0 + pad;
    xa.p1 = x1 - pad;
  }

  const char* kind = bar ? "bar" : c.kind == Chart::Kind::Scatter ? "scatter" : "line";
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\"";
  if (!c.id.empty()) o << " id=\"chart-" << escape_xml(c.id) << "\"";
  o << " class=\"chart\" data-kind=\"" << kind << "\" width=\"" << num(kWidth) << "\" height=\""
    << num(height) << "\" viewBox=\"0 0 " << num(kWidth) << " " << num(height)
    << "\" font-family=\"" << kFont << "\" font-size=\"12\" role=\"img\">\n";
  o << "<title>" << escape_xml(c.title.empty() ? c.id : c.title) << "</title>\n";
  o << "<rect class=\"background\" width=\"" << num(kWidth) << "\" height=\"" << num(height)
    << "\" fill=\"#ffffff\"/>\n";

  // Grid and ticks.
  o << "<g class=\"grid\" stroke=\"#e6e6e6\" stroke-width=\"1\">\n";
  for (double v : yt.values)
    o << "<path d=\"M" << num(x0) << "," << num(ya.map(v)) << "H" << num(x1) << "\"/>\n";
  for (double v : xt.values)
    o << "<path d=\"M" << num(xa.map(v)) << "," << num(y0) << "V" << num(y1) << "\"/>\n";
  o << "</g>\n<g class=\"axes\" fill=\"#333333\">\n";
  for (size_t i = 0; i < yt.values.size(); ++i) {
    double y = ya.map(yt.values[i]);
    o << "<path d=\"M" << num(x0 - 5) << "," << num(y) << "H" << num(x0)
      << "\" stroke=\"#333333\"/>\n";
    o << text_el(x0 - 8, y + 4, "end", "tick y-tick", yt.labels[i]);
  }
  for (size_t i = 0; i < xt.values.size(); ++i) {
    double x = xa.map(xt.values[i]);
    o << "<path d=\"M" << num(x) << "," << num(y1) << "V" << num(y1 + 5)
      << "\" stroke=\"#333333\"/>\n";
    o << text_el(x, y1 + 18, "middle", "tick x-tick", xt.labels[i]);
  }
  for (size_t i = 0; i < cat_labels.size(); ++i) {
    if (i % label_every != 0) continue;
    double x = x0 + (i + 0.5) * slot_w;
    if (angle > 0)  // the anchor sits below the tick, the text runs down and left from it
      o << text_el(x + 4, y1 + 14, "end", "tick x-tick", cat_labels[i],
                   " transform=\"rotate(-" + std::to_string(angle) + " " + num(x + 4) + " " +
                       num(y1 + 14) + ")\"");
    else
      o << text_el(x, y1 + 18, "middle", "tick x-tick", cat_labels[i]);
  }
  o << "<path class=\"frame\" d=\"M" << num(x0) << "," << num(y0) << "V" << num(y1) << "H"
    << num(x1) << "\" stroke=\"#333333\" fill=\"none\"/>\n";
  if (ya.lo < 0 && ya.hi > 0)  // zero line, for bars and curves that cross it
    o << "<path class=\"zero\" d=\"M" << num(x0) << "," << num(ya.map(0)) << "H" << num(x1)
      << "\" stroke=\"#777777\"/>\n";
  o << "</g>\n";

  if (!c.title.empty())
    o << text_el((x0 + x1) / 2, 24, "middle", "title",
                 truncate(c.title, static_cast<size_t>((kWidth - 20) / (kCharW * 1.25))),
                 " font-size=\"15\" font-weight=\"bold\" fill=\"#222222\"");
  if (!c.x_label.empty())
    o << text_el((x0 + x1) / 2, height - 12, "middle", "axis-label x-label", c.x_label,
                 " font-size=\"13\" fill=\"#222222\"");
  if (!c.y_label.empty()) {
    double cy = (y0 + y1) / 2;
    o << text_el(18, cy, "middle", "axis-label y-label", c.y_label,
                 " font-size=\"13\" fill=\"#222222\" transform=\"rotate(-90 18 " + num(cy) + ")\"");
  }

  // Series.
  const size_t ns = c.series.size();
  o << "<g class=\"plot\">\n";
  for (size_t si = 0; si < ns; ++si) {
    const Series& s = c.series[si];
    const char* col = colour(si);
    size_t count = 0;
    for (size_t i = 0; i < s.y.size(); ++i) count += drawable(c, s, i);
    o << "<g class=\"series\" data-name=\"" << escape_xml(s.name) << "\" data-index=\"" << si
      << "\">\n";
    if (bar) {
      const double group_w = slot_w * 0.8, bar_w = group_w / std::max<size_t>(ns, 1);
      const double gap = bar_w > 4 ? 1 : 0;
      for (size_t i = 0; i < s.y.size(); ++i) {
        if (!drawable(c, s, i)) continue;
        const size_t slot = static_cast<size_t>(x_at(s, i));
        const double bx = x0 + slot * slot_w + 0.1 * slot_w + si * bar_w;
        const double v = s.y[i], err = err_at(s, i);
        double top_px = ya.map(std::max(v, 0.0)), bot_px = ya.map(std::min(v, 0.0));
        if (bot_px - top_px < 1) top_px = bot_px - 1;  // a zero still shows as a stub
        std::string label = slot < c.categories.size() ? c.categories[slot] : std::to_string(slot);
        o << "<rect class=\"bar\" data-x=\"" << slot << "\" x=\"" << num(bx + gap / 2) << "\" y=\""
          << num(top_px) << "\" width=\"" << num(std::max(bar_w - gap, 0.5)) << "\" height=\""
          << num(bot_px - top_px) << "\" fill=\"" << col << "\">" << tooltip(s, label, v, err)
          << "</rect>\n";
        if (err > 0) o << error_bar(bx + bar_w / 2, ya.map(v + err), ya.map(v - err), "#222222");
      }
    } else {
      if (c.kind == Chart::Kind::Line) {
        std::string d;
        bool pen = false, any_segment = false;
        for (size_t i = 0; i < s.y.size(); ++i) {
          if (!drawable(c, s, i)) {
            pen = false;  // NaN: the line breaks here
            continue;
          }
          d += (pen ? "L" : "M") + num(xa.map(x_at(s, i))) + "," + num(ya.map(s.y[i]));
          any_segment = any_segment || pen;
          pen = true;
        }
        if (any_segment)
          o << "<path class=\"line\" d=\"" << d << "\" stroke=\"" << col
            << "\" stroke-width=\"2\" fill=\"none\" stroke-linejoin=\"round\"" << dash(si)
            << "/>\n";
      }
      for (size_t i = 0; i < s.y.size(); ++i) {
        if (!drawable(c, s, i) || err_at(s, i) == 0) continue;
        double x = xa.map(x_at(s, i)), e = err_at(s, i);
        o << error_bar(x, ya.map(s.y[i] + e), ya.map(s.y[i] - e), col);
      }
      // Dense curves keep their markers as invisible hover targets for the tooltips.
      const bool scatter = c.kind == Chart::Kind::Scatter;
      const double r = scatter ? 4 : count <= 30 ? 3 : 2.5;
      const std::string paint = scatter       ? "\" fill-opacity=\"0.85\" stroke=\"#ffffff\""
                                : count <= 60 ? "\" stroke=\"#ffffff\" stroke-width=\"0.8\""
                                              : "\" fill-opacity=\"0\"";
      for (size_t i = 0; i < s.y.size(); ++i) {
        if (!drawable(c, s, i)) continue;
        double x = x_at(s, i);
        o << "<circle class=\"point\" cx=\"" << num(xa.map(x)) << "\" cy=\"" << num(ya.map(s.y[i]))
          << "\" r=\"" << num(r) << "\" fill=\"" << col << paint << ">"
          << tooltip(s, "x = " + value_text(x), s.y[i], err_at(s, i)) << "</circle>\n";
      }
    }
    o << "</g>\n";
  }
  o << "</g>\n";

  if (!ext.any)
    o << text_el((x0 + x1) / 2, (y0 + y1) / 2, "middle", "empty", "no data",
                 " fill=\"#777777\" font-size=\"14\"");

  if (legend) {
    const double lx = x1 + 14;
    o << "<g class=\"legend\">\n";
    for (size_t si = 0; si < ns; ++si) {
      const Series& s = c.series[si];
      const char* col = colour(si);
      const double ly = y0 + 8 + si * kLegendRow;
      o << "<g class=\"legend-item\">";
      if (text_len(s.name) > kMaxLegendChars) o << "<title>" << escape_xml(s.name) << "</title>";
      if (bar)
        o << "<rect x=\"" << num(lx + 4) << "\" y=\"" << num(ly - 5) << "\" width=\"12\" "
          << "height=\"10\" fill=\"" << col << "\"/>";
      else if (c.kind == Chart::Kind::Line)
        o << "<path d=\"M" << num(lx) << "," << num(ly) << "H" << num(lx + 20) << "\" stroke=\""
          << col << "\" stroke-width=\"2\"" << dash(si) << "/>";
      else
        o << "<circle cx=\"" << num(lx + 10) << "\" cy=\"" << num(ly) << "\" r=\"4\" fill=\"" << col
          << "\"/>";
      o << "<text x=\"" << num(lx + 28) << "\" y=\"" << num(ly + 4) << "\" fill=\"#222222\">"
        << escape_xml(truncate(s.name, kMaxLegendChars)) << "</text></g>\n";
    }
    o << "</g>\n";
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace sprig::report
