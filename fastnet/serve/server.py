"""Running the app under uvicorn: `run` blocks (the command line), `make_server` lets callers control it.

`run(..., workers=N)` with N > 1 hands over to fastnet.serve.workers, which
binds the port once and supervises N processes that each build their server
here with `make_server`.
"""
import gc
import sys
from dataclasses import asdict

import fastnet
from fastnet.serve.app import Batching, Connections, Limits, create_app
from fastnet.serve.protocol import guarded_protocol


def load_translator(model):
    from fastnet.seq2seq.translator import Translator

    translator = fastnet.load(model) if not isinstance(model, Translator) else model
    if not isinstance(translator, Translator):
        raise TypeError(f"{model!r} holds a {type(translator).__name__}, not a Translator; only translators can "
                        f"be served")
    return translator


def _as(cls, value):
    """A Batching / Connections from an instance, a dict of its fields (from a worker's options) or None."""
    if value is None:
        return cls()
    return value if isinstance(value, cls) else cls(**value)


def open_keys(db, require_keys=False, busy_timeout=5.0):
    """The KeyStore at `db` (a path, or a KeyStore, returned as it is; None without one).

    A missing, corrupt or locked file raises KeyStoreError."""
    from fastnet.serve.keys import KeyStore

    if db is None:
        if require_keys:
            raise ValueError("--require-keys needs --db KEYS.sqlite (make keys with `fastnet keys add`)")
        return None
    return db if isinstance(db, KeyStore) else KeyStore(db, busy_timeout=busy_timeout)


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server that also tells the service it is draining (so /ready answers 503)."""

        def handle_exit(self, sig, frame):
            self.config.app.state.service.draining = True
            super().handle_exit(sig, frame)

    return Server


def make_server(model, host="127.0.0.1", port=8000, *, max_body_bytes=64 * 1024, max_texts=64, max_chars=500,
                max_beam=None, max_n_best=4, beam=1, threads=None, log_level="warning", batching=None,
                connections=None, keys_db=None, require_keys=False, graceful_timeout=30.0, quantize=None,
                http="auto", loop="auto", model_process=True):
    """A uvicorn.Server for `model` (a path to a saved Translator, or a Translator).

    Call `.run()` (blocks; pass `sockets=[sock]` to serve on an already bound
    socket) and set `.should_exit = True` from another thread to stop it.
    `threads` sets fastnet's kernel thread count for the whole process.
    batching: Batching or a dict of its fields; connections: Connections or
    a dict; keys_db: path of a key database (`fastnet keys add`) or a KeyStore;
    require_keys: refuse requests without a valid key. max_beam defaults to
    max(4, beam). quantize="int8" serves the model quantised (Translator.quantize).
    http: the HTTP parser, "httptools", "h11" or "auto" (httptools when installed); loop: uvicorn's
    event loop, "uvloop", "asyncio" or "auto" (uvloop when installed). model_process: translate in
    a process of its own beside the HTTP process (False: on a thread of it; fastnet.serve.model_process).
    """
    import uvicorn

    translator = load_translator(model)
    if quantize and translator.quantization != quantize:
        translator.quantize(quantize)
    if threads is not None:
        fastnet.set_num_threads(int(threads))
    limits = Limits(max_body_bytes=int(max_body_bytes), max_texts=int(max_texts), max_chars=int(max_chars),
                    max_beam=int(max_beam or max(4, int(beam))), max_n_best=int(max_n_best))
    connections = _as(Connections, connections)
    keys = open_keys(keys_db, require_keys)
    app = create_app(translator, limits, beam=beam, batching=_as(Batching, batching), keys=keys,
                     require_keys=require_keys, connections=connections, model_process=model_process)
    protocol, backlog = guarded_protocol(connections, http)
    config = uvicorn.Config(app, host=host, port=int(port), log_level=log_level, access_log=False,
                            http=protocol, loop=loop, backlog=backlog, timeout_keep_alive=connections.keep_alive,
                            timeout_graceful_shutdown=graceful_timeout, lifespan="on")
    return _server_class()(config)


# With --model-thread the event loop and the model thread share the GIL. A model call in Python code keeps it for up
# to the switch interval (5 ms by default) while requests wait to be parsed and answered; 0.5 ms
# gave 8-13% more requests per second at 8 users in bench/bench_serve_load.py runs.
SWITCH_INTERVAL = 0.0005


# A request allocates about a hundred short-lived container objects (coroutines, frames, dicts). At
# Python's default threshold (700) the cyclic collector ran every few requests and took 20-40% of
# the app's CPU per request in bench/bench_serve_load.py runs; at 10,000 it takes a few percent.
GC_THRESHOLD = 10_000


def serving_process():
    """Settings for a process whose job is to serve (`run` and each worker), not for library use."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def loaded():
    """Call once the model and the app are built: they live as long as the process, so the
    collector need not scan them again (gc.freeze)."""
    gc.collect()
    gc.freeze()


def run(model_path, host="127.0.0.1", port=8000, workers=1, **options):
    """Serve the translator saved at `model_path` on http://host:port until interrupted (Ctrl-C, SIGTERM).

    workers > 1 runs that many processes sharing the port (fastnet.serve.workers).
    options: see make_server.
    """
    options = {"log_level": "info", **options}
    if int(workers) > 1:
        from fastnet.serve.workers import supervise

        return supervise(model_path, host, port, int(workers), _portable(options))
    serving_process()
    server = make_server(model_path, host, port, **options)
    loaded()
    service = server.config.app.state.service
    print(f"fastnet: serving {model_path} on http://{host}:{server.config.port}/ "
          f"(languages: {', '.join(service.languages)}; batching "
          f"{'on' if service.batching.enabled else 'off'}; keys {'required' if service.require_keys else 'optional'}; "
          f"model {service.model_location})",
          flush=True)
    server.run()
    return 0


def _portable(options):
    """make_server options as JSON-able values, for worker processes."""
    out = dict(options)
    for name in ("batching", "connections"):
        if out.get(name) is not None and not isinstance(out[name], dict):
            out[name] = asdict(out[name])
    if out.get("keys_db") is not None:
        out["keys_db"] = str(out["keys_db"])
    return out
