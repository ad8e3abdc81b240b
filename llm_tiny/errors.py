"""One way for every command to fail: a one-line `error: ...` on stderr and an exit code, no traceback."""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Callable
from typing import NoReturn, Protocol


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
    """argparse whose usage errors are UserErrors: one line and exit 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")
