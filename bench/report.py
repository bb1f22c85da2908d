"""Summarise a pytest-benchmark JSON as Markdown tables (and a bar chart).

    python -m pytest bench/ --benchmark-json=out.json
    python bench/report.py out.json [more.json ...] [--png ratios.png]

One table per benchmark group: each entry's median time, GFLOP/s when the
benchmark recorded its flops (extra_info["flops"]), and its speed relative to
the NumPy entry of the same group (numpy median / entry median: above 1 is
faster than NumPy). Given several JSON files (repeated runs on a noisy
machine), each entry's median is the median of the runs' medians.
A PNG bar chart of those ratios is written when matplotlib is importable.
"""
import argparse
import json
import statistics
import sys
from collections import defaultdict

REFERENCE = "numpy"


def impl_of(bench):
    """The implementation's name: extra_info["impl"], else the first test parameter."""
    info = bench.get("extra_info") or {}
    if "impl" in info:
        return info["impl"]
    params = bench.get("params") or {}
    return str(params.get("impl", bench.get("name", "?")))


def load(paths):
    """group -> impl -> {"median": seconds, "flops": int or None}."""
    medians = defaultdict(lambda: defaultdict(list))
    flops = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for bench in data.get("benchmarks", []):
            group = bench.get("group") or bench.get("name")
            impl = impl_of(bench)
            medians[group][impl].append(bench["stats"]["median"])
            if (bench.get("extra_info") or {}).get("flops"):
                flops[group, impl] = bench["extra_info"]["flops"]
    return {group: {impl: {"median": statistics.median(ts), "runs": len(ts), "flops": flops.get((group, impl))}
                    for impl, ts in impls.items()}
            for group, impls in medians.items()}


def format_time(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds:.3f} s"


def ratio(entries, impl):
    ref = entries.get(REFERENCE)
    if ref is None:
        return None
    return ref["median"] / entries[impl]["median"]


def markdown(results):
    lines = []
    for group in sorted(results):
        entries = results[group]
        lines += [f"### {group}", "", f"| impl | median | GFLOP/s | vs {REFERENCE} |", "|---|---:|---:|---:|"]
        for impl in sorted(entries, key=lambda i: entries[i]["median"]):
            e = entries[impl]
            gflops = f"{e['flops'] / e['median'] / 1e9:.1f}" if e["flops"] else ""
            r = ratio(entries, impl)
            runs = f" ({e['runs']} runs)" if e["runs"] > 1 else ""
            lines.append(f"| {impl} | {format_time(e['median'])}{runs} | {gflops} | "
                         f"{'' if r is None else f'{r:.2f}x'} |")
        lines.append("")
    return "\n".join(lines)


def bar_chart(results, path):
    """Ratio to NumPy per group and implementation; returns False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    groups = [g for g in sorted(results) if REFERENCE in results[g]]
    impls = sorted({i for g in groups for i in results[g] if i != REFERENCE})
    if not groups or not impls:
        return False
    width = 0.8 / len(impls)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(groups) * len(impls)), 4.5))
    for n, impl in enumerate(impls):
        xs = [g_i + n * width for g_i, g in enumerate(groups) if impl in results[g]]
        ys = [ratio(results[g], impl) for g in groups if impl in results[g]]
        ax.bar(xs, ys, width, label=impl)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))])
    ax.set_xticklabels(groups, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(f"speed relative to {REFERENCE} (higher is faster)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="pytest-benchmark JSON file(s)")
    parser.add_argument("--png", default="bench_ratios.png", help="bar chart path (needs matplotlib)")
    args = parser.parse_args(argv)
    results = load(args.json)
    if not results:
        print("no benchmarks in " + ", ".join(args.json), file=sys.stderr)
        return 1
    print(markdown(results))
    if bar_chart(results, args.png):
        print(f"bar chart: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
