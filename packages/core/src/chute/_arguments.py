"""Encoding a task's arguments in the producer and decoding them in the worker.

Both sides use the same msgspec type, built once per task from its signature and type hints:
a struct with one field per parameter. The producer encodes the bound arguments and decodes
them back through that type before publishing, so a value the worker would reject is refused
at enqueue time, with the task, the parameter and the expected type in the message.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import msgspec

from chute.errors import ArgumentError, ConfigurationError

__all__ = ["ArgumentCodec", "Injected"]

_encoder = msgspec.msgpack.Encoder()
_any_decoder = msgspec.msgpack.Decoder()


class Injected:
    """Base of default-value markers for parameters the worker fills, not the producer."""

    __slots__ = ()


def _param_of(path: str) -> str | None:
    match = re.match(r"\$\.([A-Za-z_][A-Za-z0-9_]*)", path)
    return match.group(1) if match else None


def _custom_types(info: object, seen: set[int] | None = None) -> list[type]:
    """Types inside ``info`` that msgspec would need hooks for."""
    seen = set() if seen is None else seen
    if id(info) in seen:
        return []
    seen.add(id(info))
    if isinstance(info, msgspec.inspect.CustomType):
        return [info.cls]
    found: list[type] = []
    if isinstance(info, (list, tuple)):
        for item in info:  # pyright: ignore[reportUnknownVariableType]
            found += _custom_types(item, seen)  # pyright: ignore[reportUnknownArgumentType]
    elif isinstance(info, (msgspec.inspect.Type, msgspec.inspect.Field)):
        for name in info.__struct_fields__:
            found += _custom_types(getattr(info, name), seen)
    return found


class ArgumentCodec:
    """Encodes and decodes the arguments of one task function."""

    def __init__(self, task: str, fn: Callable[..., Any]) -> None:
        self.task = task
        signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:
            raise ConfigurationError(
                f"task {task!r}: cannot resolve its type hints: {exc}"
            ) from exc
        self.injected: dict[str, Injected] = {}
        params: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            if isinstance(p.default, Injected):
                self.injected[p.name] = p.default
            else:
                params.append(p)
        #: The signature the producer sees: the function's, minus injected parameters.
        self.signature = signature.replace(parameters=params)
        self.return_type: Any = hints.get("return", Any)

        fields: list[tuple[str, Any, Any]] = []
        for p in params:
            hint = hints.get(p.name, Any)
            if p.kind is p.VAR_POSITIONAL:
                fields.append((p.name, tuple[hint, ...], ()))
            elif p.kind is p.VAR_KEYWORD:
                fields.append((p.name, dict[str, hint], {}))
            else:
                fields.append((p.name, hint | msgspec.UnsetType, msgspec.UNSET))
        struct = msgspec.defstruct(
            f"{task}.params", fields, kw_only=True, forbid_unknown_fields=True
        )
        try:
            self._decoder = msgspec.msgpack.Decoder(struct)
            custom = _custom_types(msgspec.inspect.type_info(struct))
        except TypeError as exc:
            raise ConfigurationError(
                f"task {task!r}: its type hints cannot be encoded by msgspec: {exc}"
            ) from exc
        if custom:
            names = ", ".join(sorted({getattr(c, "__qualname__", repr(c)) for c in custom}))
            raise ConfigurationError(
                f"task {task!r}: its type hints cannot be encoded by msgspec: {names} is not "
                "a supported type (use builtins, dataclasses, msgspec Structs, TypedDicts, "
                "enums, datetimes, UUIDs, Decimals, or containers of them)"
            )
        self._names = [name for name, _, _ in fields]
        # The common case calls fn(**params); positional-only and variadic parameters need
        # inspect's help to rebuild the call.
        self._by_keyword = all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)

    def _fail(self, message: str, parameter: str | None = None) -> ArgumentError:
        return ArgumentError(f"task {self.task!r}: {message}", task=self.task, parameter=parameter)

    def encode(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
        """Bind, encode and validate arguments; the bytes are the envelope's ``params``.

        Raises:
            ArgumentError: the call does not fit the signature, or a value does not fit a hint.
        """
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise self._fail(str(exc)) from None
        arguments = bound.arguments
        try:
            data = _encoder.encode(arguments)
        except (TypeError, ValueError, OverflowError) as exc:
            name = self._unencodable(arguments)
            raise self._fail(f"parameter {name!r}: {exc}", name) from None
        self.decode_params(data)
        return data

    def _unencodable(self, arguments: Mapping[str, Any]) -> str | None:
        for name, value in arguments.items():
            try:
                _encoder.encode(value)
            except (TypeError, ValueError, OverflowError):
                return name
        return None

    def decode_params(self, data: bytes | msgspec.Raw) -> dict[str, Any]:
        """Decode ``params`` bytes into the hinted types, by parameter name.

        Raises:
            ArgumentError: a value does not fit its parameter's type hint.
        """
        try:
            struct = self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            text = str(exc)
            message, _, path = text.rpartition(" - at `")
            path = path.rstrip("`")
            name = _param_of(path)
            if name is None:
                raise self._fail(text) from None
            where = "" if path == f"$.{name}" else f" (at `{path}`)"
            raise self._fail(f"parameter {name!r}{where}: {message}", name) from None
        except msgspec.DecodeError as exc:
            raise self._fail(f"arguments are not valid msgpack: {exc}") from None
        return {
            name: value
            for name in self._names
            if (value := getattr(struct, name)) is not msgspec.UNSET
        }

    def decode_loose(
        self, args: bytes | msgspec.Raw | None, kwargs: bytes | msgspec.Raw | None
    ) -> dict[str, Any]:
        """Decode arguments sent by a producer that did not know the signature."""
        try:
            positional: object = _any_decoder.decode(args) if args else []
            keywords: object = _any_decoder.decode(kwargs) if kwargs else {}
        except msgspec.DecodeError as exc:
            raise self._fail(f"arguments are not valid msgpack: {exc}") from None
        if not isinstance(positional, list) or not isinstance(keywords, dict):
            raise self._fail("args must be an array and kwargs a map")
        return self.decode_params(
            self.encode(cast(list[Any], positional), cast(dict[str, Any], keywords))
        )

    def call_args(self, params: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments to call the function with."""
        if self._by_keyword:
            return (), params
        bound = inspect.BoundArguments(self.signature, params)
        return bound.args, bound.kwargs
