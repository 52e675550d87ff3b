"""Option values of the plain kinds coerced without pydantic: a leaner start for every command.

Typer 0.29 coerces every option's and argument's value through a pydantic ``TypeAdapter``,
built on first use: a run imports pydantic and builds one adapter per parameter it sees, ~0.2 s
of CPU at every start of ``streamer classify`` (more than the native loop spends on 100k response
lines). The values streamer's parameters take are mostly of plain kinds whose coercion is
known: a string, a flag, ASCII digits within the option's range, a path, a list of those. Those
are coerced here to exactly what the adapter returns (the path checks are typer's own); any
other value (another type, an error to report) still goes to typer's adapter, so messages and
exit statuses stay typer's. ``tests/test_cli_coercion.py`` holds this to the adapter's results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
from typer._param_types import coerce_cli_path
from typer.core import _TyperParameter
from typer.models import ParameterInfo

#: What a plain coercion returns for a value it leaves to typer's adapter.
NOT_PLAIN: Any = object()
#: Integers coerced here have at most this many digits (any such string is an ``int``).
_MAX_DIGITS = 18

Coerce = Callable[[Any, ParameterInfo, Any, Any], Any]


def _str(value: Any, info: ParameterInfo, param: Any, ctx: Any) -> Any:
    return value if type(value) is str else NOT_PLAIN


def _bool(value: Any, info: ParameterInfo, param: Any, ctx: Any) -> Any:
    return value if type(value) is bool else NOT_PLAIN


def _int(value: Any, info: ParameterInfo, param: Any, ctx: Any) -> Any:
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
        number = int(value)
    elif type(value) is int:
        number = value
    else:
        return NOT_PLAIN
    if info.clamp or (info.min is not None and number < info.min):
        return NOT_PLAIN  # typer's message (or clamping)
    if info.max is not None and number > info.max:
        return NOT_PLAIN
    return number


def _path(value: Any, info: ParameterInfo, param: Any, ctx: Any) -> Any:
    if type(value) is not str or info.path_type is not None:  # str or bytes: typer's
        return NOT_PLAIN
    # the adapter makes Path(value), then typer checks it (exists, file_okay...): the same call
    return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)


def _list_of(item: Coerce) -> Coerce:
    def coerce(value: Any, info: ParameterInfo, param: Any, ctx: Any) -> Any:
        if type(value) not in (tuple, list):
            return NOT_PLAIN
        items = [item(v, info, param, ctx) for v in value]
        return NOT_PLAIN if any(i is NOT_PLAIN for i in items) else items

    return coerce


_LEAVES: dict[Any, Coerce] = {str: _str, bool: _bool, int: _int, Path: _path}


def plain_coercion(descriptor: TypeDescriptor) -> Coerce | None:
    """The plain coercion of a parameter's values, if its type has one."""
    info = descriptor.parameter_info
    if descriptor.is_file or info.parser is not None:
        return None
    annotation: Any = descriptor.annotation
    if get_origin(annotation) is list:
        (item,) = get_args(annotation) or (None,)
        leaf = _LEAVES.get(item)
        return _list_of(leaf) if leaf is not None else None
    return _LEAVES.get(annotation)


@dataclass(frozen=True)
class PlainRuntimeParam(RuntimeParam):
    """Coerces plain values itself and hands any other to typer's own runtime parameter."""

    plain: Coerce
    descriptor: TypeDescriptor

    def _coerce_value(self, value: Any, param: _TyperParameter, ctx: Any) -> Any:
        done = self.plain(value, self.parameter_info, param, ctx)
        if done is not NOT_PLAIN:
            return done
        typer_own = build_runtime_param(self.descriptor)
        return typer_own._coerce_value(value, param=param, ctx=ctx)


def install() -> None:
    """Make every typer parameter coerce plain values without pydantic."""
    if getattr(_TyperParameter.get_runtime_param, "plain", False):
        return

    def get_runtime_param(self: _TyperParameter) -> RuntimeParam:
        if self._runtime_param is None:
            descriptor = self.type_descriptor
            plain = plain_coercion(descriptor)
            self._runtime_param = (
                build_runtime_param(descriptor)
                if plain is None
                else PlainRuntimeParam(
                    descriptor.parameter_info, descriptor.annotation, plain, descriptor
                )
            )
        return self._runtime_param

    get_runtime_param.plain = True  # type: ignore[attr-defined]
    _TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]
