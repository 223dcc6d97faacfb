"""Built-in tile encoders; importing this package registers them."""

from lnmkit.features.encoders._stain_texture import StainTextureEncoder
from lnmkit.features.encoders._resnet import ResNet50TruncEncoder
from lnmkit.features.encoders._timm import PATHOLOGY_ENCODERS, PathologyEncoderSpec, TimmEncoder
from lnmkit.features.encoders._hf import HFHubEncoder

__all__ = ["StainTextureEncoder", "ResNet50TruncEncoder", "TimmEncoder", "HFHubEncoder",
           "PATHOLOGY_ENCODERS", "PathologyEncoderSpec"]
