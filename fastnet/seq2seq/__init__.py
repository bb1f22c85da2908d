"""Sequence to sequence: transformer layers, the Encoder, Decoders and the Translator."""
from fastnet.seq2seq.layers import (  # noqa: F401
    Dropout, Embedding, FeedForward, KVCache, LayerNorm, MultiHeadAttention, PositionalEncoding,
    TransformerDecoderLayer, TransformerEncoderLayer)
from fastnet.seq2seq.encoder import Encoder  # noqa: F401
from fastnet.seq2seq.decoder import Decoder, DecoderState  # noqa: F401
from fastnet.seq2seq.translator import Translator, register_decoder_kind  # noqa: F401

from fastnet import io as _io  # noqa: E402

_io.register_loader("translator", Translator._from_file)
from fastnet.seq2seq.tasks import demo_translator, split_by_source, train_on_pairs  # noqa: E402,F401
