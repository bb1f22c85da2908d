"""The story on real text: one English encoder, a Swedish and a Spanish decoder, trained on Tatoeba.

    python examples/real_text_story.py                       # 10 minutes on ../shared/data/
    python examples/real_text_story.py --minutes 2 --max-pairs 5000 --out story-out

It trains English -> Swedish + Spanish together within the time budget (the
recipe of `fastnet train-translator`: SentencePiece subwords, tied embeddings,
EMA weights, the best dev chrF kept), prints the held-out scores, translates a
few sentences into both languages (beam 4, and the 3 best Swedish options of
one), and draws the encoder's representation of real sentences in 2-D: the
sentences of one meaning, however they are worded, land near each other, and
it is that one vector per sentence that both decoders read.
"""
import argparse
import os
import sys

import fastnet as fn
from fastnet.demo import train_on_pairs

# the Tatoeba files: ../shared/data beside the repository, or $FASTNET_DATA
DATA = os.environ.get("FASTNET_DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                                   "data"))

SHOWN = ["I like cats.", "Where is the station?", "Tom doesn't know why.", "We have to go home now.",
         "Can you help me?", "It's raining again."]

# four meanings, each worded three ways: a good encoder puts each group close together
MEANINGS = {
    "cats": ["I like cats.", "I love cats.", "Cats are my favourite animals."],
    "station": ["Where is the station?", "How do I get to the station?", "Is the station far from here?"],
    "rain": ["It's raining.", "It is raining again.", "The rain hasn't stopped."],
    "hungry": ["I'm hungry.", "I want something to eat.", "I haven't eaten anything today."],
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swedish", default=os.path.join(DATA, "tatoeba-eng-swe.tsv"))
    parser.add_argument("--spanish", default=os.path.join(DATA, "tatoeba-eng-spa.tsv"))
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget (default 10)")
    parser.add_argument("--max-pairs", type=int, default=None, help="use about this many pairs per file (quick runs)")
    parser.add_argument("--out", default="real-text-story", help="folder for the model and the plot")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in (args.swedish, args.spanish):
        if not os.path.exists(path):
            sys.exit(f"pair file not found: {path} (give --swedish/--spanish)")
    os.makedirs(args.out, exist_ok=True)
    model = os.path.join(args.out, "en-sv-es.safetensors")

    print(f"Training English -> Swedish + Spanish for {args.minutes:g} minutes (one encoder, two decoders)...")
    result = train_on_pairs({"sv": args.swedish, "es": args.spanish}, model, minutes=args.minutes, seed=args.seed,
                            max_pairs=args.max_pairs, verbose=0)
    for lang, scores in result["languages"].items():
        print(f"  held-out {lang}: chrF {scores['chrf']:.1f}  BLEU {scores['bleu']:.1f}  "
              f"({scores['n_test']} sentences, trained on {scores['n_train']} pairs)")

    tr = fn.load(model)
    translations = {lang: tr.translate(SHOWN, to=lang, beam=4) for lang in ("sv", "es")}
    print("\nThe same English, read by both decoders:")
    for i, sentence in enumerate(SHOWN):
        print(f"  {sentence}\n    sv: {translations['sv'][i]}\n    es: {translations['es'][i]}")
    options = tr.translate(SHOWN[0], to="sv", beam=4, n_best=3)
    print(f"\nThe 3 best Swedish translations of {SHOWN[0]!r}: " + " | ".join(options))

    sentences = [s for group in MEANINGS.values() for s in group]
    plot = os.path.join(args.out, "representations.png")
    try:
        fn.plot.representations(tr, sentences, plot, to_csv=os.path.join(args.out, "representations.csv"),
                                title="Real sentences: one meaning, three wordings, close together")
        print(f"\nThe representation plot: {plot}")
    except ImportError as exc:  # matplotlib is the "plot" extra
        print(f"\n(no plot: {exc})")
    return {"result": result, "translations": translations, "options": options, "model": model, "plot": plot}


if __name__ == "__main__":
    main()
