"""Every speed target of the project in one table: each ratio minifcn / PyTorch against it.

    python benchmarks/targets.py                     # the targets, in this environment
    python benchmarks/targets.py --compare-unpinned  # and again with OpenBLAS's own kernel

The targets (ratios of median times, minifcn / PyTorch, lower is better):

- one training step (forward, loss, backward, Adam) of FCN-8s, batch 8 and 16, 64x64: 1.6
  (1.3 is the ambition); of U-Net, batch 8: 2.0;
- forward+backward of every Conv2d and ConvTranspose2d shape of ``layers.py`` (the default
  models' shapes, FCN's final up-samplers included): 1.5.

Each line says met or missed, and by how much. ``--compare-unpinned`` runs the same
measurements once more in a child process whose environment lacks ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` (a machine pinned to one OpenBLAS kernel measures the one it picks
itself), and reports the kernel that ran in each (threadpoolctl). Those variables are
changed for that child command only, never in the library. Writes ``results/targets.md``.
"""

from __future__ import annotations

import _common

_common.quiet_thread_spinning()

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import layers
import train_step

from minifcn import backend

STEP_TARGETS = [("fcn8s", 8, 1.6), ("fcn8s", 16, 1.6), ("unet", 8, 2.0)]
LAYER_TARGET = 1.5
AMBITION = {"fcn8s": 1.3}
PIN_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def blas_kernel() -> str:
    """The OpenBLAS kernel (core type) that runs NumPy's GEMMs, from threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl)"
    kernels = [f"{pool.get('architecture', '?')}, {pool['num_threads']} threads"
               for pool in threadpool_info() if pool["internal_api"] == "openblas"]
    return "; ".join(kernels) or "not OpenBLAS"


def outcome(ratio: float, target: float) -> str:
    """'met (0.31 under)' or 'MISSED by 0.12' for a ratio against its target."""
    margin = target - ratio
    return f"met ({margin:.2f} under)" if margin >= 0 else f"MISSED by {-margin:.2f}"


def measure_all(args, env, torch_models) -> list[dict]:
    """[{what, minifcn_ms, torch_ms, ratio, target}] for every target."""
    rows = []
    # --quick: small batches of 64x64 images (at 32x32 U-Net's 1x1 bottleneck would leave
    # batch norm one value per channel at batch 1)
    steps = ([(name, max(2, batch // 4), target) for name, batch, target in STEP_TARGETS]
             if args.quick else STEP_TARGETS)
    size = 64
    for name, batch, target in steps:
        pair = train_step.training_steps(name, batch, size, env, torch_models)
        times = _common.interleaved(pair.run, args.repeats, args.warmup, env.sync)
        rows.append({"what": f"{name} training step, {batch}x3x{size}x{size}",
                     **_timings(times), "target": target, "ambition": AMBITION.get(name)})
        print(_row_text(rows[-1]), flush=True)
    rng = backend.np.random.default_rng(1)
    for case in layers.make_cases(1 if args.quick else 8, env, torch_models):
        if case.layer not in ("Conv2d", "ConvTranspose2d"):
            continue
        _, step = layers.contenders(case, env, rng)
        times = _common.interleaved(step, args.repeats, args.warmup, env.sync)
        rows.append({"what": f"{case.layer} fwd+bwd {case.config}", **_timings(times),
                     "target": LAYER_TARGET, "ambition": None})
        print(_row_text(rows[-1]), flush=True)
    return rows


def _timings(times: dict[str, list[float]]) -> dict:
    """Medians (the targets' measure) and fastest runs of both contenders, in ms."""
    return {"minifcn_ms": _common.median_ms(times["minifcn"]),
            "torch_ms": _common.median_ms(times["torch"]),
            "minifcn_fastest_ms": _common.fastest_ms(times["minifcn"]),
            "torch_fastest_ms": _common.fastest_ms(times["torch"])}


def _row_text(row: dict) -> str:
    ratio = row["minifcn_ms"] / row["torch_ms"]
    return f"{row['what']}: {ratio:.3g} (target {row['target']}: {outcome(ratio, row['target'])})"


def unpinned_run(argv: list[str]) -> dict:
    """The same measurements in a child process without the OpenBLAS pin variables."""
    child_env = {k: v for k, v in os.environ.items() if k not in PIN_VARIABLES}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "unpinned.json"
        command = [sys.executable, str(Path(__file__).resolve()),
                   *[a for a in argv if a != "--compare-unpinned"], "--json", str(path),
                   "--out", folder]
        print(f"[child, without {', '.join(PIN_VARIABLES)}] {' '.join(command[1:])}",
              flush=True)
        subprocess.run(command, env=child_env, check=True)
        return json.loads(path.read_text())


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = _common.argument_parser(__doc__.splitlines()[0], repeats=20, quick_repeats=3)
    parser.add_argument("--compare-unpinned", action="store_true",
                        help=f"also measure in a child process without {PIN_VARIABLES} and "
                             f"report which OpenBLAS kernel ran in each")
    parser.add_argument("--json", type=Path, help="also write the rows and kernel as JSON")
    args = _common.parse_arguments(parser, argv)
    if args.device != "cpu":
        _common.fail("targets.py measures the CPU targets; use layers.py/train_step.py "
                     "with --device gpu")
    env = _common.setup(args)
    import torch_models  # imports PyTorch: only after setup() has checked it is there

    report = _common.Report("Speed targets: minifcn / PyTorch (float32)", env, args)
    pinned = {k: os.environ[k] for k in PIN_VARIABLES if k in os.environ}
    kernel = blas_kernel()
    rows = measure_all(args, env, torch_models)
    if args.json:
        args.json.write_text(json.dumps({"kernel": kernel, "rows": rows}))
    other = unpinned_run(argv) if args.compare_unpinned else None

    pin_text = ", ".join(f"{k}={v}" for k, v in pinned.items()) or "no pin variables set"
    headers = ["what", "minifcn ms", "torch ms", "ratio", "target", "outcome"]
    if other:
        headers += ["ratio, unpinned", "outcome, unpinned"]
    headers += ["fastest ms, minifcn / torch (ratio)"]
    table = []
    for k, row in enumerate(rows):
        ratio = row["minifcn_ms"] / row["torch_ms"]
        target = f"<= {row['target']}" + (f" (ambition {row['ambition']})"
                                          if row["ambition"] else "")
        cells = [row["what"], f"{row['minifcn_ms']:.2f}", f"{row['torch_ms']:.2f}",
                 f"**{_common.format_ratio(ratio)}**", target, outcome(ratio, row["target"])]
        if other:
            theirs = other["rows"][k]
            other_ratio = theirs["minifcn_ms"] / theirs["torch_ms"]
            cells += [_common.format_ratio(other_ratio), outcome(other_ratio, row["target"])]
        fastest = row["minifcn_fastest_ms"] / row["torch_fastest_ms"]
        cells += [f"{row['minifcn_fastest_ms']:.2f} / {row['torch_fastest_ms']:.2f} "
                  f"({_common.format_ratio(fastest)})"]
        table.append(cells)
    met = sum(row["minifcn_ms"] / row["torch_ms"] <= row["target"] for row in rows)
    note = (f"{met} of {len(rows)} targets met. OpenBLAS kernel: {kernel} ({pin_text}).")
    if other:
        note += (f" Unpinned run (child process without {', '.join(PIN_VARIABLES)}): "
                 f"kernel {other['kernel']}.")
    note += (" Ratios of medians of interleaved runs, which the targets are judged on; on a "
             "shared machine compare ratios, and read them beside the load average above. The "
             "last column, each contender's fastest run, shows what the code does when the "
             "machine leaves it alone.")
    report.table("Ratio minifcn / PyTorch against each target", headers, table, note)
    report.save(args.out, "targets")


if __name__ == "__main__":
    main()
