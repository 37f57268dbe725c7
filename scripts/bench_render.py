"""Rendering throughput of gemfactory.ecg.render: clinical 12-lead sheets per second on one core.

Prints images/s for each DPI (render only, and render + PNG encode) and the ratio to a naive
matplotlib baseline that draws the same sheet with one `plot` call per grid line and per lead,
measured side by side in this run. Usage: python scripts/bench_render.py [--n 40]
"""
from __future__ import annotations

import argparse
import io
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from gemfactory.ecg.render import STANDARD_LEADS, page_size_px, render_ecg  # noqa: E402
from gemfactory.data.synth import simulate_ecg  # noqa: E402


def naive_render(signal, fs, dpi):
    """The straightforward way: a Figure, every grid line and lead drawn with plot()."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    w, h = page_size_px(dpi)
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    for x in range(0, 280):
        ax.plot([x, x], [0, 215], color="red", lw=0.2 if x % 5 else 0.6)
    for y in range(0, 215):
        ax.plot([0, 280], [y, y], color="red", lw=0.2 if y % 5 else 0.6)
    t = np.arange(signal.shape[1]) / fs * 25
    for i in range(12):
        ax.plot(t[: signal.shape[1] // 4] + 62.5 * (i // 3), signal[i, : signal.shape[1] // 4] * 10 + 170 - 45 * (i % 3),
                color="black", lw=0.5)
    ax.plot(t, signal[1] * 10 + 35, color="black", lw=0.5)
    ax.set_xlim(0, 280), ax.set_ylim(0, 215), ax.axis("off")
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())


def rate(fn, n):
    fn()  # warm-up (fonts, grid cache)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    args = parser.parse_args()
    signal = simulate_ecg(72, fs=500, duration_s=10, rng=0)
    print(f"12-lead sheet, 10 s at 500 Hz, leads {', '.join(STANDARD_LEADS)}; one core")
    for dpi in (30, 100):
        ours = rate(lambda: render_ecg(signal, 500, dpi=dpi), args.n)

        def with_png():
            render_ecg(signal, 500, dpi=dpi).save(io.BytesIO(), format="PNG")

        ours_png = rate(with_png, args.n)
        naive = rate(lambda: naive_render(signal, 500, dpi), max(3, args.n // 10))
        print(f"dpi {dpi}: render {ours:.1f} images/s, render+PNG {ours_png:.1f} images/s, "
              f"naive matplotlib {naive:.1f} images/s")
        print(f"render_speedup_dpi{dpi}: {ours / naive:.1f}x")


if __name__ == "__main__":
    main()
