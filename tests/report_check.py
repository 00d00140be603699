#!/usr/bin/env python3
"""Opens a sprig HTML report in headless Chromium and checks that every chart rendered.

Usage:
  python3 tests/report_check.py REPORT.html [--expect ID=NAME,NAME ...] [--screenshot OUT.png]

What is expected comes from the sidecar REPORT.html.charts.json that Report::write puts next to
the report (each chart's id, kind, series names, points and error bars drawn), and from any
--expect ID=NAME,... arguments (the chart svg#chart-ID must exist with exactly those series).

Checks, without the browser: the page and each <svg> in it are well-formed XML. In Chromium (driven over the
DevTools protocol): the page loads with no console errors or warnings, no exceptions, no
<script> and no network request besides the file itself; every chart in the sidecar is an svg
with a non-zero bounding box, the expected kind and series in order, one rendered mark (point
or bar, with a non-zero box) per point drawn and one error bar per error given; every text in a
chart is rendered, lies inside the chart and overlaps no other text; and the page has no chart
the sidecar does not list.

Exit status: 0 all checks passed, 1 a check failed, 2 the check could not run (no Chromium, bad
arguments). Chromium is found as --chromium, $CHROMIUM, or chromium / chromium-browser on PATH.
"""
import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET

try:
    import websocket  # pip package websocket-client
except ImportError:
    websocket = None


class SetupError(Exception):
    """The check could not run (as opposed to a report that failed it)."""


def find_chromium(explicit):
    named = explicit or os.environ.get("CHROMIUM")
    if named:
        if not shutil.which(named):
            raise SetupError(f"Chromium '{named}' (from --chromium or $CHROMIUM) not found")
        return shutil.which(named)
    for cand in ("chromium", "chromium-browser"):
        if shutil.which(cand):
            return shutil.which(cand)
    raise SetupError("Chromium not found (install Debian's 'chromium', or pass --chromium PATH)")


class Browser:
    """A headless Chromium with one page, spoken to over the DevTools protocol."""

    def __init__(self, exe, timeout, width, height):
        self.timeout = timeout
        self.events = []
        self.next_id = 0
        self.profile = tempfile.mkdtemp(prefix="sprig_report_check_")
        self.log = open(os.path.join(self.profile, "chromium.log"), "w+")
        args = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-component-update",
            "--hide-scrollbars", "--force-device-scale-factor=1",
            f"--window-size={width},{height}", f"--user-data-dir={self.profile}",
            "--remote-debugging-port=0", "about:blank",
        ]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        try:
            self.ws = websocket.create_connection(self._page_ws_url(), timeout=timeout,
                                                  suppress_origin=True)
        except BaseException:
            self.close()
            raise

    def _chromium_output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-2000:]

    def _page_ws_url(self):
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SetupError(f"Chromium exited with status {self.proc.returncode}:\n"
                                 + self._chromium_output())
            if os.path.exists(port_file):
                lines = open(port_file).read().split("\n")
                if lines and lines[0].strip().isdigit():
                    port = int(lines[0])
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                                timeout=self.timeout) as r:
                        targets = json.load(r)
                    pages = [t for t in targets if t.get("type") == "page"]
                    if pages:
                        return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise SetupError(f"Chromium did not open its DevTools port in {self.timeout} s:\n"
                         + self._chromium_output())

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise SetupError(f"DevTools {method} failed: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise SetupError(f"DevTools {method}: no answer in {self.timeout} s")

    def wait_event(self, method):
        deadline = time.time() + self.timeout
        while not any(e["method"] == method for e in self.events):
            if time.time() > deadline:
                return False
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
        return True

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise SetupError(f"evaluating the page probe failed: {r['exceptionDetails']}")
        return r["result"]["value"]

    def close(self):
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)


# Runs in the page: what each svg drew and where its texts landed (CSS pixels).
PROBE = r"""
(() => {
  const out = {title: document.title, scripts: document.scripts.length, svgs: []};
  for (const svg of document.querySelectorAll('svg')) {
    const r = svg.getBoundingClientRect();
    const series = [];
    for (const g of svg.querySelectorAll('g.series')) {
      const marks = g.querySelectorAll('.point, .bar');
      let visible = 0;
      for (const m of marks) {
        const b = m.getBoundingClientRect();
        if (b.width > 0 && b.height > 0) visible++;
      }
      series.push({name: g.getAttribute('data-name'), marks: marks.length, visible,
                   errs: g.querySelectorAll('.err').length});
    }
    const texts = [];
    for (const t of svg.querySelectorAll('text')) {
      const b = t.getBoundingClientRect();
      // The text's own box, turned as drawn: four corners on the page.
      const l = t.getBBox(), m = t.getScreenCTM();
      const corners = [[l.x, l.y], [l.x + l.width, l.y], [l.x + l.width, l.y + l.height],
                       [l.x, l.y + l.height]].map(([x, y]) =>
          [m.a * x + m.c * y + m.e - r.left, m.b * x + m.d * y + m.f - r.top]);
      texts.push({text: t.textContent, corners,
                  x: b.left - r.left, y: b.top - r.top, w: b.width, h: b.height});
    }
    out.svgs.push({id: svg.id, kind: svg.getAttribute('data-kind'), w: r.width, h: r.height,
                   children: svg.childElementCount, series, texts});
  }
  return out;
})()
"""


def parse_expect(items):
    expect = {}
    for item in items:
        chart_id, sep, names = item.partition("=")
        if not chart_id:
            raise SetupError(f"--expect '{item}': want ID or ID=NAME,NAME")
        expect[chart_id] = names.split(",") if sep else None
    return expect


def static_checks(html, failures):
    # Report::html writes XHTML-compatible markup, so escaping slips show up as parse errors.
    try:
        ET.fromstring(html.encode("utf-8"))
    except ET.ParseError as e:
        failures.append(f"the page is not well-formed XML: {e}")
    svgs = re.findall(r"<svg\b.*?</svg>", html, flags=re.S)
    for i, svg in enumerate(svgs):
        try:
            ET.fromstring(svg)
        except ET.ParseError as e:
            failures.append(f"svg #{i + 1} is not well-formed XML: {e}")
    return len(svgs)


def overlaps(a, b, slack=1.0):
    """Whether two texts' boxes (turned rectangles) overlap by more than slack pixels: the
    separating axis test over both rectangles' edge normals."""
    pa, pb = a["corners"], b["corners"]
    for poly in (pa, pb):
        for i in range(4):
            (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % 4]
            nx, ny = y1 - y2, x2 - x1
            norm = (nx * nx + ny * ny) ** 0.5
            if norm == 0:
                continue
            proj_a = [(x * nx + y * ny) / norm for x, y in pa]
            proj_b = [(x * nx + y * ny) / norm for x, y in pb]
            if min(max(proj_a), max(proj_b)) - max(min(proj_a), min(proj_b)) <= slack:
                return False
    return True


def check_layout(svg, failures):
    name = svg["id"] or "(svg without id)"
    texts = [t for t in svg["texts"] if t["text"].strip()]
    for t in texts:
        if t["w"] <= 0 or t["h"] <= 0:
            failures.append(f"{name}: text '{t['text']}' was not rendered (no fonts?)")
        elif (t["x"] < -1 or t["y"] < -1 or t["x"] + t["w"] > svg["w"] + 1
              or t["y"] + t["h"] > svg["h"] + 1):
            failures.append(f"{name}: text '{t['text']}' sticks out of the chart")
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            if overlaps(a, b):
                failures.append(f"{name}: texts '{a['text']}' and '{b['text']}' overlap")


def check_charts(page, sidecar, expect, failures):
    by_id = {s["id"]: s for s in page["svgs"] if s["id"]}
    for s in page["svgs"]:
        if s["w"] <= 0 or s["h"] <= 0:
            failures.append(f"{s['id'] or 'an svg'}: empty bounding box {s['w']}x{s['h']}")
        if s["children"] == 0:
            failures.append(f"{s['id'] or 'an svg'}: no content")
        check_layout(s, failures)
    listed = set()
    for chart in (sidecar or {}).get("charts", []):
        svg_id = chart["svg_id"]
        listed.add(svg_id)
        svg = by_id.get(svg_id)
        if svg is None:
            failures.append(f"chart '{chart['id']}': no svg#{svg_id} in the page")
            continue
        if svg["kind"] != chart["kind"]:
            failures.append(f"{svg_id}: drawn as {svg['kind']}, expected {chart['kind']}")
        got = [s["name"] for s in svg["series"]]
        want = [s["name"] for s in chart["series"]]
        if got != want:
            failures.append(f"{svg_id}: series {got}, expected {want}")
            continue
        for g, w in zip(svg["series"], chart["series"]):
            if g["marks"] != w["points"]:
                failures.append(f"{svg_id}, series '{w['name']}': {g['marks']} marks drawn, "
                                f"expected {w['points']}")
            if g["visible"] != g["marks"]:
                failures.append(f"{svg_id}, series '{w['name']}': only {g['visible']} of "
                                f"{g['marks']} marks have a non-zero box")
            if g["errs"] != w.get("error_bars", 0):
                failures.append(f"{svg_id}, series '{w['name']}': {g['errs']} error bars, "
                                f"expected {w.get('error_bars', 0)}")
    if sidecar is not None:
        for s in page["svgs"]:
            if s["id"] not in listed:
                failures.append(f"svg#{s['id']} is not in the sidecar's chart list")
    for chart_id, names in expect.items():
        svg = by_id.get("chart-" + chart_id)
        if svg is None:
            failures.append(f"--expect {chart_id}: no svg#chart-{chart_id} in the page")
        elif names is not None and [s["name"] for s in svg["series"]] != names:
            failures.append(f"--expect {chart_id}: series "
                            f"{[s['name'] for s in svg['series']]}, expected {names}")
        elif names is not None and any(s["visible"] == 0 for s in svg["series"]):
            failures.append(f"--expect {chart_id}: a series drew nothing")


def browser_checks(browser, path, failures, screenshot):
    url = "file://" + os.path.abspath(path)
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(domain + ".enable")
    browser.call("Page.navigate", url=url)
    if not browser.wait_event("Page.loadEventFired"):
        failures.append(f"the page did not finish loading in {browser.timeout} s")
        return None
    page = browser.evaluate(PROBE)
    browser.call("Runtime.evaluate", expression="0")  # flushes messages logged during the probe
    for e in browser.events:
        m, p = e["method"], e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            failures.append(f"console {p['type']}: {text}")
        elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            failures.append(f"console {p['entry']['level']}: {p['entry']['text']}")
        elif m == "Runtime.exceptionThrown":
            failures.append(f"exception: {p['exceptionDetails'].get('text')}")
        elif m == "Network.requestWillBeSent":
            req = p["request"]["url"]
            if req != url and not req.startswith("data:"):
                failures.append(f"the page requested {req} (reports must be self-contained)")
    if page["scripts"]:
        failures.append(f"the page has {page['scripts']} <script> element(s)")
    if not page["title"].strip():
        failures.append("the page has no <title>")
    if screenshot:
        metrics = browser.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": metrics["width"],
                                  "height": metrics["height"], "scale": 1})
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    return page


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report")
    ap.add_argument("--expect", action="append", default=[], metavar="ID[=NAME,NAME]",
                    help="chart svg#chart-ID must exist (with exactly these series)")
    ap.add_argument("--sidecar", help="default: REPORT.charts.json")
    ap.add_argument("--no-sidecar", action="store_true", help="check --expect only")
    ap.add_argument("--screenshot", metavar="PNG", help="also save the whole page as PNG")
    ap.add_argument("--chromium", help="the browser executable")
    ap.add_argument("--width", type=int, default=1100)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()

    failures = []
    try:
        if websocket is None:
            raise SetupError("the Python package websocket-client is missing "
                             "(bash scripts/setup.sh --test installs it)")
        if not os.path.isfile(args.report):
            raise SetupError(f"no report at '{args.report}'")
        expect = parse_expect(args.expect)
        sidecar = None
        if not args.no_sidecar:
            sidecar_path = args.sidecar or args.report + ".charts.json"
            if not os.path.isfile(sidecar_path):
                raise SetupError(f"no sidecar '{sidecar_path}' (Report::write writes it; "
                                 "or pass --no-sidecar with --expect)")
            with open(sidecar_path) as f:
                sidecar = json.load(f)
        elif not expect:
            raise SetupError("--no-sidecar needs at least one --expect")
        with open(args.report, encoding="utf-8", errors="replace") as f:
            static_checks(f.read(), failures)
        browser = Browser(find_chromium(args.chromium), args.timeout, args.width, 900)
        try:
            page = browser_checks(browser, args.report, failures, args.screenshot)
        finally:
            browser.close()
        if page is not None:
            check_charts(page, sidecar, expect, failures)
    except SetupError as e:
        print(f"report_check: cannot check '{args.report}': {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a browser that hung up or timed out: no verdict on the report
        print(f"report_check: cannot check '{args.report}': {type(e).__name__}: {e}",
              file=sys.stderr)
        return 2
    if failures:
        for f in failures:
            print(f"report_check: FAIL {args.report}: {f}", file=sys.stderr)
        return 1
    n_series = sum(len(s["series"]) for s in page["svgs"])
    n_marks = sum(g["marks"] for s in page["svgs"] for g in s["series"])
    print(f"report_check: OK {args.report}: {len(page['svgs'])} charts, {n_series} series, "
          f"{n_marks} marks, no console errors, nothing fetched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
