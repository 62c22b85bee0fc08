#!/usr/bin/python3
"""scikit-learn's IsolationForest on the ASD benchmark: the baseline for docs/results.md.

Per entity (omi-1 .. omi-12) it trains IsolationForest(n_estimators=100,
max_samples=256, random_state=0) on the raw rows of train/, scores the rows of
test/ (the negated score_samples, so higher means more anomalous) and measures,
against test_label/, without point adjustment:

  ROC-AUC   sklearn.metrics.roc_auc_score
  PR-AUC    sklearn.metrics.average_precision_score
  best F1   the highest F1 over every threshold of precision_recall_curve

It prints a table per entity and the mean, and with --out writes the same
figures as CSV (entity,roc_auc,pr_auc,best_f1; last row "mean").

With --engine-scores FILE (the CSV written by `incidentctl backtest --scores`)
it also measures the engine's scores with the same scikit-learn functions, a
cross-check of the Go implementation in domain/evaluate.

Run (about 10 s):
  /usr/bin/python3 scripts/asd_sklearn_baseline.py /work/shared/data/asd --out /tmp/sklearn.csv
"""

import argparse
import csv
import os
import re
import sys

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score


def best_f1(labels, scores):
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
    return float(f1.max())


def figures(labels, scores):
    return (
        float(roc_auc_score(labels, scores)),
        float(average_precision_score(labels, scores)),
        best_f1(labels, scores),
    )


def entities(data):
    names = [f[: -len(".txt")] for f in os.listdir(os.path.join(data, "test")) if f.endswith(".txt")]
    return sorted(names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])


def load(data, part, entity):
    return np.loadtxt(os.path.join(data, part, entity + ".txt"), delimiter=",", ndmin=2)


def print_table(title, rows):
    print(title)
    print(f"{'entity':>8} {'ROC-AUC':>8} {'PR-AUC':>8} {'bestF1':>8}")
    for name, roc, pr, f1 in rows:
        print(f"{name:>8} {roc:8.3f} {pr:8.3f} {f1:8.3f}")


def with_mean(rows):
    mean = np.mean([r[1:] for r in rows], axis=0)
    return rows + [("mean", *map(float, mean))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="the ASD directory (train/, test/, test_label/)")
    ap.add_argument("--out", help="write entity,roc_auc,pr_auc,best_f1 to this CSV file")
    ap.add_argument("--engine-scores", help="also measure the engine's scores (incidentctl backtest --scores FILE)")
    args = ap.parse_args()

    rows = []
    for entity in entities(args.data):
        train, test = load(args.data, "train", entity), load(args.data, "test", entity)
        labels = load(args.data, "test_label", entity).ravel()
        model = IsolationForest(n_estimators=100, max_samples=256, random_state=0).fit(train)
        rows.append((entity, *figures(labels, -model.score_samples(test))))
    rows = with_mean(rows)
    print_table(f"scikit-learn {sklearn.__version__} IsolationForest(n_estimators=100, max_samples=256, random_state=0), trained on train/", rows)

    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["entity", "roc_auc", "pr_auc", "best_f1"])
            for name, *vals in rows:
                w.writerow([name, *(f"{v:.4f}" for v in vals)])

    if args.engine_scores:
        by_entity = {}
        with open(args.engine_scores, newline="") as f:
            for rec in csv.DictReader(f):
                by_entity.setdefault(rec["file"], []).append(float(rec["score"]))
        engine = []
        for entity in entities(args.data):
            labels = load(args.data, "test_label", entity).ravel()
            scores = np.array(by_entity.get(entity, []))
            if len(scores) != len(labels):
                sys.exit(f"{args.engine_scores}: {len(scores)} scores for {entity}, {len(labels)} test labels")
            engine.append((entity, *figures(labels, scores)))
        print()
        print_table("the engine's scores, measured by scikit-learn", with_mean(engine))


if __name__ == "__main__":
    main()
