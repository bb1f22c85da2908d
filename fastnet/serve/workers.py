"""`fastnet serve --workers N`: N processes sharing one port, supervised.

Design
- The supervisor checks what it can first (the model loads and is a
  Translator, the key database opens) so a mistake is one clear error, not N
  crashing workers. It then binds the port once and starts each worker as a
  fresh interpreter running `_worker(FD)` (model_process.child_command: the
  same fastnet as the supervisor's) with the listening socket inherited:
  the kernel spreads connections over the workers' accept calls, and
  connections that arrive while a worker starts wait in the backlog.
- Each worker loads the model once and runs uvicorn on the shared socket.
  Workers are fresh interpreters (not forks), so OpenMP and thread state
  never cross a fork.
- Metrics: the supervisor makes a folder for prometheus-client's
  multiprocess mode (PROMETHEUS_MULTIPROC_DIR) before any worker starts; a
  dead worker is marked dead there so its live gauges stop counting.
- A worker that dies (SIGKILL, a crash) is replaced; if workers keep dying
  right after starting, the supervisor gives up with an error instead of
  looping. SIGTERM or SIGINT to the supervisor is passed to every worker,
  which finishes its requests in flight (uvicorn's graceful shutdown), and
  the supervisor exits when they have.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from fastnet.serve.model_process import child_command

OPTIONS_ENV = "FASTNET_SERVE_OPTIONS"
POLL_SECONDS = 0.2
QUICK_DEATH_SECONDS = 5.0  # a worker dying sooner than this after its start counts as a failed start
MAX_QUICK_DEATHS = 5


def _bind(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _log(message):
    print(f"fastnet supervisor: {message}", file=sys.stderr, flush=True)


class WorkersFailing(RuntimeError):
    """Workers die as soon as they start: the supervisor stops instead of restarting them forever."""


class Supervisor:
    def __init__(self, model_path, sock, n, options, metrics_dir):
        self.model_path, self.sock, self.n, self.options = model_path, sock, n, options
        self.metrics_dir = metrics_dir
        self.workers = {}  # pid -> (Popen, start time)
        self.stopping = False
        self.quick_deaths = 0

    def _spawn(self):
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir,
               OPTIONS_ENV: json.dumps({"model": str(self.model_path), "options": self.options})}
        proc = subprocess.Popen(child_command(_WORKER_MAIN, self.sock.fileno()), pass_fds=(self.sock.fileno(),),
                                env=env)
        self.workers[proc.pid] = (proc, time.monotonic())
        return proc

    def _stop(self, signum, frame):
        if not self.stopping:
            _log(f"{signal.Signals(signum).name}: finishing the requests in flight, then stopping")
        self.stopping = True
        for proc, _ in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def _reap(self):
        from prometheus_client import multiprocess

        for pid, (proc, started) in list(self.workers.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.workers[pid]
            multiprocess.mark_process_dead(pid, self.metrics_dir)
            if self.stopping:
                continue
            self.quick_deaths = self.quick_deaths + 1 if time.monotonic() - started < QUICK_DEATH_SECONDS else 0
            if self.quick_deaths >= MAX_QUICK_DEATHS:
                raise WorkersFailing(f"workers keep exiting right after starting (last: status {code}); see the "
                                     f"errors above")
            _log(f"worker {pid} exited with status {code}; starting a new one")
            self._spawn()

    def run(self):
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for _ in range(self.n):
                self._spawn()
            while self.workers:
                self._reap()
                time.sleep(POLL_SECONDS)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for proc, _ in self.workers.values():  # only after an error: do not leave workers behind
                proc.kill()
                proc.wait()
        return 0


def supervise(model_path, host, port, n, options):
    """Check the setup, bind host:port, run n workers until SIGTERM/SIGINT; returns the exit status."""
    from fastnet.serve.server import load_translator, open_keys

    translator = load_translator(model_path)
    languages = translator.languages
    del translator
    keys = open_keys(options.get("keys_db"), options.get("require_keys", False))
    if keys is not None:
        keys.close()
    sock = _bind(host, int(port))
    metrics_dir = tempfile.mkdtemp(prefix="fastnet-metrics-")
    print(f"fastnet: serving {model_path} on http://{host}:{sock.getsockname()[1]}/ with {n} workers "
          f"(languages: {', '.join(languages)})", flush=True)
    try:
        return Supervisor(model_path, sock, n, options, metrics_dir).run()
    except WorkersFailing as err:
        _log(f"error: {err}")
        return 1
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _worker(fd):
    from fastnet.serve.server import loaded, make_server, serving_process

    serving_process()
    spec = json.loads(os.environ[OPTIONS_ENV])
    sock = socket.socket(fileno=fd)
    server = make_server(spec["model"], **spec["options"])
    loaded()
    server.run(sockets=[sock])


_WORKER_MAIN = "from fastnet.serve.workers import _worker; _worker(int(sys.argv[1]))"
