"""The usage meter on the whole daemon: what the service says a turn cost, summed and priced."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from services.testbed.mosquitto import Mosquitto
from tests.daemon.conftest import RigFactory
from tests.daemon.test_daemon import SCENARIO, assert_clean
from tests.services.tools.conftest import WAIT_S, watching

PRICES = {"input_text": 0.5, "input_audio": 3.0, "output_text": 2.0, "output_audio": 12.0}


async def test_the_meter_sums_what_the_stand_in_reported_and_logs_each_turn(
    rig_factory: RigFactory, request_speech: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.daemon")
    async with rig_factory(SCENARIO, mode="always", usage={"prices": PRICES}) as rig:
        rig.mic.say(request_speech)
        await rig.wait_for(
            lambda: "idle" in rig.kinds("state")[1:] and bool(rig.kinds("tool-result"))
        )
        await rig.wait_for(lambda: rig.daemon.usage.today.tokens_in > 0)
        health = rig.daemon.health()
    assert_clean(rig)
    reported = [r["tokens"] for r in rig.emulator.trace.select("out") if "tokens" in r]
    assert reported
    today = rig.daemon.usage.today
    assert today.tokens_in + today.tokens_out == sum(reported)
    assert today.prompt_audio > 0  # the user's speech, counted as audio
    assert today.cost == pytest.approx(
        (
            today.prompt_audio * 3.0
            + today.prompt_text * 0.5
            + today.response_audio * 12.0
            + (today.response_text + today.thoughts) * 2.0
        )
        / 1e6
    )
    turns = [r for r in caplog.records if hasattr(r, "TOKENS_IN")]
    assert len(turns) == len(reported)
    assert sum(r.TOKENS_IN + r.TOKENS_OUT for r in turns) == sum(reported)  # type: ignore[attr-defined]
    assert health["TOKENS_TODAY"] == sum(reported)
    assert health["COST_TODAY"] == round(today.cost, 4)


async def test_the_day_s_usage_reaches_home_assistant_as_sensors(
    rig_factory: RigFactory, request_speech: bytes, broker: Mosquitto
) -> None:
    mqtt = {"host": "127.0.0.1", "port": broker.port, "node_id": "meter"}
    usage_topic = "pi-live-voice/meter/usage"
    async with (
        watching(broker.port, "homeassistant/#", "pi-live-voice/meter/#") as inbox,
        rig_factory(SCENARIO, mode="always", mqtt=mqtt, usage={"prices": PRICES}) as rig,
    ):
        assert rig.daemon.mqtt is not None
        async with asyncio.timeout(WAIT_S):
            await rig.daemon.mqtt.wait_connected()
        rig.mic.say(request_speech)
        await rig.wait_for(lambda: rig.daemon.usage.today.tokens_in > 0)
        reported = [r["tokens"] for r in rig.emulator.trace.select("out") if "tokens" in r]
        await inbox.wait_for(
            lambda: any(
                json.loads(p)["tokens_today"] == sum(reported) for p in inbox.on(usage_topic)
            )
        )
    assert_clean(rig)
    first, *_, last = [json.loads(p) for p in inbox.on(usage_topic)]
    assert (first["tokens_today"], first["cost_today"]) == (0, 0.0)
    assert last["cost_today"] == round(rig.daemon.usage.today.cost, 6)
    assert last["day_start"].startswith(rig.daemon.usage.day.isoformat())  # type: ignore[union-attr]
    for sensor in ("tokens_today", "cost_today"):
        [raw] = inbox.on(f"homeassistant/sensor/meter/{sensor}/config")
        config = json.loads(raw)
        assert config["state_topic"] == usage_topic
        assert config["state_class"] == "total"
        assert sensor in config["value_template"]
