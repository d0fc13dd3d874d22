"""Evaluation metrics: the Market-1501 protocol (CMC, mAP, mINP) and k-reciprocal re-ranking."""

from reid.metrics.protocol import EvalResult, evaluate
from reid.metrics.rerank import re_rank

__all__ = ["EvalResult", "evaluate", "re_rank"]
