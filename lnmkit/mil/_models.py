"""Attention MIL networks with one interface and exact padding masks.

Every network maps a padded batch of bags ``x`` (B, N, D) and a boolean mask
(B, N) (True = real tile) to a dict with one logit per task, one attention
weight per tile, the pooled bag embedding and the exact per-tile contribution
to each task's logit. Padded rows never influence a result: attention logits
of padded rows are set to ``-inf`` before the softmax, means divide by the true
tile count, maxima ignore padded rows, and padded input rows are zeroed so that
even non-finite padding cannot leak in.

All heads are linear on the pooled embedding ``z = sum_i a_i h_i`` so the
logit of task ``t`` decomposes exactly over tiles:
``logit_t = b_t + sum_i a_i (h_i . w_t)``; the summand is the tile's
contribution (for max pooling the decomposition runs over the tile that attains
each embedding dimension's maximum).
"""

from __future__ import annotations

import contextlib
import math
import threading

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ARCHITECTURES",
    "TASKS",
    "MILModel",
    "MeanPoolMIL",
    "MaxPoolMIL",
    "ABMIL",
    "CLAMSB",
    "InstanceMIL",
    "build_model",
    "cox_partial_likelihood",
    "smooth_top1_svm_loss",
]

TASKS = ("lnm", "otc", "survival")


def masked_softmax(logits, mask):
    """Softmax over tiles that ignores padded rows exactly.

    Parameters
    ----------
    logits : torch.Tensor of shape (B, N)
    mask : torch.BoolTensor of shape (B, N)

    Returns
    -------
    torch.Tensor of shape (B, N)
        Zero on padded rows, summing to one over each bag's real tiles.
    """
    logits = logits.masked_fill(~mask, float("-inf"))  # (B, N)
    return torch.softmax(logits, dim=1).masked_fill(~mask, 0.0)  # (B, N)


def smooth_top1_svm_loss(scores, target, alpha=1.0, tau=1.0):
    """Smooth top-1 multiclass SVM loss (Berrada et al., 2018), per sample.

    ``tau * log(sum_j exp((alpha * [j != y] + s_j - s_y) / tau))``; tends to the
    multiclass hinge loss as ``tau -> 0``.

    Parameters
    ----------
    scores : torch.Tensor of shape (M, C)
    target : torch.LongTensor of shape (M,)
    alpha : float, default=1.0
        Margin.
    tau : float, default=1.0
        Temperature.

    Returns
    -------
    torch.Tensor of shape (M,)
    """
    s_y = scores.gather(1, target[:, None])  # (M, 1)
    margin = alpha * (1.0 - F.one_hot(target, scores.shape[1]).to(scores.dtype))  # (M, C)
    return tau * torch.logsumexp((margin + scores - s_y) / tau, dim=1)  # (M,)


def cox_partial_likelihood(risk, time, event):
    """Negative Cox partial log-likelihood over a batch, Breslow ties.

    The risk set of an event at time ``t`` is every sample of the batch with
    ``time >= t`` (Breslow's handling of tied times).

    Parameters
    ----------
    risk : torch.Tensor of shape (M,)
        Log hazard ratios.
    time : torch.Tensor of shape (M,)
    event : torch.Tensor of shape (M,)
        1 for an observed event, 0 for censoring.

    Returns
    -------
    torch.Tensor
        Scalar mean over events; zero (with gradient) when the batch has no event.
    """
    at_risk = time[None, :] >= time[:, None]  # (M, M): row i's risk set
    masked = risk[None, :].expand_as(at_risk).masked_fill(~at_risk, float("-inf"))  # (M, M)
    log_denominator = torch.logsumexp(masked, dim=1)  # (M,)
    event = event.to(risk.dtype)  # (M,)
    n_events = event.sum()
    nll = -((risk - log_denominator) * event).sum()
    return nll / n_events.clamp(min=1.0)


_dropout_state = threading.local()


@contextlib.contextmanager
def dropout_generator(generator):
    """Draw :class:`ByteDropout`'s random bits from ``generator`` in this thread.

    Networks trained side by side in threads then each follow their own random
    stream, whatever the threads' interleaving.
    """
    before = getattr(_dropout_state, "generator", None)
    _dropout_state.generator = generator
    try:
        yield
    finally:
        _dropout_state.generator = before


class ByteDropout(nn.Module):
    """Inverted dropout drawing 8 random bits per element.

    Equivalent to ``nn.Dropout`` with ``p`` rounded to a multiple of 1/256, but
    several times faster on CPU, where torch's dropout spends most of a MIL
    training step generating one random float per tile feature. Draws from the
    generator set by :func:`dropout_generator` in this thread, else from the
    global torch generator (``torch.manual_seed`` makes it reproducible).

    Parameters
    ----------
    p : float
        Probability of zeroing an element.
    """

    def __init__(self, p):
        super().__init__()
        self.p = float(p)
        self.threshold = int(round(self.p * 256))

    def forward(self, x):
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        # 56 random bits per int64 -> 7 uniform bytes (the top byte is always zero).
        words = torch.empty((n + 6) // 7, dtype=torch.int64, device=x.device).random_(
            0, 2**56, generator=getattr(_dropout_state, "generator", None))
        # Compare on the strided byte view: the comparison writes the one contiguous copy.
        rand = words.view(torch.uint8).view(-1, 8)[:, :7]  # (n / 7, 7) uint8
        keep = (rand >= self.threshold).view(-1)[:n].view(x.shape)  # (...,) bool
        return x * keep.to(x.dtype).mul_(256.0 / (256 - self.threshold))

    def extra_repr(self):
        return f"p={self.p}"


def _weighted_bce(logits, target, weight, eligible):
    """Weighted BCE averaged over eligible samples (zero if none)."""
    if not bool(eligible.any()):
        return logits.sum() * 0.0
    lg, tg, w = logits[eligible], target[eligible], weight[eligible]
    per = F.binary_cross_entropy_with_logits(lg, tg, reduction="none")  # (M,)
    return (per * w).sum() / w.sum()


class MILModel(nn.Module):
    """Base class: a tile projector, a pooling operator and one linear head per task.

    Parameters
    ----------
    in_dim : int
        Tile feature dimension D.
    hidden : int, default=128
        Width of the tile projection and of the bag embedding.
    dropout : float, default=0.25
        Dropout after the tile projection (and in attention branches).
    tasks : tuple of str, default=("lnm", "otc")
        Heads to build, from ``{"lnm", "otc", "survival"}``.
    """

    arch = "base"

    def __init__(self, in_dim, hidden=128, dropout=0.25, tasks=("lnm", "otc")):
        super().__init__()
        self.in_dim = int(in_dim)
        self.hidden = int(hidden)
        self.tasks = tuple(tasks)
        self.projector = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), ByteDropout(dropout))
        self.heads = nn.ModuleDict({t: nn.Linear(hidden, 1) for t in self.tasks})

    def pool(self, h, mask):
        """Return ``(z (B, H), attention (B, N), attention_logits (B, N) or None)``."""
        raise NotImplementedError

    def forward(self, x, mask=None):
        """Run the network on a padded batch.

        Parameters
        ----------
        x : torch.Tensor of shape (B, N, D)
        mask : torch.BoolTensor of shape (B, N), optional
            True for real tiles; None means no padding.

        Returns
        -------
        dict
            ``logits`` (dict task -> (B,)), ``attention`` (B, N), ``attention_logits``
            (B, N; pre-softmax scores, ``-inf`` on padding, None for mean/max),
            ``embedding`` (B, H), ``instance_embedding`` (B, N, H; rows of padded
            tiles are finite but meaningless) and
            ``contribution`` (dict task -> (B, N); sums to the logit minus the bias).
        """
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if not bool(mask.all()):
            # Zero padded inputs (no gradient flows into x) so even NaN padding stays finite;
            # pooling then gives padded rows exactly zero weight.
            x = x.masked_fill(~mask[..., None], 0.0)  # (B, N, D)
        h = self.projector(x)  # (B, N, H)
        return self._pooled_outputs(h, mask)

    def forward_packed(self, x, lengths):
        """Run the network on the concatenated tiles of a batch (no padding).

        The tile projection, the most expensive product when ``D`` is large, runs
        once over the ``sum(lengths)`` real tiles; only the projected tiles are
        laid out in a padded ``(B, N_max, H)`` grid for pooling. Results equal
        :meth:`forward` on the padded batch to within float rounding.

        Parameters
        ----------
        x : torch.Tensor of shape (sum(lengths), D)
            Tiles of bag 0, then of bag 1, ...
        lengths : sequence of int
            Tiles per bag, each >= 1.

        Returns
        -------
        dict
            As :meth:`forward`, with ``N = max(lengths)``.
        """
        lengths = [int(n) for n in lengths]
        if x.dim() != 2 or x.shape[0] != sum(lengths) or min(lengths, default=0) < 1:
            raise ValueError(
                f"forward_packed: x must be (sum(lengths), D) with every length >= 1; got x of shape "
                f"{tuple(x.shape)} and lengths summing to {sum(lengths)}."
            )
        h_flat = self.projector(x)  # (sum N, H)
        n_max, batch = max(lengths), len(lengths)
        if all(n == n_max for n in lengths):
            h = h_flat.view(batch, n_max, h_flat.shape[1])  # (B, N, H)
            mask = torch.ones((batch, n_max), dtype=torch.bool, device=x.device)  # (B, N)
        else:
            ln = torch.as_tensor(lengths, device=x.device)  # (B,)
            mask = torch.arange(n_max, device=x.device)[None, :] < ln[:, None]  # (B, N)
            # Padded rows stay exactly zero; pooling gives them zero weight anyway. Rows are
            # placed by index: the backward pass is then a gather, several times faster on a
            # CPU than masked_scatter's masked_select.
            rows = mask.view(-1).nonzero().squeeze(1)  # (sum N,)
            h = h_flat.new_zeros((batch * n_max, h_flat.shape[1])).index_copy(0, rows, h_flat)
            h = h.view(batch, n_max, h_flat.shape[1])  # (B, N, H)
        return self._pooled_outputs(h, mask)

    def _pooled_outputs(self, h, mask):
        z, attention, att_logits = self.pool(h, mask)  # (B, H), (B, N), (B, N)
        logits = {t: head(z).squeeze(-1) for t, head in self.heads.items()}  # task -> (B,)
        contribution = self._contribution(h, attention, mask)
        return {
            "logits": logits,
            "attention": attention,
            "attention_logits": att_logits,
            "embedding": z,
            "instance_embedding": h,
            "contribution": contribution,
        }

    def _per_task_outputs(self, pooled, h):
        """Outputs when every task pools its own embedding.

        ``pooled`` maps task -> ``(z (B, H), attention (B, N), attention_logits (B, N))``;
        each head reads its own ``z``. ``attention``, ``attention_logits`` and
        ``embedding`` are the first task's; ``attentions`` holds every task's map.
        """
        logits, contribution = {}, {}
        for t, (z, attention, _) in pooled.items():
            head = self.heads[t]
            logits[t] = head(z).squeeze(-1)  # (B,)
            contribution[t] = (h @ head.weight[0]) * attention  # (B, N)
        z, attention, att_logits = pooled[self.tasks[0]]
        return {
            "logits": logits,
            "attention": attention,
            "attention_logits": att_logits,
            "attentions": {t: p[1] for t, p in pooled.items()},
            "embedding": z,
            "instance_embedding": h,
            "contribution": contribution,
        }

    def _contribution(self, h, attention, mask):
        weights = torch.stack([self.heads[t].weight[0] for t in self.tasks], dim=1)  # (H, T)
        per_tile = (h @ weights) * attention[..., None]  # (B, N, T)
        return {t: per_tile[..., j] for j, t in enumerate(self.tasks)}

    def compute_loss(self, outputs, targets):
        """Multi-task loss for one batch.

        Parameters
        ----------
        outputs : dict
            What :meth:`forward` returned.
        targets : dict of torch.Tensor, each of shape (B,)
            ``lnm`` (0/1, NaN = unknown), ``otc`` (0/1, NaN = unknown), ``time`` and
            ``event`` (survival task), and optional sample weights ``lnm_weight`` and
            ``otc_weight``. The OTC loss only uses samples with a known OTC label and
            ``lnm == 0``: occult tumour cells are only defined in node-negative patients.

        Returns
        -------
        loss : torch.Tensor
            Scalar total loss.
        parts : dict of str to torch.Tensor
            Each term, detached.
        """
        logits = outputs["logits"]
        parts = {}
        lnm = targets["lnm"]
        ones = torch.ones_like(lnm)
        if "lnm" in logits:
            eligible = ~torch.isnan(lnm)
            parts["lnm"] = _weighted_bce(logits["lnm"], lnm, targets.get("lnm_weight", ones), eligible)
        if "otc" in logits:
            otc = targets["otc"]
            eligible = ~torch.isnan(otc) & (lnm == 0)
            parts["otc"] = _weighted_bce(logits["otc"], otc, targets.get("otc_weight", ones), eligible)
        if "survival" in logits:
            time, event = targets["time"], targets["event"]
            ok = ~torch.isnan(time) & ~torch.isnan(event)
            parts["survival"] = cox_partial_likelihood(logits["survival"][ok], time[ok], event[ok])
        loss = self._combine(parts, outputs, targets)
        return loss, {k: v.detach() for k, v in parts.items()}

    def _combine(self, parts, outputs, targets):
        return sum(parts.values())

    @torch.no_grad()
    def predict(self, x, mask=None):
        """Scores for a padded batch, in eval mode semantics of the caller.

        Parameters
        ----------
        x : torch.Tensor of shape (B, N, D)
        mask : torch.BoolTensor of shape (B, N), optional

        Returns
        -------
        dict
            ``scores`` (dict task -> (B,): probabilities for ``lnm``/``otc``, log
            hazard ratio for ``survival``), ``attention`` (B, N), ``embedding`` (B, H)
            and ``contribution`` (dict task -> (B, N)).
        """
        out = self.forward(x, mask)
        scores = {
            t: (lg if t == "survival" else torch.sigmoid(lg)) for t, lg in out["logits"].items()
        }
        return {
            "scores": scores,
            "attention": out["attention"],
            "embedding": out["embedding"],
            "contribution": out["contribution"],
        }


class MeanPoolMIL(MILModel):
    """Masked mean of projected tiles (baseline); attention is uniform."""

    arch = "mean"

    def pool(self, h, mask):
        n = mask.sum(dim=1, keepdim=True).to(h.dtype)  # (B, 1)
        attention = mask.to(h.dtype) / n  # (B, N)
        z = (h * attention[..., None]).sum(dim=1)  # (B, H)
        return z, attention, None


class MaxPoolMIL(MILModel):
    """Masked max of projected tiles (baseline).

    The attention of a tile is the share of embedding dimensions whose maximum
    it attains, so it still sums to one per bag.
    """

    arch = "max"

    def pool(self, h, mask):
        z, winners = self._max(h, mask)  # (B, H), (B, N, H)
        attention = winners.mean(dim=2)  # (B, N)
        return z, attention, None

    @staticmethod
    def _max(h, mask):
        filled = h.masked_fill(~mask[..., None], float("-inf"))  # (B, N, H)
        z, arg = filled.max(dim=1)  # (B, H), (B, H)
        winners = F.one_hot(arg, h.shape[1]).to(h.dtype).transpose(1, 2)  # (B, N, H)
        return z, winners

    def _contribution(self, h, attention, mask):
        _, winners = self._max(h, mask)  # (B, N, H)
        out = {}
        for t in self.tasks:
            w = self.heads[t].weight[0]  # (H,)
            out[t] = (winners * h * w).sum(dim=-1)  # (B, N)
        return out


class InstanceMIL(MILModel):
    """Tile logits pooled by their own softmax (a smooth maximum), one pooling per task.

    Each task's head scores every tile, ``s_ti = w_t . h_i + b_t``; the tile's
    weight is ``a_ti = softmax_i(s_ti)`` and the bag logit is the weighted mean
    ``sum_i a_ti s_ti``, which lies between the mean and the maximum of the tile
    logits and approaches the maximum as the scores spread. A bag is positive
    because some of its tiles are: the standard multiple-instance assumption,
    built into the network instead of left for an attention branch to learn.
    The gradient of the bag loss reaches the highest-scoring tiles directly, so
    training finds a few focal tiles among thousands quickly, and the bag
    embedding ``z_t = sum_i a_ti h_i`` gives ``logit_t = w_t . z_t + b_t`` exactly,
    as in the other networks. ``attention``/``embedding`` are the first task's.

    Parameters
    ----------
    in_dim, hidden, dropout, tasks
        See :class:`MILModel`.
    """

    arch = "instance"

    def pool(self, h, mask):
        return self._pool_task(self.tasks[0], h, mask)

    def _pool_task(self, task, h, mask):
        head = self.heads[task]
        scores = head(h).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, N)
        attention = masked_softmax(scores, mask)  # (B, N)
        z = torch.bmm(attention[:, None, :], h).squeeze(1)  # (B, H)
        return z, attention, scores

    def _pooled_outputs(self, h, mask):
        # each head applied to its own z_t gives sum_i a_ti s_ti, the pooled tile logit
        return self._per_task_outputs({t: self._pool_task(t, h, mask) for t in self.tasks}, h)


class _AttentionScorer(nn.Module):
    """``w^T tanh(V h)`` or the gated ``w^T (tanh(V h) * sigmoid(U h))`` (Ilse et al., 2018)."""

    def __init__(self, hidden, attn_dim, dropout, gated):
        super().__init__()
        self.gated = gated
        self.v = nn.Sequential(nn.Linear(hidden, attn_dim), nn.Tanh(), ByteDropout(dropout))
        self.u = (
            nn.Sequential(nn.Linear(hidden, attn_dim), nn.Sigmoid(), ByteDropout(dropout))
            if gated
            else None
        )
        self.w = nn.Linear(attn_dim, 1)

    def forward(self, h):
        a = self.v(h)  # (B, N, A)
        if self.gated:
            a = a * self.u(h)  # (B, N, A)
        return self.w(a).squeeze(-1)  # (B, N)


class ABMIL(MILModel):
    """Attention-based MIL, plain or gated (Ilse et al., 2018).

    By default every task has its own attention branch and pools its own bag
    embedding ``z_t = sum_i a_ti h_i``; its head reads only ``z_t``. Tasks then
    cannot pull each other's attention away (an OTC head trained on a few
    pN0 patients otherwise steers the one shared map away from the tiles that
    carry LNM). ``attention``, ``attention_logits`` and ``embedding`` in the
    outputs are those of the first task; ``attentions`` holds every task's map.

    Parameters
    ----------
    in_dim, hidden, dropout, tasks
        See :class:`MILModel`.
    gated : bool, default=False
        Use the gated attention branch.
    shared_attention : bool, default=False
        One attention branch for all tasks.
    """

    arch = "abmil"

    def __init__(self, in_dim, hidden=128, dropout=0.25, tasks=("lnm", "otc"), gated=False,
                 shared_attention=False):
        super().__init__(in_dim, hidden, dropout, tasks)
        self.gated = bool(gated)
        self.shared_attention = bool(shared_attention)
        if self.gated:
            self.arch = "gated-abmil"
        if self.shared_attention:
            self.attention = _AttentionScorer(hidden, hidden, dropout, self.gated)
        else:
            self.attention = nn.ModuleDict(
                {t: _AttentionScorer(hidden, hidden, dropout, self.gated) for t in self.tasks})

    def _attend(self, scorer, h, mask):
        att_logits = scorer(h).masked_fill(~mask, float("-inf"))  # (B, N)
        attention = masked_softmax(att_logits, mask)  # (B, N)
        z = torch.bmm(attention[:, None, :], h).squeeze(1)  # (B, H)
        return z, attention, att_logits

    def pool(self, h, mask):
        scorer = self.attention if self.shared_attention else self.attention[self.tasks[0]]
        return self._attend(scorer, h, mask)

    def _pooled_outputs(self, h, mask):
        if self.shared_attention:
            out = super()._pooled_outputs(h, mask)
            out["attentions"] = {t: out["attention"] for t in self.tasks}
            return out
        return self._per_task_outputs({t: self._attend(self.attention[t], h, mask) for t in self.tasks}, h)


class CLAMSB(ABMIL):
    """CLAM single-branch (Lu et al., 2021): gated attention plus instance clustering.

    During training, for each bag the ``k_instances`` most and least attended
    tiles become pseudo-positive and pseudo-negative instances for the instance
    classifier of the bag's LNM class; the total loss is
    ``bag_weight * bag loss + (1 - bag_weight) * instance loss`` (0.7 / 0.3 in
    the paper). ``k`` shrinks to half the smallest bag of a batch so the top and
    bottom sets never overlap.

    Parameters
    ----------
    in_dim, hidden, dropout, tasks
        See :class:`MILModel`; ``tasks`` must contain ``"lnm"``.
    k_instances : int, default=8
    instance_loss : {"svm", "ce"}, default="svm"
        Smooth top-1 SVM (as in CLAM) or cross-entropy.
    bag_weight : float, default=0.7
    """

    arch = "clam-sb"

    def __init__(
        self, in_dim, hidden=128, dropout=0.25, tasks=("lnm", "otc"),
        k_instances=8, instance_loss="svm", bag_weight=0.7, shared_attention=False,
    ):
        if "lnm" not in tuple(tasks):
            raise ValueError(f"CLAMSB: tasks must include 'lnm'; got {tuple(tasks)}.")
        # The instance loss reads the first task's attention: make that the LNM map.
        tasks = ("lnm",) + tuple(t for t in tasks if t != "lnm")
        super().__init__(in_dim, hidden, dropout, tasks, gated=True, shared_attention=shared_attention)
        self.arch = "clam-sb"
        if "lnm" not in self.tasks:
            raise ValueError(f"CLAMSB: tasks must include 'lnm'; got {self.tasks}.")
        if instance_loss not in ("svm", "ce"):
            raise ValueError(f"CLAMSB: instance_loss must be 'svm' or 'ce'; got {instance_loss!r}.")
        self.k_instances = int(k_instances)
        self.instance_loss = instance_loss
        self.bag_weight = float(bag_weight)
        self.instance_classifiers = nn.ModuleList([nn.Linear(hidden, 2) for _ in range(2)])

    def instance_loss_value(self, outputs, lnm):
        """Mean instance clustering loss over the labelled bags of the batch."""
        att = outputs["attention_logits"]  # (B, N), -inf on padding
        h = outputs["instance_embedding"]  # (B, N, H)
        mask = torch.isfinite(att)  # (B, N)
        n_valid = mask.sum(dim=1)  # (B,)
        labelled = ~torch.isnan(lnm)
        k = min(self.k_instances, int(n_valid.min()) // 2)
        if k < 1 or not bool(labelled.any()):
            return att.new_zeros(()) + 0.0 * h.sum()
        top = att.topk(k, dim=1).indices  # (B, k)
        bottom = att.masked_fill(~mask, float("inf")).topk(k, dim=1, largest=False).indices  # (B, k)
        idx = torch.cat([top, bottom], dim=1)  # (B, 2k)
        inst = h.gather(1, idx[..., None].expand(-1, -1, h.shape[-1]))  # (B, 2k, H)
        target = torch.cat(
            [torch.ones(k, dtype=torch.long), torch.zeros(k, dtype=torch.long)]
        ).to(h.device)  # (2k,)
        cls = lnm.nan_to_num(0).long()  # (B,)
        scores = torch.stack([clf(inst) for clf in self.instance_classifiers], dim=1)  # (B, 2, 2k, 2)
        scores = scores[torch.arange(h.shape[0]), cls]  # (B, 2k, 2)
        flat = scores.reshape(-1, 2)  # (B*2k, 2)
        tgt = target.repeat(h.shape[0])  # (B*2k,)
        if self.instance_loss == "svm":
            per = smooth_top1_svm_loss(flat, tgt)
        else:
            per = F.cross_entropy(flat, tgt, reduction="none")
        per = per.reshape(h.shape[0], 2 * k).mean(dim=1)  # (B,)
        return per[labelled].mean()

    def _combine(self, parts, outputs, targets):
        inst = self.instance_loss_value(outputs, targets["lnm"]) if self.training else None
        bag = sum(parts.values())
        if inst is None:
            return bag
        parts["instance"] = inst
        return self.bag_weight * bag + (1.0 - self.bag_weight) * inst


ARCHITECTURES = ("instance", "abmil", "gated-abmil", "clam-sb", "mean", "max")


def build_model(arch, in_dim, hidden=128, dropout=0.25, tasks=("lnm", "otc"), **kwargs):
    """Build a MIL network by name.

    Parameters
    ----------
    arch : {"instance", "abmil", "gated-abmil", "clam-sb", "mean", "max"}
    in_dim : int
    hidden : int, default=128
    dropout : float, default=0.25
    tasks : tuple of str, default=("lnm", "otc")
    **kwargs
        ``shared_attention`` for the attention networks, and for :class:`CLAMSB`
        ``k_instances``, ``instance_loss`` and ``bag_weight``.

    Returns
    -------
    MILModel
    """
    tasks = tuple(tasks)
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"build_model: tasks must be distinct names from {TASKS}; got {tasks}.")
    if arch == "abmil":
        return ABMIL(in_dim, hidden, dropout, tasks, gated=False, **kwargs)
    if arch == "gated-abmil":
        return ABMIL(in_dim, hidden, dropout, tasks, gated=True, **kwargs)
    if arch == "clam-sb":
        return CLAMSB(in_dim, hidden, dropout, tasks, **kwargs)
    if arch == "instance":
        return InstanceMIL(in_dim, hidden, dropout, tasks)
    if arch == "mean":
        return MeanPoolMIL(in_dim, hidden, dropout, tasks)
    if arch == "max":
        return MaxPoolMIL(in_dim, hidden, dropout, tasks)
    raise ValueError(f"build_model: arch must be one of {sorted(ARCHITECTURES)}; got {arch!r}.")


def _init_seeded(model, seed):
    """Re-initialise parameters from ``seed`` without touching the global RNG."""
    gen = torch.Generator().manual_seed(int(seed))
    for module in model.modules():
        if isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.in_features)
            with torch.no_grad():
                module.weight.uniform_(-bound, bound, generator=gen)
                module.bias.uniform_(-bound, bound, generator=gen)
    return model
