"""The `fastnet` command: the demo, training and using a translator, config."""
import argparse
import sys
import time


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
    from fastnet import story

    _heading("2. A perceptron, then layers of them")
    return story.perceptron_story(print=print)


def demo_network():
    from fastnet import story

    _heading("3. Training on batches, checked on a held-out test set")
    return story.network_story(print=print)


def demo_translator(minutes):
    from fastnet.seq2seq import demo_translator as run

    _heading("4. An Encoder and two Decoders: English -> Swedish and Spanish")
    return run(print=print, minutes=minutes)


def demo_pictures(translator, out_dir, minutes):
    from fastnet.image import demo_pictures as run

    _heading("5. The same representation, decoded into pixels")
    return run(print=print, out_dir=out_dir, translator=translator, minutes=minutes)


def save_demo_model(translator, out_dir):
    """Save the demo's translator (its Swedish, Spanish and pixel decoders) and say how to serve it."""
    import os
    import shlex

    _heading("6. The model, saved to serve")
    path = os.path.join(out_dir, "model.safetensors")
    translator.save(path)
    print(f"Saved the translator with its decoders ({', '.join(translator.decoders)}) to {path}.")
    print("See the whole story in a browser (English in, Swedish, Spanish and a picture out):")
    print(f"  fastnet serve {shlex.quote(path)}")
    return path


def cmd_demo(args):
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
    from fastnet.seq2seq import train_on_pairs

    if distributed.launched_by_mpi():  # `mpirun -n N fastnet train-translator ...`: data-parallel
        scores = distributed.train_on_pairs(args.pairs, args.out, minutes=args.minutes, seed=args.seed)
        if scores is None:  # only rank 0 reports
            return 0
    else:
        scores = train_on_pairs(args.pairs, args.out, minutes=args.minutes, seed=args.seed)
    print(f"saved {args.out}")
    for name, value in scores.items():
        if isinstance(value, float):
            print(f"  {name}: {value:.4g}")
        elif isinstance(value, (int, str)):
            print(f"  {name}: {value}")
    return 0


def cmd_translate(args):
    import fastnet

    model = fastnet.load(args.model)
    for line in model.translate(args.text, to=args.to, beam=args.beam):
        print(line)
    return 0


def cmd_serve(args):
    from fastnet.serve import run  # starlette/uvicorn are the "serve" extra

    run(args.model, host=args.host, port=args.port, threads=args.threads, beam=args.beam,
        max_texts=args.max_texts, max_chars=args.max_chars, max_body_bytes=args.max_body_bytes)
    return 0


def cmd_draw(args):
    from fastnet.image import draw_to_png

    print(draw_to_png(args.model, args.text, args.out, scale=args.scale))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="fastnet", description="A small, fast deep-learning framework for CPUs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="tell the whole story on built-in data (about two minutes)")
    p.add_argument("--minutes", type=float, default=1.0,
                   help="training budget of the translator and of the pixel decoder (default 1 each)")
    p.add_argument("--out", default="fastnet-demo", help="folder for the pictures, plots and the trained model (default ./fastnet-demo)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config", help="show version, CPU path, OpenMP and threads")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("train-translator", help="train a translator on a tab-separated pair file")
    p.add_argument("pairs", help="pair file: source<TAB>target[<TAB>ignored...] per line")
    p.add_argument("--out", required=True, help="where to save the model (.safetensors)")
    p.add_argument("--minutes", type=float, default=10.0, help="training time budget (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train_translator)

    p = sub.add_parser("translate", help="translate text with a saved translator")
    p.add_argument("model", help="a model saved by train-translator or Translator.save")
    p.add_argument("text", nargs="+", help="one or more sentences")
    p.add_argument("--to", default=None, help="target language (default: the model's first)")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("draw", help="draw a picture of an English description with a saved model")
    p.add_argument("model", help="a saved Translator with a pixel decoder")
    p.add_argument("text", help='a description, e.g. "a big red circle"')
    p.add_argument("-o", "--out", default="drawing.png", help="PNG file to write (default drawing.png)")
    p.add_argument("--scale", type=int, default=8, help="enlarge every pixel to a scale x scale block")
    p.set_defaults(func=cmd_draw)

    p = sub.add_parser("serve", help="serve a saved translator over HTTP (JSON API and a web page)")
    p.add_argument("model", help="a saved Translator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=None, help="kernel threads (default: fastnet's default)")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    p.add_argument("--max-texts", type=int, default=64, help="most sentences in one request")
    p.add_argument("--max-chars", type=int, default=500, help="longest sentence accepted")
    p.add_argument("--max-body-bytes", type=int, default=65536, help="largest request body accepted")
    p.set_defaults(func=cmd_serve)
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
