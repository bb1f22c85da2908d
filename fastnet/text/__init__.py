"""Text to numbers: tokenizers with special tokens, padding and a JSON form."""
from fastnet.text.subword import SubwordTokenizer
from fastnet.text.tokenizers import (
    SPECIAL_TOKENS,
    AsciiTokenizer,
    CharTokenizer,
    WordTokenizer,
    tokenizer_from_dict,
)

__all__ = ["AsciiTokenizer", "CharTokenizer", "SubwordTokenizer", "WordTokenizer", "tokenizer_from_dict",
           "SPECIAL_TOKENS"]
