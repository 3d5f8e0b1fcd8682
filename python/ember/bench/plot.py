"""Plots of benchmark and profile records (matplotlib, the optional extra ``ember[plot]``)."""

from __future__ import annotations

from pathlib import Path

_MARKERS = {"ember": "o", "numpy": "s", "torch": "^", "im2col+numpy": "D", "ember fp32": "v", "numpy fp32": "P",
            "torch int8": "X", "torch bf16": "<"}


def pyplot():
    """matplotlib's pyplot on a file backend, or an ImportError naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'ember[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# The image formats a plot may be written in, named by the file's extension: matplotlib's that
# need nothing more than matplotlib itself (pgf needs LaTeX, avif a Pillow plugin).
_FORMATS = ("png", "svg", "svgz", "pdf", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


def _check_format(path: Path) -> None:
    from matplotlib.backend_bases import FigureCanvasBase

    formats = [f for f in _FORMATS if f in FigureCanvasBase.get_supported_filetypes()]
    if path.suffix.lower().lstrip(".") not in formats:
        raise ValueError(f"--plot {path}: the file name must end in the image format, one of "
                         f"{', '.join('.' + f for f in formats)}")


def output(path, inputs=()) -> Path:
    """``path`` checked as a plot's file before any work: matplotlib installed, an image format
    it writes (the extension), a folder that exists, and none of ``inputs``."""
    from .._cli_data import output_path

    pyplot()
    path = output_path(path, path, "--plot", inputs)
    _check_format(path)
    return path


def _save(fig, path) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--plot {path}: the folder {path.parent} does not exist")
    _check_format(path)  # matplotlib would add .png to a name without one, and write another file
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def bench(data: dict, path) -> Path:
    """Throughput against the work per call, one panel for compute-bound cases (GFLOP/s, the
    measured FMA peak as the roof) and one for memory-bound ones (GB/s, the measured read
    bandwidth as the roof): Ember filled, references hollow, one colour per kernel."""
    plt = pyplot()
    from matplotlib import ticker

    threads = max(r["threads"] for r in data["results"]) if data["results"] else 1
    results = [r for r in data["results"] if r["threads"] == threads]
    panels = [("flop", "compute-bound kernels", "work per call (GFLOP)", "GFLOP/s", 1e-9),
              ("byte", "memory-bound kernels", "data per call (MB)", "GB/s", 1e-6)]
    panels = [p for p in panels if any(r["unit"] == p[0] for r in results)]
    fig, axes = plt.subplots(max(1, len(panels)), 1, figsize=(10, 4.6 * max(1, len(panels))), squeeze=False)
    kernels = sorted({r["kernel"] for r in results})
    colours = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(kernels)}
    for ax, (unit, title, xlabel, ylabel, scale) in zip(axes[:, 0], panels):
        mine = [r for r in results if r["unit"] == unit]
        for kernel in sorted({r["kernel"] for r in mine}):
            for impl in sorted({r["impl"] for r in mine if r["kernel"] == kernel}, key=lambda i: i != "ember"):
                rows = sorted((r for r in mine if r["kernel"] == kernel and r["impl"] == impl), key=lambda r: r["work"])
                x = [r["work"] * scale for r in rows]
                y = [r["work"] / r["median_s"] * 1e-9 for r in rows]
                filled = impl == "ember"
                ax.plot(x, y, linestyle="none", marker=_MARKERS.get(impl, "*"), color=colours[kernel],
                        markerfacecolor=colours[kernel] if filled else "none", markersize=8 if filled else 7,
                        label=f"{kernel}: {impl}")
        name = "fma_peak" if unit == "flop" else "read_bandwidth"
        roof = next((item for item in data["limits"] if item["name"] == name and item["threads"] == threads), None)
        if roof is not None:
            ax.axhline(roof["value"], color="black", linewidth=1.5, linestyle="--",
                       label=f"measured {'FMA peak' if unit == 'flop' else 'read bandwidth'} "
                             f"{roof['value']:.0f} {roof['unit']}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"throughput ({ylabel})")
        ax.set_title(f"{title}, {threads} thread{'s' if threads > 1 else ''}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    machine = data["machine"]
    fig.suptitle(f"ember bench ({data['preset']}): {machine['cpu_model']}, ISA {machine['isa']}"
                 " -- filled: Ember, hollow: references", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def profile(data: dict, path) -> Path:
    """Three panels: throughput and latency per call against batch size, one line per variant,
    and each variant's step split by layer (forward and, where trained, backward)."""
    plt = pyplot()
    from matplotlib import ticker

    variants = data["variants"]
    fig = plt.figure(figsize=(12, 8.5))
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 1.1))
    ax_rate, ax_lat, ax_layers = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    for name, v in variants.items():
        batches = [t["batch"] for t in v["throughput"]]
        ax_rate.plot(batches, [t["samples_per_s"] for t in v["throughput"]], marker="o", label=name)
        ax_lat.plot(batches, [t["seconds"] * 1e3 for t in v["throughput"]], marker="o", label=name)
    for ax, label in ((ax_rate, "throughput (samples/s)"), (ax_lat, "time per call (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("batch size (inputs per call)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="variant", fontsize=8)
    ax_rate.set_title("throughput against batch size (inference)")
    ax_lat.set_title("latency against batch size (inference)")
    names = list(variants)
    kinds = {}  # layer name -> the kinds it has across the variants (Linear / QuantLinear)
    for v in variants.values():
        for layer in v["layers"]:
            kinds.setdefault(layer["name"], [])
            if layer["kind"] not in kinds[layer["name"]]:
                kinds[layer["name"]].append(layer["kind"])
    colours = {n: plt.get_cmap("tab20")(i % 20) for i, n in enumerate(kinds)}
    for row, name in enumerate(names):
        left = 0.0
        for layer in variants[name]["layers"]:
            for part, hatch in (("forward_s", None), ("backward_s", "//")):
                ms = (layer[part] or 0.0) * 1e3
                if ms > 0:
                    ax_layers.barh(row, ms, left=left, color=colours[layer["name"]], hatch=hatch, edgecolor="white")
                    left += ms
    from matplotlib.patches import Patch

    handles = [Patch(color=colours[n], label=f"{n} {' / '.join(k)}") for n, k in kinds.items()]
    ax_layers.set_yticks(range(len(names)))
    ax_layers.set_yticklabels([f"{n} ({'train step' if variants[n]['trained'] else 'inference'})" for n in names])
    ax_layers.invert_yaxis()
    ax_layers.set_xlabel(f"time per step at batch {data['layer_batch']} (ms); hatched: backward")
    ax_layers.set_title("where the time goes, layer by layer")
    ax_layers.grid(True, axis="x", alpha=0.3)
    ax_layers.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                     title="layer")
    fig.suptitle(f"ember profile: {data['model']} on {tuple(data['input_shape'])}, {data['device']}; "
                 f"{data['machine']['cpu_model']}, {data['machine']['threads'][0]} threads", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
