"""Sequence to sequence: transformer layers, the Encoder, Decoders and the Translator."""
from fastnet.seq2seq.layers import (  # noqa: F401
    Dropout, Embedding, FeedForward, KVCache, LayerNorm, Linear, MultiHeadAttention,
    PositionalEncoding, TransformerDecoderLayer, TransformerEncoderLayer)
from fastnet.seq2seq.encoder import Encoder  # noqa: F401
from fastnet.seq2seq.decoder import Decoder, DecoderState  # noqa: F401
