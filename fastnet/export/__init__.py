"""Export trained models to ONNX, and run exported translators without fastnet.

    net.to_onnx("digits.onnx")            # a Network -> one ONNX graph
    tr.to_onnx("translator-onnx/")        # a Translator -> encoder, decoders, recipe.json
    onnx_greedy_translate("translator-onnx/", ["cats are cute"], to="sv")

Writing ONNX needs the `onnx` package, running it `onnxruntime`:
`pip install "fastnet[onnx]"`. Both are imported only when used.
`onnx_greedy_translate` lives in `fastnet/export/onnx_runtime.py`, which needs
only numpy and onnxruntime (no fastnet kernels); `tr.to_onnx` also copies that
file into the export directory as `translate.py` so the directory runs alone.
"""
from fastnet.export.onnx import network_to_onnx, translator_to_onnx
from fastnet.export.onnx_runtime import onnx_greedy_translate

__all__ = ["network_to_onnx", "translator_to_onnx", "onnx_greedy_translate"]
