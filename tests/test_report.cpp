// Reports: SVG structure (series, points, bars, error bars), tick values, NaN gaps, escaping,
// degenerate charts, terminal tables, atomic writes, and the finished page opened in headless
// Chromium by tests/report_check.py (which must find Chromium: this test fails without it).
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/report/report.h"
#include "kernels/error.h"
#include "tests/temp_dir.h"

using namespace sprig::report;
namespace fs = std::filesystem;
using sprig::test::TempDir;

namespace {

const double kNaN = std::nan("");

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + what.size())) ++n;
  return n;
}

// The <g class="series"> groups of an SVG, in order (they hold no nested <g>).
std::vector<std::string> series_groups(const std::string& svg) {
  std::vector<std::string> out;
  for (size_t at = svg.find("<g class=\"series\""); at != std::string::npos;
       at = svg.find("<g class=\"series\"", at + 1))
    out.push_back(svg.substr(at, svg.find("</g>", at) - at));
  return out;
}

// A small XML well-formedness checker: balanced tags, quoted unique attributes, known entities,
// no stray '<' or '&'. Returns "" when well-formed, else what is wrong and where.
std::string xml_error(const std::string& s) {
  std::vector<std::string> stack;
  size_t roots = 0;
  auto entity_ok = [&](size_t at) {
    size_t semi = s.find(';', at);
    if (semi == std::string::npos || semi - at > 10) return false;
    std::string e = s.substr(at + 1, semi - at - 1);
    if (e == "amp" || e == "lt" || e == "gt" || e == "quot" || e == "apos") return true;
    if (e.size() > 1 && e[0] == '#')
      return e.find_first_not_of("0123456789", 1) == std::string::npos;
    return false;
  };
  auto is_name = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' ||
           c == '.';
  };
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '&') {
      if (!entity_ok(i)) return "bad entity at " + std::to_string(i);
      ++i;
      continue;
    }
    if (s[i] != '<') {
      ++i;
      continue;
    }
    if (s.compare(i, 4, "<!--") == 0) {
      size_t end = s.find("-->", i);
      if (end == std::string::npos) return "unclosed comment";
      i = end + 3;
      continue;
    }
    if (s.compare(i, 2, "<!") == 0 || s.compare(i, 2, "<?") == 0) {
      i = s.find('>', i);
      if (i == std::string::npos) return "unclosed declaration";
      ++i;
      continue;
    }
    const bool closing = s.compare(i, 2, "</") == 0;
    size_t j = i + (closing ? 2 : 1), name_start = j;
    while (j < s.size() && is_name(s[j])) ++j;
    std::string name = s.substr(name_start, j - name_start);
    if (name.empty()) return "bad tag at " + std::to_string(i);
    if (closing) {
      if (stack.empty() || stack.back() != name) return "unexpected </" + name + ">";
      stack.pop_back();
      i = s.find('>', j);
      if (i == std::string::npos) return "unclosed </" + name;
      ++i;
      continue;
    }
    std::vector<std::string> attrs;
    for (;;) {
      while (j < s.size() && std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      if (j >= s.size()) return "unclosed <" + name;
      if (s[j] == '>' || s.compare(j, 2, "/>") == 0) break;
      size_t a = j;
      while (j < s.size() && is_name(s[j])) ++j;
      std::string attr = s.substr(a, j - a);
      if (attr.empty() || j + 1 >= s.size() || s[j] != '=' || (s[j + 1] != '"' && s[j + 1] != '\''))
        return "bad attribute in <" + name + "> at " + std::to_string(a);
      for (const std::string& prev : attrs)
        if (prev == attr) return "attribute " + attr + " twice in <" + name + ">";
      attrs.push_back(attr);
      const char quote = s[j + 1];
      size_t end = s.find(quote, j + 2);
      if (end == std::string::npos) return "unclosed attribute " + attr;
      for (size_t k = j + 2; k < end; ++k) {
        if (s[k] == '<') return "'<' in attribute " + attr;
        if (s[k] == '&' && !entity_ok(k)) return "bad entity in attribute " + attr;
      }
      j = end + 1;
    }
    if (stack.empty()) ++roots;
    if (s[j] == '/') {
      i = j + 2;
    } else {
      stack.push_back(name);
      i = j + 1;
    }
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (roots != 1) return std::to_string(roots) + " root elements";
  return "";
}

Chart loss_chart() {
  Chart c;
  c.kind = Chart::Kind::Line;
  c.id = "loss";
  c.title = "Training loss";
  c.x_label = "epoch";
  c.y_label = "loss";
  Series train{"train", {}, {}, {}}, test{"test", {}, {}, {}};
  for (int e = 1; e <= 10; ++e) {
    train.x.push_back(e);
    train.y.push_back(1.0 / e);
    test.x.push_back(e);
    test.y.push_back(e == 5 ? kNaN : 1.2 / e);  // a missed evaluation: a gap
  }
  c.series = {train, test};
  return c;
}

Chart sparsity_bars() {
  Chart c;
  c.kind = Chart::Kind::Bar;
  c.id = "layers";
  c.title = "Per-layer sparsity";
  c.y_label = "sparsity";
  c.categories = {"conv1", "conv2", "fc1", "fc2"};
  c.series = {{"magnitude", {0, 1, 2, 3}, {0.2, 0.5, 0.9, 0.1}, {}},
              {"taylor", {0, 1, 2, 3}, {0.3, kNaN, 0.8, 0.0}, {0.05, 0.05, 0.02, 0.0}}};
  return c;
}

// A report with every chart kind, error bars, a NaN gap, a log axis, long and awkward names.
Report sample_report() {
  Report r("Sample <report> & \"charts\"");
  r.add_heading("Curves");
  r.add_paragraph("Loss per epoch; the test curve has a gap where an evaluation is missing.");
  r.add_chart(loss_chart());

  Chart acc;
  acc.kind = Chart::Kind::Scatter;
  acc.id = "acc-vs-sparsity";
  acc.title = "Accuracy vs sparsity";
  acc.x_label = "sparsity";
  acc.y_label = "test accuracy (%)";
  const char* methods[] = {"l1", "fpgm", "taylor <first-order> & \"friends\""};
  for (int m = 0; m < 3; ++m) {
    Series s{methods[m], {}, {}, {}};
    for (int i = 0; i <= 8; ++i) {
      s.x.push_back(i * 0.1);
      s.y.push_back(91.5 - m * 0.7 - 30 * std::pow(i * 0.1, 3));
      s.y_err.push_back(0.2 + 0.1 * m);
    }
    acc.series.push_back(s);
  }
  r.add_chart(acc);

  Chart lr;
  lr.kind = Chart::Kind::Line;
  lr.id = "lr-sweep";
  lr.title = "Learning-rate sweep";
  lr.x_label = "learning rate";
  lr.y_label = "final loss";
  lr.log_x = true;
  Series sweep{"adam", {}, {}, {}};
  for (int i = 0; i <= 12; ++i) {
    sweep.x.push_back(1e-5 * std::pow(10, i * 0.4));
    sweep.y.push_back(0.3 + 0.05 * std::pow(i - 7, 2));
  }
  lr.series = {sweep};
  r.add_chart(lr);

  Chart dense;
  dense.kind = Chart::Kind::Line;
  dense.id = "steps";
  dense.title = "Loss per step";
  dense.x_label = "step";
  dense.y_label = "loss";
  Series steps{"batch loss", {}, {}, {}};
  for (int i = 0; i < 400; ++i) steps.y.push_back(2.3 * std::exp(-i / 90.0) + 0.05 * std::sin(i));
  dense.series = {steps};
  r.add_chart(dense);

  r.add_heading("Layers");
  Chart bars = sparsity_bars();
  bars.categories = {"features.0.conv", "features.3.conv", "classifier.1.linear",
                     "classifier.4.linear_with_a_long_name"};
  r.add_chart(bars);

  Chart gi;
  gi.kind = Chart::Kind::Bar;
  gi.id = "gradual-vs-instant";
  gi.title = "Gradual vs instant pruning (mean \xC2\xB1 spread over 3 seeds)";
  gi.y_label = "test accuracy (%)";
  gi.x_label = "target sparsity";
  gi.categories = {"50%", "75%", "90%", "95%"};
  gi.series = {{"gradual", {0, 1, 2, 3}, {91.2, 90.8, 89.9, 87.3}, {0.2, 0.3, 0.5, 0.9}},
               {"instant", {0, 1, 2, 3}, {91.0, 89.7, 85.2, 76.4}, {0.3, 0.6, 1.4, 2.8}}};
  r.add_chart(gi);

  r.add_heading("Model");
  r.add_preformatted("layer        output       params\nconv(8,3)    (8,28,28)    80\n");
  r.add_table({"Results",
               {"method", "sparsity", "accuracy"},
               {{"l1", "0.50", "91.20"}, {"fpgm <geo>", "0.75", "90.10"}}});
  return r;
}

struct Run {
  int code;
  std::string out;
};

Run shell(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

Run report_check(const std::string& report, const std::string& extra = "") {
  const char* py = std::getenv("SPRIG_PYTHON");
  std::string cmd = std::string("'") + (py ? py : "python3") +
                    "' '" SPRIG_SOURCE_DIR "/tests/report_check.py' '" + report + "' " + extra;
  return shell(cmd);
}

}  // namespace

TEST_CASE("nice ticks at 1-2-5 steps enclose the range") {
  CHECK(nice_ticks(0, 1) == std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1});
  CHECK(nice_ticks(0, 87.3) == std::vector<double>{0, 20, 40, 60, 80, 100});
  CHECK(nice_ticks(-3.2, 7.9) == std::vector<double>{-5, 0, 5, 10});
  CHECK(nice_ticks(-3.2, 7.9, 7) == std::vector<double>{-4, -2, 0, 2, 4, 6, 8});
  CHECK(nice_ticks(0.0012, 0.0042) == std::vector<double>{0.001, 0.002, 0.003, 0.004, 0.005});
  CHECK(nice_ticks(90.1, 91.7) == std::vector<double>{90, 90.5, 91, 91.5, 92});
  // Equal values, zero, and nonsense still give a usable, finite axis around them.
  for (auto [lo, hi] : {std::pair{5.0, 5.0}, {0.0, 0.0}, {kNaN, 1.0}, {-1e-9, -1e-9}}) {
    std::vector<double> t = nice_ticks(lo, hi);
    REQUIRE(t.size() >= 2);
    for (double v : t) CHECK(std::isfinite(v));
    CHECK(t.front() < t.back());
    if (std::isfinite(lo)) CHECK((t.front() <= lo && lo <= t.back()));
  }
  CHECK(log_ticks(1, 1000) == std::vector<double>{1, 10, 100, 1000});
  CHECK(log_ticks(3, 70) == std::vector<double>{1, 2, 5, 10, 20, 50, 100});
  CHECK(log_ticks(2, 2) == std::vector<double>{1, 2, 5, 10});
  std::vector<double> wide = log_ticks(1e-3, 1e9);  // 12 decades: every other one
  CHECK(wide.size() <= 8);
  CHECK(wide.front() == doctest::Approx(1e-3));
  CHECK(wide.back() >= 1e9);
}

TEST_CASE("line chart: one group per series, one point per value, NaN leaves a gap") {
  std::string svg = render_svg(loss_chart());
  CHECK(xml_error(svg) == "");
  CHECK(svg.find("id=\"chart-loss\"") != std::string::npos);
  std::vector<std::string> g = series_groups(svg);
  REQUIRE(g.size() == 2);
  CHECK(g[0].find("data-name=\"train\"") != std::string::npos);
  CHECK(count(g[0], "class=\"point\"") == 10);
  CHECK(count(g[1], "class=\"point\"") == 9);
  CHECK(count(g[0], "<title>") == 10);  // every point has a tooltip
  // The train path is one stroke; the test path starts again after its NaN.
  CHECK(count(g[0], "class=\"line\"") == 1);
  size_t d = g[1].find(" d=\"");
  CHECK(count(g[1].substr(d, g[1].find('"', d + 4) - d), "M") == 2);
  CHECK(count(svg, "class=\"err\"") == 0);
  CHECK(drawn_points(loss_chart()) == std::vector<size_t>{10, 9});
  // Tick labels for the y range 0.1..1.2.
  for (const char* label :
       {">0.0<", ">0.2<", ">1.2<", "<title>Training loss</title>", ">epoch<", ">loss<"})
    CHECK_MESSAGE(svg.find(label) != std::string::npos, label);
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find("<script") == std::string::npos);
}

TEST_CASE("bar chart: grouped bars per category, error bars, gaps for NaN") {
  Chart c = sparsity_bars();
  std::string svg = render_svg(c);
  CHECK(xml_error(svg) == "");
  std::vector<std::string> g = series_groups(svg);
  REQUIRE(g.size() == 2);
  CHECK(count(g[0], "class=\"bar\"") == 4);
  CHECK(count(g[1], "class=\"bar\"") == 3);  // NaN at conv2
  for (int cat = 0; cat < 4; ++cat)
    CHECK(count(svg, "class=\"bar\" data-x=\"" + std::to_string(cat) + "\"") == (cat == 1 ? 1 : 2));
  // Error bars where y_err > 0 on a drawn bar: taylor's conv1 and fc1 (fc2's err is 0).
  CHECK(count(g[0], "class=\"err\"") == 0);
  CHECK(count(g[1], "class=\"err\"") == 2);
  CHECK(drawn_error_bars(c) == std::vector<size_t>{0, 2});
  for (const char* cat : {">conv1<", ">fc2<"}) CHECK(svg.find(cat) != std::string::npos);
  // Bars start at zero: the axis includes it.
  CHECK(svg.find(">0.0<") != std::string::npos);
  CHECK(svg.find("rotate(-40") == std::string::npos);  // short labels stay level

  // Labels that do not fit turn 40 degrees; in narrow slots 90, and past that every k-th shows.
  c.categories = {"features.0.conv2d_block", "features.3.conv2d_block", "classifier.1.linear",
                  "classifier.4.linear"};
  CHECK(count(render_svg(c), "rotate(-40 ") == 4);
  Chart many;
  many.kind = Chart::Kind::Bar;
  Series s{"s", {}, {}, {}};
  for (int i = 0; i < 30; ++i) {
    many.categories.push_back("block" + std::to_string(i) + ".conv");
    s.x.push_back(i);
    s.y.push_back(i);
  }
  many.series = {s};
  CHECK(count(render_svg(many), "rotate(-90 ") == 30);
  many.categories.clear();  // unlabelled: the index, and too many for every label
  for (int i = 30; i < 200; ++i) s.x.push_back(i), s.y.push_back(i);
  many.series = {s};
  svg = render_svg(many);
  CHECK(count(svg, "class=\"bar\"") == 200);
  CHECK(count(svg, "rotate(-90 ") < 50);
  CHECK(svg.find(">195<") != std::string::npos);
}

TEST_CASE("scatter with error bars and a log-x line chart") {
  Chart s;
  s.kind = Chart::Kind::Scatter;
  s.id = "s";
  s.series = {{"a", {0.1, 0.5, 0.9}, {90, 88, 70}, {0.5, kNaN, 1.5}}};
  std::string svg = render_svg(s);
  CHECK(xml_error(svg) == "");
  CHECK(count(svg, "class=\"point\"") == 3);
  CHECK(count(svg, "class=\"err\"") == 2);
  CHECK(svg.find("\xC2\xB1 1.5") != std::string::npos);  // the tooltip gives the spread

  Chart l;
  l.id = "log";
  l.log_x = true;
  l.series = {{"lr", {0, 1, 10, 100, 1000}, {5, 4, 3, 2, 1}, {}}};  // 0 cannot sit on a log axis
  svg = render_svg(l);
  CHECK(xml_error(svg) == "");
  CHECK(count(svg, "class=\"point\"") == 4);
  CHECK(drawn_points(l) == std::vector<size_t>{4});
  for (const char* label : {">1<", ">10<", ">100<", ">1000<"})
    CHECK_MESSAGE(svg.find(label) != std::string::npos, label);

  // Huge and tiny ranges label every tick of the axis in one exponent style.
  Chart big;
  big.series = {{"big", {-0.0003, 0.0005}, {0, 1.3e8}, {}}};
  svg = render_svg(big);
  for (const char* label : {">0<", ">5e7<", ">1e8<", ">1.5e8<", ">-0.0004<", ">0.0006<"})
    CHECK_MESSAGE(svg.find(label) != std::string::npos, label);
  big.series = {{"tiny", {1, 2}, {-2e-5, 3e-5}, {}}};
  svg = render_svg(big);
  for (const char* label : {">-2e-5<", ">0<", ">3e-5<"})
    CHECK_MESSAGE(svg.find(label) != std::string::npos, label);
}

TEST_CASE("degenerate charts render without NaN or division by zero") {
  Chart empty;
  empty.id = "empty";
  empty.title = "nothing yet";
  Chart hollow = empty;
  hollow.series = {{"none", {}, {}, {}}, {"all-missing", {1, 2}, {kNaN, kNaN}, {}}};
  Chart one = empty;
  one.kind = Chart::Kind::Scatter;
  one.series = {{"one", {3}, {7}, {}}};
  Chart flat = empty;
  flat.series = {{"flat", {1, 2, 3}, {0.5, 0.5, 0.5}, {}}, {"flat-x", {2, 2, 2}, {1, 2, 3}, {}}};
  Chart zero_bars = empty;
  zero_bars.kind = Chart::Kind::Bar;
  zero_bars.series = {{"zeros", {0, 1}, {0, 0}, {}}};
  Chart inf = empty;
  inf.series = {{"unbounded", {1, 2, 3}, {1, INFINITY, 2}, {}}};
  for (const Chart& c : {empty, hollow, one, flat, zero_bars, inf}) {
    std::string svg = render_svg(c);
    CAPTURE(svg);
    CHECK(xml_error(svg) == "");
    CHECK(svg.find("nan") == std::string::npos);
    CHECK(svg.find("inf") == std::string::npos);
    CHECK(series_groups(svg).size() == c.series.size());
  }
  CHECK(render_svg(empty).find(">no data<") != std::string::npos);
  CHECK(render_svg(hollow).find(">no data<") != std::string::npos);
  CHECK(count(render_svg(one), "class=\"point\"") == 1);
  CHECK(count(render_svg(zero_bars), "class=\"bar\"") == 2);
  CHECK(drawn_points(inf) == std::vector<size_t>{2});
}

TEST_CASE("text is escaped everywhere and the markup stays well-formed") {
  Chart c;
  c.id = "esc";
  c.title = "</svg><script>alert(1)</script>";
  c.x_label = "a & b";
  c.y_label = "\"quoted\" 'single'";
  // Invalid UTF-8, a control character, and U+FFFF (not allowed in XML) in a series name.
  c.series = {{"x<y & \"z\"", {1, 2}, {1, 2}, {}},
              {std::string("bad\xff\xc3(\x01\xEF\xBF\xBF") + "ok", {1, 2}, {2, 1}, {}}};
  std::string svg = render_svg(c);
  CHECK(xml_error(svg) == "");
  CHECK(svg.find("<script") == std::string::npos);
  CHECK(svg.find("data-name=\"x&lt;y &amp; &quot;z&quot;\"") != std::string::npos);
  CHECK(svg.find("&#39;single&#39;") != std::string::npos);
  CHECK(svg.find("bad\xEF\xBF\xBD\xEF\xBF\xBD(\xEF\xBF\xBD\xEF\xBF\xBDok\"") != std::string::npos);
  CHECK(escape_xml("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80") ==
        "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");  // valid UTF-8 passes through

  Report r("T <1> & 2");
  r.add_paragraph("p < q && r > s");
  r.add_preformatted("<pre>inside</pre>");
  r.add_table({"t & u", {"<h>"}, {{"<c>"}}});
  r.add_chart(c);
  std::string html = r.html();
  CHECK(xml_error(html) == "");
  CHECK(count(html, "<pre>") == 1);
  CHECK(html.find("<title>T &lt;1&gt; &amp; 2</title>") != std::string::npos);
  CHECK(html.find("<script") == std::string::npos);
}

TEST_CASE("bad charts, tables and ids are errors that name the problem") {
  Chart c = loss_chart();
  c.series[1].x.pop_back();
  CHECK_THROWS_WITH_AS(render_svg(c), "chart 'loss', series 'test': 9 x values for 10 y values",
                       sprig::Error);
  c = loss_chart();
  c.series[0].y_err = {1, 2};
  CHECK_THROWS_WITH_AS(
      render_svg(c), "chart 'loss', series 'train': 2 y_err values for 10 y values", sprig::Error);
  Chart b = sparsity_bars();
  b.series[0].x[2] = 1.5;
  CHECK_THROWS_WITH_AS(render_svg(b),
                       "chart 'layers', series 'magnitude': bar x value 1.5 is not a category "
                       "index (0..4-1)",
                       sprig::Error);
  b = sparsity_bars();
  b.series[0].x[3] = 4;
  CHECK_THROWS_AS(render_svg(b), sprig::Error);

  CHECK_THROWS_WITH_AS(format_table({"t", {"a", "b"}, {{"1", "2"}, {"3"}}}),
                       "table 't': row 2 has 1 cells, the header has 2", sprig::Error);
  Report r("r");
  r.add_chart(loss_chart());
  CHECK_THROWS_WITH_AS(r.add_chart(loss_chart()), "chart id 'loss' is used twice in report 'r'",
                       sprig::Error);
  Chart bad_id = loss_chart();
  bad_id.id = "a b";
  CHECK_THROWS_AS(r.add_chart(bad_id), sprig::Error);
  Chart no_id = loss_chart();
  no_id.id = "";
  r.add_chart(no_id);  // gets one
  CHECK(r.html().find("id=\"chart-chart2\"") != std::string::npos);
}

TEST_CASE("format_table aligns columns, numbers to the right") {
  Table t{"Results",
          {"method", "sparsity", "acc \xC2\xB1 sd"},
          {{"l1", "0.5", "91.20 \xC2\xB1 0.10"}, {"taylor", "0.75", "9.1 \xC2\xB1 1.00"}}};
  std::string s = format_table(t);
  CHECK(s ==
        "Results\n"
        "method  sparsity      acc \xC2\xB1 sd\n"
        "------  --------  ------------\n"
        "l1           0.5  91.20 \xC2\xB1 0.10\n"
        "taylor      0.75    9.1 \xC2\xB1 1.00\n");
  CHECK(format_table({"", {"a"}, {}}) == "a\n-\n");
  CHECK(fmt(0.91234) == "0.91");
  CHECK(fmt(87.25, 1) == "87.2");
  CHECK(fmt(3, 0) == "3");
}

TEST_CASE("write: creates the directory, writes the report and its sidecar atomically") {
  TempDir dir;
  Report r = sample_report();
  std::string path = dir.file("nested/deeper/report.html");
  r.write(path);
  std::string html = read_file(path);
  CHECK(html.find("<!DOCTYPE html>") == 0);
  CHECK(html.rfind("</html>\n") == html.size() - 8);
  CHECK(xml_error(html) == "");
  CHECK(count(html, "<svg ") == 6);
  auto side = nlohmann::json::parse(read_file(path + ".charts.json"));
  CHECK(side["format"] == "sprig-report-charts-1");
  REQUIRE(side["charts"].size() == 6);
  CHECK(side["charts"][0]["id"] == "loss");
  CHECK(side["charts"][0]["series"][1]["points"] == 9);
  CHECK(side["charts"][1]["series"][2]["name"] == "taylor <first-order> & \"friends\"");
  CHECK(side["charts"][1]["series"][2]["error_bars"] == 9);
  CHECK(!dir.has_temp_files());

  // A second write replaces the first in place.
  Report small("small");
  small.add_paragraph("replaced");
  small.write(path);
  CHECK(read_file(path).find("replaced") != std::string::npos);
  CHECK(nlohmann::json::parse(read_file(path + ".charts.json"))["charts"].empty());
}

TEST_CASE("write: a failure names the path and reason and leaves existing files alone") {
  TempDir dir;
  const std::string blocker = dir.file("plain-file");
  write_text(blocker, "keep me");
  Report r = sample_report();
  // The parent "directory" is a regular file.
  std::string path = blocker + "/report.html";
  try {
    r.write(path);
    FAIL("write under a regular file succeeded");
  } catch (const sprig::Error& e) {
    std::string msg = e.what();
    CHECK(msg.find("cannot write report '" + path + "'") == 0);
    CHECK(msg.find("Not a directory") != std::string::npos);
  }
  CHECK(read_file(blocker) == "keep me");

  // The target is a directory: the rename fails, the directory and its file stay, no temp left.
  const std::string target = dir.file("taken.html");
  fs::create_directory(target);
  write_text(target + "/inside", "still here");
  CHECK_THROWS_AS(r.write(target), sprig::Error);
  CHECK(fs::is_directory(target));
  CHECK(read_file(target + "/inside") == "still here");
  CHECK(!fs::exists(target + ".charts.json"));
  CHECK(!dir.has_temp_files());
}

TEST_CASE("headless Chromium renders every chart of a report (tests/report_check.py)") {
  TempDir dir;
  const std::string path = dir.file("sample.html");
  sample_report().write(path);
  // SPRIG_REPORT_SAMPLE=FILE keeps a copy of the sample to look at.
  if (const char* keep = std::getenv("SPRIG_REPORT_SAMPLE")) sample_report().write(keep);

  Run ok = report_check(path, "--expect loss=train,test --expect layers");
  INFO(ok.out);
  CHECK(ok.code == 0);
  CHECK(ok.out.find("report_check: OK") != std::string::npos);
  CHECK(ok.out.find("6 charts") != std::string::npos);

  // The checker fails what it should, each for the right reason.
  const std::string html = read_file(path);
  const std::string sidecar = read_file(path + ".charts.json");
  auto tampered = [&](const std::string& name, std::string text) {
    std::string p = dir.file(name);
    write_text(p, text);
    write_text(p + ".charts.json", sidecar);
    return p;
  };
  std::string missing_point = html;
  size_t at = missing_point.find("<circle class=\"point\"");
  missing_point.erase(at, missing_point.find("</circle>", at) + 9 - at);
  std::string script = html;
  script.insert(script.find("</main>"), "<script>console.error('boom')</script>");
  std::string fetch = html;
  fetch.insert(fetch.find("</main>"), "<img src=\"http://example.invalid/x.png\" alt=\"\"/>");
  std::string overlap = html;
  at = overlap.find("<text class=\"title\"");
  overlap.insert(at, overlap.substr(at, overlap.find("</text>", at) + 7 - at));
  std::string broken = html;
  broken.erase(broken.find("</svg>"), 6);

  const std::pair<std::string, std::string> cases[] = {
      {tampered("missing.html", missing_point), "9 marks drawn, expected 10"},
      {tampered("script.html", script), "<script> element"},
      {tampered("fetch.html", fetch), "http://example.invalid/x.png"},
      {tampered("overlap.html", overlap), "overlap"},
      {tampered("broken.html", broken), "not well-formed XML"},
  };
  for (const auto& [file, reason] : cases) {
    Run bad = report_check(file);
    INFO(file, "\n", bad.out);
    CHECK(bad.code == 1);
    CHECK(bad.out.find(reason) != std::string::npos);
  }
  Run wrong = report_check(path, "--expect loss=train,validation");
  CHECK(wrong.code == 1);
  Run absent = report_check(dir.file("absent.html"));
  CHECK(absent.code == 2);
}
