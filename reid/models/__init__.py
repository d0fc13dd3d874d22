"""The AlignedReID + OBC network and its checkpoints."""

from reid.models.aligned import ARCH_DIMS, AlignedReID, ModelConfig, ModelOutput, build_model
from reid.models.checkpoint import (
    Checkpoint,
    check_state_dict,
    load_checkpoint,
    load_model,
    obc_head_trained,
    save_checkpoint,
    unwrap_model,
)
from reid.models.inference import InferenceSpec, load_inference_model

__all__ = [
    "ARCH_DIMS",
    "AlignedReID",
    "Checkpoint",
    "ModelConfig",
    "ModelOutput",
    "build_model",
    "InferenceSpec",
    "check_state_dict",
    "load_checkpoint",
    "load_inference_model",
    "load_model",
    "obc_head_trained",
    "save_checkpoint",
    "unwrap_model",
]
