"""Where the service's model runs: on a thread of the HTTP process, or in a process of its own.

Why a process: the event loop (reading requests, checks, JSON replies) and
the model's Python (the decoding loop between kernel calls) share one GIL when
they are threads of one process. Under load each stalls the other: at 32
closed-loop users the model thread was busy 78% of the time and the server's
two threads together used about one core of two. In a process of its own the
model never waits for the event loop, nor the event loop for the model.

Design
- Both kinds have one method, `translate(texts, to, beam, n_best)`, which
  blocks its caller (the service's model thread, holding the model lock, so
  calls never overlap) and raises ValueError for a sentence the model cannot
  translate, as Translator.translate does.
- The child is a fresh interpreter (`python -c`, started like the workers,
  by `child_command`, which makes it import this very fastnet whatever its
  working directory holds): no fork, so OpenMP and thread state never cross
  one, and a user's script is never imported again the way multiprocessing's
  spawn would import it. It talks over one socket pair with
  multiprocessing's Connection (pickled tuples: lists of strings each way).
- The parent saves its translator as it is (quantised or not) to a private
  temporary file, which the child loads and then deletes: the child's model
  is the parent's, bit for bit, whatever file it came from.
- The child ignores SIGINT and SIGTERM: the HTTP process decides when to
  stop (a graceful shutdown still needs the model for the requests in
  flight), then closes the connection, and the child exits at end of file,
  which it also sees if the HTTP process dies.
- A child that dies (killed, out of memory) fails the call it was running
  with ModelProcessError; the next call starts a new one (a child found dead
  between calls is replaced before the call, which then succeeds).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

START_TIMEOUT = 120.0  # seconds for a child to import fastnet and load the model


class ModelProcessError(RuntimeError):
    """The model process could not start, or stopped while translating."""


def run_translation(translator, texts, to, beam=1, n_best=1):
    """Translator.translate as the service calls it: lists of alternatives when n_best > 1."""
    if n_best > 1:
        return translator.translate(list(texts), to=to, beam=beam, n_best=n_best)
    return translator.translate(list(texts), to=to, beam=beam)


class InProcessModel:
    """The translator, called on the caller's thread."""

    def __init__(self, translator):
        self.translator = translator

    def translate(self, texts, to, beam=1, n_best=1):
        return run_translation(self.translator, texts, to, beam, n_best)

    def wait_ready(self):
        pass

    def close(self):
        pass


# the folder this fastnet package was imported from (site-packages, or a source checkout)
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def child_command(code, *args):
    """The command line of a child interpreter that runs `code` (sys.argv[1:] = args) with this very
    fastnet. `python -c` and `python -m` put the working directory first on sys.path, before
    PYTHONPATH: started from a source checkout with fastnet installed by pip, the child imported
    the unbuilt source tree (no fastnet._kernels). So the child puts this fastnet's folder first."""
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {_ROOT!r}); {code}", *map(str, args)]


class ModelProcess:
    """A copy of `translator` in a child process; `threads` kernel threads there (default: this process's)."""

    def __init__(self, translator, threads=None):
        import fastnet

        self._translator = translator
        self._threads = int(threads or fastnet.get_num_threads())
        self._lock = threading.Lock()  # start, call and close never interleave
        self._proc = self._conn = None
        self._closed = False
        self._start()

    @property
    def pid(self):
        return self._proc.pid if self._proc is not None else None

    def _start(self):
        from multiprocessing.connection import Connection

        folder = tempfile.mkdtemp(prefix="fastnet-model-")  # private (0700): the child deletes it
        try:
            path = self._translator.save(os.path.join(folder, "model.safetensors"))
            ours, theirs = socket.socketpair()
            with theirs:
                self._proc = subprocess.Popen(child_command(_CHILD_MAIN, theirs.fileno(), path, self._threads),
                                              pass_fds=(theirs.fileno(),))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._conn = Connection(ours.detach())
        self._ready = False

    def wait_ready(self):
        """Block until the child has loaded the model (the server calls it before it takes requests)."""
        with self._lock:
            self._ensure_ready()

    def _ensure_ready(self):
        if self._closed:
            raise ModelProcessError("the model process was closed")
        if self._proc is not None and self._proc.poll() is not None:
            self._stop_child()  # it died between calls: start a new one, no request lost
        if self._conn is None:
            self._start()
        if not self._ready:
            self._wait_ready()

    def _wait_ready(self):
        if not self._conn.poll(START_TIMEOUT):
            self._stop_child()
            raise ModelProcessError(f"the model process did not load the model within {START_TIMEOUT:g} s")
        message = self._receive("while loading the model")
        if message[0] != "ready":
            self._stop_child()
            raise ModelProcessError(f"the model process could not load the model: {message[1]}")
        self._ready = True

    def _receive(self, doing):
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            code = self._stop_child()
            raise ModelProcessError(f"the model process stopped (exit status {code}) {doing}; "
                                    f"the next request starts a new one") from None

    def translate(self, texts, to, beam=1, n_best=1):
        with self._lock:
            self._ensure_ready()
            try:
                self._conn.send((list(texts), to, int(beam), int(n_best)))
            except OSError:
                pass  # the child is gone: _receive says so
            status, value = self._receive("while translating")
        if status == "ok":
            return value
        if status == "invalid":
            raise ValueError(value)
        raise ModelProcessError(f"the model process failed: {value}")

    def _stop_child(self):
        """Close the connection and reap the child; its exit status."""
        conn, proc = self._conn, self._proc
        self._conn = self._proc = None
        if conn is not None:
            conn.close()  # the child sees end of file and exits
        if proc is None:
            return None
        try:
            return proc.wait(10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def close(self):
        with self._lock:
            self._closed = True
            self._stop_child()

    def __del__(self):
        if getattr(self, "_proc", None) is not None:
            self._proc.kill()


def _serve(fd, path, threads):
    """The child: load the model, then answer (texts, to, beam, n_best) until end of file."""
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        import fastnet

        fastnet.set_num_threads(threads)
        translator = fastnet.load(path)
    except Exception as exc:  # noqa: BLE001 - the parent reports it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    finally:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            texts, to, beam, n_best = conn.recv()
        except EOFError:
            return
        try:
            reply = ("ok", run_translation(translator, texts, to, beam, n_best))
        except ValueError as exc:
            reply = ("invalid", str(exc))
        except Exception as exc:  # noqa: BLE001 - the request fails, the process goes on
            reply = ("error", f"{type(exc).__name__}: {exc}")
        conn.send(reply)


# not `-m fastnet.serve.model_process`: the package imports this module first, which runpy warns about
_CHILD_MAIN = "from fastnet.serve.model_process import _serve; _serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))"
