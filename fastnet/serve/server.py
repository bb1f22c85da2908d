"""Running the app under uvicorn: `run` blocks (the command line), `make_server` lets callers control it."""
import fastnet
from fastnet.serve.app import Limits, create_app


def _load_translator(model):
    from fastnet.seq2seq.translator import Translator

    translator = fastnet.load(model) if not isinstance(model, Translator) else model
    if not isinstance(translator, Translator):
        raise TypeError(f"{model!r} holds a {type(translator).__name__}, not a Translator; only translators can "
                        f"be served")
    return translator


def make_server(model, host="127.0.0.1", port=8000, *, max_body_bytes=64 * 1024, max_texts=64, max_chars=500,
                beam=1, threads=None, log_level="warning"):
    """A uvicorn.Server for `model` (a path to a saved Translator, or a Translator).

    Call `.run()` (blocks; pass `sockets=[sock]` to serve on an already bound
    socket) and set `.should_exit = True` from another thread to stop it.
    `threads` sets fastnet's kernel thread count for the whole process.
    """
    import uvicorn

    translator = _load_translator(model)
    if threads is not None:
        fastnet.set_num_threads(int(threads))
    limits = Limits(max_body_bytes=int(max_body_bytes), max_texts=int(max_texts), max_chars=int(max_chars))
    app = create_app(translator, limits, beam=beam)
    config = uvicorn.Config(app, host=host, port=int(port), log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def run(model_path, host="127.0.0.1", port=8000, **options):
    """Serve the translator saved at `model_path` on http://host:port until interrupted (Ctrl-C).

    options: max_body_bytes, max_texts, max_chars, beam, threads, log_level (see make_server).
    """
    server = make_server(model_path, host, port, **{"log_level": "info", **options})
    print(f"fastnet: serving {model_path} on http://{host}:{server.config.port}/ "
          f"(languages: {', '.join(server.config.app.state.service.languages)})", flush=True)
    server.run()
