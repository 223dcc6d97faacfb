"""Benchmark: lnmkit's MIL training vs a batch-size-1 loop vs torchmil's ABMIL.

All contenders train an attention MIL model of the same size (tile projection
to ``--hidden`` units, tanh attention, linear head) for the same number of
epochs on the same bags and are scored out of fold on the same patient folds,
always on every tile of the held-out bags:

* ``lnmkit``: ``MILClassifier(arch="abmil")`` with its defaults (length-bucketed
  batches of 8 bags, each bag randomly subsampled to ``max_tiles=640`` tiles
  anew every epoch, packed tile projection, weights averaged over 3 epochs);
  only ``max_epochs`` (set to ``--epochs``; with the default ``val_fraction=0``
  there is no early stopping, so every contender trains for the same epochs) and
  ``slide_normalisation=None`` (the features as they are, as every other
  contender sees them) differ; ``--lnmkit-set NAME=VALUE`` overrides other
  defaults (JSON values: ``slide_normalisation=null``).
  One network per fit (``n_init=1``): the trainer's speed. The variants
  below change one thing each against it.
* ``lnmkit-3init``: the best of ``n_init=3`` networks per fit. Its time
  includes all three networks of each fit, so its epochs/s are per fitted
  model. Where they train in float32 they train side by side, one thread
  each on as many CPUs as the process may use (``n_jobs=None``), so the CPU
  column counts what they cost: CPU seconds per epoch, as a multiple of the
  one-bag loop's.
* ``lnmkit-in-turn``: ``n_init=3`` with ``n_jobs=1``, the three networks one
  after the other on one CPU.
* ``lnmkit-robust``: with the estimator's default per-slide robust
  standardisation, on these bags that have no slide-wide shifts to remove.
* ``lnmkit-fp32``: float32 training whatever the hardware.
* ``lnmkit-all``: ``max_tiles`` above the largest bag: every tile, as the
  one-bag loop sees, so the gain of batching alone is visible.
* ``bs1-loop``: the same lnmkit network trained the CLAM/TRIDENT way: one whole
  bag (every tile) per optimiser step, AdamW at ``--lr-bs1`` (CLAM's 2e-4).
* ``torchmil``: ``torchmil.models.ABMIL`` with the same projection as feature
  extractor, on randomly composed padded batches of ``--batch-size`` whole
  bags (torchmil's padding collate, no length bucketing) at ``--lr-batched``.

Each contender runs in its own child process, so ``ru_maxrss`` is that
contender's peak resident memory; the process builds one optimiser before
its clock starts (the first one imports ``torch._dynamo``: start-up, not
training). Each of ``--seeds`` draws new bags, folds and initial weights; the
table averages the AUCs over seeds (each is shown) and pools epochs/s. Bags: synthetic, ``--patients`` patients with
``--min-tiles``..``--max-tiles`` tiles; in pN+ patients a share ``--witness`` of
the tiles is shifted by ``--shift-sd`` feature SDs along a fixed direction
(planted positive instances). ``--dim`` takes one or more feature sizes (128 as
small encoders, 1024 as ResNet50-trunc), ``--shift-sd`` one shift per size;
each size gets its own table. Run:
``python benchmarks/bench_mil.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def make_bags(n_patients, min_tiles, max_tiles, dim, seed, witness=0.03, shift_sd=1.5):
    """Synthetic bags with planted positive instances; returns (features list, labels)."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    labels = (np.arange(n_patients) % 2).astype(int)
    rng.shuffle(labels)
    bags = []
    for y in labels:
        n = int(rng.integers(min_tiles, max_tiles + 1))
        x = rng.normal(size=(n, dim)).astype(np.float32)
        if y:
            hot = rng.choice(n, max(3, int(witness * n)), replace=False)
            x[hot] += (shift_sd * direction).astype(np.float32)
        bags.append(x)
    return bags, labels


def _folds(labels, n_splits, seed):
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(labels, labels))


class _Clock:
    """Wall-clock and CPU seconds (every thread of the process) spent in the block."""

    def __enter__(self):
        self.seconds, self.cpu_seconds = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.seconds
        self.cpu_seconds = time.process_time() - self.cpu_seconds


def _train_lnmkit(bags, labels, train, test, a, seed, **params):
    import pandas as pd

    from lnmkit.mil import MILClassifier

    pids = [f"P{i:04d}" for i in range(len(bags))]
    y = pd.DataFrame({"pn_status": np.where(labels == 1, "pN+", "pN0")}, index=pids)
    # the features as they are, like every other contender; lnmkit-robust adds the default per-slide standardisation
    params = {"slide_normalisation": None, **a.lnmkit_set, **params}
    clf = MILClassifier("abmil", tasks=("lnm",), hidden=a.hidden, max_epochs=a.epochs, random_state=seed,
                        n_threads=a.threads, **params)
    with _Clock() as clock:
        clf.fit({pids[i]: bags[i] for i in train}, y)
    scores = clf.predict({pids[i]: bags[i] for i in test})["lnm_score"].to_numpy()
    return clock, scores


def _standardiser(bags, train):
    # Streamed sums, so the baselines' peak memory is not inflated by a float64 copy of all tiles.
    total = sum(bags[i].sum(0, dtype=np.float64) for i in train)
    total_sq = sum(np.square(bags[i], dtype=np.float64).sum(0) for i in train)
    count = sum(bags[i].shape[0] for i in train)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std[std < 1e-6] = 1.0
    return (lambda x: ((x - mean) / std).astype(np.float32))


def _train_bs1(bags, labels, train, test, a, seed):
    import torch

    from lnmkit.mil import build_model
    from lnmkit.mil._models import _init_seeded

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    scale = _standardiser(bags, train)
    model = _init_seeded(build_model("abmil", bags[0].shape[1], a.hidden, 0.25, ("lnm",)), seed)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr_bs1, weight_decay=1e-4)
    pos = labels[train].mean()
    w = {1: 0.5 / pos, 0: 0.5 / (1 - pos)}
    with _Clock() as clock:
        for _ in range(a.epochs):
            model.train()
            for i in rng.permutation(train):
                x = torch.from_numpy(scale(bags[i]))[None]
                out = model(x, None)
                loss, _ = model.compute_loss(out, {"lnm": torch.tensor([float(labels[i])]),
                                                   "lnm_weight": torch.tensor([w[int(labels[i])]])})
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    model.eval()
    with torch.no_grad():
        scores = np.array([float(torch.sigmoid(model(torch.from_numpy(scale(bags[i]))[None], None)["logits"]["lnm"][0]))
                           for i in test])
    return clock, scores


def _train_torchmil(bags, labels, train, test, a, seed):
    import torch
    from torchmil.models import ABMIL

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    scale = _standardiser(bags, train)
    dim = bags[0].shape[1]
    feat_ext = torch.nn.Sequential(torch.nn.Linear(dim, a.hidden), torch.nn.ReLU(), torch.nn.Dropout(0.25))
    model = ABMIL(in_shape=(dim,), att_dim=a.hidden, feat_ext=feat_ext)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr_batched, weight_decay=1e-4)
    pos = labels[train].mean()
    pos_weight = torch.tensor((1 - pos) / pos)
    crit = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def pad(arrays):
        n = max(x.shape[0] for x in arrays)
        xb = torch.zeros(len(arrays), n, dim)
        mb = torch.zeros(len(arrays), n)
        for j, x in enumerate(arrays):
            xb[j, : x.shape[0]] = torch.from_numpy(x)
            mb[j, : x.shape[0]] = 1
        return xb, mb

    with _Clock() as clock:
        for _ in range(a.epochs):
            model.train()
            order = rng.permutation(train)
            for s in range(0, len(order), a.batch_size):
                ids = order[s : s + a.batch_size]
                xb, mb = pad([scale(bags[i]) for i in ids])
                logits = model(xb, mb)
                loss = crit(logits, torch.tensor(labels[ids], dtype=torch.float32))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    model.eval()
    with torch.no_grad():
        scores = np.array([float(model(torch.from_numpy(scale(bags[i]))[None])[0]) for i in test])
    return clock, scores


def _train_lnmkit_three(bags, labels, train, test, a, seed):
    return _train_lnmkit(bags, labels, train, test, a, seed, n_init=3)


def _train_lnmkit_in_turn(bags, labels, train, test, a, seed):
    return _train_lnmkit(bags, labels, train, test, a, seed, n_init=3, n_jobs=1)


def _train_lnmkit_fp32(bags, labels, train, test, a, seed):
    return _train_lnmkit(bags, labels, train, test, a, seed, precision="fp32")


def _train_lnmkit_robust(bags, labels, train, test, a, seed):
    return _train_lnmkit(bags, labels, train, test, a, seed, slide_normalisation="robust")


def _train_lnmkit_all(bags, labels, train, test, a, seed):
    return _train_lnmkit(bags, labels, train, test, a, seed, precision="fp32",
                         max_tiles=max(b.shape[0] for b in bags))


CONTENDERS = {"bs1-loop": _train_bs1, "lnmkit": _train_lnmkit, "lnmkit-3init": _train_lnmkit_three,
              "lnmkit-in-turn": _train_lnmkit_in_turn,
              "lnmkit-robust": _train_lnmkit_robust,
              "lnmkit-fp32": _train_lnmkit_fp32, "lnmkit-all": _train_lnmkit_all, "torchmil": _train_torchmil}
LABELS = {"bs1-loop": "one bag/step, all tiles", "lnmkit": "lnmkit (defaults)",
          "lnmkit-3init": "lnmkit, n_init=3",
          "lnmkit-in-turn": "lnmkit, n_init=3, n_jobs=1",
          "lnmkit-robust": "lnmkit, robust slide norm.", "lnmkit-fp32": "lnmkit, float32",
          "lnmkit-all": "lnmkit, all tiles, fp32", "torchmil": "torchmil ABMIL"}


def _child(name, data_path, a, seed, queue):
    import torch
    from sklearn.metrics import roc_auc_score

    torch.set_num_threads(a.threads)
    # The first optimiser of a process imports torch._dynamo (about a second): start-up, not training.
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    data = np.load(data_path, allow_pickle=False)
    labels = data["labels"]
    bags = [data[f"bag_{i}"] for i in range(len(labels))]
    oof = np.full(len(labels), np.nan)
    seconds = cpu_seconds = 0.0
    for train, test in _folds(labels, a.n_splits, seed):
        clock, scores = CONTENDERS[name](bags, labels, train, test, a, seed)
        seconds += clock.seconds
        cpu_seconds += clock.cpu_seconds
        oof[test] = scores
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    queue.put({"name": name, "seconds": seconds, "cpu_seconds": cpu_seconds, "epochs": a.epochs * a.n_splits,
               "auc": roc_auc_score(labels, oof), "rss_mb": rss_mb})


def _run_seed(a, dim, shift_sd, seed):
    """Every contender on one seed's bags and folds; name -> result dict."""
    bags, labels = make_bags(a.patients, a.min_tiles, a.max_tiles, dim, seed, a.witness, shift_sd)
    n_tiles = sum(b.shape[0] for b in bags)
    print(f"  seed {seed}: {n_tiles} tiles ({n_tiles / a.patients:.0f}/bag)", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "bags.npz"
        np.savez(data_path, labels=labels, **{f"bag_{i}": b for i, b in enumerate(bags)})
        del bags
        ctx = mp.get_context("spawn")
        for name in [n for n in CONTENDERS if n in a.only]:
            queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=(name, str(data_path), a, seed, queue))
            proc.start()
            results[name] = queue.get()
            proc.join()
            r = results[name]
            print(f"    {name:14s} {r['seconds']:6.1f} s ({r['cpu_seconds']:6.1f} CPU s), AUC {r['auc']:.3f}",
                  flush=True)
    return results


def _run_dim(a, dim, shift_sd):
    print(f"\n{a.patients} patients, {a.min_tiles}-{a.max_tiles} tiles per bag, dim {dim}; planted shift "
          f"{shift_sd} SD; {a.epochs} epochs x {a.n_splits} folds; {a.threads} torch thread(s); "
          f"seeds {' '.join(map(str, a.seeds))}", flush=True)
    runs = [_run_seed(a, dim, shift_sd, seed) for seed in a.seeds]
    results = {}
    for name in runs[0]:
        per_seed = [run[name] for run in runs]
        results[name] = {
            "epochs_per_s": sum(r["epochs"] for r in per_seed) / sum(r["seconds"] for r in per_seed),
            "cpu_s_per_epoch": sum(r["cpu_seconds"] for r in per_seed) / sum(r["epochs"] for r in per_seed),
            "auc": [r["auc"] for r in per_seed],
            "rss_mb": max(r["rss_mb"] for r in per_seed),
        }
    base = results.get("bs1-loop")
    print(f"\n{'method':24s} {'epochs/s':>9s} {'x bs1':>7s} {'CPU s/ep':>9s} {'x bs1':>7s} {'OOF AUC':>8s} "
          f"{'dAUC':>7s} {'peak RSS MB':>12s} {'x bs1':>7s}  AUC per seed")
    for name, r in results.items():
        auc = float(np.mean(r["auc"]))
        each = " ".join(f"{v:.3f}" for v in r["auc"])
        if base:
            speed, cpu = r["epochs_per_s"] / base["epochs_per_s"], r["cpu_s_per_epoch"] / base["cpu_s_per_epoch"]
            d_auc, mem = auc - float(np.mean(base["auc"])), r["rss_mb"] / base["rss_mb"]
            print(f"{LABELS[name]:24s} {r['epochs_per_s']:9.3f} {speed:7.2f} {r['cpu_s_per_epoch']:9.3f} {cpu:7.2f} "
                  f"{auc:8.3f} {d_auc:+7.3f} {r['rss_mb']:12.0f} {mem:7.2f}  {each}")
        else:
            print(f"{LABELS[name]:24s} {r['epochs_per_s']:9.3f} {'':>7s} {r['cpu_s_per_epoch']:9.3f} {'':>7s} "
                  f"{auc:8.3f} {'':>7s} {r['rss_mb']:12.0f} {'':>7s}  {each}")
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--patients", type=int, default=120)
    p.add_argument("--min-tiles", type=int, default=500)
    p.add_argument("--max-tiles", type=int, default=3000)
    p.add_argument("--dim", type=int, nargs="+", default=[128, 1024], help="feature size(s), one table each")
    p.add_argument("--witness", type=float, default=0.03, help="share of planted tiles in pN+ bags")
    p.add_argument("--shift-sd", type=float, nargs="+", default=[2.25, 3.0],
                   help="planted shift in feature SDs, one per --dim (a direction is harder to find in "
                        "more dimensions, so larger features get a larger shift); the last repeats")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--n-splits", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16, help="torchmil bags per step (its usual 16)")
    p.add_argument("--lr-batched", type=float, default=1e-3, help="torchmil learning rate")
    p.add_argument("--lr-bs1", type=float, default=2e-4)
    p.add_argument("--lnmkit-set", nargs="*", default=[], metavar="NAME=VALUE",
                   help="override MILClassifier defaults for the lnmkit rows, e.g. lr=3e-4 (VALUE is JSON)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="one run per seed (bags, folds and initialisation); AUCs are averaged, epochs/s pooled")
    p.add_argument("--only", nargs="*", default=list(CONTENDERS), choices=list(CONTENDERS))
    a = p.parse_args(argv)
    a.lnmkit_set = {k: json.loads(v) for k, v in (item.split("=", 1) for item in a.lnmkit_set)}
    shifts = list(a.shift_sd) + [a.shift_sd[-1]] * max(0, len(a.dim) - len(a.shift_sd))
    return {dim: _run_dim(a, dim, shift) for dim, shift in zip(a.dim, shifts)}


if __name__ == "__main__":
    main()
