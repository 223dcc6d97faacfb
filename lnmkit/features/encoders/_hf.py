"""``hf-hub:<repo_id>`` encoders: published pathology models from local files.

The repository must be one of :data:`PATHOLOGY_ENCODERS` (UNI, UNI2-h, CONCH,
Virchow2, H-optimus-0/1, Phikon-v2, Prov-GigaPath), whose architecture and
preprocessing are known, or a timm-format repository whose ``config.json``
(``architecture``, ``model_args``, ``pretrained_cfg``) is in the local cache.
Weights come from ``weights=``, ``$LNMKIT_WEIGHTS_DIR/<org>/<name>/`` or the
Hugging Face cache; set ``HF_HUB_OFFLINE=1`` on machines without internet.
"""

from __future__ import annotations

import json

from lnmkit.features._registry import register_encoder, register_prefix
from lnmkit.features._weights import find_weights, hf_cached_file
from lnmkit.features.encoders._timm import PATHOLOGY_ENCODERS, PathologyEncoderSpec, TimmEncoder
from lnmkit.features.encoders._torch import TorchTileEncoder

__all__ = ["HFHubEncoder", "spec_for_repo"]


def spec_for_repo(repo_id) -> PathologyEncoderSpec:
    """The table entry of ``repo_id`` (case-insensitive), or one built from its cached timm config.

    Parameters
    ----------
    repo_id : str

    Returns
    -------
    PathologyEncoderSpec

    Raises
    ------
    ValueError
        If the repository is neither known nor a cached timm-format repository.
    """
    for spec in PATHOLOGY_ENCODERS.values():
        if spec.repo_id.lower() == repo_id.lower():
            return spec
    config_path = hf_cached_file(repo_id, "config.json")
    if config_path is not None:
        config = json.loads(config_path.read_text())
        if "architecture" in config:
            pre = config.get("pretrained_cfg", {})
            size = pre.get("input_size", [3, 224, 224])[-1]
            return PathologyEncoderSpec(
                key=repo_id, repo_id=repo_id, backend="timm", dim=int(config.get("num_features", 0)),
                input_size=int(size), mean=tuple(pre.get("mean", (0.485, 0.456, 0.406))),
                std=tuple(pre.get("std", (0.229, 0.224, 0.225))),
                architecture=config["architecture"], timm_kwargs=dict(config.get("model_args", {})),
                weight_files=("model.safetensors", "pytorch_model.bin"))
    known = ", ".join(f"'hf-hub:{s.repo_id}'" for s in PATHOLOGY_ENCODERS.values())
    raise ValueError(f"hf-hub:{repo_id}: unknown repository and no timm config.json for it in the "
                     f"local Hugging Face cache. Known: {known}; or use 'timm:<model_name>' with "
                     "weights=... and timm_kwargs=....")


class HFHubEncoder(TorchTileEncoder):
    """A published pathology encoder loaded from local weights.

    Parameters
    ----------
    repo_id : str
        Hugging Face repository, e.g. ``"MahmoodLab/UNI"``.
    weights : str or path-like, optional
        Weights file (or folder holding it) instead of the cache. For the
        ``transformers`` backend the folder must also hold ``config.json``.
    device, precision, batch_size
        See :class:`~lnmkit.features.encoders._torch.TorchTileEncoder`.
    return_cls : bool, default=False
        For ``"cls+mean"`` models (Virchow2), return the class token only.

    Raises
    ------
    MissingWeightsError
        If no weights are found; the message names the repo and the cache path.
    ImportError
        If the backend library (timm, transformers or conch) is not installed.
    """

    version = "1"

    def __init__(self, repo_id, weights=None, *, device="cpu", precision="fp32", batch_size=64,
                 return_cls=False):
        super().__init__(device=device, precision=precision, batch_size=batch_size)
        self.repo_id = repo_id
        self.weights = weights
        self.return_cls = return_cls
        spec = spec_for_repo(repo_id)
        self.spec = spec
        self.name = f"hf-hub:{spec.repo_id}" + ("-cls" if return_cls and spec.output == "cls+mean" else "")
        self.input_size, self.mean, self.std, self.mpp = spec.input_size, spec.mean, spec.std, spec.mpp
        # Repo-qualified names first, so one weights folder can hold several models.
        path = find_weights(self.name, weights,
                            filenames=[f"{spec.repo_id}/{f}" for f in spec.weight_files]
                            + list(spec.weight_files),
                            hf_repo=spec.repo_id, hf_filenames=spec.weight_files,
                            hint=f"Request access at https://huggingface.co/{spec.repo_id} if gated.")
        self.weights_path_ = path
        output = "cls" if return_cls else spec.output
        if spec.backend == "timm":
            inner = TimmEncoder(spec.architecture, weights_path=path, timm_kwargs=spec.timm_kwargs,
                                input_size=spec.input_size, mean=spec.mean, std=spec.std,
                                mpp=spec.mpp, output=output, prefix_tokens=spec.prefix_tokens,
                                name=self.name)
            self.module, self.dim, self._inner = inner.module, inner.dim, inner
        elif spec.backend == "transformers":
            try:
                from transformers import AutoModel
            except ImportError as exc:
                raise ImportError(f"{self.name}: needs 'transformers'; install it with `pip install "
                                  "torch==<your torch version> transformers`.") from exc
            self.module = AutoModel.from_pretrained(str(path.parent), local_files_only=True)
            # the checkpoint's own config is the truth (a distilled or resized variant may differ)
            self.dim, self._inner = int(self.module.config.hidden_size), None
        else:
            try:
                from conch.open_clip_custom import create_model_from_pretrained
            except ImportError as exc:
                raise ImportError(f"{self.name}: needs the 'conch' package; install it with `pip "
                                  "install git+https://github.com/Mahmoodlab/CONCH.git`.") from exc
            self.module, _ = create_model_from_pretrained(spec.architecture, checkpoint_path=str(path))
            self.dim, self._inner = spec.dim, None

    def _forward(self, x):
        if self.spec.backend == "timm":
            return self._inner._forward(x)
        if self.spec.backend == "transformers":
            return self.module(pixel_values=x).last_hidden_state[:, 0]          # (B, C)
        return self.module.encode_image(x, proj_contrast=False, normalize=False)  # (B, 512)

    def config(self) -> dict:
        from lnmkit.features._hashing import file_fingerprint

        return {**super().config(), "repo_id": self.spec.repo_id,
                "weights": file_fingerprint(self.weights_path_), "return_cls": self.return_cls}


@register_prefix("hf-hub")
def _hf_factory(repo_id, **kwargs):
    return HFHubEncoder(repo_id, **kwargs)


def _alias(spec):
    def factory(**kwargs):
        return HFHubEncoder(spec.repo_id, **kwargs)

    factory.__doc__ = f"Build ``hf-hub:{spec.repo_id}`` ({spec.key})."
    return factory


for _spec in PATHOLOGY_ENCODERS.values():
    register_encoder(_spec.key)(_alias(_spec))
