#!/usr/bin/python3
"""scikit-learn's IsolationForest on a benchmark directory: the baseline `incidentctl eval`
runs beside the engine, in the same run.

It scores every row the engine is evaluated on and writes file,row,score (the negated
score_samples, so higher means more anomalous); `incidentctl eval` measures both with the
same code (domain/evaluate), over the same rows.

  ASD layout (train/, test/: ASD, SMD): one model per entity, trained on the raw rows of
    train/, as in the datasets' reference figures; row is the 0-based row of test/.
  NAB layout (data/<category>/<file>.csv, labels/combined_windows.json): one model per file,
    trained on its probationary rows (the first 15%, at most 750, which NAB does not score);
    row is the 0-based data row of the file, every row scored.
  A directory of CSV files (timestamp, metrics, optional label): one model per file, trained
    on its first --warm-up rows; row as for NAB.

IsolationForest(n_estimators=100, max_samples=256, random_state=0) everywhere.

  /usr/bin/python3 scripts/sklearn_baseline.py DIR --out FILE [--warm-up 256]
"""

import argparse
import csv
import glob
import json
import math
import os
import re
import sys

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest


def natural(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def model(train):
    return IsolationForest(n_estimators=100, max_samples=min(256, len(train)), random_state=0).fit(train)


def read_csv(path):
    """The metric columns of a CSV file (every column but timestamp and label), as floats."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = [h.strip().lstrip("\ufeff").lower() for h in rows[0]]
    cols = [i for i, h in enumerate(header) if h not in ("timestamp", "label")]
    out = []
    for r in rows[1:]:
        vals = []
        for i in cols:
            try:
                v = float(r[i])
            except ValueError:
                v = float("nan")
            vals.append(v)
        out.append(vals)
    x = np.array(out, dtype=float)
    # A row with a missing value takes its predecessor's values (the engine drops it).
    for i in range(len(x)):
        if not np.all(np.isfinite(x[i])):
            x[i] = x[i - 1] if i > 0 else 0
    return x


def asd(data):
    names = sorted((f[:-4] for f in os.listdir(os.path.join(data, "test")) if f.endswith(".txt")), key=natural)
    for name in names:
        train = np.loadtxt(os.path.join(data, "train", name + ".txt"), delimiter=",", ndmin=2)
        test = np.loadtxt(os.path.join(data, "test", name + ".txt"), delimiter=",", ndmin=2)
        yield name, -model(train).score_samples(test)


def nab(data):
    with open(os.path.join(data, "labels", "combined_windows.json")) as f:
        names = sorted(json.load(f))
    for rel in names:
        x = read_csv(os.path.join(data, "data", rel))
        probation = int(min(math.floor(0.15 * len(x)), 0.15 * 5000))
        yield rel, -model(x[: max(probation, 2)]).score_samples(x)


def csv_dir(data, warm_up):
    for path in sorted(glob.glob(os.path.join(data, "*.csv")), key=lambda p: natural(os.path.basename(p))):
        x = read_csv(path)
        yield os.path.basename(path)[:-4], -model(x[:warm_up]).score_samples(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="a directory in the ASD or NAB layout, or of CSV files")
    ap.add_argument("--out", required=True, help="write file,row,score to this CSV file")
    ap.add_argument("--warm-up", type=int, default=256, help="CSV files: the leading rows each model trains on")
    args = ap.parse_args()
    if os.path.isdir(os.path.join(args.data, "train")) and os.path.isdir(os.path.join(args.data, "test")):
        files = asd(args.data)
    elif os.path.isfile(os.path.join(args.data, "labels", "combined_windows.json")):
        files = nab(args.data)
    else:
        files = csv_dir(args.data, args.warm_up)
    n = 0
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "row", "score"])
        for name, scores in files:
            for i, s in enumerate(scores):
                w.writerow([name, i, f"{s:.6f}"])
            n += 1
    print(f"scikit-learn {sklearn.__version__}: {n} files scored into {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
