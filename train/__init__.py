"""Training side: dataset building, ImageNet backbones, training and evaluation (may import tensorflow)."""
