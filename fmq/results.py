"""Sweep results: the row every measured (method, bits) point becomes, CSV writing and reading, the
paper's claims, and the one answer to "do shipped results answer these settings?".

The shipped results are the CSVs in ``results/`` (``FMQ_RESULTS_DIR`` points elsewhere): for a data set
``D``, ``D.csv`` and any ``D_<variant>.csv`` (e.g. ``cifar10_guidance3.csv``). Each row carries the settings
it was made with (protocol, granularity, n, solver, steps, seed, guidance), so a file is picked by what is
in it, never by its name: :func:`shipped_results` returns the rows that answer a :class:`Wanted` exactly
when there are any, else the closest file as a reference, and always says which file it read.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .quant.codebook import BITS

__all__ = ["PAPER_CLAIMS", "SweepRow", "COLUMNS", "SETTINGS_COLUMNS", "paper_claims", "write_csv", "merge_csv",
           "read_results", "results_dir", "results_files", "Wanted", "Shipped", "answers", "shipped_results"]

REPO_ROOT = Path(__file__).resolve().parent.parent

# The paper's headline claims (arXiv 2511.11418), drawn as reference markers and quoted in the README. They
# were measured with its PSNR-SSIM.py (our velocity protocol) on models quantized by its own code, so each
# names the paper's variant: its "OT" is ot-equal-mass, its "PWL" pwl-paper, its "LogBase2" log2-paper.
_PAPER = {"ot": "ot-equal-mass", "uniform": "uniform", "pwl": "pwl-paper", "log2": "log2-paper"}
PAPER_CLAIMS: list[dict] = [
    {"protocol": "velocity", "bits": 2, **c, "method": _PAPER[c["method"]]} for c in [
        *({"dataset": d, "method": "ot", "metric": "ssim", "value": 0.8, "relation": "≈"}
          for d in ("mnist", "cifar10", "celeba32")),
        *({"dataset": d, "method": m, "metric": "ssim", "value": 0.4, "relation": "<"}
          for d in ("mnist", "cifar10", "celeba32") for m in ("uniform", "pwl", "log2")),
        {"dataset": "fashion_mnist", "method": "ot", "metric": "ssim", "value": 0.6, "relation": "≈"},
        {"dataset": "mnist", "method": "ot", "metric": "psnr", "value": 40.0, "relation": ">"},
        *({"dataset": "mnist", "method": m, "metric": "psnr", "value": 30.0, "relation": "<"}
          for m in ("uniform", "pwl", "log2")),
    ]
]


def paper_claims(dataset: str | None = None) -> list[dict]:
    """Copies of the paper's claimed points, optionally for one data set ("" gives none)."""
    return [dict(c) for c in PAPER_CLAIMS if dataset is None or c["dataset"] == dataset]


@dataclass
class SweepRow:
    """One measured (method, bits) point and the settings it was made with."""

    method: str
    bits: int | float  # width; for a mixed method the budget in bits per weight
    protocol: str
    granularity: str
    ssim: float
    ssim_lo: float
    ssim_hi: float
    psnr: float  # dB; identical images count as fmq.metrics.PSNR_CAP
    psnr_lo: float
    psnr_hi: float
    deviation: float  # mean over images of ‖x₁ − x̂₁‖ (generation); of ‖v − v̂‖ (velocity)
    traj_deviation: float  # mean over the saved times of the mean ‖x_t − x̂_t‖ (nan for velocity)
    class_acc: float  # share of quantized generations classified as asked (nan without classifier)
    w2: float  # W2 of the weights: sqrt of the count-weighted mean of the tensors' W2² (QuantReport.w2)
    mse: float  # mean squared weight error over the quantized tensors
    bits_per_weight: float  # index bits + codebook bits per quantized weight
    packed_bytes: int  # size of the packed safetensors file on disk
    latent_var_ratio: float  # fmq's: mean over the 20 PCA components of var_q / var_fp (1 = same spread)
    latent_collapsed: int  # the paper's: PCA components with variance < 1e-4
    latent_mean_var: float  # the paper's: mean of the 20 PCA component variances (absolute, ddof 0)
    latent_std_var: float  # the paper's: their standard deviation (ddof 0)
    n: int
    solver: str
    steps: int
    seed: int
    guidance: float
    seconds: float  # wall time of this point
    extra: dict = field(default_factory=dict)  # e.g. bounds, FP32 class accuracy


COLUMNS: list[str] = ["dataset", *(f.name for f in dataclasses.fields(SweepRow) if f.name != "extra")]
SETTINGS_COLUMNS = ("protocol", "granularity", "n", "solver", "steps", "seed", "guidance")  # how a row was made
_TEXT = ("dataset", "method", "protocol", "granularity", "solver")


def write_csv(rows: list[SweepRow], path: str | Path, dataset: str = "") -> Path:
    """One line per row in :data:`COLUMNS` order; ``extra`` entries become columns of their own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra_keys = sorted({k for r in rows for k in r.extra})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*COLUMNS, *extra_keys])
        for r in rows:
            d = dataclasses.asdict(r)
            w.writerow([dataset, *(d[k] for k in COLUMNS[1:]), *(r.extra.get(k, "") for k in extra_keys)])
    return path


def merge_csv(rows: list[SweepRow], path: str | Path, dataset: str = "") -> int:
    """:func:`write_csv` of ``rows`` into ``path``, keeping the rows already there whose (protocol, method, bits)
    is not among ``rows``' (values as written, extra columns too): sweeping some points again replaces those
    rows and keeps the others' (another protocol, method or width). Returns how many were kept."""
    path = Path(path)
    old: list[dict] = []
    if path.is_file():
        with open(path, newline="") as f:
            old = list(csv.DictReader(f))
    def bits(v) -> float | None:
        try:
            return float(v)
        except (TypeError, ValueError):
            return None

    swept = {(r.protocol, r.method, float(r.bits)) for r in rows}
    keep = [r for r in old if (r.get("protocol"), r.get("method"), bits(r.get("bits"))) not in swept]
    write_csv(rows, path, dataset)
    if keep:
        with open(path, newline="") as f:
            new = list(csv.DictReader(f))
        cols = list(new[0]) if new else list(COLUMNS)
        cols += [c for r in keep for c in r if c not in cols]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(cols)), restval="")
            w.writeheader()
            w.writerows(keep + new)  # the kept rows first, as a combined sweep writes them
    return len(keep)


def _num(v: str):
    if v == "":
        return float("nan")
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


@lru_cache(maxsize=32)
def _read(path: str, mtime_ns: int, size: int) -> tuple[dict, ...]:
    with open(path, newline="") as f:
        return tuple({k: v if k in _TEXT else _num(v) for k, v in row.items()} for row in csv.DictReader(f))


def read_results(path: str | Path) -> list[dict]:
    """Rows of a results CSV as dicts with numbers parsed (nan where empty); ValueError when there is no file.

    Files are parsed once per version (path, mtime, size); every call gets its own copies of the rows.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{path}: no such results CSV")
    st = p.stat()
    return [dict(r) for r in _read(str(p.resolve()), st.st_mtime_ns, st.st_size)]


def results_dir() -> Path:
    return Path(os.environ.get("FMQ_RESULTS_DIR") or REPO_ROOT / "results")


def results_files(dataset: str) -> list[Path]:
    """The shipped results CSVs of a data set: ``<dataset>.csv`` first, then ``<dataset>_*.csv`` by name."""
    if not dataset:
        return []
    d = results_dir()
    main = [d / f"{dataset}.csv"] if (d / f"{dataset}.csv").is_file() else []
    # another data set's name can extend this one's (mnist_x vs fashion_mnist): match the prefix exactly
    return main + sorted(p for p in d.glob(f"{dataset}_*.csv") if p.is_file())


@dataclass(frozen=True)
class Wanted:
    """The settings a page or a script wants results for."""

    methods: tuple[str, ...]
    granularity: str = "channel"
    protocol: str = "generation"
    n: int = 64
    solver: str = "heun"
    steps: int = 20
    seed: int = 0
    guidance: float = 1.0
    label: int | None = None  # one class only; shipped sweeps use every class in turn (None)
    bits: tuple[int, ...] = BITS

    def settings(self) -> dict:
        return {k: getattr(self, k) for k in SETTINGS_COLUMNS}


@dataclass
class Shipped:
    """Shipped rows for the wanted methods, the file they came from, and whether they answer exactly."""

    path: Path
    rows: list[dict]  # the file's rows for the wanted protocol, granularity and methods
    made: dict  # the settings these rows were made with (SETTINGS_COLUMNS)
    exact: bool  # made with the wanted settings, and every wanted (method, bits) is there

    def describe(self) -> str:
        """"results/cifar10_guidance3.csv: 64 samples, heun × 20 steps, seed 0, guidance 3"."""
        m = self.made
        where = self.path.relative_to(REPO_ROOT) if self.path.is_relative_to(REPO_ROOT) else self.path
        return (f"{where}: {m['n']} samples, {m['solver']} × {m['steps']} steps, seed {m['seed']}, "
                f"guidance {float(m['guidance']):g}")


def _same(a, b) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
    return str(a) == str(b)


def _made(rows: list[dict]) -> dict | None:
    """The settings all rows share, or None when they were not all made the same way."""
    if not rows or any(k not in rows[0] for k in SETTINGS_COLUMNS):
        return None
    made = {k: rows[0][k] for k in SETTINGS_COLUMNS}
    if any(not _same(r[k], v) for r in rows for k, v in made.items()):
        return None
    return made


def answers(rows: list[dict], wanted: Wanted) -> bool:
    """Whether ``rows`` hold every wanted (method, bits) point, each made with exactly the wanted settings.

    A point the sweep recorded as skipped (pwl at 1 bit) counts as answered: computing it again gives the
    same refusal.
    """
    if wanted.label is not None or not wanted.methods:
        return False
    mine = [r for r in rows if r.get("method") in wanted.methods
            and all(_same(r.get(k), v) for k, v in wanted.settings().items())]
    have = {(r["method"], float(r["bits"])) for r in mine}  # a mixed method's 1.5 is not 1
    return all((m, float(b)) in have for m in wanted.methods for b in wanted.bits)


def shipped_results(dataset: str, wanted: Wanted) -> Shipped | None:
    """The shipped rows that answer ``wanted`` exactly if a file has them; else the closest file's rows as a
    reference (same guidance first, then the data set's main file); None when no file has any such rows.

    ``dataset`` is the name of a *shipped* model; give "" for anything else (an upload's metadata may say
    "mnist", but these results are not about it).
    """
    candidates = []
    for path in results_files(dataset):
        rows = [r for r in read_results(path) if r.get("protocol") == wanted.protocol
                and r.get("granularity") == wanted.granularity and r.get("method") in wanted.methods]
        made = _made(rows)
        if made is None:
            continue
        exact = answers(rows, wanted)
        rank = (not exact, not _same(made["guidance"], wanted.guidance), len(candidates))
        candidates.append((rank, Shipped(path, rows, made, exact)))
    return min(candidates, key=lambda c: c[0])[1] if candidates else None
