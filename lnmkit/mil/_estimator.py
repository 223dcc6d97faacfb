"""``MILClassifier``: batched, seeded training of an attention MIL network."""

from __future__ import annotations

import contextlib
import copy
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from sklearn.base import BaseEstimator
from sklearn.model_selection import StratifiedShuffleSplit

from lnmkit._system import available_cpus
from lnmkit._validation import check_fraction, check_int, check_non_negative, check_positive
from lnmkit.exceptions import MILInputError, NotFittedError
from lnmkit.mil._averaging import WeightAverage
from lnmkit.mil._data import as_patient_bags, length_bucketed_batches
from lnmkit.mil._models import ARCHITECTURES, TASKS, _init_seeded, build_model, dropout_generator
from lnmkit.mil._slide_norm import SLIDE_NORMALISATIONS, standardise_slides
from lnmkit.mil._targets import SCORE_COLUMNS, encode_targets

__all__ = ["MILClassifier", "percentile_rank"]


@contextlib.contextmanager
def _torch_threads(n):
    """Temporarily set torch's intra-op thread count (None leaves it alone)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _native_bf16(device_type):
    """Whether ``device_type`` computes bfloat16 matrix products natively (fast).

    CPUs qualify with AVX512-BF16 or AMX instructions; without them bfloat16 is
    emulated and no faster than float32.
    """
    if device_type == "cpu":
        try:
            cpu = torch.cpu
            return bool(torch.backends.mkldnn.is_available()
                        and (cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported()))
        except (AttributeError, RuntimeError):  # private probes may move between torch versions
            return False
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return False


# Bags are grouped for inference until the padded batch holds this many tiles.
_EVAL_TILE_BUDGET = 65536


def percentile_rank(values):
    """Percentile rank in (0, 100) of each value among ``values`` (ties averaged)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return values
    return 100.0 * (rankdata(values, method="average") - 0.5) / values.size


class _TrainingData:
    """The standardised training tiles as one block, gathered into packed batches by bag."""

    def __init__(self, block, offsets, max_tiles, targets, weights, train_idx, val_bags, val_idx):
        self.block, self.offsets, self.max_tiles = block, offsets, max_tiles
        self.targets, self.weights = targets, weights
        self.train_idx, self.val_bags, self.val_idx = train_idx, val_bags, val_idx
        self.sizes = np.diff(offsets)
        self.lengths = np.minimum(self.sizes, max_tiles)
        self.progress = None
        self.cancelled = threading.Event()  # stops networks trained side by side when another one failed
        # One reused buffer per thread for the tiles of a step: a fresh multi-megabyte
        # tensor per step costs page faults that took as long as the gather itself.
        self._buffers = threading.local()

    def gather(self, ids, rng):
        """Tiles of bags ``ids``, concatenated; bags above ``max_tiles`` are subsampled anew."""
        rows = []
        for i in ids:
            if self.sizes[i] > self.max_tiles:
                rows.append(np.sort(rng.choice(self.sizes[i], self.max_tiles, replace=False)) + self.offsets[i])
            else:
                rows.append(np.arange(self.offsets[i], self.offsets[i + 1]))
        rows = torch.from_numpy(np.concatenate(rows))
        buffer = getattr(self._buffers, "gathered", None)
        if buffer is None or buffer.shape[0] < rows.shape[0]:
            buffer = self._buffers.gathered = self.block.new_empty((rows.shape[0], self.block.shape[1]))
        return torch.index_select(self.block, 0, rows, out=buffer[: rows.shape[0]])  # (sum n_i, D)


class _Run:
    """One network in training: optimiser, weight average, data and dropout RNGs, history and best epoch."""

    def __init__(self, model, opt, average, rng, dropout_rng):
        self.model, self.opt, self.average, self.rng, self.dropout_rng = model, opt, average, rng, dropout_rng
        self.history = []
        self.best_loss, self.best_epoch, self.best_state, self.bad_epochs = np.inf, -1, None, 0

    def final(self):
        """The network to keep: the weight average when there is one."""
        return self.average.averaged_model() if self.average is not None else self.model

    def recent_train_loss(self, epochs=3):
        """Mean training loss of the last ``epochs`` epochs: the LNM loss when LNM is a task, else the total.

        LNM is the primary endpoint; a secondary head with few labels (OTC) can
        lower the total by fitting noise.
        """
        key = "train_lnm_loss" if "train_lnm_loss" in self.history[-1] else "train_loss"
        return float(np.mean([row[key] for row in self.history[-epochs:]]))


class MILClassifier(BaseEstimator):
    """Attention MIL on patient bags of tile features, scikit-learn style.

    One bag per patient (all tiles of the patient's slides). Training uses
    length-bucketed mini-batches of bags, each randomly subsampled to
    ``max_tiles`` tiles anew every epoch when larger; the tiles of a batch are
    projected packed (no padding rows) and pooled under a mask. AdamW with
    strong weight decay, class-balanced losses, a moving average of the weights
    and a fixed number of epochs on every training patient (early stopping on a
    stratified inner validation split with ``val_fraction > 0``); ``n_init``
    networks from different initial weights, of which the one that fits its
    training bags best is kept. Tile features
    are standardised with a mean and standard deviation fitted on the training
    bags and stored in the model.

    Parameters
    ----------
    arch : {"instance", "abmil", "gated-abmil", "clam-sb", "mean", "max"}, default="instance"
    tasks : tuple of {"lnm", "otc", "survival"}, default=("lnm", "otc")
        ``lnm``: pN+ vs pN0. ``otc``: occult tumour cells, trained on pN0 patients
        with a known ``otc`` only. ``survival``: Cox partial likelihood over each
        batch (Breslow ties) on ``<survival_endpoint>_months/_event``.
    hidden : int, default=128
        Width of the tile projection and of the bag embedding (``emb_*`` columns).
    dropout : float, default=0.0
        Dropout on the tile embeddings and attention features during training.
        Off by default: re-drawing each bag's ``max_tiles`` subsample every
        epoch already regularises (it drops whole tiles), and feature dropout
        on top of it slows learning per epoch and costs 15-20% of the step
        time. Consider 0.25 (CLAM's value) when most bags have fewer than
        ``max_tiles`` tiles and are therefore not subsampled.
    lr : float, default=1e-3
    weight_decay : float, default=0.5
        AdamW's decoupled weight decay (each step shrinks the weights by
        ``lr * weight_decay``). Strong by default: with a few hundred bag
        labels the tile scorer can memorise one idiosyncratic tile per pN+
        bag, and the shrinkage keeps it on what the bags share.
    batch_size : int, default=8
        Bags per optimiser step. On CPUs the cost per tile hardly depends on it;
        smaller batches give more optimiser steps per epoch.
    max_epochs : int, default=50
    patience : int, default=8
        With ``val_fraction > 0``: epochs without improvement of the validation
        loss before stopping. The monitored loss is the LNM loss when ``"lnm"``
        is a task, else the total.
    min_epochs : int, default=20
        With ``val_fraction > 0``: early stopping never stops before this many
        epochs. On focal morphology
        the validation loss stays flat for the first 5-25 epochs, until the
        attention has found the few tiles that matter, and then falls; stopping
        on that plateau leaves a model that scores at chance.
    max_tiles : int, default=640
        During training, bags with more tiles are randomly subsampled to this many,
        anew each epoch (a regulariser, and the main reason training is fast on
        CPUs, where the cost grows with the number of tiles). Validation,
        :meth:`predict` and attention always use every tile.
    averaging_epochs : float, default=3.0
        The fitted model holds an exponential moving average of the weights
        over about this many epochs of optimiser steps (bias-corrected, so the
        initial weights leave no trace); validation losses and early stopping
        use the averaged weights. Averaging removes most of the step-to-step
        noise of small-batch training on subsampled bags. 0 keeps the last
        (or best) weights as they are.
    val_fraction : float, default=0.0
        Share of patients held out (stratified by pN status) for early stopping
        on their validation loss. 0 (the default) trains on every patient for
        ``max_epochs`` and keeps the averaged weights of the last epoch: with
        tens of validation patients the validation loss is too noisy to choose
        an epoch (on focal morphology it chose epoch 0, a model at chance, in
        some folds), and the held-out patients are lost to training.
    n_init : int, default=1
        Number of networks trained, each from its own initial weights (the
        first from ``random_state``) on the same batches and tile subsamples;
        the one with the lowest training loss over its last 3 epochs (the LNM
        loss when LNM is a task) is kept, as ``n_init`` in scikit-learn's
        ``KMeans``. On focal morphology some initial weights never leave the
        plateau, or lead the tile scorer to morphology both classes share: a
        run near chance that fits its own training bags visibly worse, told
        apart without a validation split. The choice is made at the end,
        because before the signal is found every run's loss is the same.
        Costs ``n_init`` trainings (side by side, see ``n_jobs``). One network
        by default: with 160-px stain-texture tiles a single run met lnmkit's
        focal-morphology goals; 3 guards against collapsed runs where the
        witness morphology is a small part of each tile (224-px tiles of
        pretrained encoders, foci a few cells across), at about three times
        the training time.
    class_weight : {"balanced", None}, default="balanced"
        Weight classes of each binary task inversely to their frequency.
    slide_normalisation : {"robust", None}, default="robust"
        ``"robust"`` standardises every slide's tiles against that slide's own
        median and robust scale (median absolute deviation) before anything else,
        in :meth:`fit` and in :meth:`predict` alike. It removes what shifts a
        whole slide (stain, scanner, section thickness) and keeps what differs
        within it (a few tiles of focal morphology move a median very little).
        On patients with tens to hundreds of bags the network otherwise fits
        slide-wide feature shifts and never finds focal tumour. ``None`` uses the
        features as they are: choose it when the label is a property of the whole
        slide rather than of some of its tiles.
    shared_attention : bool, default=False
        Attention networks only: one attention map for every task (the behaviour
        of earlier lnmkit versions) instead of one per task. With a shared map the
        OTC head pulls attention away from the tiles that carry LNM.
    random_state : int, default=0
        Seeds initialisation, dropout, sampling and the validation split; the same
        seed gives identical predictions on CPU.
    device : str, default="cpu"
    survival_endpoint : {"os", "rfs"}, default="os"
    k_instances : int, default=8
        CLAM-SB only: top/bottom tiles per bag for the instance loss.
    instance_loss : {"svm", "ce"}, default="svm"
        CLAM-SB only.
    bag_weight : float, default=0.7
        CLAM-SB only: weight of the bag loss (instance loss gets the rest).
    n_threads : int or None, default=1
        Torch intra-op threads while fitting and predicting. MIL steps are many
        small matrix products; on shared or busy CPUs a second thread mostly
        adds synchronisation cost (often several times slower), so one thread
        is the default. Use more for large bags on an idle machine, or None to
        keep torch's global setting.
    n_jobs : int or None, default=None
        Networks of ``n_init`` trained at the same time, each in its own
        thread with ``n_threads`` torch threads (torch releases Python's lock
        while it computes). None: as many as the CPUs this process may use
        hold, at most ``n_init``. The fitted model does not depend on it.
        Training in bfloat16 on a CPU (see ``precision``) always trains them in
        turn: oneDNN's bfloat16 kernels run side by side give results that vary
        with the threads' timing.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        Arithmetic of the training forward pass. ``"bf16"`` runs it under
        bfloat16 autocast (weights, optimiser and losses stay float32), about
        twice as fast where the hardware has bfloat16 units; ``"auto"`` uses
        bfloat16 only on such hardware (CPUs with AVX512-BF16 or AMX, CUDA GPUs
        with bfloat16) and float32 elsewhere. Prediction is always float32.
    verbose : bool, default=False
        Show a progress bar over epochs.

    Attributes
    ----------
    model_ : lnmkit.mil.MILModel
    feature_mean_, feature_std_ : ndarray of shape (n_features,)
    n_features_in_ : int
    history_ : pandas.DataFrame
        Per-epoch training and validation losses (validation with ``val_fraction > 0``).
    best_epoch_ : int
        Epoch of the fitted weights: the last one, or the best validation epoch.
    init_losses_ : ndarray of shape (n_init,)
        Final training loss of each network tried; the fitted one has the lowest.
    train_patients_, val_patients_ : list of str

    Examples
    --------
    >>> clf = MILClassifier(max_epochs=5).fit(bags, outcomes)  # doctest: +SKIP
    >>> clf.predict(bags)[["lnm_score", "otc_score"]]  # doctest: +SKIP
    """

    def __init__(
        self,
        arch="instance",
        tasks=("lnm", "otc"),
        *,
        hidden=128,
        dropout=0.0,
        lr=1e-3,
        weight_decay=0.5,
        batch_size=8,
        max_epochs=50,
        patience=8,
        min_epochs=20,
        max_tiles=640,
        averaging_epochs=3.0,
        val_fraction=0.0,
        n_init=1,
        class_weight="balanced",
        slide_normalisation="robust",
        shared_attention=False,
        random_state=0,
        device="cpu",
        survival_endpoint="os",
        k_instances=8,
        instance_loss="svm",
        bag_weight=0.7,
        n_threads=1,
        n_jobs=None,
        precision="auto",
        verbose=False,
    ):
        self.arch = arch
        self.tasks = tasks
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.min_epochs = min_epochs
        self.max_tiles = max_tiles
        self.averaging_epochs = averaging_epochs
        self.val_fraction = val_fraction
        self.n_init = n_init
        self.class_weight = class_weight
        self.slide_normalisation = slide_normalisation
        self.shared_attention = shared_attention
        self.random_state = random_state
        self.device = device
        self.survival_endpoint = survival_endpoint
        self.k_instances = k_instances
        self.instance_loss = instance_loss
        self.bag_weight = bag_weight
        self.n_threads = n_threads
        self.n_jobs = n_jobs
        self.precision = precision
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _validate_params(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(
                f"MILClassifier: arch must be one of {sorted(ARCHITECTURES)}; got {self.arch!r}."
            )
        tasks = (self.tasks,) if isinstance(self.tasks, str) else tuple(self.tasks)
        if not tasks or any(t not in TASKS for t in tasks) or len(set(tasks)) != len(tasks):
            raise ValueError(f"MILClassifier: tasks must be distinct names from {TASKS}; got {self.tasks!r}.")
        if self.arch == "clam-sb" and "lnm" not in tasks:
            raise ValueError("MILClassifier: arch='clam-sb' needs the 'lnm' task for its instance loss.")
        where = "MILClassifier"
        check_int(self.hidden, "hidden", where)
        check_fraction(self.dropout, "dropout", where, maximum=0.99)
        check_positive(self.lr, "lr", where)
        check_non_negative(self.weight_decay, "weight_decay", where)
        check_int(self.batch_size, "batch_size", where, minimum=2)
        check_int(self.max_epochs, "max_epochs", where)
        check_int(self.patience, "patience", where)
        check_int(self.min_epochs, "min_epochs", where, minimum=0)
        check_int(self.max_tiles, "max_tiles", where, minimum=2)
        check_non_negative(self.averaging_epochs, "averaging_epochs", where)
        check_fraction(self.val_fraction, "val_fraction", where, maximum=0.9)
        check_int(self.n_init, "n_init", where)
        check_int(self.random_state, "random_state", where, minimum=0)
        check_int(self.k_instances, "k_instances", where)
        check_fraction(self.bag_weight, "bag_weight", where)
        if self.n_threads is not None:
            check_int(self.n_threads, "n_threads", where)
        if self.n_jobs is not None:
            check_int(self.n_jobs, "n_jobs", where)
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(
                f"MILClassifier: precision must be 'auto', 'fp32' or 'bf16'; got {self.precision!r}."
            )
        if self.class_weight not in ("balanced", None):
            raise ValueError(
                f"MILClassifier: class_weight must be 'balanced' or None; got {self.class_weight!r}."
            )
        if self.slide_normalisation not in SLIDE_NORMALISATIONS:
            raise ValueError(
                f"MILClassifier: slide_normalisation must be 'robust' or None; got {self.slide_normalisation!r}."
            )
        if not isinstance(self.shared_attention, (bool, np.bool_)):
            raise ValueError(f"MILClassifier: shared_attention must be True or False; got {self.shared_attention!r}.")
        if self.survival_endpoint not in ("os", "rfs"):
            raise ValueError(
                f"MILClassifier: survival_endpoint must be 'os' or 'rfs'; got {self.survival_endpoint!r}."
            )
        return tasks

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(bags, y) first "
                "or load a saved model with MILClassifier.load(dir)."
            )

    # --------------------------------------------------------------- training
    def fit(self, bags, y):
        """Train on patient bags.

        Parameters
        ----------
        bags : dict or list
            dict ``patient_id -> (n_tiles, n_features) array | PatientBag``, or a list
            aligned with ``y.index``.
        y : pandas.DataFrame
            Indexed by patient_id: ``pn_status`` (pN0/pN+), ``otc`` (0/1/empty) and
            for survival ``os_months``/``os_event``. Extra rows are ignored.

        Returns
        -------
        self : MILClassifier
        """
        tasks = self._validate_params()
        bags = as_patient_bags(bags, index=list(y.index) if isinstance(bags, (list, tuple)) else None,
                               where="MILClassifier.fit")
        pids = list(bags)
        if len(pids) < 2:
            raise MILInputError(f"MILClassifier.fit: needs at least 2 patients; got {len(pids)}.")
        targets = encode_targets(y, pids, tasks, self.survival_endpoint)
        lnm = targets["lnm"]
        if "lnm" in tasks and len(np.unique(lnm[~np.isnan(lnm)])) < 2:
            raise MILInputError(
                "MILClassifier.fit: pn_status must contain both pN0 and pN+ patients among the "
                f"{len(pids)} training bags."
            )
        self.tasks_ = tasks
        feats = [self._slide_standardised(bags[p]) for p in pids]
        self.n_features_in_ = int(feats[0].shape[1])
        total = np.zeros(self.n_features_in_)
        total_sq = np.zeros(self.n_features_in_)
        count = 0
        for f in feats:
            f64 = f.astype(np.float64)
            total += f64.sum(0)
            total_sq += (f64**2).sum(0)
            count += f.shape[0]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        std[std < 1e-6] = 1.0  # constant features carry no signal; avoid dividing by ~0
        self.feature_mean_ = mean.astype(np.float32)
        self.feature_std_ = std.astype(np.float32)
        rng = np.random.default_rng(self.random_state)
        train_idx, val_idx = self._inner_split(lnm, rng)
        # Standardise once into one contiguous block: training batches are gathered
        # from it by row index, with no per-step padding or re-scaling. Under bfloat16
        # autocast the projection rounds its input to bfloat16 anyway, so the block is
        # stored rounded (same values, half the memory and bytes gathered per step).
        offsets = np.concatenate([[0], np.cumsum([f.shape[0] for f in feats])])
        block = torch.empty((int(offsets[-1]), self.n_features_in_),
                            dtype=torch.bfloat16 if self._use_bf16() else torch.float32)
        for i in train_idx:
            block[offsets[i]:offsets[i + 1]] = torch.from_numpy(self._scale(feats[i]))
        val_bags = [self._scale(feats[i]) for i in val_idx]  # float32, every tile
        self.train_patients_ = [pids[i] for i in train_idx]
        self.val_patients_ = [pids[i] for i in val_idx]
        weights = self._class_weights(targets, train_idx, tasks)

        from tqdm.auto import tqdm

        data = _TrainingData(block, offsets, self.max_tiles, targets, weights, train_idx, val_bags, val_idx)
        with (torch.random.fork_rng(devices=[]), _torch_threads(self.n_threads),
              tqdm(total=self.n_init * self.max_epochs, desc=self.arch, unit="epoch", disable=not self.verbose,
                   leave=False) as data.progress):
            run = self._best_of_initialisations(data, rng)
        final = run.final()
        if run.best_state is not None:
            final.load_state_dict(run.best_state)
            self.best_epoch_ = run.best_epoch
        else:
            self.best_epoch_ = len(run.history) - 1
        final.eval()
        self.model_ = final
        self.history_ = pd.DataFrame(run.history).set_index("epoch")
        return self

    def _initial_seeds(self):
        """Seeds of the ``n_init`` candidate networks; the first is ``random_state`` itself."""
        extra = np.random.SeedSequence(self.random_state).generate_state(self.n_init - 1) % 2**31
        return [int(self.random_state)] + [int(s) for s in extra]

    def _best_of_initialisations(self, data, rng):
        """Train one network per initial seed; return the run with the lowest final training loss.

        Every candidate sees the same batches and tile subsamples (a copy of
        ``rng``), so their losses differ only through the initial weights.
        Each has its own random streams, so training them side by side in
        threads gives the same networks as one after the other.
        """
        runs = [self._start(seed, copy.deepcopy(rng) if self.n_init > 1 else rng) for seed in self._initial_seeds()]
        workers = self._n_workers()
        if workers == 1:
            for run in runs:
                self._train(run, data)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="lnmkit-mil") as pool:
                futures = [pool.submit(self._train, run, data) for run in runs]
                try:
                    wait(futures, return_when=FIRST_EXCEPTION)
                finally:  # after an error or Ctrl-C the other networks stop at their next epoch
                    data.cancelled.set()
                for future in futures:
                    future.result()
        self.init_losses_ = np.array([run.recent_train_loss() for run in runs])
        return runs[int(np.argmin(self.init_losses_))]

    def _n_workers(self):
        """Threads for the ``n_init`` networks: ``n_jobs``, or as many as the free CPUs hold.

        One when a CPU trains in bfloat16: oneDNN's bfloat16 products, called
        from several threads at once, give results that depend on the threads'
        timing (float32 ones do not).
        """
        if self._use_bf16() and torch.device(self.device).type == "cpu":
            return 1
        if self.n_jobs is not None:
            return min(self.n_jobs, self.n_init)
        per_network = self.n_threads or torch.get_num_threads()
        return max(1, min(self.n_init, available_cpus() // per_network))

    def _train(self, run, data):
        with dropout_generator(run.dropout_rng):
            while len(run.history) < self.max_epochs and not self._stopped(run) and not data.cancelled.is_set():
                self._epoch(run, data)

    def _start(self, seed, rng):
        model = self._build(self.n_features_in_, self.tasks_, seed)
        average = None
        if self.averaging_epochs:
            steps_per_epoch = max(1, len(self.train_patients_) // self.batch_size)
            average = WeightAverage(model, 1.0 - 1.0 / max(1.0, self.averaging_epochs * steps_per_epoch))
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        dropout_rng = torch.Generator(device=self.device).manual_seed(seed)
        return _Run(model, opt, average, rng, dropout_rng)

    def _build(self, in_dim, tasks, seed=0):
        extra = {}
        if self.arch in ("abmil", "gated-abmil", "clam-sb"):
            extra["shared_attention"] = bool(self.shared_attention)
        if self.arch == "clam-sb":
            extra.update(k_instances=self.k_instances, instance_loss=self.instance_loss,
                         bag_weight=self.bag_weight)
        model = build_model(self.arch, in_dim, self.hidden, self.dropout, tasks, **extra)
        return _init_seeded(model, seed).to(self.device)

    def _use_bf16(self):
        kind = torch.device(self.device).type
        return self.precision == "bf16" or (self.precision == "auto" and _native_bf16(kind))

    def _autocast(self):
        """bfloat16 autocast of the training forward pass, per ``precision``."""
        if not self._use_bf16():
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)

    def _scale(self, features):
        return ((features - self.feature_mean_) / self.feature_std_).astype(np.float32)

    def _slide_standardised(self, bag):
        """The bag's features after ``slide_normalisation`` (float32; the bag itself is untouched)."""
        if self.slide_normalisation is None:
            return bag.features
        return standardise_slides(bag.features, bag.slide_index)

    def _inner_split(self, lnm, rng):
        """Training / early-stopping split, stratified by pN among the patients whose pN is known.

        Patients with unknown pN carry no LNM loss, so they always train and never
        decide when to stop; they do not form a stratum of their own (one of them
        in a fold would otherwise make the split impossible).
        """
        import warnings

        from lnmkit.exceptions import MILInputWarning

        n = len(lnm)
        idx = np.arange(n)
        if self.val_fraction == 0:
            return idx, idx[:0]
        known = idx[~np.isnan(lnm)]
        strata = lnm[known].astype(int)
        n_val = int(round(self.val_fraction * len(known)))
        counts = np.bincount(strata, minlength=2)
        n_classes = int((counts > 0).sum())
        # A stratified split needs >= 2 patients per class and >= 1 per class on each side.
        if n_classes < 2 or counts.min() < 2 or n_val < n_classes or len(known) - n_val < n_classes:
            warnings.warn(MILInputWarning(
                f"MILClassifier.fit: early stopping is off (training runs max_epochs={self.max_epochs}): a "
                f"validation split of val_fraction={self.val_fraction:g} stratified by pN needs at least 2 "
                f"patients of each class and one of each on both sides; the training patients with known pN "
                f"are {int(counts[0])} pN0 and {int(counts[1])} pN+."), stacklevel=3)
            return idx, idx[:0]
        sss = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=int(rng.integers(2**31)))
        _, va = next(sss.split(known, strata))
        val = known[va]
        return np.setdiff1d(idx, val), np.sort(val)

    def _class_weights(self, targets, train_idx, tasks):
        n = len(targets["lnm"])
        out = {}
        for task in ("lnm", "otc"):
            if task not in tasks:
                continue
            w = np.ones(n)
            if self.class_weight == "balanced":
                lab = targets[task]
                eligible = ~np.isnan(lab)
                if task == "otc":
                    eligible &= targets["lnm"] == 0
                tr = np.zeros(n, bool)
                tr[train_idx] = True
                sel = eligible & tr
                n_pos, n_neg = (lab[sel] == 1).sum(), (lab[sel] == 0).sum()
                if n_pos and n_neg:
                    w_pos, w_neg = sel.sum() / (2.0 * n_pos), sel.sum() / (2.0 * n_neg)
                    w = np.where(lab == 1, w_pos, w_neg)
            out[f"{task}_weight"] = w
        return out

    def _batch_targets(self, targets, weights, idx):
        out = {k: torch.as_tensor(v[idx], dtype=torch.float32, device=self.device)
               for k, v in {**targets, **weights}.items()}
        return out

    def _stopped(self, run):
        """Early stopping: ``patience`` epochs without a better validation loss, after ``min_epochs``."""
        return (len(self.val_patients_) > 0 and run.bad_epochs >= self.patience
                and len(run.history) >= self.min_epochs)

    def _epoch(self, run, data):
        """One epoch of ``run`` over the training bags; appends its losses to ``run.history``."""
        model, rng = run.model, run.rng
        model.train()
        losses, n_seen = [], 0
        for batch in length_bucketed_batches(data.lengths[data.train_idx], self.batch_size, rng):
            ids = data.train_idx[batch]
            x = data.gather(ids, rng)
            with self._autocast():
                out = model.forward_packed(x.to(self.device), data.lengths[ids])
                loss, parts = model.compute_loss(out, self._batch_targets(data.targets, data.weights, ids))
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            run.opt.step()
            if run.average is not None:
                run.average.update()
            losses.append([float(loss.detach()) * len(ids), float(parts.get("lnm", np.nan)) * len(ids)])
            n_seen += len(ids)
        total, lnm = np.sum(losses, axis=0) / max(n_seen, 1)
        row = {"epoch": len(run.history), "train_loss": total}
        if "lnm" in self.tasks_:
            row["train_lnm_loss"] = lnm
        if len(data.val_idx):
            final = run.final()
            row["val_loss"] = self._val_loss(final, data.val_bags, data.targets, data.weights, data.val_idx)
            if row["val_loss"] < run.best_loss - 1e-6:
                run.best_loss, run.best_epoch = row["val_loss"], row["epoch"]
                run.best_state = copy.deepcopy(final.state_dict())
                run.bad_epochs = 0
            else:
                run.bad_epochs += 1
        run.history.append(row)
        data.progress.update()

    def _val_loss(self, model, val_bags, targets, weights, val_idx):
        outs = self._forward_many(model, val_bags)
        logits = {t: torch.as_tensor(np.array([o["logits"][t] for o in outs])) for t in model.tasks}
        model.eval()
        with torch.no_grad():
            loss, parts = model.compute_loss({"logits": logits}, self._batch_targets(targets, weights, val_idx))
        # LNM is the primary endpoint; secondary heads (often few labels) would add noise.
        return float(parts["lnm"]) if "lnm" in parts else float(loss)

    # -------------------------------------------------------------- inference
    def _forward_many(self, model, arrays, with_tiles=False, raw=False):
        """Run ``model`` in eval mode on full bags; one dict of numpy results per bag.

        ``arrays`` holds model-ready float32 arrays, or with ``raw=True`` PatientBags,
        which are then slide-standardised and scaled one group at a time just
        before the group's forward pass, so no transformed copy of every bag is
        held at once.
        """
        model.eval()
        sizes = [a.n_tiles if raw else a.shape[0] for a in arrays]
        order = np.argsort(sizes, kind="stable")
        results = [None] * len(arrays)
        start = 0
        with torch.inference_mode():
            while start < len(order):
                stop = start + 1
                while stop < len(order) and sizes[order[stop]] * (stop - start + 1) <= _EVAL_TILE_BUDGET:
                    stop += 1
                ids = order[start:stop]
                if raw:
                    x = self._scale(np.concatenate([self._slide_standardised(arrays[i]) for i in ids]))
                else:
                    x = np.concatenate([arrays[i] for i in ids])  # (sum n_i, D)
                x = torch.from_numpy(x)
                out = model.forward_packed(x.to(self.device), [sizes[i] for i in ids])
                for j, i in enumerate(ids):
                    n = sizes[i]
                    res = {
                        "logits": {t: float(v[j]) for t, v in out["logits"].items()},
                        "embedding": out["embedding"][j].cpu().numpy(),
                    }
                    if with_tiles:
                        res["attention"] = out["attention"][j, :n].cpu().numpy()
                        res["contribution"] = {t: v[j, :n].cpu().numpy() for t, v in out["contribution"].items()}
                    results[i] = res
                start = stop
        return results

    def _infer(self, bags, with_tiles):
        self._check_fitted()
        bags = as_patient_bags(bags, where=f"{type(self).__name__}.predict")
        for pid, b in bags.items():
            if b.features.shape[1] != self.n_features_in_:
                raise MILInputError(
                    f"{type(self).__name__}.predict: patient {pid!r} has {b.features.shape[1]} features "
                    f"per tile; the model was fitted on {self.n_features_in_}. Use bags from the same encoder."
                )
        pids = list(bags)
        with _torch_threads(self.n_threads):
            outs = self._forward_many(self.model_, [bags[p] for p in pids], with_tiles, raw=True)
        return bags, pids, outs

    def _scores_frame(self, pids, outs):
        data = {}
        for t in self.tasks_:
            lg = np.array([o["logits"][t] for o in outs])
            data[SCORE_COLUMNS[t]] = lg if t == "survival" else 1.0 / (1.0 + np.exp(-lg))
        emb = np.stack([o["embedding"] for o in outs]).astype(np.float64) if outs else np.zeros((0, self.hidden))
        frame = pd.DataFrame(data, index=pd.Index(pids, name="patient_id"))
        embf = pd.DataFrame(emb, index=frame.index, columns=[f"emb_{i}" for i in range(emb.shape[1])])
        return pd.concat([frame, embf], axis=1)

    def _tiles_frame(self, bags, pids, outs):
        frames = []
        for pid, o in zip(pids, outs):
            t = bags[pid].tile_table()
            t["attention"] = o["attention"]
            for task, c in o["contribution"].items():
                t[f"contribution_{task}"] = c
            frames.append(t)
        tiles = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=["patient_id", "slide_id", "x", "y", "attention"])
        tiles["attention_pct"] = tiles.groupby("slide_id")["attention"].transform(percentile_rank)
        front = ["patient_id", "slide_id", "x", "y", "attention", "attention_pct"]
        return tiles[front + [c for c in tiles.columns if c not in front]]

    def predict(self, bags):
        """Per-patient scores and embeddings.

        Parameters
        ----------
        bags : dict patient_id -> (n_tiles, n_features) array or PatientBag

        Returns
        -------
        pandas.DataFrame
            Indexed by patient_id: ``lnm_score``, ``otc_score`` (probabilities),
            ``risk_score`` (log hazard ratio, survival task) and ``emb_0..emb_{hidden-1}``.
        """
        _, pids, outs = self._infer(bags, with_tiles=False)
        return self._scores_frame(pids, outs)

    def predict_attention(self, bags):
        """Per-tile attention and contributions.

        Parameters
        ----------
        bags : dict patient_id -> (n_tiles, n_features) array or PatientBag

        Returns
        -------
        pandas.DataFrame
            One row per tile: ``patient_id``, ``slide_id``, ``x``, ``y`` (level-0, -1 if
            unknown), ``attention`` (softmax weight over the patient's tiles),
            ``attention_pct`` (percentile rank within the slide, 0-100) and
            ``contribution_<task>`` (the tile's additive share of the task's logit).
        """
        bags, pids, outs = self._infer(bags, with_tiles=True)
        return self._tiles_frame(bags, pids, outs)

    def predict_with_attention(self, bags):
        """Both :meth:`predict` and :meth:`predict_attention` from one forward pass.

        Returns
        -------
        scores : pandas.DataFrame
        tiles : pandas.DataFrame
        """
        bags, pids, outs = self._infer(bags, with_tiles=True)
        return self._scores_frame(pids, outs), self._tiles_frame(bags, pids, outs)

    # ------------------------------------------------------------ persistence
    def save(self, path):
        """Write ``model.safetensors`` and ``config.json`` into folder ``path``."""
        from lnmkit.mil._io import save_classifier

        self._check_fitted()
        return save_classifier(self, path)

    @classmethod
    def load(cls, path):
        """Load a model written by :meth:`save` (no pickle involved)."""
        from lnmkit.mil._io import load_classifier

        return load_classifier(cls, path)

    def __repr__(self, N_CHAR_MAX=700):
        base = super().__repr__(N_CHAR_MAX)
        if hasattr(self, "model_"):
            return f"{base} [fitted: {len(self.train_patients_)} train / {len(self.val_patients_)} val patients, best epoch {self.best_epoch_}]"
        return base
