"""One way for every command to fail: a one-line `error: ...` on stderr and an exit code, no traceback."""

from __future__ import annotations

import argparse
import difflib
import functools
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, Protocol


class UserError(Exception):
    """Bad input (file, flag, config, checkpoint): the message is shown as one line, exit code 2."""

    exit_code = 2


class RunError(UserError):
    """The run itself failed (non-finite loss, disk full, interrupted): exit code 1 unless set."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class Diverged(RunError):
    """The loss turned inf or nan: the settings, not the machine, failed (a sweep records it)."""


def one_line(msg: object) -> str:
    """Collapse a message to a single line (tracebacks and multi-line errors stay off the terminal)."""
    return " ".join(str(msg).split())


def first_sentence(msg: object, limit: int = 200) -> str:
    """A library's error text cut to its first sentence, and to `limit` characters at a word end."""
    text = one_line(msg)
    m = re.match(r"(.+?)[.!?](?:\s|$)", text)
    text = m.group(1) if m else text.rstrip(".")
    if len(text) > limit:
        text = text[: text.rfind(" ", 0, limit - 4) if " " in text[: limit - 4] else limit - 4]
        text = text.rstrip(" ,;:") + " ..."
    return text


class Main(Protocol):
    """A command's entry point: main(argv=None) -> exit code."""

    def __call__(self, argv: list[str] | None = None) -> int: ...


def cli(main: Callable[[list[str] | None], int]) -> Main:
    """Wrap a command's main(argv) so UserError and Ctrl-C become one line on stderr and an exit code."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {one_line(e)}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        except OSError as e:  # disk full, permissions, a vanished file: the run failed, not a bug
            name = f" ({e.filename})" if e.filename else ""
            print(f"error: {one_line(e.strerror or e)}{name}", file=sys.stderr)
            return 1
        except MemoryError:
            print("error: out of memory (try a smaller model, batch or corpus)", file=sys.stderr)
            return 1

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are UserErrors: one line and exit 2, like every other bad input.

    A long flag may be spelled with `-` or `_` (`--top-k` is `--top_k`), and an unknown flag is
    answered with the closest known one."""

    def __init__(
        self, *args: Any, flag_hint: Callable[[str], str | None] | None = None, **kwargs: Any
    ) -> None:
        """flag_hint(flag): what to write instead of an unknown flag, if the command knows better."""
        self.long_flags: list[str] = []  # before argparse's own --help is added
        self.flag_hint = flag_hint
        super().__init__(*args, **kwargs)

    def add_argument(self, *names: Any, **kwargs: Any) -> argparse.Action:
        """argparse's add_argument, remembering the long flags for respelling and suggestions."""
        self.long_flags += [n for n in names if isinstance(n, str) and n.startswith("--")]
        return super().add_argument(*names, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """argparse's parse_known_args after respelling flags written with the other separator."""
        argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args([self.respell(a) for a in argv], namespace)

    def respell(self, arg: str) -> str:
        """`--top-k` as `--top_k` (or the reverse) when only the other spelling is a flag."""
        flag, eq, value = arg.partition("=")
        if not flag.startswith("--") or flag in self.long_flags:
            return arg
        for twin in ("--" + flag[2:].replace("-", "_"), "--" + flag[2:].replace("_", "-")):
            if twin in self.long_flags:
                return twin + eq + value
        return arg

    def error(self, message: str) -> NoReturn:
        m = re.match(r"unrecognized arguments: (.*)", message)
        if m:
            flags = [f for f in self.long_flags if f != "--help"]
            close: list[str] = []
            for a in (a.partition("=")[0] for a in m.group(1).split() if a.startswith("--")):
                hint = self.flag_hint(a) if self.flag_hint else None
                close += [hint] if hint else difflib.get_close_matches(a, flags, 1)
            if close:
                message += f" (did you mean {' or '.join(close)}?)"
        raise UserError(f"{message} (see {self.prog} --help)")
