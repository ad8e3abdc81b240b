"""What a file given as a checkpoint really is, told without running any of it.

`--ckpt` gets the wrong path more often than a hostile one: the run's folder, its config.yaml, the corpus.
Each gets a line that says what it is and what to give instead; a pickle that would run code when loaded
is named as such, with the callable it asks for (read by `pickletools`, which executes nothing).
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
PICKLE_PROTO = 0x80  # a pickle of protocol 2 or later starts with PROTO (torch's legacy format too)
CKPT_NAMES = ("ckpt_best.pt", "ckpt_last.pt")


def run_checkpoints(folder: Path) -> list[Path]:
    """The checkpoints a run folder holds, best first."""
    return [folder / n for n in CKPT_NAMES if (folder / n).is_file()]


def missing_hint(p: Path) -> str:
    """What to do about a checkpoint path that does not exist: the run's other checkpoint, or train it."""
    others = run_checkpoints(p.parent)
    if others:
        return f" (the run holds {', '.join(str(o) for o in others)})"
    return (
        f"; no run has been trained into {p.parent} yet: train it first "
        "(python -m llm_tiny.train CONFIG, or make train CFG=CONFIG, which writes runs/<config name>/)"
    )


def not_a_checkpoint(p: Path) -> str | None:
    """Why p is plainly not a checkpoint (a folder, text, neither zip nor pickle), or None if it may be one."""
    if p.is_dir():
        held = run_checkpoints(p)
        if held:
            return f"{p} is a run folder, not a checkpoint: give --ckpt {held[0]}"
        return f"{p} is a folder, not a checkpoint file"
    with open(p, "rb") as f:
        head = f.read(4096)
    if head.startswith(ZIP_MAGIC) or head[:1] == bytes([PICKLE_PROTO]):
        return None
    if is_text(head):
        held = [c for c in run_checkpoints(p.parent) if c != p]
        hint = f": give --ckpt {held[0]}" if held else ""
        return f"{p} is not a checkpoint: it is a text file{hint}"
    return f"{p} is not a checkpoint: neither a torch archive nor a pickle"


def is_text(head: bytes) -> bool:
    """Whether bytes read from the start of a file look like UTF-8 text (a cut last character is fine)."""
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(head) - 3  # only the read cut a character short
    return True


SAFE_CALLS = ("torch.", "collections.OrderedDict")  # what torch.save itself writes


def pickle_calls(p: Path) -> list[str]:
    """The callables (module.name) a pickle file, or the pickle inside a torch archive, asks for,
    beyond those torch.save itself writes."""
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            names = [n for n in z.namelist() if n.endswith("data.pkl")]
            data = z.read(names[0]) if names else b""
    else:
        data = p.read_bytes()
    calls: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if isinstance(arg, str):
                strings.append(arg)
            if op.name == "GLOBAL" and isinstance(arg, str):
                calls.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                calls.append(f"{strings[-2]}.{strings[-1]}")
    except (ValueError, EOFError, KeyError, IndexError):
        pass  # a damaged pickle: what was read so far is the answer
    return [c for c in calls if not c.startswith(SAFE_CALLS)]
