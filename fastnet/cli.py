"""The `fastnet` command: the demo, training and using a translator, config.

Every user mistake is one line on stderr and exit status 2, never a
traceback: option values are checked at parse time by the small argparse
types below (reuse them for new options), and files are checked before any
work starts.
"""
import argparse
import math
import os
import shlex
import sys
import time


# ---- argparse types: bad values are refused before anything runs ----------------
def _number(kind, low=0, high=None, allow_low=False):
    """An argparse type: a finite number of `kind` above low (or equal when allow_low), at most high
    when given; checked at parse time."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        above = value >= low if allow_low else value > low
        if not above or not value < float("inf") or (high is not None and value > high):  # also refuses NaN
            bound = f"from {low} to {high}" if high is not None else f"{'>=' if allow_low else '>'} {low}"
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text!r}")
        return value
    return parse


def int_in(low, high=None):
    """An argparse type: an integer in [low, high] (no upper bound when high is None)."""
    return _number(int, low, high, allow_low=True)


def _positive(kind):
    return _number(kind)


def _non_negative(kind):
    return _number(kind, allow_low=True)


def _temperature(text):
    """An argparse type: a language temperature, a number >= 1 or inf."""
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    return _number(float, 1, allow_low=True)(text)


def writable_file(text):
    """An argparse type: a file path whose folder exists and can be written, and which is not a folder."""
    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"folder {folder!r} is not writable")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (the problem), not the usage block too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


PORT = int_in(0, 65535)
BEAM = int_in(1, 64)


def _load_translator(path, command):
    """The Translator saved at path, or a ValueError saying what the file holds instead."""
    import fastnet
    from fastnet.seq2seq import Translator

    model = fastnet.load(path)
    if not isinstance(model, Translator):
        raise ValueError(f"{path!r} holds a {type(model).__name__}, not a Translator; {command} needs a model "
                         f"saved by train-translator or Translator.save")
    return model


def _heading(title):
    print()
    print(title)
    print("-" * len(title))


def demo_text():
    from fastnet.text import AsciiTokenizer

    _heading("1. Text becomes numbers")
    sentence = "CATS ARE CUTE"
    codes = AsciiTokenizer().encode(sentence)
    print(f"The ASCII table gives every character a number: {sentence!r} ->")
    print("  " + " ".join(str(c) for c in codes))
    return codes


def demo_perceptron():
    from fastnet.demo import story

    _heading("2. A perceptron, then layers of them")
    return story.perceptron_story(print=print)


def demo_network():
    from fastnet.demo import story

    _heading("3. Training on batches, checked on a held-out test set")
    return story.network_story(print=print)


def demo_translator(minutes):
    from fastnet.demo.translation import demo_translator as run

    _heading("4. An Encoder and two Decoders: English -> Swedish and Spanish")
    return run(print=print, minutes=minutes)


def demo_pictures(translator, out_dir, minutes):
    from fastnet.demo.pictures import demo_pictures as run

    _heading("5. The same representation, decoded into pixels")
    return run(print=print, out_dir=out_dir, translator=translator, minutes=minutes)


def save_demo_model(translator, out_dir):
    """Save the demo's translator (its Swedish, Spanish and pixel decoders) and say how to serve it."""
    _heading("6. The model, saved to serve")
    path = os.path.join(out_dir, "model.safetensors")
    translator.save(path)
    print(f"Saved the translator with its decoders ({', '.join(translator.decoders)}) to {path}.")
    print("See the whole story in a browser (English in, Swedish, Spanish and a picture out):")
    print(f"  fastnet serve {shlex.quote(path)}")
    return path


# glibc's malloc maps blocks of 128 KiB and more on their own and hands free memory at the top of
# its heap back to the OS; a training step frees and allocates the same megabytes of temporaries
# every step, so each step had the kernel fault in and zero those pages again: 5-7% of a float32
# translator step (perf: clear_page_erms), 3-7% faster without it. The commands that train own
# their process, so they keep freed memory for the next step; the library leaves the allocator alone.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory():
    """Make glibc keep freed blocks (up to 32 MiB each, 256 MiB at the heap's top) for reuse instead of
    returning them to the OS. True when applied; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 256 << 20))


def cmd_demo(args):
    keep_freed_memory()
    start = time.perf_counter()
    demo_text()
    demo_perceptron()
    demo_network()
    translated = demo_translator(args.minutes)
    demo_pictures(translated["translator"], args.out, args.minutes)
    save_demo_model(translated["translator"], args.out)
    print(f"\nThe whole story took {time.perf_counter() - start:.0f} s.")
    return 0


def cmd_config(args):
    import fastnet

    fastnet.show_config()
    return 0


def cmd_train_translator(args):
    from fastnet import distributed
    from fastnet.demo.translation import train_on_pairs

    pairs = list(args.pairs) + list(args.pair_files or [])
    if not pairs:
        raise ValueError("give at least one pair file: PAIRS.tsv or --pairs LANG=PATH")
    keep_freed_memory()
    if distributed.launched_by_mpi():  # `mpirun -n N fastnet train-translator ...`: data-parallel
        if len(pairs) != 1:
            raise ValueError("under mpirun train-translator takes one pair file")
        scores = distributed.train_on_pairs(pairs[0], args.out, minutes=args.minutes, seed=args.seed,
                                            precision=args.precision)
        if scores is None:  # only rank 0 reports
            return 0
    else:
        options = {} if args.language_temperature is None else {"language_temperature": args.language_temperature}
        scores = train_on_pairs(pairs, args.out, minutes=args.minutes, seed=args.seed, tokenizer=args.tokenizer,
                                vocab_size=args.vocab_size, precision=args.precision, **options)
    print(f"saved {args.out}")
    for lang, lang_scores in scores.get("languages", {"": scores}).items():
        print(f"  {lang}:" if lang else "  held-out:")
        for name, value in lang_scores.items():
            if isinstance(value, float):
                print(f"    {name}: {value:.4g}")
            elif isinstance(value, (int, str)):
                print(f"    {name}: {value}")
        _print_samples(lang_scores.get("samples", ()))
    return 0


def _print_samples(samples):
    """A few held-out sentences, what the saved model made of them and the reference: the scores'
    meaning at a glance."""
    if samples:
        print("    held-out samples (English -> translation  [reference]):")
    for source, translation, reference in samples:
        print(f"      {source} -> {translation}  [{reference}]")


def cmd_translate(args):
    model = _load_translator(args.model, "translate")
    if args.int8 and model.quantization != "int8":
        model.quantize("int8")
    to = args.to
    if to is None:  # the model's first language that decodes to text
        to = next((lang for lang in model.languages if model.tokenizers.get(lang) is not None), None)
        if to is None:
            raise ValueError(f"{args.model!r} has no text decoder (languages: {model.languages})")
    elif to not in model.languages:
        raise ValueError(f"--to {to!r}: this model translates to {', '.join(model.languages)}")
    out = model.translate(args.text, to=to, beam=args.beam, n_best=args.n_best)
    for text, line in zip(args.text, out):
        if args.n_best > 1:
            print(text)
            for rank, option in enumerate(line, 1):
                print(f"  {rank}. {option}")
        else:
            print(line)
    return 0


def cmd_serve(args):
    from fastnet.serve import (  # starlette/uvicorn/prometheus-client: the "serve" extra
        Batching,
        Connections,
        run,
    )
    from fastnet.serve.keys import KeyStoreError

    _load_translator(args.model, "serve")  # a clear error before the server starts
    batching = Batching(enabled=not args.no_batching, max_sentences=args.batch_sentences,
                        max_tokens=args.batch_tokens, window_ms=args.batch_window_ms, deadline_s=args.deadline,
                        max_queue=args.max_queue)
    connections = Connections(keep_alive=args.keep_alive, header_timeout=args.header_timeout,
                              body_timeout=args.body_timeout, max_connections=args.max_connections,
                              max_in_flight=args.max_in_flight)
    try:
        return run(args.model, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
                   beam=args.beam, max_beam=args.max_beam, max_n_best=args.max_n_best, max_texts=args.max_texts,
                   max_chars=args.max_chars, max_body_bytes=args.max_body_bytes, batching=batching,
                   connections=connections, keys_db=args.db, require_keys=args.require_keys,
                   quantize="int8" if args.int8 else None, model_process=not args.model_thread)
    except KeyStoreError as err:
        print(f"fastnet serve: error: {err}", file=sys.stderr)
        return 2


def cmd_keys(args):
    from fastnet.serve.keys import KeyStore, KeyStoreError

    try:
        store = KeyStore(args.db, create=args.keys_command == "add")
    except KeyStoreError as err:
        print(f"fastnet keys: error: {err}", file=sys.stderr)
        return 2
    try:
        if args.keys_command == "add":
            key, info = store.add(args.name, args.rpm, args.cpm)
            print(key)
            print(f"added key {info.id} ({info.prefix}...) for {info.name!r}: {info.requests_per_minute} requests and "
                  f"{info.chars_per_minute} characters per minute. Store the key now: only its hash is kept.",
                  file=sys.stderr)
        elif args.keys_command == "list":
            print(f"{'id':>4}  {'prefix':8}  {'name':20}  {'req/min':>8}  {'chars/min':>9}  {'used now':>14}  state")
            for k in store.list():
                used = f"{k.requests_this_minute}r/{k.chars_this_minute}c"
                print(f"{k.id:>4}  {k.prefix:8}  {k.name[:20]:20}  {k.requests_per_minute:>8}  "
                      f"{k.chars_per_minute:>9}  {used:>14}  {'revoked' if k.revoked else 'active'}")
        else:
            info = store.revoke(args.key)
            print(f"revoked key {info.id} ({info.prefix}...) of {info.name!r}")
    finally:
        store.close()
    return 0


def cmd_draw(args):
    from fastnet.image import draw_to_png

    print(draw_to_png(args.model, args.text, args.out, scale=args.scale))
    return 0


# fastnet serve's tuning options, by group: (flag, type, default, help without the default).
_SERVE_LIMITS = (
    ("micro-batching (concurrent requests share one model call)", (
        ("--batch-window-ms", _non_negative(float), 5.0, "longest wait for more requests before a batch runs"),
        ("--batch-sentences", _positive(int), 32, "most sentences in a batch"),
        ("--batch-tokens", _positive(int), 2048, "token budget of a batch: sentences x longest"),
        ("--deadline", _positive(float), 30.0, "seconds a request may wait before 503 + Retry-After"),
        ("--max-queue", _positive(int), 4096, "most sentences waiting; more get 503 overloaded"),
    )),
    ("connections (defaults hold against idle and slow clients)", (
        ("--keep-alive", _positive(float), 5.0, "idle keep-alive seconds"),
        ("--header-timeout", _positive(float), 10.0, "seconds for a request's line and headers to arrive"),
        ("--body-timeout", _positive(float), 30.0, "seconds for a request's body to arrive"),
        ("--max-connections", _positive(int), 1024, "open connections, capped below the file-descriptor limit"),
        ("--max-in-flight", _positive(int), 256, "requests handled at once; more get 503"),
    )),
)


def build_parser():
    parser = _Parser(prog="fastnet", description="A small, fast deep-learning framework for CPUs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="tell the whole story on built-in data (about two minutes)")
    p.add_argument("--minutes", type=_positive(float), default=1.0,
                   help="training budget of the translator and of the pixel decoder (default 1 each)")
    p.add_argument("--out", default="fastnet-demo",
                   help="folder for the pictures, plots and the trained model (default ./fastnet-demo)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config", help="show version, CPU path, OpenMP and threads")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("train-translator", help="train a translator on tab-separated pair files (one per language)")
    p.add_argument("pairs", nargs="*", help="pair file: English<TAB>translation[<TAB>ignored...] per line; the "
                   "language from its name (tatoeba-eng-swe.tsv -> sv) or given as LANG=PATH")
    p.add_argument("--pairs", dest="pair_files", action="append", metavar="LANG=PATH",
                   help="a pair file and its language, e.g. --pairs sv=eng-swe.tsv --pairs es=eng-spa.tsv")
    p.add_argument("--out", required=True, type=writable_file, help="where to save the model (.safetensors)")
    p.add_argument("--minutes", type=_positive(float), default=10.0, help="training time budget (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", choices=("subword", "word"), default="subword",
                   help="subword (SentencePiece, default) or word")
    p.add_argument("--vocab-size", type=_positive(int), default=None,
                   help="subword pieces per language (default 4000)")
    p.add_argument("--language-temperature", type=_temperature, default=None, metavar="T",
                   help="with several languages, each gets batches in proportion to (its pairs) ** (1/T): "
                        "1 in proportion, 5 the many-language recipe, inf (default) equal shares")
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                   help="precision of the matrix products (bf16: bf16 inputs, float32 weights, sums and optimizer; "
                        "faster where the CPU has AVX512-BF16 or AMX); the saved file is float32 either way")
    p.set_defaults(func=cmd_train_translator)

    p = sub.add_parser("translate", help="translate text with a saved translator")
    p.add_argument("model", help="a model saved by train-translator or Translator.save")
    p.add_argument("text", nargs="+", help="one or more sentences")
    p.add_argument("--to", default=None, help="target language (default: the model's first)")
    p.add_argument("--beam", type=BEAM, default=1, help="beam size, 1 to 64 (1 = greedy)")
    p.add_argument("--n-best", type=BEAM, default=1, help="show the N best translations (N <= beam)")
    p.add_argument("--int8", action="store_true", help="quantise the model to int8 first (faster, ~same output)")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("draw", help="draw a picture of an English description with a saved model")
    p.add_argument("model", help="a saved Translator with a pixel decoder")
    p.add_argument("text", help='a description, e.g. "a big red circle"')
    p.add_argument("-o", "--out", default="drawing.png", type=writable_file,
                   help="PNG file to write (default drawing.png)")
    p.add_argument("--scale", type=int_in(1, 64), default=8, help="enlarge every pixel to a scale x scale block")
    p.set_defaults(func=cmd_draw)

    p = sub.add_parser("serve", help="serve a saved translator over HTTP (JSON API, metrics, docs and a web page)")
    p.add_argument("model", help="a saved Translator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=PORT, default=8000, help="TCP port, 0 to 65535 (0: any free port)")
    p.add_argument("--workers", type=_positive(int), default=1, help="processes sharing the port (default 1)")
    p.add_argument("--int8", action="store_true", help="serve the model quantised to int8 (Translator.quantize)")
    p.add_argument("--threads", type=_positive(int), default=None,
                   help="kernel threads per process (default: fastnet's)")
    p.add_argument("--model-thread", action="store_true", help="translate on a thread of the HTTP process instead "
                   "of in a model process beside it (the default: the two never wait for one GIL)")
    p.add_argument("--beam", type=BEAM, default=1, help="default beam size, 1 to 64 (1 = greedy); requests may ask for "
                   "another up to --max-beam")
    p.add_argument("--max-beam", type=_positive(int), default=None, help="largest beam a request may ask for "
                   "(default max(4, --beam))")
    p.add_argument("--max-n-best", type=_positive(int), default=4, help="most alternatives a request may ask for")
    p.add_argument("--max-texts", type=_positive(int), default=64, help="most sentences in one request")
    p.add_argument("--max-chars", type=_positive(int), default=500, help="longest sentence accepted")
    p.add_argument("--max-body-bytes", type=_positive(int), default=65536, help="largest request body accepted")
    for title, options in _SERVE_LIMITS:
        g = p.add_argument_group(title)
        if title.startswith("micro-batching"):
            g.add_argument("--no-batching", action="store_true", help="translate each request alone")
        for flag, kind, default, text in options:
            g.add_argument(flag, type=kind, default=default, help=f"{text} (default {default:g})")
    g = p.add_argument_group("API keys")
    g.add_argument("--db", default=None, help="key database made by `fastnet keys add` (SQLite)")
    g.add_argument("--require-keys", action="store_true", help="answer 401 to requests without a valid key")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("keys", help="API keys of `fastnet serve`: add, list, revoke")
    keys = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    k = keys.add_parser("add", help="make a key (printed once; only its hash is stored)")
    k.add_argument("--db", required=True, help="the key database (SQLite; made if missing)")
    k.add_argument("--name", required=True, help="who the key is for")
    k.add_argument("--rpm", type=_positive(int), default=60, help="requests per minute (default 60)")
    k.add_argument("--cpm", type=_positive(int), default=20000, help="characters per minute (default 20000)")
    k = keys.add_parser("list", help="list keys: id, prefix, name, limits, use this minute")
    k.add_argument("--db", required=True)
    k = keys.add_parser("revoke", help="revoke a key by its id or prefix")
    k.add_argument("key", help="id or prefix from `fastnet keys list`")
    k.add_argument("--db", required=True)
    p.set_defaults(func=cmd_keys)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (OSError, ValueError, KeyError, ImportError) as err:
        print(f"fastnet {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
