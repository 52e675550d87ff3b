"""Reading the editable TOML tables (categories, mailbox providers): one error type, one reader."""

from __future__ import annotations

import tomllib
from os import PathLike
from typing import Any


class TableError(ValueError):
    """A table file is unreadable or has a bad entry; the message names the file and the key."""


def read_toml(path: str | PathLike[str]) -> dict[str, Any]:
    name = str(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise TableError(f"{name}: file not found") from None
    except OSError as exc:
        raise TableError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TableError(f"{name}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise TableError(f"{name}: not valid UTF-8 (byte {exc.start})") from None
