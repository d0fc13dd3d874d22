"""Where a re-ID model looks on occluded queries: Grad-CAM, box mass and Figure 2.

* :mod:`reid.saliency.gradcam` — Grad-CAM on the last convolutional block: maps [N, h, w] in
  [0, 1] for the "similarity" (to the clean original) or "obc" (occluded logit) target.
* :mod:`reid.saliency.mass` — the share of a map's mass inside the occlusion box against the
  box's area share (chance), the result types and the JSON / table summary.
* :mod:`reid.saliency.figures` — Figure 2 PNGs per identity and the contact sheet.
* :mod:`reid.saliency.run` — ``reid saliency`` end to end: query choice, checkpoints, outputs.

The names below are the package's public interface; import them from ``reid.saliency``.
"""

from reid.saliency.figures import CONTACT_SHEET, identity_figure, overlay_cam, write_saliency_figures
from reid.saliency.gradcam import TARGETS, GradCAM, find_target_layer, grad_cam, model_saliency, upsample_cam
from reid.saliency.mass import (
    BOX_MASS_JSON,
    ModelSaliency,
    SaliencyResult,
    box_area_share,
    box_mass,
    box_mass_summary,
    format_box_mass_table,
    write_box_mass_json,
)
from reid.saliency.run import (
    SaliencyReport,
    default_model_names,
    run_saliency,
    saliency_for_queries,
    select_occluded_queries,
)

__all__ = [
    "CONTACT_SHEET",
    "identity_figure",
    "overlay_cam",
    "write_saliency_figures",
    "TARGETS",
    "GradCAM",
    "find_target_layer",
    "grad_cam",
    "model_saliency",
    "upsample_cam",
    "BOX_MASS_JSON",
    "ModelSaliency",
    "SaliencyResult",
    "box_area_share",
    "box_mass",
    "box_mass_summary",
    "format_box_mass_table",
    "write_box_mass_json",
    "SaliencyReport",
    "default_model_names",
    "run_saliency",
    "saliency_for_queries",
    "select_occluded_queries",
]
