"""Contact fields of account events: one reading for billing, the monthly job and notify."""

import json

import polars as pl

from billing.contacts import contact_fields
from jobs.notices import contacts
from notify.directory import AccountDirectory


def test_open_and_update_set_contact_fields_and_nothing_else_does() -> None:
    opened = {"type": "open", "account_id": "A1", "phone": "138", "email": "a@b.cn", "plan": "x"}
    assert contact_fields(opened) == {"phone": "138", "email": "a@b.cn"}
    assert contact_fields({"type": "update", "locale": "en", "phone": None}) == {"locale": "en"}
    assert contact_fields({"type": "close", "phone": "139"}) == {}
    assert contact_fields({"type": "update", "email": 7, "locale": ["en"]}) == {}


def test_the_monthly_job_and_the_notify_directory_read_the_same_latest_values() -> None:
    events = [
        {"type": "open", "account_id": "A1", "phone": "138", "email": "old@x.cn"},
        {"type": "update", "account_id": "A1", "email": "new@x.cn", "locale": "en"},
        {"type": "close", "account_id": "A1", "email": "closed@x.cn"},
    ]
    frame = pl.DataFrame(
        {
            "account_id": ["A1"] * 3,
            "type": [e["type"] for e in events],
            "us": [1, 2, 3],
            "payload": [json.dumps(e) for e in events],
        }
    )
    assert contacts(frame) == {"A1": {"locale": "en", "phone": "138", "email": "new@x.cn"}}
    directory = AccountDirectory(None, "wattpay.accounts")
    for event in events:
        directory.apply(event)
    assert directory.email("A1") == "new@x.cn"
