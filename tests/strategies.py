"""Hypothesis strategies for the two boundaries: config files and server frames.

Shared by the property tests and ``make fuzz`` (``python -m tests.fuzz``).

* :func:`valid_configs`: configs that must load.
* :func:`hostile_configs`: a valid config with one key broken (or a broken file), and the key
  (or file) the error must name.
* :func:`malformed_frames`: server frames that are malformed by construction: one field of a
  valid frame given a JSON value of the wrong type, or bytes that are not a JSON object.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

# -- TOML ------------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (inline tables and arrays for nested data)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON escapes are TOML escapes; DEL is the one control character JSON leaves alone.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value).__name__)


def toml_key(key: str) -> str:
    """``key`` bare when it can be, quoted otherwise."""
    plain = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if plain else toml_value(key)


def to_toml(config: dict[str, Any]) -> str:
    """A config dict as a TOML document: ``[section]`` tables and ``[[array]]`` tables."""
    lines: list[str] = []
    for name, section in config.items():
        if isinstance(section, dict):
            lines.append(f"[{toml_key(name)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in section.items()]
        elif isinstance(section, list) and all(isinstance(item, dict) for item in section):
            for item in section:
                lines.append(f"[[{toml_key(name)}]]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items()]
        else:
            lines.insert(0, f"{toml_key(name)} = {toml_value(section)}")
    return "\n".join(lines) + "\n"


# -- valid configs ---------------------------------------------------------------------------

_WORD = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=20)
_FREE_PINS = [p for p in range(28) if p not in (17, 22, 27)]


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A config that must load: every key drawn inside its rules."""
    live: dict[str, Any] = {
        "model": draw(st.sampled_from(["gemini-live-2.5-flash", "models/gemini-3.8-live"])),
        "connect_timeout_s": draw(st.floats(0.5, 120)),
        "stall_timeout_s": draw(st.integers(1, 600)),
        "response_cap_chars": draw(st.integers(256, 1_000_000)),
        "api_version": draw(st.sampled_from(["v1beta", "v1alpha"])),
    }
    if draw(st.booleans()):
        host = draw(st.sampled_from(["127.0.0.1", "live.example.test", "[::1]"]))
        port = draw(st.integers(1, 65535))
        scheme = draw(st.sampled_from(["https", "wss", "http", "ws"]))
        live["endpoint"] = f"{scheme}://{host}:{port}"
    if draw(st.booleans()):
        live["voice"] = draw(st.sampled_from(["Puck", "Kore", "Aoede"]))
    names = draw(st.lists(_WORD, max_size=4, unique=True))
    pins = draw(st.permutations(_FREE_PINS))[: len(names)]
    config: dict[str, Any] = {
        "live": live,
        "audio": {
            "capture_device": draw(st.sampled_from(["default", "plughw:CARD=Device,DEV=0"])),
            "frame_ms": draw(st.sampled_from([10, 20, 30])),
            "jitter_ms": draw(st.integers(0, 1000)),
        },
        "button": {
            "mode": draw(st.sampled_from(["press", "hold", "always"])),
            "bounce_ms": draw(st.integers(0, 1000)),
            "long_press_s": draw(st.floats(0.3, 30)),
        },
        "daemon": {
            "gpio_tool_timeout_s": draw(st.floats(0.05, 60)),
            "health_interval_s": draw(st.integers(1, 86400)),
        },
        "outputs": [
            {"name": n, "pin": p, "kind": draw(st.sampled_from(["relay", "led", "pwm"]))}
            for n, p in zip(names, pins, strict=True)
        ],
    }
    if draw(st.booleans()):
        config["mqtt"] = {
            "host": draw(st.sampled_from(["broker.local", "192.168.1.10", "mqtt"])),
            "port": draw(st.integers(1, 65535)),
            "keepalive_s": draw(st.integers(5, 3600)),
            "client_id": draw(_WORD),
        }
        config["tools"] = [
            {
                "name": "set_light",
                "description": "Switch a light.",
                "action": "mqtt_publish",
                "topic": "home/${room}/set",
                "payload": {"state": "${state}"},
                "timeout_s": draw(st.floats(0.1, 120)),
                "parameters": {
                    "type": "object",
                    "properties": {"room": {"type": "string"}, "state": {"type": "string"}},
                },
            }
        ]
    return config


# -- hostile configs -------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSpec:
    """A file a hostile config names: its bytes, or a FIFO, or nothing at all."""

    content: bytes | None = None
    fifo: bool = False


@dataclass
class HostileConfig:
    """A config with one fault. ``key`` is what the error must name (the file's own name
    when ``key`` is empty); ``"@name"`` values are replaced by the path of ``files[name]``."""

    config: dict[str, Any] | None
    key: str
    raw: bytes | None = None
    files: dict[str, FileSpec] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    credential: FileSpec | None = None

    def write(self, folder: Path) -> tuple[Path, dict[str, str]]:
        """Write the config (and its files) under ``folder``; the path and extra environ."""
        paths = {name: folder / f"file-{name}" for name in self.files}
        for name, spec in self.files.items():
            _make(paths[name], spec)
        environ = dict(self.environ)
        if self.credential is not None:
            creds = folder / "credentials"
            creds.mkdir()
            _make(creds / "gemini-api-key", self.credential)
            environ["CREDENTIALS_DIRECTORY"] = str(creds)
        path = folder / "config.toml"
        if self.raw is not None:
            path.write_bytes(self.raw)
        elif self.config is not None:
            path.write_text(to_toml(_substitute(self.config, paths)), encoding="utf-8")
        return path, environ


def _make(path: Path, spec: FileSpec) -> None:
    if spec.fifo:
        os.mkfifo(path)
    elif spec.content is not None:
        path.write_bytes(spec.content)


def _substitute(value: Any, paths: dict[str, Path]) -> Any:
    if isinstance(value, str) and value.startswith("@") and value[1:] in paths:
        return str(paths[value[1:]])
    if isinstance(value, dict):
        return {k: _substitute(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, paths) for v in value]
    return value


_BAD_TIMES = st.sampled_from([math.inf, math.nan, 1e308, 1e-9, -1.0, 0.0, 0, "10", True])
_BAD_PORTS = st.sampled_from([1883.5, 0, 70000, -1, "1883", 1e9])
_LONG = st.integers(300, 100_000).map(lambda n: "x" * n)
_BINARY = FileSpec(b"\xff\xfe\x00binary\x80")
_NOT_PEM = FileSpec(b"just some text, no certificate\n")
_BAD_FILES = st.sampled_from(
    [("binary", _BINARY), ("fifo", FileSpec(fifo=True)), ("missing", FileSpec())]
)
_MULTILINE = st.builds(
    lambda head, control, tail: f"x{head}{control}{tail}",
    st.text("ab", max_size=3),
    st.sampled_from("\n\r\t\x00\x1b\x7f"),
    st.text("ab\n", max_size=3),
)


def _mqtt_base() -> dict[str, Any]:
    return {"host": "broker.local", "username": "voice"}


def _ha_base() -> dict[str, Any]:
    return {"url": "http://ha.local:8123", "token": "a-long-lived-token"}


# Each entry: (section, key, strategy of bad values).
_KEY_FAULTS: list[tuple[str, str, st.SearchStrategy[Any]]] = [
    ("live", "connect_timeout_s", _BAD_TIMES),
    ("live", "stall_timeout_s", _BAD_TIMES),
    ("daemon", "gpio_tool_timeout_s", _BAD_TIMES),
    ("daemon", "ready_timeout_s", _BAD_TIMES),
    ("button", "long_press_s", _BAD_TIMES),
    ("live", "model", st.one_of(st.just(""), st.just("a b"), _LONG, _MULTILINE)),
    ("live", "voice", st.one_of(st.just(""), _LONG, _MULTILINE)),
    (
        "live",
        "endpoint",
        st.sampled_from(
            ["", "not a url", "ftp://x.test", "https://", "https://a b", "http://h:99999", "x"]
        ),
    ),
    ("live", "ca_file", st.one_of(st.just(""), _LONG)),
    ("audio", "capture_device", st.one_of(st.just(""), st.just("a b"), _LONG, _MULTILINE)),
    ("audio", "playback_device", st.one_of(st.just(""), _LONG)),
    ("audio", "frame_ms", st.sampled_from([15, 20.5, "20", 0])),
    ("mqtt", "port", _BAD_PORTS),
    ("mqtt", "keepalive_s", st.sampled_from([30.5, 1, 1e9, math.inf])),
    ("mqtt", "host", st.one_of(st.sampled_from(["a b", "", "-bad-", "h..x"]), _LONG)),
    ("mqtt", "client_id", st.one_of(st.just("a b"), _LONG, _MULTILINE)),
    ("mqtt", "ca_file", st.one_of(st.just(""), _LONG)),
    ("mqtt", "password_file", _LONG),
    ("home_assistant", "url", st.sampled_from(["ftp://x", "ha.local", "http://", ""])),
    ("home_assistant", "token_file", _LONG),
]


@st.composite
def hostile_configs(draw: st.DrawFn) -> HostileConfig:
    """One fault of the classes the issue lists, in an otherwise valid config."""
    config = draw(valid_configs())
    kind = draw(
        st.sampled_from(["key", "key", "key", "file", "whole", "unknown", "schema", "output"])
    )
    if kind == "key":
        section, key, bad = draw(st.sampled_from(_KEY_FAULTS))
        base = {"mqtt": _mqtt_base(), "home_assistant": _ha_base()}.get(section, {})
        if section == "mqtt":
            config.pop("tools", None)
        table = config.setdefault(section, {})
        for k, v in base.items():
            table.setdefault(k, v)
        table[key] = draw(bad)
        if section == "mqtt" and key == "password_file":
            table.pop("password", None)
        if section == "home_assistant" and key == "token_file":
            table.pop("token", None)
        return HostileConfig(config, f"{section}.{key}")
    if kind == "file":
        where = draw(
            st.sampled_from(
                [
                    ("live", "ca_file"),
                    ("mqtt", "ca_file"),
                    ("mqtt", "password_file"),
                    ("home_assistant", "token_file"),
                    ("home_assistant", "ca_file"),
                    ("credential", ""),
                ]
            )
        )
        label, spec = draw(st.one_of(_BAD_FILES, st.just(("not-pem", _NOT_PEM))))
        section, key = where
        if section == "credential":
            # Any text is a fine key, and a missing one only a note: make it binary instead.
            config.pop("mqtt", None)
            config.pop("tools", None)
            good = label in ("not-pem", "missing")
            return HostileConfig(config, "gemini-api-key", credential=_BINARY if good else spec)
        if key != "ca_file" and label == "not-pem":
            spec = _BINARY  # any text is a fine password or token
        if section == "mqtt":
            config.pop("tools", None)
            mqtt = config.setdefault("mqtt", _mqtt_base())
            mqtt.pop("password", None)
        else:
            config["home_assistant"] = _ha_base()
            if key == "token_file":
                config["home_assistant"].pop("token")
        config.setdefault(section, {})[key] = "@f"
        return HostileConfig(config, f"{section}.{key}", files={"f": spec})
    if kind == "whole":
        raw = draw(
            st.sampled_from(
                [
                    b"\xff\xfe[live]\n",
                    b'[live]\nmodel = "\xc3\x28"\n',
                    b"a = " + b"[" * 3000 + b"]" * 3000 + b"\n",
                    b"a = " + b"{b = " * 3000 + b"1" + b"}" * 3000 + b"\n",
                    b"\x00\x01\x02\x03",
                ]
            )
        )
        return HostileConfig(None, "", raw=raw)
    if kind == "unknown":
        name = draw(st.one_of(_MULTILINE, _LONG, st.just("api_key")))
        config["live"][name] = 1
        return HostileConfig(config, "live.")
    if kind == "schema":
        schema = draw(
            st.sampled_from(
                [
                    "true",
                    "false",
                    json.dumps({"type": "object", "properties": {"a": {"$ref": "#/$defs/no"}}}),
                    "[" * 3000 + "]" * 3000,
                    json.dumps({"type": "object", "properties": {"a": {"$ref": "http://x/"}}}),
                ]
            )
        )
        config.setdefault("mqtt", _mqtt_base())
        config["tools"] = [
            {
                "name": "t",
                "description": "d",
                "action": "mqtt_state",
                "topic": "a/b",
                "parameters": schema,
            }
        ]
        return HostileConfig(config, "tools[0].parameters")
    name = draw(st.one_of(_LONG, st.just(""), st.just("a-b"), _MULTILINE))
    config["outputs"] = [{"name": name, "pin": 5}]
    return HostileConfig(config, "outputs[0].name")


# -- server frames ---------------------------------------------------------------------------

_TEMPLATES: list[tuple[dict[str, Any], list[tuple[tuple[Any, ...], type]]]] = [
    ({"serverContent": {"turnComplete": True}}, [(("serverContent",), dict)]),
    (
        {"serverContent": {"turnComplete": True, "interrupted": False}},
        [(("serverContent", "turnComplete"), bool), (("serverContent", "interrupted"), bool)],
    ),
    (
        {
            "serverContent": {
                "modelTurn": {
                    "parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "AAAA"}}]
                }
            }
        },
        [
            (("serverContent", "modelTurn"), dict),
            (("serverContent", "modelTurn", "parts"), list),
            (("serverContent", "modelTurn", "parts", 0), dict),
            (("serverContent", "modelTurn", "parts", 0, "inlineData"), dict),
            (("serverContent", "modelTurn", "parts", 0, "inlineData", "mimeType"), str),
            (("serverContent", "modelTurn", "parts", 0, "inlineData", "data"), str),
        ],
    ),
    (
        {"serverContent": {"outputTranscription": {"text": "hi"}}},
        [
            (("serverContent", "outputTranscription"), dict),
            (("serverContent", "outputTranscription", "text"), str),
        ],
    ),
    (
        {"toolCall": {"functionCalls": [{"id": "c1", "name": "set_output", "args": {}}]}},
        [
            (("toolCall",), dict),
            (("toolCall", "functionCalls"), list),
            (("toolCall", "functionCalls", 0), dict),
            (("toolCall", "functionCalls", 0, "id"), str),
            (("toolCall", "functionCalls", 0, "name"), str),
            (("toolCall", "functionCalls", 0, "args"), dict),
        ],
    ),
    (
        {"toolCallCancellation": {"ids": ["c1"]}},
        [
            (("toolCallCancellation",), dict),
            (("toolCallCancellation", "ids"), list),
            (("toolCallCancellation", "ids", 0), str),
        ],
    ),
    ({"goAway": {"timeLeft": "5s"}}, [(("goAway",), dict), (("goAway", "timeLeft"), str)]),
    (
        {"sessionResumptionUpdate": {"newHandle": "h", "resumable": True}},
        [
            (("sessionResumptionUpdate",), dict),
            (("sessionResumptionUpdate", "newHandle"), str),
            (("sessionResumptionUpdate", "resumable"), bool),
        ],
    ),
    ({"setupComplete": {}}, [(("setupComplete",), dict)]),
    ({"usageMetadata": {}}, [(("usageMetadata",), dict)]),
]

_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _wrong(kind: type) -> st.SearchStrategy[Any]:
    """A JSON value that is not null and not of ``kind`` (a bool is not a number here)."""

    def other(value: Any) -> bool:
        return not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))

    if kind is str:
        # A string where a number was wanted is covered by the duration check too.
        return _JSON.filter(lambda v: not isinstance(v, str))
    return _JSON.filter(other)


def _with(template: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(template))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return copy


@st.composite
def mistyped_frames(draw: st.DrawFn) -> str:
    """A valid server frame with one field of the wrong JSON type."""
    template, fields = draw(st.sampled_from(_TEMPLATES))
    path, kind = draw(st.sampled_from(fields))
    return json.dumps(_with(template, path, draw(_wrong(kind))))


def malformed_frames() -> st.SearchStrategy[str | bytes]:
    """Frames no correct service sends: mistyped fields, non-objects, and non-JSON bytes."""
    not_object = _JSON.filter(lambda v: not isinstance(v, dict)).map(json.dumps)
    garbage = st.binary(min_size=1, max_size=64).filter(lambda b: not _is_json(b))
    return st.one_of(mistyped_frames(), not_object, garbage)


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True
