"""The topic catalogue: every topic wattpay reads or writes, declared once (SPEC S2).

Producers, consumers, ``wattpay up`` (which creates them), the replay's files and the tests
all ask this catalogue; no other module spells a topic name. A topic's full name is the
configured prefix (``wattpay.``) followed by its logical ``name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from billing.messages import ACCOUNTS, COMMAND_RESULTS, PAYMENTS, READINGS
from billing.outputs import DLQ, METER_COMMANDS, NOTIFICATIONS, PAYMENT_REQUESTS


class Direction(StrEnum):
    """Who writes a topic: the outside world (``in``), billing (``out``) or wattpay's services."""

    IN = "in"
    OUT = "out"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic: its logical name, the field its messages are keyed by, and where it lives.

    ``partitions`` is ``None`` for the installation's default count. ``replay_file`` is the
    file that stands for the topic in a replay: an input in ``DIR``, an output in ``DIR/out``
    (there with the prefix in front); ``None`` when a replay has no such file.
    """

    name: str
    key: str
    direction: Direction
    content: str
    partitions: int | None = None
    replay_file: str | None = None

    def full_name(self, prefix: str) -> str:
        """The name on the broker."""
        return prefix + self.name

    def file_name(self, prefix: str = "") -> str:
        """The replay file of the topic (``prefix`` only for outputs); raises when it has none."""
        if self.replay_file is None:
            raise ValueError(f"topic {self.name} has no replay file")
        return (prefix if self.direction is not Direction.IN else "") + self.replay_file


IN, OUT, INTERNAL = Direction.IN, Direction.OUT, Direction.INTERNAL

CATALOGUE: tuple[Topic, ...] = (
    Topic(READINGS, "meter_id", IN, "meter readings", replay_file="readings.jsonl"),
    Topic(PAYMENTS, "account_id", IN, "top-ups and redemptions", replay_file="payments.jsonl"),
    Topic(ACCOUNTS, "account_id", IN, "account lifecycle events", replay_file="accounts.jsonl"),
    Topic(
        COMMAND_RESULTS,
        "meter_id",
        IN,
        "relay outcomes from the command executor",
        replay_file="meter-command-results.jsonl",
    ),
    Topic(NOTIFICATIONS, "account_id", OUT, "alerts", replay_file="notifications.jsonl"),
    Topic(METER_COMMANDS, "meter_id", OUT, "relay commands", replay_file="meter-commands.jsonl"),
    Topic(
        PAYMENT_REQUESTS,
        "account_id",
        OUT,
        "auto top-up requests",
        replay_file="payment-requests.jsonl",
    ),
    Topic(DLQ, "original key", OUT, "rejected inputs with their reason", replay_file="dlq.jsonl"),
    Topic("facts", "account_id", INTERNAL, "analytics rows on their way to ClickHouse"),
    Topic("notification-failures", "account_id", INTERNAL, "notifications no channel delivered"),
    Topic("notification-held", "account_id", INTERNAL, "reminders held for quiet hours"),
)
_BY_NAME = {t.name: t for t in CATALOGUE}


def topic(name: str) -> Topic:
    """The catalogue's entry for a logical name; raises ``KeyError`` for a name not in it."""
    return _BY_NAME[name]


# The topics billing reads, in the order S14.1 breaks a tie of timestamps; relay results come
# from the command executor (S13), and live only they confirm a cut (S14.16).
BILLING_INPUTS: tuple[Topic, ...] = tuple(
    topic(name) for name in (ACCOUNTS, PAYMENTS, READINGS, COMMAND_RESULTS)
)
# The messages billing itself emits (one message per event, S2, S7).
BILLING_OUTPUTS: tuple[Topic, ...] = tuple(t for t in CATALOGUE if t.direction is OUT)
READINGS_TOPIC = topic(READINGS)
RESULTS = topic(COMMAND_RESULTS)
COMMANDS = topic(METER_COMMANDS)
NOTICES = topic(NOTIFICATIONS)
FACTS = topic("facts")
FAILURES = topic("notification-failures")
HELD = topic("notification-held")
ACCOUNT_EVENTS = topic(ACCOUNTS)


def names(topics: tuple[Topic, ...] = CATALOGUE) -> list[str]:
    """Logical names, in catalogue order."""
    return [t.name for t in topics]
