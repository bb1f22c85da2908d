"""``load_pairs``: read a tab-separated file of sentence pairs.

The layout is the one of the Tatoeba / Anki ("manythings") files: one pair a
line, source and translation separated by a tab, any further columns (the
attribution) ignored.
"""
import os
import stat

__all__ = ["load_pairs"]


def _open_pair_file(path):
    """The file opened for reading, without ever blocking on a FIFO nobody writes to.

    A FIFO is opened non-blocking, then read blocking: with a writer (a shell's
    `<(zcat pairs.tsv.gz)`) it streams as usual, without one it reads as empty
    at once. Devices (/dev/zero would be one endless line) are refused.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    kind = os.fstat(fd).st_mode
    if stat.S_ISCHR(kind) or stat.S_ISBLK(kind) or stat.S_ISSOCK(kind):
        os.close(fd)
        raise ValueError(f"pair file {path} is a device or socket, not a file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _check_columns(columns):
    try:
        src_col, tgt_col = (int(c) for c in columns)
    except (TypeError, ValueError):
        raise ValueError(f"columns must be two column numbers, got {columns!r}") from None
    if src_col < 0 or tgt_col < 0 or src_col == tgt_col:
        raise ValueError(f"columns must be two different non-negative numbers, got {columns!r}")
    return src_col, tgt_col


def _length(text, unit):
    return len(text.split()) if unit == "words" else len(text)


def load_pairs(path, max_len=None, dedupe=True, columns=(0, 1), unit="words"):
    """Read (sources, targets) from a UTF-8, tab-separated pair file.

    - ``columns``: which two columns hold the source and the target.
    - Blank lines are skipped; surrounding spaces of each side are stripped.
    - ``dedupe``: keep only the first occurrence of each exact (source,
      target) pair; a sentence with several different translations keeps all
      of them.
    - ``max_len``: drop pairs where either side is longer than this many
      ``unit``\\ s -- "words" (whitespace-separated, the default) or "chars".

    A line with too few columns or an empty side raises ValueError naming the
    file and the line number, as does a line that is not valid UTF-8. A
    missing file raises FileNotFoundError.
    """
    src_col, tgt_col = _check_columns(columns)
    if unit not in ("words", "chars"):
        raise ValueError(f"unit must be 'words' or 'chars', got {unit!r}")
    if max_len is not None and (int(max_len) != max_len or max_len < 1):
        raise ValueError(f"max_len must be a positive integer or None, got {max_len!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"pair file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"pair file is a directory: {path}")

    n_needed = max(src_col, tgt_col) + 1
    sources, targets, seen = [], [], set()
    with _open_pair_file(path) as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"{path}, line {line_no}: not valid UTF-8 ({exc.reason} at byte "
                    f"{exc.start} of the line)") from None
            if line_no == 1:
                line = line.removeprefix("\ufeff")
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < n_needed:
                raise ValueError(
                    f"{path}, line {line_no}: expected at least {n_needed} tab-separated "
                    f"columns, found {len(fields)}: {line[:80]!r}")
            source, target = fields[src_col].strip(), fields[tgt_col].strip()
            if not source or not target:
                side = "source" if not source else "target"
                raise ValueError(f"{path}, line {line_no}: the {side} side is empty: {line[:80]!r}")
            if max_len is not None and (
                    _length(source, unit) > max_len or _length(target, unit) > max_len):
                continue
            if dedupe:
                if (source, target) in seen:
                    continue
                seen.add((source, target))
            sources.append(source)
            targets.append(target)
    return sources, targets
