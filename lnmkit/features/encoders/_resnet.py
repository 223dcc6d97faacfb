"""``resnet50-trunc``: ImageNet ResNet-50 through layer 3 + global average pool.

The 1024-d tile features used by CLAM. The network is defined here with the
parameter names of ``torchvision.models.resnet50`` (``conv1``, ``bn1``,
``layer1``..``layer3`` bottleneck blocks with ``downsample.0``/``downsample.1``),
so a torchvision or timm ``resnet50`` checkpoint loads with strict key checks;
its ``layer4.*`` and ``fc.*`` entries are ignored.
"""

from __future__ import annotations

from lnmkit.features._registry import register_encoder
from lnmkit.features._weights import find_weights, load_state_dict, match_state_dict
from lnmkit.features.encoders._torch import TorchTileEncoder

__all__ = ["ResNet50TruncEncoder", "build_resnet50_trunk"]

WEIGHT_FILES = ("resnet50.safetensors", "resnet50.pth", "resnet50-0676ba61.pth",
                "resnet50-11ad3fa6.pth", "resnet50-19c8e357.pth")
HF_REPO = "timm/resnet50.tv_in1k"
_HINT = ("The torchvision ImageNet checkpoint (IMAGENET1K_V1, resnet50-0676ba61.pth, or CLAM's "
         "resnet50-19c8e357.pth) or timm's 'resnet50.tv_in1k' model.safetensors fit.")


def build_resnet50_trunk():
    """Build the truncated ResNet-50 (random initialisation).

    Returns
    -------
    torch.nn.Module
        Maps (B, 3, H, W) images to (B, 1024) features.
    """
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, in_ch, width, stride):
            super().__init__()
            out_ch = width * 4
            self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            # Stride on the 3x3 convolution, as torchvision's "ResNet v1.5".
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out_ch)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or in_ch != out_ch:
                self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                                nn.BatchNorm2d(out_ch))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    class ResNet50Trunk(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            in_ch, layers = 64, []
            for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2)):
                stage = []
                for index in range(blocks):
                    stage.append(Bottleneck(in_ch, width, stride if index == 0 else 1))
                    in_ch = width * 4
                layers.append(nn.Sequential(*stage))
            self.layer1, self.layer2, self.layer3 = layers

        def forward(self, x):                                   # (B, 3, 224, 224)
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, 56, 56)
            x = self.layer3(self.layer2(self.layer1(x)))         # (B, 1024, 14, 14)
            return torch.flatten(x.mean(dim=(2, 3)), 1)         # (B, 1024)

    return ResNet50Trunk()


@register_encoder("resnet50-trunc")
class ResNet50TruncEncoder(TorchTileEncoder):
    """ImageNet ResNet-50 truncated after layer 3, globally average-pooled (1024-d).

    Parameters
    ----------
    weights : str or path-like, optional
        A torchvision/timm ``resnet50`` checkpoint (``.safetensors``, or ``.pth``
        readable with ``torch.load(weights_only=True)``), or a folder holding one
        of ``resnet50.safetensors``, ``resnet50.pth``, ``resnet50-0676ba61.pth``,
        ``resnet50-11ad3fa6.pth``, ``resnet50-19c8e357.pth``. When omitted,
        ``$LNMKIT_WEIGHTS_DIR`` and then the Hugging Face cache of
        ``timm/resnet50.tv_in1k`` are searched.
    pretrained : bool, default=True
        ``False`` builds a randomly initialised network (seeded, so reproducible)
        for testing only; ``weights`` must then be None.
    device : str, default="cpu"
        Torch device, or ``"auto"``.
    precision : {"fp32", "fp16", "bf16"}, default="fp32"
        Autocast precision.
    batch_size : int, default=64
        Tiles per forward pass.

    Raises
    ------
    MissingWeightsError
        If ``pretrained=True`` and no weights file is found.
    IncompatibleWeightsError
        If the file's parameter names or shapes do not match a ResNet-50.
    """

    name = "resnet50-trunc"
    version = "1"
    dim = 1024
    input_size = 224
    mpp = 0.5

    def __init__(self, weights=None, *, pretrained=True, device="cpu", precision="fp32",
                 batch_size=64):
        import torch

        super().__init__(device=device, precision=precision, batch_size=batch_size)
        self.weights = weights
        self.pretrained = pretrained
        if not pretrained:
            if weights is not None:
                raise ValueError("resnet50-trunc: pass either weights=... or pretrained=False, "
                                 "not both.")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                self.module = build_resnet50_trunk()
            self.weights_path_ = None
            return
        path = find_weights(self.name, weights, filenames=WEIGHT_FILES, hf_repo=HF_REPO,
                            hf_filenames=("model.safetensors", "pytorch_model.bin"), hint=_HINT)
        self.module = build_resnet50_trunk()
        match_state_dict(self.module, load_state_dict(path), path=path,
                         ignore_prefixes=("layer4.", "fc."),
                         optional_suffixes=("num_batches_tracked",), expected=_HINT)
        self.weights_path_ = path

    def config(self) -> dict:
        from lnmkit.features._hashing import file_fingerprint

        weights = file_fingerprint(self.weights_path_) if self.weights_path_ else "random-init"
        return {**super().config(), "weights": weights}
