"""Serve a trained Translator over HTTP: JSON at /translate, /health, /ready, /metrics, docs at /docs, a page at /.

Needs the `serve` extra (`pip install fastnet[serve]`: starlette, uvicorn, prometheus-client).
"""
from fastnet.serve.app import (
           Batching,
           Connections,
           Limits,
           RequestError,
           TranslationService,
           create_app,
)
from fastnet.serve.server import make_server, run

__all__ = ["Batching", "Connections", "Limits", "RequestError", "TranslationService", "create_app", "make_server",
           "run"]
