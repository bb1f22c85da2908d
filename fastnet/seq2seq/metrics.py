"""Translation scores: exact match here; BLEU and chrF from sacrebleu (install extra "metrics")."""


def sacrebleu_module():
    try:
        import sacrebleu
    except ImportError:
        raise ImportError("BLEU and chrF are computed with sacrebleu, which is not installed: "
                          "pip install fastnet[metrics]  (or: pip install sacrebleu)") from None
    return sacrebleu


def as_reference_lists(refs):
    """Each reference may be one string or a list of acceptable strings."""
    out = []
    for i, ref in enumerate(refs):
        options = [ref] if isinstance(ref, str) else list(ref)
        if not options or not all(isinstance(r, str) for r in options):
            raise ValueError(f"reference {i} must be a string or a non-empty list of strings, got {ref!r}")
        out.append(options)
    return out


def exact_match(hypotheses, refs):
    """Share of hypotheses equal (after stripping whitespace) to one of their references."""
    refs = as_reference_lists(refs)
    if not hypotheses:
        return 0.0
    hits = sum(h.strip() in {r.strip() for r in options} for h, options in zip(hypotheses, refs))
    return hits / len(hypotheses)


def _reference_streams(refs):
    """sacrebleu wants one stream per reference slot; sentences with fewer references repeat their last."""
    refs = as_reference_lists(refs)
    width = max(len(r) for r in refs)
    return [[r[min(j, len(r) - 1)] for r in refs] for j in range(width)]


def bleu(hypotheses, refs):
    return float(sacrebleu_module().corpus_bleu(hypotheses, _reference_streams(refs)).score)


def chrf(hypotheses, refs):
    return float(sacrebleu_module().corpus_chrf(hypotheses, _reference_streams(refs)).score)
