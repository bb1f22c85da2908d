"""Sequence to sequence: transformer layers, the Encoder, Decoders and the Translator."""
from fastnet.seq2seq.decoder import Decoder, DecoderState  # noqa: F401
from fastnet.seq2seq.encoder import Encoder  # noqa: F401
from fastnet.seq2seq.layers import (  # noqa: F401
    Dropout,
    Embedding,
    FeedForward,
    KVCache,
    LayerNorm,
    MultiHeadAttention,
    PositionalEncoding,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
)
from fastnet.seq2seq.translator import Translator, register_decoder_kind  # noqa: F401

# The translation recipe and demo moved to the application layer (fastnet.demo.translation).
_MOVED_TO_DEMO = ("demo_translator", "split_by_source", "train_on_pairs")


def __getattr__(name):
    if name in _MOVED_TO_DEMO:
        import warnings

        from fastnet.demo import translation

        warnings.warn(f"fastnet.seq2seq.{name} moved to fastnet.demo.{name}", DeprecationWarning, stacklevel=2)
        return getattr(translation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
