"""The daemon's one MQTT connection: reconnects with back-off, fails fast while it is down.

:meth:`MqttConnection.run` keeps a connection to the broker (TLS and username/password when
configured) and reconnects with a jittered exponential back-off. While it is down, a tool that
needs the broker gets :class:`MqttUnavailable` at once, saying why — the gate is never held
for a whole tool time-out by a broker that is gone. The connection also keeps the last value
seen on every topic it watches (retained ones arrive on subscribe), lets a caller wait for the
next message on a topic, and republishes the device's retained topics after every reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from services.tools.registry import ToolRefused

log = logging.getLogger(__name__)

# CONNACK codes meaning "bad credentials" in MQTT 3.1.1 (4, 5) and 5.0 (134, 135).
_AUTH_CODES = frozenset({4, 5, 134, 135})
# Topics whose last value is kept; a bound, since a watched wildcard may match many.
MAX_CACHED_TOPICS = 1000


@dataclass(frozen=True)
class MqttSettings:
    """Where the broker is and how to log in. ``password`` never appears in a repr."""

    host: str
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str | None = None
    keepalive_s: int = 30
    # Bounds connecting, and each publish or subscribe waiting for the broker's answer.
    timeout_s: float = 5.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0


class MqttUnavailable(ToolRefused):
    """The broker cannot be used now; the message says why, for the model to relay."""


@dataclass(frozen=True)
class Reading:
    """One message seen on a topic: its payload and when it arrived (monotonic seconds)."""

    topic: str
    payload: bytes
    at: float

    def value(self) -> Any:
        """The payload as JSON when it is JSON, else as text."""
        text = self.payload.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except ValueError:
            return text


def _honour_cancellation() -> None:
    """Raise a cancellation the current task received but did not see.

    On Python 3.11, ``asyncio.wait_for`` (which aiomqtt awaits for every acknowledgement) can
    swallow a cancellation that races with its result; the task still counts it as pending.
    Without this, a stopping daemon could wait forever for a task that went back to work.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def describe(exc: BaseException) -> str:
    """A broker failure in words a person (or the model) can act on."""
    if isinstance(exc, MqttConnectError):
        code = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
        if code in _AUTH_CODES:
            return f"the broker refused the username or password ({exc})"
        return f"the broker refused the connection ({exc})"
    text = str(exc) or type(exc).__name__
    if text.startswith("Disconnected during message iteration"):
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        return f"the broker closed the connection{cause}"
    if "Connection refused" in text:
        return "connection refused (is the broker running?)"
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        return f"TLS failed: {text}"
    return text


class MqttConnection:
    """One connection to the broker for the whole daemon. Run :meth:`run` as a task."""

    def __init__(self, settings: MqttSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        # The last will, set by whoever announces the device before run() starts.
        self.will: aiomqtt.Will | None = None
        self.last_error = "not connected yet"
        self.connects = 0
        self._rng = rng or random.Random()
        self._client: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        self._filters: list[str] = []
        self._readings: dict[str, Reading] = {}
        self._waiters: dict[str, list[asyncio.Future[Reading]]] = {}
        self._kept: dict[str, str] = {}
        self._dirty: dict[str, None] = {}
        self._kick = asyncio.Event()
        self._all_published = asyncio.Event()  # no kept topic waits to go out
        self._all_published.set()

    @property
    def where(self) -> str:
        """The broker as host:port, for messages."""
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def connected(self) -> bool:
        """Whether a connection to the broker is up now."""
        return self._client is not None

    async def wait_connected(self) -> None:
        """Return once a connection is up (callers bound this with a time-out)."""
        await self._up.wait()

    # -- what tools use ---------------------------------------------------------------------
    def watch(self, topic_filter: str) -> None:
        """Subscribe to ``topic_filter`` on every connection; call before :meth:`run`."""
        if topic_filter not in self._filters:
            self._filters.append(topic_filter)

    def last(self, topic: str) -> Reading | None:
        """The last message seen on ``topic`` (a watched one), if any."""
        return self._readings.get(topic)

    def require(self) -> aiomqtt.Client:
        """The live client, or :class:`MqttUnavailable` at once."""
        if self._client is None:
            raise MqttUnavailable(
                f"no connection to the MQTT broker at {self.where}: {self.last_error}"
            )
        return self._client

    async def publish(
        self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish, failing fast if the broker is down or goes away before it acknowledges."""
        client = self.require()
        lost = self._lost
        sending = asyncio.create_task(
            client.publish(topic, payload, qos=qos, retain=retain), name="mqtt-publish"
        )
        losing = asyncio.create_task(lost.wait(), name="mqtt-publish-watch")
        try:
            await asyncio.wait({sending, losing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            losing.cancel()
            if not sending.done():
                sending.cancel()
                # Its outcome no longer matters; retrieve it so asyncio does not report it.
                sending.add_done_callback(lambda task: task.cancelled() or task.exception())
        if sending.done() and not sending.cancelled():
            try:
                sending.result()
            except aiomqtt.MqttError as exc:
                raise MqttUnavailable(f"publishing to {topic} failed: {describe(exc)}") from exc
            return
        raise MqttUnavailable(
            f"the connection to the MQTT broker at {self.where} was lost while publishing "
            f"to {topic}: {self.last_error}"
        )

    @contextlib.contextmanager
    def expect(self, topic: str) -> Iterator[asyncio.Future[Reading]]:
        """A future for the next message on ``topic`` (a watched one) from now on; it fails
        with :class:`MqttUnavailable` if the connection is lost first."""
        future: asyncio.Future[Reading] = asyncio.get_running_loop().create_future()
        waiting = self._waiters.setdefault(topic, [])
        waiting.append(future)
        try:
            yield future
        finally:
            waiting.remove(future)
            if not waiting:
                del self._waiters[topic]
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # retrieved: a lost connection nobody awaited is no error

    def keep_published(self, topic: str, payload: str) -> None:
        """Publish ``payload`` retained on ``topic`` now (or once connected), and again after
        every reconnect — a broker restarted without persistence forgets retained values."""
        self._kept[topic] = payload
        # Newest change last: goodbye's "offline" goes out after the state set before it.
        self._dirty.pop(topic, None)
        self._dirty[topic] = None
        self._all_published.clear()
        self._kick.set()

    async def wait_published(self) -> None:
        """Return once the newest value of every kept topic is on the broker;
        :class:`MqttUnavailable` at once when there is no connection."""
        self.require()
        await self._all_published.wait()

    # -- the connection ---------------------------------------------------------------------
    def _new_client(self) -> aiomqtt.Client:
        s = self.settings
        tls = None
        if s.tls:
            tls = aiomqtt.TLSParameters(ca_certs=None if s.ca_file is None else str(s.ca_file))
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=s.client_id,
            logger=log.getChild("client"),
            will=self.will,
            keepalive=s.keepalive_s,
            timeout=s.timeout_s,
            tls_params=tls,
        )

    async def run(self) -> None:
        """Stay connected until cancelled, reconnecting with back-off."""
        failures = 0
        while True:
            before, previous = self.connects, self.last_error
            reason = "the daemon is stopping"
            try:
                async with self._new_client() as client:
                    await self._serve(client)
                reason = "the connection closed"
            except aiomqtt.MqttError as exc:
                reason = describe(exc)
            finally:
                self._went_down(reason)
            if self.connects > before:
                failures = 0
                log.warning("lost the MQTT broker at %s: %s", self.where, reason)
            elif reason != previous:
                log.warning("cannot connect to the MQTT broker at %s: %s", self.where, reason)
            delay = min(
                self.settings.reconnect_max_s, self.settings.reconnect_initial_s * 2**failures
            )
            # Jitter spreads out devices that lost the same broker at the same moment.
            delay *= 0.5 + 0.5 * self._rng.random()
            failures += 1
            log.debug("reconnecting to the MQTT broker in %.1f s", delay)
            _honour_cancellation()
            await asyncio.sleep(delay)

    async def _serve(self, client: aiomqtt.Client) -> None:
        _honour_cancellation()
        for topic_filter in self._filters:
            await client.subscribe(topic_filter, qos=1)
            _honour_cancellation()
        self._client = client
        self._lost = asyncio.Event()
        self.connects += 1
        self.last_error = ""
        self._up.set()
        log.info("connected to the MQTT broker at %s", self.where)
        for topic in self._kept:
            self._dirty[topic] = None
            self._all_published.clear()
        self._kick.set()
        outbox = asyncio.create_task(self._drain(client), name="mqtt-outbox")
        try:
            async for message in client.messages:
                self._received(message)
        finally:
            outbox.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await outbox

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish the kept topics that changed, newest value only."""
        while True:
            await self._kick.wait()
            self._kick.clear()
            while self._dirty:
                topic = next(iter(self._dirty))
                del self._dirty[topic]
                try:
                    await client.publish(topic, self._kept[topic], qos=1, retain=True)
                except aiomqtt.MqttError as exc:
                    # The reader notices the loss; the topic goes out again on reconnect.
                    log.debug("could not publish %s: %s", topic, exc)
                    return
                _honour_cancellation()
            self._all_published.set()

    def _received(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload
        if isinstance(payload, str):
            data = payload.encode()
        elif isinstance(payload, bytes | bytearray):
            data = bytes(payload)
        else:
            data = b"" if payload is None else str(payload).encode()
        reading = Reading(topic, data, time.monotonic())
        if topic not in self._readings and len(self._readings) >= MAX_CACHED_TOPICS:
            del self._readings[next(iter(self._readings))]
        self._readings[topic] = reading
        for future in self._waiters.get(topic, []):
            if not future.done():
                future.set_result(reading)

    def _went_down(self, reason: str) -> None:
        self.last_error = reason
        self._client = None
        self._up.clear()
        self._lost.set()
        for waiting in self._waiters.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(
                        MqttUnavailable(
                            f"the connection to the MQTT broker at {self.where} was lost: {reason}"
                        )
                    )
