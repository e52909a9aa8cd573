"""Command line: ``python -m fmq train | sample | quantize``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

__all__ = ["main", "build_parser"]


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .data import DATASETS

    p = sub.add_parser("train", help="train a flow-matching velocity field")
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="data set name")
    p.add_argument("--data", help="npz file or torchvision root (default: ../shared/data/<dataset>.npz)")
    p.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--label-dropout", type=float, default=0.1)
    p.add_argument("--base-channels", type=int, default=32)
    p.add_argument("--channel-mults", default="1,2,2", help="comma-separated, e.g. 1,2,2")
    p.add_argument("--num-res-blocks", type=int, default=2)
    p.add_argument("--patch-size", type=int, default=2, help="pixel-unshuffle patch (2: ~4x fewer FLOPs)")
    p.add_argument("--no-attention", action="store_true")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--unconditional", action="store_true", help="ignore labels even for labelled sets")
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast in the forward pass")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a state file exists")
    p.add_argument("--init-from", default="", help="continue from this checkpoint's weights when no state file "
                   "exists (e.g. a committed checkpoint on a new machine)")


def _add_sample(sub: argparse._SubParsersAction) -> None:
    from .sampling import SOLVERS

    p = sub.add_parser("sample", help="generate a grid of images from a checkpoint or a packed model")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="FP32 checkpoint (.safetensors)")
    src.add_argument("--packed", help="packed model from `quantize` (.safetensors), run packed: each weight is "
                     "rebuilt from its indices only while its layer runs")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--solver", default="heun", choices=SOLVERS)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class", dest="label", type=int, default=None,
                   help="class label for conditional models (default: cycle through the classes)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    p.add_argument("--sde-scale", type=float, default=0.5, help="noise scale of the sde solver")
    p.add_argument("--out", required=True, help="PNG path")


def _add_train_classifier(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-classifier", help="train the small CNN that scores class accuracy of generations")
    p.add_argument("--dataset", required=True, choices=["mnist", "fashion_mnist"])
    p.add_argument("--data", help="npz file or torchvision root (default: ../shared/data/<dataset>.npz)")
    p.add_argument("--out", required=True, help="classifier path (.safetensors)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)


def _number(text: str) -> int | float:
    """"2" -> 2, "1.5" -> 1.5: a width, or a mixed method's budget in bits per weight."""
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"not a number of bits: {text!r}") from None
    return int(v) if v.is_integer() else v


def _parse_bits(text: str) -> tuple[int | float, ...]:
    """"1-8" | "2,4,8" | "1,1.5,2" (fractional budgets for mixed methods)."""
    out: list[int | float] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if hi:
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(_number(lo))
    return tuple(out)


def _add_calibration_args(p: argparse.ArgumentParser) -> None:
    from .methods import METHODS
    from .qconfig import CalibConfig

    d = CalibConfig()
    g = p.add_argument_group(f"calibrated methods ({', '.join(n for n, s in METHODS.items() if s.calibrated)})")
    g.add_argument("--cal-steps", type=int, default=d.steps, help="refinement steps (0 = none)")
    g.add_argument("--cal-samples", type=int, default=d.samples, help="FP32 calibration trajectories")
    g.add_argument("--cal-seed", type=int, default=d.seed, help="calibration draw (never an evaluation seed)")
    g.add_argument("--cal-early", type=float, default=d.early,
                   help="loss weight of a state at t = 0 against t = 1, linear in t (1 = uniform; README)")
    g.add_argument("--cal-restarts", type=int, default=d.restarts,
                   help="refinement runs on other batch orders, the least held-out loss kept (costs that many times)")


def _calibration(a: argparse.Namespace, methods) -> object | None:
    """The CalibConfig the flags ask for, or None when no method is calibrated (then the flags must be unset)."""
    from .methods import METHODS, method_spec
    from .qconfig import CalibConfig

    cfg = CalibConfig(steps=a.cal_steps, samples=a.cal_samples, seed=a.cal_seed, early=a.cal_early,
                      restarts=a.cal_restarts)
    if any(method_spec(m).calibrated for m in methods):
        return cfg
    if cfg != CalibConfig():
        calibrated = ", ".join(n for n, s in METHODS.items() if s.calibrated)
        raise ValueError(f"--cal-* options only apply to calibrated methods ({calibrated})")
    return None


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    from .sampling import SOLVERS

    p = sub.add_parser("sweep", help="methods x bit widths -> SSIM/PSNR table, PNG and HTML plots")
    p.add_argument("--dataset", required=True, help="shipped model name (checkpoints/<dataset>.safetensors)")
    p.add_argument("--checkpoint", help="another fmq checkpoint (default: the shipped one)")
    p.add_argument("--data", help="npz file or root for real test images (default: ../shared/data/<dataset>.npz)")
    p.add_argument("--methods", default="ot,ot-equal-mass,uniform,pwl,log2", help="comma-separated")
    p.add_argument("--bits", default="1-8", help="e.g. 1-8 or 2,4,8; mixed methods take budgets such as 1.5")
    p.add_argument("--granularity", default="channel", help="tensor | channel | group:G")
    p.add_argument("--scope", choices=["weights", "all"],
                   help="default: weights (Conv/Linear) for generation, all (every float tensor) for velocity")
    p.add_argument("--protocol", default="generation",
                   help="generation (ours: generations from the same noise), velocity (the paper's PSNR-SSIM.py "
                        "exactly: one velocity at t = 0 on the first n test images), or both comma-separated")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--solver", default="heun", choices=SOLVERS)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--bound", action="store_true", help="add the degradation-bound columns (slower)")
    p.add_argument("--latent-images", type=int, default=10_000,
                   help="velocity protocol: test images for the latent measure (the paper: up to 10,000; 0: skip)")
    p.add_argument("--no-cache", action="store_true", help="recompute every point")
    p.add_argument("--out", help="CSV path; the PNG and HTML plots are written beside it. Rows already in the file "
                                 "for a (protocol, method, bits) not swept now are kept. Without --out: print only")
    _add_calibration_args(p)


def _add_quantize(sub: argparse._SubParsersAction) -> None:
    from .methods import METHODS

    p = sub.add_parser("quantize", help="quantize a checkpoint's weights and write a packed model")
    p.add_argument("--checkpoint", required=True, help="FP32 checkpoint (.safetensors)")
    p.add_argument("--method", default="ot", choices=list(METHODS))
    p.add_argument("--bits", type=_number, default=4,
                   help="bits per weight, 1..8; for a mixed method (ot-mixed, ot-mixed-cal) the average budget in "
                        "bits per weight, codebooks included, e.g. 1.5")
    p.add_argument("--granularity", default="channel", help="tensor | channel | group:G (e.g. group:128)")
    p.add_argument("--scope", default="weights", choices=("weights", "all"),
                   help="weights: Conv/Linear weights only; all: every float tensor (the paper's protocol)")
    p.add_argument("--skip", nargs="*", default=[], help="tensor or module names (fnmatch patterns) kept in FP32")
    p.add_argument("--out", required=True, help="packed model path (.safetensors)")
    p.add_argument("--entropy", action="store_true", help="entropy-code the indices (ANS) and compress the level "
                   "tables and kept tensors losslessly (xz): a smaller file")
    p.add_argument("--kept-fp16", action="store_true",
                   help="store the tensors that are not quantized (biases, norms, embeddings) in fp16")
    _add_calibration_args(p)


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="redraw a sweep's PNG and HTML plots from its results CSV")
    p.add_argument("csv", nargs="+", help="results CSV(s) written by sweep, e.g. results/mnist.csv")


def _cmd_plot(a) -> int:
    from .plots import save_sweep_plots
    from .results import PAPER_CLAIMS, read_results

    for path in a.csv:
        rows = read_results(path)
        if not rows:
            raise ValueError(f"{path} has no rows to plot")
        written = save_sweep_plots(rows, path, PAPER_CLAIMS)  # ValueError when columns are missing
        print(f"{path}: wrote " + ", ".join(str(w) for w in written))
    return 0


def _add_warmup(sub) -> None:
    sub.add_parser("warmup", help="compile the quantizers' kernels once (numba caches them on disk)")


def _cmd_warmup(a) -> int:
    from .quant import warm_kernels

    t0 = time.perf_counter()
    warm_kernels()
    print(f"quantizer kernels ready in {time.perf_counter() - t0:.1f} s (cached by numba for later runs)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fmq", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_train(sub)
    _add_sample(sub)
    _add_quantize(sub)
    _add_train_classifier(sub)
    _add_sweep(sub)
    _add_warmup(sub)
    _add_plot(sub)
    return parser


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16); False where unknown."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _cmd_train(a: argparse.Namespace) -> int:
    from .data import DATASETS, load_dataset, sha256_file
    from .flow import TrainConfig, train
    from .models import ModelConfig, UNet, count_parameters
    from .zoo import DEFAULT_DATA_DIR

    info = DATASETS[a.dataset]
    data_path = Path(a.data) if a.data else DEFAULT_DATA_DIR / info.file
    data = load_dataset(data_path, split=0)
    c, h, _ = data.shape
    model_cfg = ModelConfig(
        image_size=h,
        in_channels=c,
        base_channels=a.base_channels,
        channel_mults=tuple(int(m) for m in a.channel_mults.split(",")),
        num_res_blocks=a.num_res_blocks,
        attention=not a.no_attention,
        patch_size=a.patch_size,
        dropout=a.dropout,
        num_classes=0 if a.unconditional else info.num_classes,
    )
    cfg = TrainConfig(
        dataset=a.dataset, data=str(data_path), out=a.out, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
        warmup=a.warmup, ema_decay=a.ema_decay, label_dropout=a.label_dropout, hflip=info.hflip,
        ckpt_every=a.ckpt_every, seed=a.seed, bf16=a.bf16, init_from=a.init_from,
        command=a.command_line, model=model_cfg,
    )
    print(f"{info.title}: {len(data)} images {data.shape}; model {count_parameters(UNet(model_cfg)):,} parameters",
          file=sys.stderr)
    if a.bf16 and not native_bf16():
        print("warning: this CPU has no native bfloat16 (AVX512-BF16 or AMX): --bf16 is emulated and was 16x "
              "slower than fp32 on such a machine; drop --bf16 here", file=sys.stderr)
    train(cfg, data, data_sha=sha256_file(data_path) if data_path.is_file() else "", resume=not a.no_resume)
    print(f"wrote {a.out}")
    return 0


def _cmd_train_classifier(a: argparse.Namespace) -> int:
    from .classifier import save_classifier, train_classifier
    from .data import DATASETS, load_dataset, sha256_file
    from .zoo import DEFAULT_DATA_DIR

    data_path = Path(a.data) if a.data else DEFAULT_DATA_DIR / DATASETS[a.dataset].file
    train, test = load_dataset(data_path, split=0), load_dataset(data_path, split=1)
    model, acc = train_classifier(train, test, epochs=a.epochs, seed=a.seed)
    meta = {"dataset": a.dataset, "test_accuracy": round(acc, 4), "epochs": a.epochs, "train_size": len(train),
            "test_size": len(test), "data_sha256": sha256_file(data_path) if data_path.is_file() else "",
            "command": a.command_line}
    save_classifier(model, a.out, meta)
    print(f"wrote {a.out}: test accuracy {acc:.4f}")
    return 0


def _cmd_sweep(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .checkpoint import load_checkpoint
    from .plots import save_sweep_plots
    from .results import PAPER_CLAIMS, merge_csv, read_results
    from .sweep import SweepConfig, iter_sweep
    from .zoo import checkpoint_dir, sweep_inputs, test_images

    ckpt = Path(a.checkpoint) if a.checkpoint else checkpoint_dir() / f"{a.dataset}.safetensors"
    model = load_checkpoint(ckpt).model
    eval_images, classifier = sweep_inputs(a.dataset, model.config, a.data, a.n, a.seed)
    rows_all = []
    for protocol in a.protocol.split(","):
        cfg = SweepConfig(methods=tuple(a.methods.split(",")), bits=_parse_bits(a.bits), granularity=a.granularity,
                          scope=a.scope, protocol=protocol, n=a.n, solver=a.solver, steps=a.steps, seed=a.seed,
                          guidance=a.guidance, calibration=_calibration(a, a.methods.split(",")))
        extra_fn = _bound_columns(cfg) if a.bound and protocol == "generation" else None
        images = test_images(a.dataset, a.data) if protocol == "velocity" else eval_images  # the paper's: in order
        total = len(cfg.points())
        print(f"{a.dataset}, {protocol} protocol, scope {cfg.scope}, {cfg.granularity}:")
        print(f"{'method':>14} {'bits':>4} {'SSIM':>7} {'PSNR dB':>8} {'latent mean_var':>15} {'std_var':>8} "
              f"{'collapsed':>9} {'ratio':>6}")
        rows = iter_sweep(model, cfg, images, classifier, not a.no_cache, extra_fn, a.latent_images)
        for row in tqdm(rows, total=total, desc=f"{a.dataset} {protocol}", file=sys.stderr):
            rows_all.append(row)
            tqdm.write(f"{row.method:>14} {row.bits:>4} {row.ssim:>7.4f} {row.psnr:>8.2f} {row.latent_mean_var:>15.6g} "
                       f"{row.latent_std_var:>8.4g} {row.latent_collapsed:>9} {row.latent_var_ratio:>6.3f}",
                       file=sys.stdout)
    if a.out:
        out = Path(a.out)
        kept = merge_csv(rows_all, out, dataset=a.dataset)
        save_sweep_plots(read_results(out), out, PAPER_CLAIMS)
        other = f"; kept its {kept} rows of other protocols, methods or widths" if kept else ""
        print(f"wrote {out} ({len(rows_all)} rows{other}) with PNG and HTML plots beside it")
    return 0


def _bound_columns(cfg):
    """extra_fn for iter_sweep: the degradation bound on the first 8 samples (FP32 side computed once)."""
    from .bounds import degradation_report, fp32_sensitivity

    cache: dict = {}

    def fn(model_fp, model_q, noise):
        x0 = noise[:8]
        y = torch.arange(len(x0)) % model_fp.config.num_classes if model_fp.config.conditional else None
        if "sens" not in cache:
            cache["sens"] = fp32_sensitivity(model_fp, x0, y, cfg.solver, cfg.steps, cfg.guidance)
        rep = degradation_report(model_fp, model_q, x0, y, cfg.solver, cfg.steps, cfg.guidance,
                                 sensitivity=cache["sens"])
        return {(k if k.startswith("bound") else f"bound_{k}"): v for k, v in rep.summary().items()}

    return fn


def _cmd_sample(a: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .images import save_grid
    from .sampling import make_noise, sample

    if a.packed:
        from .packed import fp32_weight_bytes, packed_model, resident_weight_bytes

        model = packed_model(a.packed)
        cfg = model.config
        held, full = resident_weight_bytes(model), fp32_weight_bytes(model)
        print(f"{a.packed}: run packed, resident weights {held:,} bytes against {full:,} in FP32 "
              f"({full / held:.1f}x less)")
    else:
        ck = load_checkpoint(a.checkpoint)
        model, cfg = ck.model, ck.config
    if a.n < 1:
        raise ValueError(f"--n must be at least 1, got {a.n}")
    noise = make_noise(a.n, (cfg.in_channels, cfg.image_size, cfg.image_size), a.seed)
    y = None
    if cfg.conditional:
        if a.label is not None and not 0 <= a.label < cfg.num_classes:
            raise ValueError(f"--class must be in 0..{cfg.num_classes - 1}, got {a.label}")
        y = torch.full((a.n,), a.label) if a.label is not None else torch.arange(a.n) % cfg.num_classes
    elif a.label is not None:
        raise ValueError("--class given but the model is unconditional")
    t0 = time.perf_counter()
    res = sample(model, noise, a.solver, a.steps, y=y, guidance=a.guidance, sde_scale=a.sde_scale, sde_seed=a.seed)
    dt = time.perf_counter() - t0
    nrow = cfg.num_classes if cfg.conditional and a.label is None and a.n >= cfg.num_classes else None
    save_grid(res.images, a.out, nrow=nrow)
    print(f"wrote {a.out}: {a.n} images, {a.solver}, {res.nfe} evaluations, {dt:.2f} s")
    return 0


def _cmd_quantize(a: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .quant.packing import save_packed
    from .quantize import QuantConfig, quantize_model

    config = QuantConfig(method=a.method, bits=a.bits, granularity=a.granularity, scope=a.scope, skip=tuple(a.skip),
                         calibration=_calibration(a, [a.method]))
    ck = load_checkpoint(a.checkpoint)
    t0 = time.perf_counter()
    _, report = quantize_model(ck.model, config, progress=_stage_printer() if config.calibration else None)
    dt = time.perf_counter() - t0
    if report.calibration is not None:
        print(_calibration_summary(report))
    # the training curve stays with the FP32 checkpoint; everything else about where the model came from is kept
    source = {k: v for k, v in ck.meta.items() if k != "loss_history"}
    meta = {"source": str(a.checkpoint), "source_meta": source, "command": getattr(a, "command_line", "")}
    out = save_packed(ck.model, config, a.out, source_meta=meta, codebooks=report.codebooks,
                      coding="ans" if a.entropy else "fixed", kept_dtype="float16" if a.kept_fp16 else "float32")
    fp32, packed = Path(a.checkpoint).stat().st_size, out.stat().st_size
    print(f"{len(report.layers)} tensors ({report.numel:,} weights) quantized with "
          f"{config.label}, {config.granularity} in {dt:.2f} s: W2 {report.w2:.4g}, MSE {report.mse:.4g}, "
          f"{report.bits_per_weight:.3f} bits/weight with codebooks")
    print(f"wrote {out}: {packed:,} bytes on disk; FP32 checkpoint {fp32:,} bytes; compression {fp32 / packed:.2f}x")
    if a.entropy:
        from .quant.entropy import index_entropy

        print(f"index entropy {index_entropy(report.codebooks):.3f} bits per weight (mean over layers, weighted "
              f"by size); indices ANS-coded where that is smaller")
    return 0


def _stage_printer():
    """progress(stage, done, total, loss) for the terminal: one line per stage, then every ~10 %."""
    shown: dict[str, int] = {}

    def show(stage: str, done: int, total: int, loss: float) -> None:
        tenth = 10 * done // max(total, 1)
        if shown.get(stage, -1) < tenth:
            shown[stage] = tenth
            extra = f", loss {loss:.4g}" if loss == loss else ""
            print(f"  {stage}: {done}/{total}{extra}", file=sys.stderr, flush=True)

    return show


def _calibration_summary(report) -> str:
    from collections import Counter

    log = report.calibration
    parts = [", ".join(f"{k} {v:.1f} s" for k, v in log.seconds.items())]
    if len(set(log.widths.values())) > 1:
        numel = {r.name: r.numel for r in report.layers}
        weights = Counter()
        for n, b in log.widths.items():
            weights[b] += numel[n]
        total = sum(weights.values())
        parts.append("widths: " + ", ".join(f"{b} bit{'s' if b > 1 else ''} {100 * w / total:.1f} %"
                                            for b, w in sorted(weights.items())))
    if log.refine is not None:
        r = log.refine
        parts.append(f"held-out velocity MSE {r.start_loss:.4g} -> {r.end_loss:.4g}"
                     + (f" (best of {len(r.run_losses)} runs: " + ", ".join(f"{v:.4g}" for v in r.run_losses) + ")"
                        if len(r.run_losses) > 1 else "")
                     + (" (refinement did not help: kept the start)" if r.kept_start else ""))
    return "calibration: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .data import DataError

    argv = sys.argv[1:] if argv is None else list(argv)
    a = build_parser().parse_args(argv)
    a.command_line = "python -m fmq " + " ".join(shlex.quote(s) for s in argv)
    try:
        return {"train": _cmd_train, "sample": _cmd_sample, "quantize": _cmd_quantize,
                "train-classifier": _cmd_train_classifier, "sweep": _cmd_sweep, "warmup": _cmd_warmup,
                "plot": _cmd_plot}[a.cmd](a)
    except (CheckpointError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
