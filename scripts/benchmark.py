"""Benchmark our ViT against transformers' `ViTForImageClassification` built with the identical architecture and
the same weights (hf_vit_mnist.convert), on this machine: training and inference throughput, single-image latency
through `pipeline`, peak memory, FLOPs per image and the achieved share of the machine's matmul peak.

    python scripts/benchmark.py                       # everything (about 15 min on 2 cores)
    python scripts/benchmark.py --quick               # 1 repeat, release config, eager only (about 2 min)
    python scripts/benchmark.py --training_summary runs/release/final_model/training_summary.json
    python scripts/benchmark.py --profile             # where a training step's time goes, op by op (1 min)

Variants are measured alternately (ours, theirs, ours, ...) in every repeat, and the median is reported with the
range. Writes benchmarks/results.json and benchmarks/results.md.
"""

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import pipeline

from hf_vit_mnist import ViTMNISTConfig, ViTMNISTForImageClassification, ViTMNISTImageProcessor
from hf_vit_mnist.convert import max_logit_difference, to_transformers_vit
from hf_vit_mnist.training import cpu_name

CONFIGS = {
    "release": {},  # ViTMNISTConfig's defaults are the released architecture
    "large": {"hidden_size": 128, "num_hidden_layers": 8, "num_attention_heads": 8, "intermediate_size": 256},
}
TRAIN_BATCH = 128
INFERENCE_BATCHES = (256, 1024)
MIN_SECONDS = 2.0  # each timing runs at least this long (and at least 3 calls)
# Each compiled variant (train / inference, fp32 / bf16, batch sizes) is its own graph of the same forward code;
# dynamo's default limit of 8 graphs per code object would silently fall back to eager for the rest.
torch._dynamo.config.recompile_limit = 64


def build_pair(config_name: str) -> dict:
    torch.manual_seed(0)
    ours = ViTMNISTForImageClassification(ViTMNISTConfig(**CONFIGS[config_name]))
    return {"ours": ours, "transformers": to_transformers_vit(ours)}


def timed(call, images_per_call: int) -> float:
    """Images per second of `call`, after one warm-up call."""
    call()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < MIN_SECONDS:
        call()
        calls += 1
    return images_per_call * calls / (time.perf_counter() - start)


def training_step(model, optimizer, precision: str):
    pixels, labels = torch.randn(TRAIN_BATCH, 1, 28, 28), torch.randint(0, 10, (TRAIN_BATCH,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(pixel_values=pixels, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def inference_call(model, batch: int, precision: str):
    pixels = torch.randn(batch, 1, 28, 28)

    def call():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            model(pixel_values=pixels)

    return call


def flops_per_image(model) -> dict:
    pixels, labels = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    with FlopCounterMode(display=False) as forward:
        with torch.no_grad():
            model(pixel_values=pixels)
    with FlopCounterMode(display=False) as training:
        model(pixel_values=pixels, labels=labels).loss.backward()
    model.zero_grad(set_to_none=True)
    return {"forward": forward.get_total_flops() / 8, "training": training.get_total_flops() / 8}


def matmul_peak_flops(dtype=torch.float32, size: int = 2048) -> float:
    """The machine's practical peak: FLOP/s of a large square matmul on all threads (not a datasheet figure)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    return timed(lambda: a @ b, 1) * 2 * size**3


def pipeline_latency_ms(model, repeats: int = 30) -> float:
    classify = pipeline("image-classification", model=model.eval(), image_processor=ViTMNISTImageProcessor())
    digit = (np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)
    classify(digit)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        classify(digit)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def peak_memory_mb(kind: str, config_name: str, precision: str) -> float:
    """Peak resident memory that building the model and running training steps adds, in a fresh process: RSS is
    sampled every millisecond during the steps, minus the RSS just before the model is built."""
    run = subprocess.run([sys.executable, __file__, "--_memory_probe", kind, config_name, precision],
                         capture_output=True, text=True, check=True)
    return float(run.stdout.strip().splitlines()[-1])


def _memory_probe(kind: str, config_name: str, precision: str) -> None:
    process = psutil.Process()
    baseline, peak, done = process.memory_info().rss, [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    model = build_pair(config_name)[kind].train()
    step = training_step(model, torch.optim.AdamW(model.parameters()), precision)
    for _ in range(3):
        step()
    done.set()
    sampler.join()
    print((peak[0] - baseline) / 2**20)


def profile_training_step(config_name: str, steps: int = 5, top: int = 15) -> str:
    """A markdown table of the ops that take the most CPU time in a training step (forward, backward, AdamW), for
    both models: the best of 3 profiled rounds of `steps` steps each, in ms per step."""
    per_model = {}
    for kind, model in build_pair(config_name).items():
        step = training_step(model.train(), torch.optim.AdamW(model.parameters(), fused=True), "fp32")
        step()
        rounds = []
        for _ in range(3):
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
                for _ in range(steps):
                    step()
            rounds.append({event.key: (event.self_cpu_time_total / 1e3 / steps, event.count // steps)
                           for event in profiler.key_averages()})
        per_model[kind] = min(rounds, key=lambda ops: sum(ms for ms, _ in ops.values()))
    totals = {kind: sum(ms for ms, _ in ops.values()) for kind, ops in per_model.items()}
    ranked = sorted(set().union(*per_model.values()), key=lambda op: -per_model["ours"].get(op, (0, 0))[0])
    lines = [f"Training step profile, {config_name} config, batch {TRAIN_BATCH}, {torch.get_num_threads()} threads "
             f"(self CPU ms per step; total ours {totals['ours']:.0f}, transformers {totals['transformers']:.0f})", "",
             "| op | ours ms | ours calls | transformers ms | transformers calls |", "| --- | --- | --- | --- | --- |"]
    for op in ranked[:top]:
        ours_ms, ours_calls = per_model["ours"].get(op, (0, 0))
        theirs_ms, theirs_calls = per_model["transformers"].get(op, (0, 0))
        lines.append(f"| `{op[:60]}` | {ours_ms:.1f} | {ours_calls} | {theirs_ms:.1f} | {theirs_calls} |")
    return "\n".join(lines) + "\n"


def summarise(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def benchmark_config(config_name: str, repeats: int, modes: list[str], precisions: list[str]) -> dict:
    pair = build_pair(config_name)
    pixels = torch.randn(16, 1, 28, 28)
    result = {
        "config": {**ViTMNISTConfig(**CONFIGS[config_name]).to_diff_dict()},
        "parameters": pair["ours"].num_parameters(),
        "max_logit_difference": max_logit_difference(pair["ours"].eval(), pair["transformers"].eval(), pixels),
        "flops_per_image": flops_per_image(pair["ours"]),
        "variants": {},
    }
    variants, compile_seconds = {}, {}
    for kind, model in pair.items():
        for mode in modes:
            for precision in precisions:
                name = f"{kind} {mode} {precision}"
                runnable = torch.compile(model) if mode == "compiled" else model
                optimizer = torch.optim.AdamW(model.parameters(), fused=True)
                calls = {"train": training_step(runnable.train(), optimizer, precision)}
                calls.update({f"infer_{batch}": inference_call(runnable, batch, precision)
                              for batch in INFERENCE_BATCHES})
                if mode == "compiled":  # first calls compile: time them once, apart from the throughput
                    start = time.perf_counter()
                    calls["train"]()
                    model.eval()
                    for batch in INFERENCE_BATCHES:
                        calls[f"infer_{batch}"]()
                    compile_seconds[name] = time.perf_counter() - start
                variants[name] = (model, calls)
    measured = {name: {"train": [], **{f"infer_{b}": [] for b in INFERENCE_BATCHES}} for name in variants}
    for _ in range(repeats):
        for name, (model, calls) in variants.items():  # alternate: every variant once per repeat
            model.train()
            measured[name]["train"].append(timed(calls["train"], TRAIN_BATCH))
            model.eval()
            for batch in INFERENCE_BATCHES:
                measured[name][f"infer_{batch}"].append(timed(calls[f"infer_{batch}"], batch))
    for name, series in measured.items():
        result["variants"][name] = {key: summarise(values) for key, values in series.items()}
        if name in compile_seconds:
            result["variants"][name]["compile_seconds"] = compile_seconds[name]
    for kind in pair:
        result["variants"][f"{kind} eager fp32"]["pipeline_latency_ms"] = pipeline_latency_ms(pair[kind])
        result["variants"][f"{kind} eager fp32"]["peak_training_memory_mb"] = peak_memory_mb(kind, config_name,
                                                                                              "fp32")
    return result


def markdown(results: dict) -> str:
    lines = [f"Machine: {results['machine']['cpu']}, {results['machine']['threads']} threads, torch "
             f"{results['machine']['torch']}. Matmul peak (fp32, 2048^3): "
             f"{results['machine']['matmul_peak_gflops_fp32']:.0f} GFLOP/s.", ""]
    for config_name, config in results["configs"].items():
        flops = config["flops_per_image"]
        lines += [f"### {config_name}: {config['parameters']:,} parameters, {flops['forward'] / 1e6:.1f} MFLOP "
                  f"forward / {flops['training'] / 1e6:.1f} MFLOP training per image; max logit difference "
                  f"ours vs transformers {config['max_logit_difference']:.1e}", "",
                  "| variant | train img/s | infer img/s (256) | infer img/s (1024) | train % of peak | compile s |"
                  " pipeline ms | peak train MB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        peak = results["machine"]["matmul_peak_gflops_fp32"] * 1e9
        for name, values in config["variants"].items():
            train = values["train"]["median"]
            cells = [name, f"{train:.0f} ({values['train']['min']:.0f}-{values['train']['max']:.0f})",
                     *(f"{values[f'infer_{b}']['median']:.0f}" for b in INFERENCE_BATCHES),
                     f"{100 * train * flops['training'] / peak:.0f}%",
                     f"{values['compile_seconds']:.0f}" if "compile_seconds" in values else "",
                     f"{values['pipeline_latency_ms']:.1f}" if "pipeline_latency_ms" in values else "",
                     f"{values['peak_training_memory_mb']:.0f}" if "peak_training_memory_mb" in values else ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for path, summary in results.get("time_to_accuracy", {}).items():
        lines.append(f"Time to 99.0% / 99.5% test accuracy ({path}): "
                     f"{summary.get('0.99')} s / {summary.get('0.995')} s")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--quick", action="store_true", help="1 repeat, release config, eager fp32 only.")
    parser.add_argument("--training_summary", nargs="*", default=[], help="training_summary.json files.")
    parser.add_argument("--output_dir", default="benchmarks")
    parser.add_argument("--profile", action="store_true", help="Only profile a training step: writes profile.md.")
    parser.add_argument("--_memory_probe", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._memory_probe:
        return _memory_probe(*args._memory_probe)
    if args.profile:
        table = "\n".join(profile_training_step(name) for name in args.configs)
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "profile.md").write_text(table)
        print(table)
        return {"profile": table}
    if args.quick:
        args.repeats, args.configs, args.modes, args.precisions = 1, ["release"], ["eager"], ["fp32"]

    results = {
        "machine": {"cpu": cpu_name(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "matmul_peak_gflops_fp32": matmul_peak_flops() / 1e9},
        "settings": {"repeats": args.repeats, "train_batch": TRAIN_BATCH, "inference_batches": INFERENCE_BATCHES},
        "configs": {name: benchmark_config(name, args.repeats, args.modes, args.precisions) for name in args.configs},
        "time_to_accuracy": {path: json.loads(Path(path).read_text())["time_to_test_accuracy_seconds"]
                             for path in args.training_summary},
    }
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "results.md").write_text(markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
