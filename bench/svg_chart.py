"""Line charts of milliseconds (log scale) against sparsity as SVG, drawn by hand (no matplotlib),
for the benchmark scripts (sparse_sweep.py, inference_vs_runtimes.py --sweep)."""
import math


def write_chart(path, panels, xs, colors):
    """Writes panels side by side to path.

    panels: [(title, {series name: {x: ms}})], x a sparsity in [0, 1]; xs: the x ticks (the
    sparsities measured); colors: {series name: CSS colour}, which also gives the legend's order.
    Points that are missing, zero or not finite are left out of their line."""
    W, H, pad_l, pad_r, pad_t, pad_b = 540, 340, 60, 20, 40, 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(panels)}" height="{H + 40}" '
           f'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>']
    ok = lambda v: v is not None and v > 0 and math.isfinite(v)
    for p, (title, series) in enumerate(panels):
        vals = [v for pts in series.values() for v in pts.values() if ok(v)]
        if not vals:
            continue
        lo, hi = math.log10(min(vals)) - 0.1, math.log10(max(vals)) + 0.1
        x0, pw, ph = p * W + pad_l, W - pad_l - pad_r, H - pad_t - pad_b

        def X(s):
            return x0 + pw * s

        def Y(ms):
            return pad_t + ph * (1 - (math.log10(ms) - lo) / (hi - lo))
        out.append(f'<text x="{x0 + pw / 2}" y="20" text-anchor="middle" font-weight="bold">'
                   f'{title}</text>')
        out.append(f'<rect x="{x0}" y="{pad_t}" width="{pw}" height="{ph}" fill="none" '
                   f'stroke="#888"/>')
        for e in range(math.floor(lo), math.ceil(hi) + 1):
            for m in (1, 2, 5):
                v = m * 10.0 ** e
                if lo <= math.log10(v) <= hi:
                    y = Y(v)
                    out.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                               f'stroke="#eee"/>')
                    out.append(f'<text x="{x0 - 5}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
        for s in xs:
            out.append(f'<text x="{X(s):.1f}" y="{pad_t + ph + 15}" text-anchor="middle">'
                       f'{int(round(100 * s))}</text>')
        out.append(f'<text x="{x0 + pw / 2}" y="{pad_t + ph + 32}" text-anchor="middle">'
                   f'sparsity % (ms, log scale)</text>')
        for k, (name, color) in enumerate(colors.items()):
            pts = series.get(name, {})
            xy = [(X(s), Y(pts[s])) for s in xs if s in pts and ok(pts[s])]
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
            for x, y in xy:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>')
            ly = H + 5
            lx = p * W + 10 + k * 104
            out.append(f'<line x1="{lx}" x2="{lx + 16}" y1="{ly}" y2="{ly}" stroke="{color}" '
                       f'stroke-width="3"/><text x="{lx + 20}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
