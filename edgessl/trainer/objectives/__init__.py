"""Self-supervised objectives, one per file: a few pure functions plus a thin ``nn.Module``."""

from edgessl.trainer.objectives.barlow import BarlowTwinsLoss
from edgessl.trainer.objectives.beit import MaskedTokenLoss
from edgessl.trainer.objectives.clip import CLIPLoss
from edgessl.trainer.objectives.masked import MaskedReconstructionLoss
from edgessl.trainer.objectives.simclr import NTXentLoss
from edgessl.trainer.objectives.ssgan import SSGANLoss
from edgessl.trainer.objectives.vicreg import VICRegLoss

__all__ = ["BarlowTwinsLoss", "CLIPLoss", "MaskedReconstructionLoss", "MaskedTokenLoss", "NTXentLoss", "SSGANLoss",
           "VICRegLoss"]
