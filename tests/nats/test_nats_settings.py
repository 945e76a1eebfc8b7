"""URL options, queue names and plugin registration (no server needed)."""

from __future__ import annotations

import pytest

import chute_nats
from chute.errors import BrokerError, ConfigurationError
from chute.plugins import broker_from_url
from chute_nats import NatsBroker
from chute_nats._settings import check_queue, consumer_name, parse

pytestmark = pytest.mark.nats


def test_public_names() -> None:
    assert chute_nats.__all__ == sorted(chute_nats.__all__) == ["NatsBroker", "NatsStore"]


@pytest.mark.parametrize("scheme", ["nats", "tls"])
def test_both_schemes_find_the_broker_through_its_entry_point(scheme: str) -> None:
    broker = broker_from_url(f"{scheme}://127.0.0.1:4222")
    assert isinstance(broker, NatsBroker)
    assert broker.settings.servers == [f"{scheme}://127.0.0.1:4222"]


def test_defaults() -> None:
    settings = parse("nats://localhost:4222", {})
    assert settings.jetstream is True
    assert settings.namespace == "chute"
    assert settings.stream == "CHUTE"
    assert settings.stream_subjects == ["chute.q.>", "chute.d.>"]
    assert settings.ack_wait == 30.0
    assert (settings.storage, settings.replicas) == ("file", 1)


def test_query_options_and_keywords_keywords_win() -> None:
    settings = parse(
        "nats://a:1,b:2?jetstream=false&namespace=jobs&ack_wait=2.5&storage=memory",
        {"namespace": "other", "replicas": 3},
    )
    assert settings.servers == ["nats://a:1", "nats://b:2"]
    assert settings.jetstream is False
    assert settings.namespace == "other"
    assert settings.ack_wait == 2.5
    assert (settings.storage, settings.replicas) == ("memory", 3)


def test_credentials_reach_every_server_but_never_a_message() -> None:
    broker = NatsBroker("nats://bob:s3cret@a:1,b:2")
    assert broker.settings.servers == ["nats://bob:s3cret@a:1", "nats://bob:s3cret@b:2"]
    assert "s3cret" not in repr(broker)
    with pytest.raises(BrokerError) as caught:
        check_queue(broker.settings, "bad name")
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "options", "complaint"),
    [
        ("redis://localhost", {}, "not a NATS URL"),
        ("nats://localhost?colour=blue", {}, "unknown NATS broker option 'colour'"),
        ("nats://localhost?ack_wait=soon", {}, "not a float"),
        ("nats://localhost", {"ack_wait": 0}, "must be more than 0"),
        ("nats://localhost?jetstream=maybe", {}, "not a boolean"),
        ("nats://localhost?namespace=Has.Dots", {}, "namespace"),
        ("nats://localhost?storage=tape", {}, "storage"),
    ],
)
def test_bad_configuration_is_refused_clearly(
    url: str, options: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        NatsBroker(url, **options)


@pytest.mark.parametrize("queue", ["default", "mail.bulk", "a-b_c.d", "default.dead"])
def test_dotted_queue_names_are_fine(queue: str) -> None:
    check_queue(parse("nats://localhost", {}), queue)


@pytest.mark.parametrize("queue", ["", "a..b", ".a", "a.", "a b", "a*", "a.>", "ü", "x" * 201])
def test_queue_names_that_are_not_subjects_are_refused(queue: str) -> None:
    with pytest.raises(BrokerError, match="queue name"):
        check_queue(parse("nats://localhost", {}), queue)


def test_consumer_names_keep_distinct_queues_distinct() -> None:
    queues = ["a.b", "a_b", "a_db", "a._b", "a__b", "a.d.b", "a_d.b"]
    names = {consumer_name("q", q) for q in queues}
    assert len(names) == len(queues)
    assert all("." not in name for name in names)
