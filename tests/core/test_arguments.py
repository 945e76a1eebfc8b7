"""Arguments: checked at enqueue in the producer, decoded into the hinted types in the worker."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

import msgspec
import pytest

import chute
from chute._arguments import ArgumentCodec
from chute.brokers import MemoryBroker

pytestmark = pytest.mark.memory


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Address:
    city: str
    zip: str


class Order(msgspec.Struct):
    id: int
    amount: Decimal
    placed: dt.datetime


def roundtrip(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    codec = ArgumentCodec("t", fn)
    return codec.decode_params(codec.encode(args, kwargs))


def test_rich_types_arrive_as_their_hinted_types() -> None:
    def task(
        order: Order, where: Address, color: Color, ref: uuid.UUID, day: dt.date,
        tags: set[str], note: str | None = None,
    ) -> None: ...  # fmt: skip

    placed = dt.datetime(2026, 11, 1, 12, 30, tzinfo=dt.UTC)
    ref = uuid.uuid4()
    params = roundtrip(
        task, Order(1, Decimal("9.99"), placed), Address("Lyon", "69001"), Color.BLUE, ref,
        dt.date(2026, 1, 2), {"a", "b"},
    )  # fmt: skip
    assert params == {
        "order": Order(1, Decimal("9.99"), placed),
        "where": Address("Lyon", "69001"),
        "color": Color.BLUE,
        "ref": ref,
        "day": dt.date(2026, 1, 2),
        "tags": {"a", "b"},
    }


def test_wrong_type_names_task_parameter_and_expected_type() -> None:
    app = chute.App(MemoryBroker())

    @app.task(name="send_email")
    async def send_email(to: str, retries: int) -> None: ...

    with pytest.raises(chute.ArgumentError) as info:
        send_email.call("a@b.c", retries="three")  # type: ignore[arg-type]
    err = info.value
    assert err.task == "send_email"
    assert err.parameter == "retries"
    assert "send_email" in str(err)
    assert "'retries'" in str(err)
    assert "int" in str(err)


def test_nested_errors_say_where_inside_the_parameter() -> None:
    def task(where: Address) -> None: ...

    with pytest.raises(chute.ArgumentError) as info:
        roundtrip(task, {"city": "Lyon", "zip": 69001})
    assert info.value.parameter == "where"
    assert "$.where.zip" in str(info.value)


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ((), {}, "missing a required argument: 'x'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1,), {"nope": 2}, "unexpected keyword argument 'nope'"),
    ],
)
def test_call_shape_errors(args: tuple[Any, ...], kwargs: dict[str, Any], fragment: str) -> None:
    def task(x: int, y: int = 0) -> None: ...

    with pytest.raises(chute.ArgumentError, match=fragment):
        roundtrip(task, *args, **kwargs)


def test_unencodable_value_names_the_parameter() -> None:
    def task(x: int, thing: Any) -> None: ...

    with pytest.raises(chute.ArgumentError) as info:
        roundtrip(task, 1, object())
    assert info.value.parameter == "thing"


def test_variadic_and_positional_only_parameters() -> None:
    def task(a: int, /, b: int, *rest: int, flag: bool = False, **extra: str) -> None: ...

    codec = ArgumentCodec("t", task)
    params = codec.decode_params(codec.encode((1, 2, 3, 4), {"flag": True, "k": "v"}))
    assert params == {"a": 1, "b": 2, "rest": (3, 4), "flag": True, "extra": {"k": "v"}}
    assert codec.call_args(params) == ((1, 2, 3, 4), {"flag": True, "k": "v"})
    with pytest.raises(chute.ArgumentError) as info:
        codec.encode((1, 2, "x"), {})
    assert info.value.parameter == "rest"


def test_defaults_are_applied_by_the_function_not_the_wire() -> None:
    def task(x: int, y: int = 5) -> None: ...

    assert roundtrip(task, 1) == {"x": 1}


def test_loose_arguments_from_a_producer_without_the_code() -> None:
    def task(day: dt.date, n: int = 1) -> None: ...

    codec = ArgumentCodec("t", task)
    encode = msgspec.msgpack.encode
    params = codec.decode_loose(encode(["2026-03-04"]), encode({"n": 3}))
    assert params == {"day": dt.date(2026, 3, 4), "n": 3}
    with pytest.raises(chute.ArgumentError):
        codec.decode_loose(encode(["not a date"]), None)


class Opaque:
    pass


def test_unsupported_hint_fails_at_registration() -> None:
    app = chute.App(MemoryBroker())
    with pytest.raises(chute.ConfigurationError, match="type hints cannot be encoded"):

        @app.task
        def task(x: Opaque) -> None: ...
