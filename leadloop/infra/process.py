"""How leadloop's short-lived commands end: with their exit code and their output, past the interpreter's teardown.

A process that used a Temporal client can abort while Python finalizes: the SDK's Rust threads call into an
interpreter that is going away ("Fatal Python error: PyGILState_Release", SIGABRT; sdk-python issue 300).
Seen here as `leadloop status` and `scripts/ui_screenshot.py` of an unknown lead exiting -6 instead of 1.
Every command has finished its work and closed what it opened when its main function returns, so the
output is flushed and the process leaves at once with the command's own exit code.
"""

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Flush what was written and leave with `code`, skipping the interpreter's teardown."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (`leadloop list | head -1`), a closed stream
            pass
    os._exit(code)


def run_and_exit(main: Callable[[], object]) -> NoReturn:
    """Run a command's main function, then `exit_now` with its exit code.

    The code is what it returns (an int; None is 0) or what it raises with SystemExit (a message string
    is printed to stderr and is 1); an error nothing caught is shown as Python would show it, and is 1.
    """
    try:
        result = main()
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
        code = 1
    exit_now(code)
