#!/usr/bin/python3
"""make bench: the engine's benchmarks and scikit-learn's, measured in the same run, as one
Markdown table with the machine named.

Runs the Go benchmarks of domain/forest, domain/detect and (unless --no-pipeline) the
pipeline benchmarks of cmd/worker, then scikit-learn's IsolationForest on the same kind of
data (scripts/bench_sklearn.py) when python3-sklearn is installed, and prints one table. The
raw `go test` output goes to stderr as it comes.

Run: /usr/bin/python3 scripts/bench_table.py [--no-pipeline]   (about 2 minutes, 13 with the
pipeline and its latency at two live rates)
"""

import os
import pickle
import platform
import re
import subprocess
import sys

GO = os.environ.get("GO", "go")

# The Go benchmarks to run, per package: name pattern and -benchtime.
RUNS = [
    ("./domain/forest", "Score|Train|Models", "1s"),
    ("./domain/detect", "Observe$|ActiveServiceBytes", "1s"),
]
PIPELINE = [
    ("./cmd/worker", "Pipeline$", "3000x"),
    ("./cmd/worker", "PipelineFleet$", "20000x"),
    # A backlog after an outage: each service's samples 20 to a message, a million in all.
    ("./cmd/worker", "PipelineFleetBatched$", "1000000x"),
    # Live traffic at a steady rate: the latency from a sample's arrival to its correlation.
    ("./cmd/worker", "PipelineLatency$", "20000x", "1000"),
    ("./cmd/worker", "PipelineLatency$", "30000x", "3000"),
    ("./cmd/worker", "PipelineLatency$", "50000x", "5000"),
]

LINE = re.compile(r"^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$")


def go_bench(pkg, pattern, benchtime, rate=None):
    """Runs one go test -bench and returns {name: {unit: value}}; with rate, the latency
    benchmark's offered samples a second (PIPELINE_RATE), named name@rate."""
    cmd = [GO, "test", "-run", "^$", "-bench", pattern, "-benchtime", benchtime, "-benchmem", "-timeout", "30m", pkg]
    env = dict(os.environ, PIPELINE_RATE=rate) if rate else None
    print(("PIPELINE_RATE=" + rate + " " if rate else "") + "$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    sys.stderr.write(out)
    results = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        fields = m.group(3).split()
        results[m.group(1) + (f"@{rate}" if rate else "")] = {unit: float(value) for value, unit in zip(fields[::2], fields[1::2])}
    return results


def pipeline_cell(r):
    """A pipeline benchmark's rate and CPU per sample, the steadier figure on a shared machine."""
    return (f"{r['samples/s']:,.0f} samples/s; CPU per sample {r['go-cpu-µs/sample']:.0f} µs in the process, "
            f"{r['pg-cpu-µs/sample']:.0f} µs in PostgreSQL")


def latency_cell(r):
    """A latency benchmark's percentiles, with the rate the pipeline kept up with."""
    return (f"p50 {r['p50-ms']:,.0f} ms, p99 {r['p99-ms']:,.0f} ms, max {r['max-ms']:,.0f} ms "
            f"({r['offered-samples/s']:,.0f} samples/s offered, {r['samples/s']:,.0f} kept up with)")


def machine():
    model, mem = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f", {kib / 2**20:.0f} GiB"
    except OSError:
        pass
    go = subprocess.run([GO, "version"], capture_output=True, text=True).stdout.strip()
    return f"{model}, {os.cpu_count()} cores{mem}; {go}"


def sklearn_figures():
    """scikit-learn's figures for 3 and 19 features, or None when it is not installed."""
    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bench_sklearn
        import numpy as np
        from sklearn.ensemble import IsolationForest
    except ImportError:
        return None
    figures = {d: bench_sklearn.bench(d) for d in (3, 19)}
    rng = np.random.default_rng(1)
    model = IsolationForest(n_estimators=100, max_samples=256, random_state=0).fit(rng.standard_normal((10_000, 3)))
    figures["model_bytes"] = len(pickle.dumps(model))
    figures["version"] = bench_sklearn.sklearn.__version__
    return figures


def per_call(r):
    ns = r["ns/op"]
    return f"{ns / 1000:,.1f} µs, {r.get('allocs/op', 0):.0f} allocs ({1e9 / ns:,.0f}/s)"


def main():
    pipeline = "--no-pipeline" not in sys.argv[1:]
    go = {}
    for run in RUNS + (PIPELINE if pipeline else []):
        go.update(go_bench(*run))
    sk = sklearn_figures()

    def skl(f):
        return f(sk) if sk else "python3-sklearn not installed"

    rows = [
        ("score one sample, 3 features (`ScoreExtended`, the engine's)", per_call(go["BenchmarkScoreExtended"]),
         skl(lambda s: f"{s[3]['single_us'] / 1000:,.1f} ms per call ({s[3]['single_rate']:,.0f}/s)")),
        ("score one sample, 19 features (`ScoreExtended`)", per_call(go["BenchmarkScoreExtended19"]),
         skl(lambda s: f"{s[19]['single_us'] / 1000:,.1f} ms per call ({s[19]['single_rate']:,.0f}/s)")),
        ("score one sample, 3 features (paper's `Score`)", per_call(go["BenchmarkScore"]), ""),
        ("batch of 100,000 rows, 3 / 19 features", "one sample at a time, as above",
         skl(lambda s: f"{s[3]['batch_rate']:,.0f}/s / {s[19]['batch_rate']:,.0f}/s")),
        ("4,096 models in turn, 3 features (`ScoreExtendedModels`)", per_call(go["BenchmarkScoreExtendedModels"]), ""),
        ("4,096 models in turn, 3 features (paper's `Score`, `ScoreModels`)", per_call(go["BenchmarkScoreModels"]), ""),
        ("one model in memory (100 trees of 256 rows, 3 features)",
         f"{go['BenchmarkScoreExtendedModels']['model-bytes'] / 1024:,.0f} KiB",
         skl(lambda s: f"{s['model_bytes'] / 1024:,.0f} KiB pickled")),
        ("train one model, 3 / 19 features (10,000 rows)",
         f"{go['BenchmarkTrain/d=3']['ns/op'] / 1e6:,.1f} ms / {go['BenchmarkTrain/d=19']['ns/op'] / 1e6:,.1f} ms",
         skl(lambda s: f"{s[3]['train_ms']:,.0f} ms / {s[19]['train_ms']:,.0f} ms")),
        ("score stage per sample (`Detector.Observe`)", per_call(go["BenchmarkObserve"]), ""),
        ("one active service in memory (`ActiveServiceBytes`)",
         f"{go['BenchmarkActiveServiceBytes']['heap-bytes/service'] / 1024:,.0f} KiB heap, "
         f"{go['BenchmarkActiveServiceBytes']['state-bytes/service'] / 1024:,.0f} KiB saved state; "
         f"{go['BenchmarkActiveServiceBytes']['heap-bytes/new-service'] / 1024:,.0f} KiB after its first 10 samples", ""),
    ]
    if pipeline:
        rows += [
            ("whole pipeline, 3 services (`BenchmarkPipeline`)", pipeline_cell(go['BenchmarkPipeline']), ""),
            ("whole pipeline, 1,000 services (`BenchmarkPipelineFleet`)", pipeline_cell(go['BenchmarkPipelineFleet']), ""),
            ("a backlog of 1,000,000 samples from the same services, 20 to a message (`BenchmarkPipelineFleetBatched`)", pipeline_cell(go['BenchmarkPipelineFleetBatched']), ""),
            ("from arrival to correlation, 1,000 services live at 1,000 samples/s (`BenchmarkPipelineLatency`)",
             latency_cell(go['BenchmarkPipelineLatency@1000']), ""),
            ("the same at 3,000 samples/s", latency_cell(go['BenchmarkPipelineLatency@3000']), ""),
            ("the same at 5,000 samples/s", latency_cell(go['BenchmarkPipelineLatency@5000']), ""),
        ]
    print(f"Machine: {machine()}; scikit-learn {sk['version'] if sk else 'not installed'}\n")
    print("| | this engine | scikit-learn 100 trees, 256 samples |")
    print("|---|---|---|")
    for name, engine, ref in rows:
        print(f"| {name} | {engine} | {ref} |")


if __name__ == "__main__":
    main()
