from .position_encoding import PositionEmbeddingSine
from .transformer import (
    MLP,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    TransformerEncoderOnly,
)

__all__ = [
    "MLP",
    "PositionEmbeddingSine",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "TransformerEncoderOnly",
]
