"""The stream_management and csi modules: their options, and what they register
(nothing when off, so connections refuse the features)."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
from pydantic import BaseModel, ValidationError

from chatgate.modules import csi, stream_management
from chatgate.modules.base import StreamFeature
from chatgate.xmpp.sm_resumption import (
    ClientStateFeature,
    LocalResumptionTable,
    StreamManagementFeature,
    feature_of,
)

M = TypeVar("M", bound=BaseModel)


class Ctx:
    """What the modules' setup reads: their options table."""

    def __init__(self, **tables: dict[str, Any]) -> None:
        self.tables = tables

    def options(self, name: str, model: type[M]) -> M:
        return model(**self.tables.get(name, {}))


def test_stream_management_offers_sm_with_its_policy() -> None:
    table = LocalResumptionTable()
    module = stream_management.StreamManagement(table)
    ctx = Ctx(stream_management={"resume_timeout": 60, "ack_after_ms": 500})
    (feature,) = list(module.setup(ctx))  # type: ignore[arg-type]
    assert isinstance(feature, StreamManagementFeature)
    assert feature.xml == "<sm xmlns='urn:xmpp:sm:3'/>" and not feature.pre_auth
    assert feature.policy is not None
    assert feature.policy.resume_timeout == 60
    assert feature.policy.ack_after_seconds == 0.5
    assert feature.policy.table is table
    assert feature.policy.limits.stanzas == 500


def test_stream_management_off_registers_nothing() -> None:
    module = stream_management.StreamManagement()
    assert list(module.setup(Ctx(stream_management={"enabled": False}))) == []  # type: ignore[arg-type]


def test_csi_offers_its_feature_and_nothing_when_off() -> None:
    module = csi.ClientStateIndication()
    (feature,) = list(module.setup(Ctx(csi={"max_held_stanzas": 7})))  # type: ignore[arg-type]
    assert isinstance(feature, ClientStateFeature)
    assert feature.xml == "<csi xmlns='urn:xmpp:csi:0'/>"
    assert feature.limits is not None and feature.limits.stanzas == 7
    assert list(module.setup(Ctx(csi={"enabled": False}))) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("module", "table"),
    [
        ("stream_management", {"resume_timeout": -1}),
        ("stream_management", {"max_unacked_stanzas": 0}),
        ("stream_management", {"resumption": True}),
        ("csi", {"max_held_bytes": 10}),
        ("csi", {"hold": "all"}),
    ],
)
def test_bad_options_are_refused(module: str, table: dict[str, Any]) -> None:
    model = stream_management.Options if module == "stream_management" else csi.Options
    with pytest.raises(ValidationError):
        model(**table)


def test_feature_of_finds_the_registration_for_the_host() -> None:
    sm = StreamManagementFeature("<sm/>", hosts=frozenset({"a.example"}))
    plain = StreamFeature("<other/>")
    features = [plain, sm]
    assert feature_of(features, StreamManagementFeature, "a.example") is sm
    assert feature_of(features, StreamManagementFeature, "b.example") is None
    assert feature_of(features, ClientStateFeature, "a.example") is None
