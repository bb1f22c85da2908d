"""Serve a trained Translator over HTTP: JSON at /translate and /health, a small page at /.

Needs the `serve` extra (`pip install fastnet[serve]`: starlette and uvicorn).
"""
from fastnet.serve.app import Limits, TranslationService, create_app
from fastnet.serve.server import make_server, run

__all__ = ["Limits", "TranslationService", "create_app", "make_server", "run"]
