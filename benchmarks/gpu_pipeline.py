"""GPU benchmark of the whole method, stage by stage, on a SPIn-NeRF-sized synthetic scene.

One process runs every stage through the package's own stage functions (not Snakemake), with
the settings the workflow would pass them (``config.yaml`` + the full-size GPU overrides of
:data:`maldnerf.nerf.settings.configs/spinnerf_gpu.yaml`, validated by :class:`maldnerf.config.Pipeline`):

=========  ===================================================================================
prepare    the synthetic generator at 1008x567, 60 training + 40 test views (rendered in
           parallel worker processes; the stage's own writer writes the scene folder)
poses      ``poses: known`` (the generator's true poses; COLMAP is not run)
masks      the masks stage (dilation from config)
customize  the full-size Stable Diffusion 2 inpainting architecture with random weights, built
           from config, saved as a local bf16 diffusers folder and loaded by the stage as a
           model folder; ``--customize-steps`` of the configured LoRA steps are run
inpaint    every training view at 512 px, the configured DDIM steps
train      the real training step and IDU round of :class:`maldnerf.nerf.trainer.Trainer` at the
           configs/spinnerf_gpu.yaml settings (25000 iterations, IDU every 2500): time-boxed steps before and
           after the adversarial warm-up, one IDU round of all 60 views at the full-size model,
           one checkpoint, one log, the stage's output
render     every test view at full resolution (+ the fly-through GIF of configs/spinnerf_gpu.yaml)
evaluate   the evaluate stage; LPIPS/Inception weights are not available, so by default it runs
           with random-weight stand-ins of the same architectures (AlexNet-LPIPS,
           torchvision Inception v3) to time the metric code; their values are meaningless
=========  ===================================================================================

Per stage it prints and writes the measured wall time, what was measured (steps, views), the
extrapolated wall time of the full-length stage, the GPU busy share and the peak GPU memory.

- *Measured* seconds are wall time in this process (``time.perf_counter`` after a device
  synchronisation at both ends). *Extrapolated* seconds are the full-length stage: measured
  wall time plus the remaining steps/rounds/checkpoints times their measured steady-state cost
  (linear; formulas in the JSON). Stages run in full (inpaint, render, evaluate, ...) have
  extrapolated = measured.
- *GPU share*: NVML's utilisation counter (``torch.cuda.utilization()``: the percentage of
  time in the last sample period in which at least one kernel was running), sampled every
  50 ms by a background thread, averaged over the stage's wall time. Empty when NVML cannot
  be read.
- *Peak GPU memory*: ``torch.cuda.max_memory_allocated`` with the peak reset at the start of
  each stage.

Outputs in ``--output-dir``: ``gpu_pipeline.json`` (everything) and ``gpu_pipeline.csv`` (the
table), rewritten after every stage so that a killed run still leaves the finished stages.

Examples::

    PYTHONPATH=src python benchmarks/gpu_pipeline.py --device cuda --output-dir results/benchmarks/gpu
    PYTHONPATH=src python benchmarks/gpu_pipeline.py --smoke --device cpu --output-dir /tmp/gpu-smoke
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import gc
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from machine import device_name, synchronize

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PYTHONUNBUFFERED", "1")

STAGES = ("prepare", "poses", "masks", "customize", "inpaint", "train", "render", "evaluate")
TARGET_SECONDS = 30 * 60
SCENE = "synthetic"
VARIANT = "full"
CUSTOMIZATION = "scene"

STARTED = time.perf_counter()


def say(message: str) -> None:
    """A progress line with the wall-clock time and the seconds since the start."""
    now = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{now} +{time.perf_counter() - STARTED:6.1f}s] {message}", flush=True)


# ------------------------------------------------------------------------------------ arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", type=Path, required=True, help="where the JSON and CSV go")
    p.add_argument(
        "--work", type=Path, default=None, help="working folder (default: a new temporary one)"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny scene, tiny diffusion model, small NeRF, few steps: checks every code path "
        "in a few minutes on a CPU (figures meaningless)",
    )
    p.add_argument(
        "--smoke-model",
        default="tiny",
        choices=["tiny", "full"],
        help="--smoke: architecture of the random diffusion model (full: SD2 at 64 px)",
    )
    p.add_argument("--width", type=int, default=None, help="image width (default 1008)")
    p.add_argument("--height", type=int, default=None, help="image height (default 567)")
    p.add_argument("--train-views", type=int, default=None, help="training views (default 60)")
    p.add_argument("--test-views", type=int, default=None, help="test views (default 40)")
    p.add_argument(
        "--supersampling",
        type=int,
        default=1,
        help="rays per pixel per axis of the synthetic generator (the config default is 2; "
        "4x the generation time for no change in the benchmark's cost)",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="processes rendering the synthetic scene"
    )
    p.add_argument(
        "--customize-steps",
        type=int,
        default=None,
        help="LoRA steps measured (default 20; the full run's count comes from config)",
    )
    p.add_argument(
        "--train-seconds",
        type=float,
        default=None,
        help="time box of the measured NeRF steps, both phases together (default 60)",
    )
    p.add_argument(
        "--train-max-steps", type=int, default=None, help="cap on measured steps per phase"
    )
    p.add_argument(
        "--train-warmup", type=int, default=3, help="untimed steps at the start of each phase"
    )
    p.add_argument("--idu-rounds", type=int, default=1, help="IDU rounds measured (>= 1)")
    p.add_argument(
        "--nerfacc-cuda", default=None, choices=["auto", "on", "off"], help="override nerf setting"
    )
    p.add_argument(
        "--precision", default=None, choices=["auto", "fp32", "bf16"], help="override nerf setting"
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="override nerf.compile",
    )
    p.add_argument("--idu-batch", type=int, default=None, help="override idu.batch_size")
    p.add_argument(
        "--skip-stage",
        action="append",
        default=[],
        choices=["render", "evaluate"],
        help="leave out a final stage (repeatable)",
    )
    p.add_argument(
        "--random-backbones",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="evaluate with random-weight LPIPS/Inception stand-ins (timing only)",
    )
    p.add_argument(
        "--budget-seconds",
        type=float,
        default=None,
        help="wall-clock budget of the whole run; the NeRF time box shrinks to fit "
        "(default 420, smoke 600)",
    )
    p.add_argument(
        "--config-overlay",
        type=Path,
        default=None,
        help="a YAML merged over config.yaml + configs/spinnerf_gpu.yaml before the benchmark's own "
        "settings (e.g. configs/spinnerf_gpu.yaml; its scenes and run_variants are ignored)",
    )
    p.add_argument("--keep-work", action="store_true", help="keep the working folder")
    args = p.parse_args(argv)
    defaults = (
        dict(
            width=96,
            height=64,
            train_views=6,
            test_views=3,
            customize_steps=3,
            train_seconds=4.0,
            train_max_steps=16,
            budget_seconds=600.0,
        )
        if args.smoke
        else dict(
            width=1008,
            height=567,
            train_views=60,
            test_views=40,
            customize_steps=20,
            train_seconds=60.0,
            train_max_steps=2000,
            budget_seconds=420.0,
        )
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.customize_steps < 2:
        p.error("--customize-steps must be >= 2 (the first step is a warm-up)")
    if args.idu_rounds < 1 or args.train_warmup < 1 or args.train_max_steps < 1:
        p.error("--idu-rounds, --train-warmup and --train-max-steps must be >= 1")
    if args.train_views < 3 or args.test_views < 2:
        p.error("need --train-views >= 3 and --test-views >= 2")
    return args


# ------------------------------------------------------------------------------------ settings


SMOKE_NERF: dict[str, Any] = {
    "batch_rays": 256,
    "patch_size": 16,
    "patches_per_step": 1,
    "chunk_rays": 4096,
    "field": {"num_levels": 4, "log2_table_size": 12, "max_resolution": 256, "hidden_dim": 16},
    "proposal": {
        "samples": [16, 8],
        "max_resolutions": [32, 64],
        "num_samples": 8,
        "log2_table_size": 10,
        "num_levels": 3,
    },
}


def read_overlay(path: Path | None) -> dict[str, Any]:
    """The sections of ``path`` that the benchmark takes (not scenes, variants, run_variants)."""
    import yaml

    if path is None:
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return {k: v for k, v in data.items() if k not in ("scenes", "variants", "run_variants")}


def build_config(
    args: argparse.Namespace, model_dir: Path, device: str, overlay: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``config.yaml`` with the SPIn-NeRF-size scene, the configs/spinnerf_gpu.yaml overrides and
    ``overlay``, then the benchmark's model folder and device."""
    import yaml

    from full_size import full_size_sections
    from maldnerf.config import deep_merge

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config.yaml").read_text())
    scene = {
        "name": SCENE,
        "source": "synthetic",
        "synthetic": {
            "seed": 0,
            "width": args.width,
            "height": args.height,
            "n_train": args.train_views,
            "n_test": args.test_views,
            "supersampling": args.supersampling,
        },
        "poses": "known",
        "downscale": 1,
        "masks": config["scenes"][0].get("masks", {}),
    }
    config["scenes"] = [scene]
    config = deep_merge(config, full_size_sections())
    if overlay:
        config = deep_merge(config, overlay)
    nerf_changes: dict[str, Any] = {"device": device}
    if args.smoke:
        nerf_changes = deep_merge(nerf_changes, SMOKE_NERF)
    for key in ("nerfacc_cuda", "precision", "compile"):
        if getattr(args, key) is not None:
            nerf_changes[key] = getattr(args, key)
    config = deep_merge(
        config,
        {
            "diffusion": {"model": str(model_dir), "device": device},
            "nerf": nerf_changes,
            "render": {"device": device},
            "evaluate": {"device": device},
        },
    )
    if args.smoke:
        config["render"]["gif_frames"] = 4
        config["diffusion"]["resolution"] = 64  # the tiny model's own; SD2 at 64 px
    if args.idu_batch is not None:
        config["idu"]["batch_size"] = args.idu_batch
    config["run_variants"] = [VARIANT]
    return config


# ------------------------------------------------------------------------------------ devices


class Device:
    """The torch device, synchronisation, peak memory and the NVML busy-share sampler."""

    def __init__(self, setting: str) -> None:
        import torch

        self.torch = torch
        if setting == "cuda" and not torch.cuda.is_available():
            sys.exit("--device cuda: no CUDA device is available")
        cuda = setting == "cuda" or (setting == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if cuda else "cpu")
        self.samples: list[tuple[float, float]] = []
        self.share_note = "CPU run: no GPU"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if cuda:
            try:
                torch.cuda.utilization(self.device)
                self.share_note = "NVML utilisation sampled every 50 ms"
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
            except Exception as exc:  # NVML missing or refused: report why, keep going
                self.share_note = f"NVML unavailable ({type(exc).__name__}: {exc})"

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                value = float(self.torch.cuda.utilization(self.device))
            except Exception:
                return
            self.samples.append((time.perf_counter(), value))
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()

    def sync(self) -> None:
        synchronize(self.device)

    def reset_peak(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.synchronize(self.device)
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gb(self) -> float | None:
        if not self.cuda:
            return None
        return self.torch.cuda.max_memory_allocated(self.device) / 2**30

    def share(self, start: float, end: float) -> float | None:
        values = [v for t, v in list(self.samples) if start <= t <= end]
        return sum(values) / len(values) / 100.0 if values else None

    def describe(self) -> dict[str, Any]:
        torch = self.torch
        info: dict[str, Any] = {
            "device": str(self.device),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "name": device_name(self.device),
        }
        if self.cuda:
            props = torch.cuda.get_device_properties(self.device)
            info.update(
                memory_gb=round(props.total_memory / 2**30, 1),
                cuda=torch.version.cuda,
                bf16=torch.cuda.is_bf16_supported(),
            )
        for module in ("diffusers", "transformers", "peft", "nerfacc"):
            try:
                info[module] = __import__(module).__version__
            except Exception as exc:
                info[module] = f"unavailable ({type(exc).__name__})"
        return info


class Probe:
    """Wraps functions for the duration of a stage and records the seconds of each call."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.calls: dict[str, list[float]] = defaultdict(list)

    @contextlib.contextmanager
    def wrap(self, owner: Any, attribute: str, key: str | None = None) -> Iterator[None]:
        original = getattr(owner, attribute)
        key = key or attribute
        calls, sync = self.calls[key], self.device.sync

        def timed(*args: Any, **kwargs: Any) -> Any:
            sync()
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                sync()
                calls.append(time.perf_counter() - began)

        setattr(owner, attribute, timed)
        try:
            yield
        finally:
            setattr(owner, attribute, original)

    def total(self, key: str) -> float:
        return float(sum(self.calls.get(key, [])))


# ------------------------------------------------------------------------------------ results


class Results:
    """Stage rows and extra figures; rewritten to JSON and CSV after every change."""

    COLUMNS = (
        "stage",
        "measured_s",
        "measured",
        "extrapolated_full_s",
        "gpu_share",
        "peak_gpu_gb",
        "note",
    )

    def __init__(self, output_dir: Path, args: argparse.Namespace, device: Device) -> None:
        self.output_dir = output_dir
        output_dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []
        self.figures: dict[str, Any] = {}
        self.meta: dict[str, Any] = {
            "benchmark": "gpu_pipeline",
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "smoke": bool(args.smoke),
            "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": device.describe(),
            "gpu_share_method": device.share_note,
            "definitions": {
                "measured_s": "wall seconds in this process, device synchronised at both ends",
                "extrapolated_full_s": "the full-length stage: measured wall time plus the "
                "remaining steps/rounds/checkpoints times their measured steady-state cost "
                "(linear); equal to measured_s for stages run in full",
                "gpu_share": "mean NVML utilisation (fraction of time a kernel was running) "
                "over the stage's wall time",
                "peak_gpu_gb": "torch.cuda.max_memory_allocated, peak reset per stage (GiB)",
            },
        }

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.write()

    def write(self) -> None:
        measured = [r for r in self.rows if r["stage"] in STAGES and "error" not in r]
        done = {r["stage"] for r in measured}
        summary: dict[str, Any] = {
            "stages_done": [s for s in STAGES if s in done],
            "complete": all(s in done for s in STAGES if s not in self.meta.get("skipped", [])),
            "measured_total_s": round(sum(r["measured_s"] for r in measured), 2),
            "extrapolated_full_run_s": round(
                sum(r["extrapolated_full_s"] or 0.0 for r in measured), 1
            ),
            "target_s": TARGET_SECONDS,
            "wall_s_so_far": round(time.perf_counter() - STARTED, 1),
        }
        generation = self.figures.get("prepare", {}).get("synthetic_generation_s")
        if generation is not None:
            summary["extrapolated_full_run_without_generation_s"] = round(
                summary["extrapolated_full_run_s"] - generation, 1
            )
        self.summary = summary
        document = {**self.meta, "stages": self.rows, "figures": self.figures, "summary": summary}
        text = json.dumps(document, indent=2, default=str) + "\n"
        _replace(self.output_dir / "gpu_pipeline.json", text)
        lines: list[list[Any]] = [list(self.COLUMNS)]
        for row in self.rows:
            lines.append([_fmt(row.get(c)) for c in self.COLUMNS])
        buffer = _csv_text(lines)
        _replace(self.output_dir / "gpu_pipeline.csv", buffer)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.1f}"
    return "" if value is None else value


def _csv_text(lines: list[list[Any]]) -> str:
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue()


def _replace(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ prepare


_WORKER_SCENE: dict[int, Any] = {}


def _render_job(job: tuple[int, Any, Any, int, int, bool, int]) -> Any:
    """Worker: one ``SyntheticScene.render`` call (the scene is built once per process)."""
    from maldnerf.prepare.synthetic import SyntheticScene

    seed, c2w, intrinsics, width, height, include_object, supersampling = job
    if seed not in _WORKER_SCENE:
        _WORKER_SCENE[seed] = SyntheticScene(seed)
    return _WORKER_SCENE[seed].render(
        c2w, intrinsics, width, height, include_object=include_object, supersampling=supersampling
    )


@contextlib.contextmanager
def parallel_generator(workers: int, timings: dict[str, float]) -> Iterator[None]:
    """Make :func:`maldnerf.prepare.synthetic.generate` render its views in ``workers``
    processes, unchanged otherwise: a first pass records every ``render`` call (with stand-in
    arrays), the calls run in a process pool, a second pass replays the results in order."""
    import multiprocessing

    import numpy as np

    from maldnerf.prepare import stage as prepare_stage
    from maldnerf.prepare import synthetic

    original_generate = prepare_stage.generate
    original_render = synthetic.SyntheticScene.render

    def generate(settings: Any) -> Any:
        began = time.perf_counter()
        jobs: list[tuple] = []

        def record(self, c2w, intrinsics, width, height, include_object, supersampling=2):
            jobs.append(
                (settings.seed, c2w, intrinsics, width, height, include_object, supersampling)
            )
            return (
                np.zeros((height, width, 3), np.float32),
                np.zeros((height, width), bool),
                (1.0, 2.0),
            )

        synthetic.SyntheticScene.render = record
        try:
            synthetic.generate(settings)
        finally:
            synthetic.SyntheticScene.render = original_render
        saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
        os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")  # one thread a worker
        try:
            context = multiprocessing.get_context("spawn")
            with context.Pool(max(1, min(workers, len(jobs)))) as pool:
                rendered = pool.map(_render_job, jobs, chunksize=1)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        replay = iter(rendered)

        def play(self, *args, **kwargs):
            return next(replay)

        synthetic.SyntheticScene.render = play
        try:
            result = synthetic.generate(settings)
        finally:
            synthetic.SyntheticScene.render = original_render
        timings["synthetic_generation_s"] = time.perf_counter() - began
        timings["renders"] = len(jobs)
        return result

    prepare_stage.generate = generate
    try:
        yield
    finally:
        prepare_stage.generate = original_generate


# ------------------------------------------------------------------------------------ models


def save_random_model(args: argparse.Namespace, folder: Path, device: Device) -> dict[str, Any]:
    """Build the random SD2-inpainting pipeline from config and save it as a diffusers folder
    (bf16 on a GPU run, float32 on a CPU run: what the stages load it as)."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    from maldnerf.diffusion.architectures import build_random_pipeline

    size = args.smoke_model if args.smoke else "full"
    began = time.perf_counter()
    built_on = "cpu"
    pipeline = None
    if device.cuda:  # random initialisation on the GPU: seconds instead of a minute on CPUs
        try:
            with torch.device(device.device):
                pipeline = build_random_pipeline(size, seed=0)
            built_on = str(device.device)
        except Exception as exc:
            say(f"model: building on the GPU failed ({type(exc).__name__}: {exc}); on the CPU")
            pipeline = None
            gc.collect()
            torch.cuda.empty_cache()
    if pipeline is None:
        pipeline = build_random_pipeline(size, seed=0)
    built = time.perf_counter() - began
    dtype = torch.bfloat16 if device.cuda else torch.float32
    diffusers_logging.set_verbosity_error()
    for module in (pipeline.unet, pipeline.vae, pipeline.text_encoder):
        module.to(dtype=dtype)
    pipeline.save_pretrained(folder, safe_serialization=True)
    parameters = {
        name: round(sum(p.numel() for p in m.parameters()) / 1e6, 1)
        for name, m in (
            ("unet", pipeline.unet),
            ("vae", pipeline.vae),
            ("text_encoder", pipeline.text_encoder),
        )
    }
    del pipeline
    gc.collect()
    if device.cuda:
        torch.cuda.empty_cache()
    size_gb = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**30
    return {
        "architecture": f"Stable Diffusion 2 inpainting ({size}), random weights",
        "parameters_millions": parameters,
        "build_s": round(built, 2),
        "built_on": built_on,
        "build_and_save_s": round(time.perf_counter() - began, 2),
        "saved_dtype": str(dtype).removeprefix("torch."),
        "folder_gb": round(size_gb, 2),
    }


def random_backbones(device: Device) -> Any:
    """LPIPS (AlexNet trunk) and Inception v3 with random weights: timing stand-ins."""
    import torch
    import torchvision

    from maldnerf.evaluate.backbones import Backbones

    where = str(device.device)
    backbones = Backbones(device=where)
    note = "random weights: timing stand-in, values meaningless"
    try:
        import lpips

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False)
        net = net.eval().to(where)

        def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return net(a.to(where), b.to(where), normalize=True).reshape(-1).cpu()

        backbones.lpips = distance
        backbones.provenance["lpips"] = {"path": note}
    except ImportError as exc:
        backbones.missing["lpips"] = f"lpips package unavailable ({exc})"
    inception = torchvision.models.inception_v3(
        weights=None, aux_logits=False, init_weights=False, transform_input=False
    )
    inception.fc = torch.nn.Identity()
    inception = inception.eval().to(where)

    def features(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return inception((x.to(where) - 128.0) / 128.0).reshape(x.shape[0], -1).cpu()

    backbones.inception = features
    backbones.provenance["inception"] = {"path": note}
    return backbones


# ------------------------------------------------------------------------------------ the run


class Benchmark:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = Device(args.device)
        self.results = Results(args.output_dir, args, self.device)
        self.work = args.work or Path(tempfile.mkdtemp(prefix="maldnerf-gpu-bench-"))
        self.work.mkdir(parents=True, exist_ok=True)
        root = self.work / "results" / SCENE
        self.paths = {
            "scene": root / "scene",
            "poses": root / "poses",
            "transforms": root / "poses" / "transforms.json",
            "masks": root / "masks",
            "customization": root / "diffusion" / CUSTOMIZATION,
            "customize_resume": root / "resume" / "customize",
            "inpaint": root / "inpaint" / CUSTOMIZATION,
            "nerf": root / "nerf" / VARIANT,
            "train_resume": root / "resume" / "train",
            "render": root / "render" / VARIANT,
            "metrics": root / "metrics" / f"{VARIANT}.json",
            "model": self.work / "random-sd2-inpainting",
        }
        self.deadline = STARTED + args.budget_seconds

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Time one stage; the body fills ``row`` (measured, extrapolated_full_s, note)."""
        say(f"{name}: start")
        self.device.reset_peak()
        row: dict[str, Any] = {"stage": name}
        began = time.perf_counter()
        try:
            yield row
        except BaseException as exc:
            row.update(
                measured_s=round(time.perf_counter() - began, 2),
                error=f"{type(exc).__name__}: {exc}",
                extrapolated_full_s=None,
            )
            self.results.add(row)
            say(f"{name}: FAILED after {row['measured_s']} s: {row['error']}")
            raise
        self.device.sync()
        ended = time.perf_counter()
        row["measured_s"] = round(ended - began, 2)
        row.setdefault("measured", "in full")
        extrapolated = row.get("extrapolated_full_s")
        if extrapolated is None:  # the stage ran in full, or the body gave the remaining part
            extrapolated = row["measured_s"] + row.pop("extra_s", 0.0)
        row["extrapolated_full_s"] = round(extrapolated, 1)
        share = self.device.share(began, ended)
        row["gpu_share"] = None if share is None else round(share, 3)
        peak = self.device.peak_gb()
        row["peak_gpu_gb"] = None if peak is None else round(peak, 2)
        row.setdefault("note", "")
        self.results.add(row)
        say(
            f"{name}: {row['measured_s']:.1f} s measured ({row['measured']}), "
            f"{row['extrapolated_full_s']:.1f} s extrapolated full run"
            + (f", GPU share {row['gpu_share']:.0%}" if row["gpu_share"] is not None else "")
            + (f", peak {row['peak_gpu_gb']:.1f} GiB" if row["peak_gpu_gb"] is not None else "")
        )

    def run(self) -> int:
        args = self.args
        say(f"work folder {self.work}; budget {args.budget_seconds:.0f} s")
        say(f"machine: {self.results.meta['machine']}")
        from maldnerf.config import Pipeline

        device = self.device.device.type
        config = build_config(args, self.paths["model"], device)
        if args.config_overlay is not None:
            try:
                overlaid = build_config(
                    args, self.paths["model"], device, read_overlay(args.config_overlay)
                )
                Pipeline(overlaid)
                config = overlaid
                say(
                    f"config: {args.config_overlay} merged over config.yaml + configs/spinnerf_gpu.yaml"
                )
            except Exception as exc:  # an overlay that does not validate: say so, go on
                say(f"config: {args.config_overlay} NOT used ({type(exc).__name__}: {exc})")
                self.results.meta["config_overlay_error"] = f"{type(exc).__name__}: {exc}"
        self.pipeline = Pipeline(config)
        self.results.meta["config"] = config
        self.results.meta["skipped"] = list(args.skip_stage)
        try:
            self.prepare()
            self.poses()
            self.masks()
            self.model()
            self.customize()
            self.inpaint()
            self.train()
            if "render" not in args.skip_stage:
                self.render()
            if "evaluate" not in args.skip_stage and "render" not in args.skip_stage:
                self.evaluate()
        except Exception:
            traceback.print_exc()
            self.report()
            return 1
        finally:
            self.device.stop()
        self.report()
        return 0

    # -- stages ---------------------------------------------------------------------------

    def prepare(self) -> None:
        from maldnerf.prepare.stage import PrepareSettings
        from maldnerf.prepare.stage import run as prepare_run
        from maldnerf.settings import from_dict

        settings = from_dict(PrepareSettings, self.pipeline.prepare_params(SCENE))
        workers = self.args.workers or os.cpu_count() or 1
        timings: dict[str, float] = {}
        with self.stage("prepare") as row, parallel_generator(workers, timings):
            prepare_run(settings, SCENE, self.paths["scene"])
            generation = timings["synthetic_generation_s"]
            row["measured"] = (
                f"{settings.synthetic.n_train}+{settings.synthetic.n_test} views "
                f"{settings.synthetic.width}x{settings.synthetic.height}"
            )
            row["note"] = (
                f"synthetic generation {generation:.1f} s ({timings['renders']} renders, "
                f"{workers} processes, supersampling {settings.synthetic.supersampling}); "
                "a real capture only copies its files"
            )
        self.results.figures["prepare"] = {
            "synthetic_generation_s": round(generation, 2),
            "renders": timings["renders"],
            "workers": workers,
            "writing_s": round(self.results.rows[-1]["measured_s"] - generation, 2),
        }
        self.results.write()

    def poses(self) -> None:
        from maldnerf.poses import PosesSettings
        from maldnerf.poses import run as poses_run
        from maldnerf.settings import from_dict

        settings = from_dict(PosesSettings, self.pipeline.poses_params(SCENE))
        with self.stage("poses") as row:
            poses_run(settings, self.paths["scene"], self.paths["poses"])
            row["note"] = "poses: known (the generator's true poses); COLMAP not run"

    def masks(self) -> None:
        from maldnerf.masks import MaskSettings
        from maldnerf.masks import run as masks_run
        from maldnerf.settings import from_dict

        settings = from_dict(MaskSettings, self.pipeline.masks_params(SCENE))
        with self.stage("masks"):
            masks_run(settings, self.paths["transforms"], self.paths["scene"], self.paths["masks"])

    def model(self) -> None:
        say("model: building the random diffusion model and saving it (benchmark set-up)")
        began = time.perf_counter()
        info = save_random_model(self.args, self.paths["model"], self.device)
        self.results.figures["diffusion_model"] = info
        self.results.write()
        say(f"model: {info} in {time.perf_counter() - began:.1f} s (not a pipeline stage)")

    def customize(self) -> None:
        from maldnerf.commands import CustomizeCommand
        from maldnerf.diffusion import customize as module
        from maldnerf.settings import from_dict

        params = self.pipeline.customize_params(SCENE, CUSTOMIZATION)
        command = from_dict(CustomizeCommand, params)
        full_steps = command.customize.steps
        command.customize.steps = min(self.args.customize_steps, full_steps)
        probe = Probe(self.device)
        with (
            self.stage("customize") as row,
            probe.wrap(module.Trainer, "step"),
            probe.wrap(module, "save_checkpoint"),
            probe.wrap(module, "load_base_pipeline"),
        ):
            module.run(
                command.customize,
                command.diffusion,
                self.paths["transforms"],
                self.paths["masks"],
                self.paths["customization"],
                self.paths["customize_resume"],
            )
            steps = probe.calls["step"]
            steady = statistics.median(steps[1:]) if len(steps) > 1 else steps[0]
            checkpoint_s = statistics.mean(probe.calls["save_checkpoint"] or [0.0])
            every = command.customize.checkpoint_every
            checkpoints_full = len(range(every, full_steps, every)) + 1
            checkpoints = len(probe.calls["save_checkpoint"])
            row["extra_s"] = (full_steps - len(steps)) * steady + (
                checkpoints_full - checkpoints
            ) * checkpoint_s
            load_s = probe.total("load_base_pipeline")
            row["measured"] = f"{len(steps)} of {full_steps} steps"
            row["note"] = (
                f"batch {command.customize.batch_size} at {self._resolution()} px; "
                f"{1 / steady:.2f} UNet steps/s steady; first step {steps[0]:.2f} s; "
                f"model load {load_s:.1f} s"
            )
        self.results.figures["customize"] = {
            "unet_steps_per_s": round(1 / steady, 3),
            "batch_size": command.customize.batch_size,
            "images_per_s": round(command.customize.batch_size / steady, 2),
            "seconds_per_step": [round(s, 3) for s in steps],
            "steady_seconds_per_step": round(steady, 4),
            "model_load_s": round(load_s, 2),
            "checkpoint_s": round(checkpoint_s, 3),
            "full_steps": full_steps,
            "formula": "measured + (full_steps - steps) * median(s/step after the first) + "
            "(full_checkpoints - checkpoints) * checkpoint_s",
        }
        self.results.write()

    def _resolution(self) -> int:
        manifest = self.paths["customization"] / "customization.json"
        if manifest.is_file():
            return int(json.loads(manifest.read_text())["resolution"])
        return 0

    def inpaint(self) -> None:
        from maldnerf.commands import InpaintCommand
        from maldnerf.diffusion import inpaint as module
        from maldnerf.settings import from_dict

        command = from_dict(InpaintCommand, self.pipeline.inpaint_params(SCENE))
        probe = Probe(self.device)
        with (
            self.stage("inpaint") as row,
            probe.wrap(module.Inpainter, "inpaint"),
            probe.wrap(module, "load_pipeline"),
        ):
            module.run(
                command.inpaint,
                command.diffusion,
                self.paths["transforms"],
                self.paths["masks"],
                self.paths["customization"],
                self.paths["inpaint"],
            )
            manifest = json.loads((self.paths["inpaint"] / "inpaint.json").read_text())
            views = len(manifest["views"])
            seconds = probe.total("inpaint")
            load_s = probe.total("load_pipeline")
            row["measured"] = f"{views} views x {command.inpaint.num_steps} DDIM steps"
            row["note"] = (
                f"{seconds / views:.3f} s/view in the model at {manifest['resolution']} px; "
                f"model load + LoRA fuse {load_s:.1f} s"
            )
        self.results.figures["inpaint"] = {
            "views": views,
            "inpaint_s": round(seconds, 2),
            "seconds_per_view": round(seconds / views, 4),
            "unet_image_steps_per_s": round(views * command.inpaint.num_steps / seconds, 2),
            "model_load_s": round(load_s, 2),
            "batch_size": command.inpaint.batch_size,
        }
        self.results.write()

    def train(self) -> None:
        from maldnerf.commands import TrainCommand
        from maldnerf.settings import from_dict

        command = from_dict(TrainCommand, self.pipeline.train_params(SCENE, VARIANT))
        with self.stage("train") as row:
            figures = TrainRun(self, command).run()
            row.update(figures.pop("row"))
        self.results.figures["train"] = figures
        self.results.write()

    def render(self) -> None:
        from maldnerf.nerf import render as module
        from maldnerf.nerf.settings import RenderSettings
        from maldnerf.settings import from_dict

        settings = from_dict(RenderSettings, self.pipeline.render_params(SCENE))
        probe = Probe(self.device)
        with self.stage("render") as row, probe.wrap(module, "render_view"):
            module.run(settings, self.paths["transforms"], self.paths["nerf"], self.paths["render"])
            info = json.loads((self.paths["render"] / "render.json").read_text())
            test_views = len(info["views"].get("test", []))
            pixels = info["width"] * info["height"]
            calls = probe.calls["render_view"]
            # render_view runs for the splits' views first (test only here), then the GIF.
            view_s, gif_s = sum(calls[:test_views]), sum(calls[test_views:])
            rays_per_s = test_views * pixels / max(view_s, 1e-9)
            row["measured"] = f"{test_views} test views {info['width']}x{info['height']}" + (
                f" + {len(calls) - test_views} GIF frames" if settings.gif else ""
            )
            row["note"] = (
                f"{rays_per_s / 1e6:.2f} M rays/s in render_view (chunk {settings.chunk_rays}); "
                f"GIF {gif_s:.1f} s"
            )
        self.results.figures["render"] = {
            "test_views": test_views,
            "render_view_s": round(view_s, 2),
            "rays_per_s": round(rays_per_s),
            "stage_rays_per_s": round(info["rays_per_second"]),
            "gif_s": round(gif_s, 2),
        }
        self.results.write()

    def evaluate(self) -> None:
        from maldnerf.evaluate.stage import EvaluateSettings
        from maldnerf.evaluate.stage import run as evaluate_run
        from maldnerf.settings import from_dict

        settings = from_dict(EvaluateSettings, self.pipeline.evaluate_params(SCENE))
        with self.stage("evaluate") as row:
            backbones = random_backbones(self.device) if self.args.random_backbones else None
            evaluate_run(
                settings,
                self.paths["scene"],
                self.paths["masks"],
                self.paths["render"],
                self.paths["nerf"],
                self.paths["metrics"],
                backbones=backbones,
            )
            metrics = json.loads(self.paths["metrics"].read_text())
            row["measured"] = f"{metrics['n_views']} test views"
            row["note"] = (
                "LPIPS/Inception with random weights (timing stand-ins)"
                if backbones is not None
                else "weight-free metrics only (LPIPS/FID/KID weights missing)"
            )
        self.results.figures["evaluate"] = {
            "computed": sorted(k for k, v in metrics["means"].items() if v is not None),
            "missing": metrics["missing"],
        }
        self.results.write()

    # -- report ---------------------------------------------------------------------------

    def report(self) -> None:
        results = self.results
        results.write()
        print()
        print(
            f"{'stage':<10} {'measured s':>10}  {'measured':<36} {'full run s':>10} "
            f"{'GPU share':>9} {'peak GiB':>8}"
        )
        for row in results.rows:
            if "error" in row:
                print(f"{row['stage']:<10} {row['measured_s']:>10.1f}  FAILED: {row['error']}")
                continue
            share = "" if row["gpu_share"] is None else f"{row['gpu_share']:.0%}"
            peak = "" if row["peak_gpu_gb"] is None else f"{row['peak_gpu_gb']:.1f}"
            print(
                f"{row['stage']:<10} {row['measured_s']:>10.1f}  {row['measured']:<36.36} "
                f"{row['extrapolated_full_s']:>10.1f} {share:>9} {peak:>8}"
            )
        figures = results.figures
        print()
        if "customize" in figures:
            print(
                f"customize: {figures['customize']['unet_steps_per_s']:.2f} UNet steps/s "
                f"(batch of {self.pipeline.customize_params(SCENE, CUSTOMIZATION)['customize']['batch_size']})"
            )
        if "train" in figures:
            train = figures["train"]
            for phase in train.get("phases", []):
                print(
                    f"train {phase['name']}: {phase['rays_per_s'] / 1e6:.3f} M rays/s "
                    f"({phase['rays_per_step']} rays/step, {phase['seconds_per_step'] * 1e3:.1f} ms/step, "
                    f"{phase['steps']} steps measured)"
                )
            for measured in train.get("idu_rounds_measured", []):
                print(
                    f"IDU round at iteration {measured['iteration']} (t={measured['strength']:.3f}, "
                    f"{measured['ddim_steps']} DDIM steps, {measured['views']} views): "
                    f"{measured['seconds']:.1f} s (inpainting {measured['inpaint_s']:.1f} s)"
                )
            if "idu_seconds_per_round_full_run_mean" in train:
                print(
                    f"IDU: {train['idu_seconds_per_round_full_run_mean']:.1f} s per round on average "
                    f"over the {train['idu_rounds_full_run']} rounds of the full run (extrapolated)"
                )
        summary = results.summary
        print()
        print(f"measured wall time of the stages (this run): {summary['measured_total_s']:.1f} s")
        total = summary["extrapolated_full_run_s"]
        if summary["complete"]:
            print(
                f"EXTRAPOLATED full-run time (all stages, full step counts): {total:.1f} s = "
                f"{total / 60:.1f} min vs the {TARGET_SECONDS / 60:.0f} min target "
                f"({'within' if total <= TARGET_SECONDS else 'over'} it)"
            )
        else:
            print(f"EXTRAPOLATED time of the finished stages only: {total:.1f} s (incomplete)")
        if "extrapolated_full_run_without_generation_s" in summary:
            value = summary["extrapolated_full_run_without_generation_s"]
            print(f"  without the synthetic scene generation: {value:.1f} s = {value / 60:.1f} min")
        if not summary["complete"]:
            print(f"INCOMPLETE: stages done {summary['stages_done']}")
        print(
            f"figures: {results.output_dir / 'gpu_pipeline.json'}, "
            f"{results.output_dir / 'gpu_pipeline.csv'}"
        )


class TrainRun:
    """The train stage driven step by step with the stage's own objects (see module doc)."""

    def __init__(self, bench: Benchmark, command: Any) -> None:
        self.bench, self.command = bench, command
        self.device = bench.device
        self.loads: list[float] = []
        self.inpaint_calls: list[float] = []

    def reinpainter_factory(self) -> Any:
        from maldnerf.diffusion.inpaint import load_inpainter

        command, bench = self.command, self.bench
        began = time.perf_counter()
        inner = load_inpainter(command.diffusion, command.inpaint, bench.paths["customization"])
        self.device.sync()
        self.loads.append(time.perf_counter() - began)
        outer = self

        class Timed:
            def inpaint(self, images, masks, strength, seeds):
                outer.device.sync()
                start = time.perf_counter()
                result = inner.inpaint(images, masks, strength, seeds)
                outer.inpaint_calls.append(time.perf_counter() - start)
                return result

        return Timed()

    def run(self) -> dict[str, Any]:
        from maldnerf.devices import resolve_device
        from maldnerf.nerf import checkpoint
        from maldnerf.nerf import trainer as module
        from maldnerf.nerf.data import load_training_views
        from maldnerf.nerf.idu import idu_iterations, idu_strength

        nerf, idu = self.command.nerf, self.command.idu
        bench, sync = self.bench, self.device.sync
        paths = bench.paths
        device = resolve_device(nerf.device, "nerf.device")
        resume = paths["train_resume"]
        began = time.perf_counter()
        with module.deterministic(device.type == "cpu"):
            _, views = load_training_views(paths["transforms"], paths["masks"], paths["inpaint"])
            trainer = module.Trainer(nerf, idu, views, device, self.reinpainter_factory)
            trainer.fingerprint = checkpoint.fingerprint(
                nerf,
                idu,
                module.input_files(
                    paths["transforms"], paths["masks"], paths["inpaint"], views.names
                ),
            )
            resume.mkdir(parents=True, exist_ok=True)
            sync()
            setup_s = time.perf_counter() - began
            say(f"train: set up in {setup_s:.1f} s ({trainer.runtime})")

            def one(step: int) -> None:
                trainer.step = step
                losses = trainer.train_step(step)
                trainer.accumulate(losses)
                trainer.step = step + 1

            warmup = nerf.adversarial.warmup if nerf.adversarial.enabled else nerf.iterations
            warmup = min(warmup, nerf.iterations)
            phases = [("before adversarial warm-up", 0, warmup)]
            if warmup < nerf.iterations:
                phases.append(("adversarial", warmup, nerf.iterations - warmup))
            phases = [p for p in phases if p[2] > 0]
            # What must still fit after the steps: IDU round, checkpoint, render, evaluate.
            reserve = 30.0 if bench.args.smoke else 120.0
            box = min(bench.args.train_seconds, max(6.0, bench.remaining() - reserve))
            chunk = 4 * max(1, nerf.adversarial.r1_interval)
            measured_phases = []
            for name, start, full_steps in phases:
                budget = box / len(phases)
                w = min(bench.args.train_warmup, full_steps)
                sync()
                t0 = time.perf_counter()
                for step in range(start, start + w):
                    one(step)
                sync()
                warm_s = time.perf_counter() - t0
                t0, n = time.perf_counter(), 0
                cap = min(bench.args.train_max_steps, full_steps - w)
                while n < cap:
                    for _ in range(min(chunk, cap - n)):
                        one(start + w + n)
                        n += 1
                    sync()
                    if time.perf_counter() - t0 >= budget:
                        break
                seconds = time.perf_counter() - t0
                per_step = seconds / max(n, 1)
                rays = nerf.batch_rays + (
                    nerf.patches_per_step * nerf.patch_size**2
                    if trainer.patches_needed(start + w)
                    else 0
                )
                measured_phases.append(
                    {
                        "name": name,
                        "first_iteration": start,
                        "full_steps": full_steps,
                        "warmup_steps": w,
                        "warmup_s": round(warm_s, 3),
                        "steps": n,
                        "seconds": round(seconds, 3),
                        "seconds_per_step": per_step,
                        "rays_per_step": rays,
                        "rays_per_s": rays / per_step if n else 0.0,
                    }
                )
                say(
                    f"train {name}: {n} steps in {seconds:.1f} s = {per_step * 1e3:.1f} ms/step, "
                    f"{rays / per_step / 1e6:.3f} M rays/s (warm-up {w} steps {warm_s:.1f} s)"
                )

            rounds_full = idu_iterations(idu, nerf.iterations)
            measured_rounds = []
            if rounds_full:
                count = min(bench.args.idu_rounds, len(rounds_full))
                picks = sorted(
                    {
                        rounds_full[round((i + 0.5) * len(rounds_full) / count - 0.5)]
                        for i in range(count)
                    }
                )
                for at in picks:
                    loads_before, calls_before = len(self.loads), len(self.inpaint_calls)
                    sync()
                    t0 = time.perf_counter()
                    trainer.run_idu_round(at, resume)
                    sync()
                    seconds = time.perf_counter() - t0
                    strength = idu_strength(at, nerf.iterations, idu.t_max, idu.t_min)
                    load = sum(self.loads[loads_before:])
                    inpaint_s = sum(self.inpaint_calls[calls_before:])
                    measured_rounds.append(
                        {
                            "iteration": at,
                            "strength": strength,
                            "ddim_steps": _ddim_steps(strength, self.command.inpaint.num_steps),
                            "views": len(views.names),
                            "seconds": seconds,
                            "model_load_s": load,
                            "inpaint_s": inpaint_s,
                            "other_s": seconds - load - inpaint_s,
                        }
                    )
                    say(
                        f"train: IDU round at {at} (t={strength:.3f}): {seconds:.1f} s "
                        f"(model load {load:.1f} s, inpainting {inpaint_s:.1f} s)"
                    )
            sync()
            t0 = time.perf_counter()
            trainer.save_checkpoint(resume)
            checkpoint_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            trainer.log(resume)
            log_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            module.write_output(trainer, paths["nerf"], resume)
            checkpoint.remove(resume)
            write_s = time.perf_counter() - t0

        # Extrapolation to the full run: every component times its full count.
        steps_total = sum(p["warmup_steps"] + p["steps"] for p in measured_phases)
        total = setup_s + checkpoint_s + log_s + write_s
        for p in measured_phases:
            steady = p["seconds_per_step"]
            warm_extra = max(0.0, p["warmup_s"] - p["warmup_steps"] * steady)
            total += warm_extra + p["full_steps"] * steady
        checkpoints_full = len(range(nerf.checkpoint_every, nerf.iterations, nerf.checkpoint_every))
        checkpoints_full += len(rounds_full)
        logs_full = math.ceil(nerf.iterations / nerf.log_every)
        total += (checkpoints_full - 1) * checkpoint_s + (logs_full - 1) * log_s
        idu_full = 0.0
        per_round = []
        if measured_rounds:
            load = sum(r["model_load_s"] for r in measured_rounds)
            other = statistics.mean(r["other_s"] for r in measured_rounds)
            per_step = statistics.mean(r["inpaint_s"] / r["ddim_steps"] for r in measured_rounds)
            for at in rounds_full:
                strength = idu_strength(at, nerf.iterations, idu.t_max, idu.t_min)
                per_round.append(
                    other + per_step * _ddim_steps(strength, self.command.inpaint.num_steps)
                )
            idu_full = load + sum(per_round)
            total += idu_full
        measured_s = time.perf_counter() - began
        main = max(measured_phases, key=lambda p: p["full_steps"]) if measured_phases else None
        figures: dict[str, Any] = {
            "runtime": trainer.runtime,
            "setup_s": round(setup_s, 2),
            "phases": measured_phases,
            "idu_rounds_measured": measured_rounds,
            "idu_rounds_full_run": len(rounds_full),
            "idu_full_run_s": round(idu_full, 1),
            "checkpoint_s": round(checkpoint_s, 3),
            "checkpoints_full_run": checkpoints_full,
            "log_s": round(log_s, 4),
            "logs_full_run": logs_full,
            "write_output_s": round(write_s, 2),
            "formula": "setup + sum_phases(full_steps * s/step + warm-up excess) + "
            "idu model load + sum_rounds(other + inpaint_s/ddim_step * ddim_steps(t_round)) + "
            "checkpoints * checkpoint_s + logs * log_s + write_output",
        }
        if per_round:
            figures["idu_seconds_per_round_full_run_mean"] = statistics.mean(per_round)
        row = {
            "measured": f"{steps_total} of {nerf.iterations} it, "
            f"{len(measured_rounds)} of {len(rounds_full)} IDU",
            "extrapolated_full_s": total,
            "note": (f"{main['rays_per_s'] / 1e6:.3f} M rays/s ({main['name']}); " if main else "")
            + (
                f"IDU {figures['idu_seconds_per_round_full_run_mean']:.1f} s/round; "
                if per_round
                else ""
            )
            + f"measured {measured_s:.1f} s",
        }
        figures["row"] = row
        return figures


def _ddim_steps(strength: float, num_steps: int) -> int:
    from maldnerf.diffusion.schedule import num_ddim_steps

    return num_ddim_steps(strength, num_steps)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import logging

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("httpx", "urllib3", "PIL", "matplotlib", "diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
    bench = Benchmark(args)
    try:
        return bench.run()
    finally:
        if not args.keep_work and args.work is None:
            shutil.rmtree(bench.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
