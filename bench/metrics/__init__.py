"""ViStoryBench metrics as torchmetrics classes (state, ``update``, ``compute``, distributed reduction)."""

from bench.metrics.aesthetics import Aesthetics
from bench.metrics.alignment import PromptAlignment
from bench.metrics.cids import CIDS
from bench.metrics.csd import CSDCross, CSDSelf
from bench.metrics.inception import InceptionScore
from bench.metrics.occm import OCCM

__all__ = ["CIDS", "OCCM", "Aesthetics", "CSDCross", "CSDSelf", "InceptionScore", "PromptAlignment"]
