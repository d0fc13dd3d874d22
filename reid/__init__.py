"""reid: AlignedReID + occlusion-classification (OBC) training, evaluation and saliency."""

__version__ = "0.1.0"
