"""Weight and config conversion between MaskFormer and other layouts (Hugging Face, ImageNet)."""
