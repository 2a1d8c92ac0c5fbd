"""The hostile-input corpus for the OTLP receiver: broken and malicious payloads, each with
what the receiver must answer.

Generated in code (nothing binary is committed): ``cases()`` builds every payload afresh.
``python -m tests.ingest.hostile.corpus DIR`` writes them to DIR (one file per case plus
``cases.json`` with the headers) for poking a running ``clauditor serve`` with curl.

Every case that mixes good and bad spans carries the good span ids: they must be stored.
"""

from __future__ import annotations

import gzip
import json
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ..receiver_support import (
    call_attributes,
    json_request,
    json_span,
    proto_request,
    proto_span,
    varint,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass
class Case:
    """One hostile request and the answer it must get."""

    name: str
    body: bytes
    content_type: str
    status: int
    reason: str  # a substring of the error / partial-success message (or quarantine reason)
    rejected: int = 0  # partial_success.rejected_spans on a 200
    good_ids: list[str] = field(default_factory=list)  # span ids that must be stored
    encoding: str = ""
    quarantined: int = 0  # rows this case adds to the quarantine table


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + varint(len(payload)) + payload


def _deep_proto(depth: int) -> bytes:
    """A request whose one span has an attribute value nested ``depth`` arrays deep (built
    by hand: the protobuf library refuses to build what it would refuse to parse)."""
    value = _field(0x0A, b"x")  # AnyValue.string_value = "x"
    for _ in range(depth):
        value = _field(0x2A, _field(0x0A, value))  # AnyValue.array_value{values: [value]}
    key_value = _field(0x0A, b"deep") + _field(0x12, value)
    span = proto_span().SerializeToString() + _field(0x4A, key_value)  # Span.attributes
    return _field(
        0x0A, _field(0x12, _field(0x12, span))
    )  # request.resource_spans.scope_spans.spans


def _deep_json_request(depth: int) -> tuple[bytes, list[str]]:
    """A JSON request of two spans, the first with an attribute nested ``depth`` arrays deep
    (as text: the json module refuses to write what it would refuse to read)."""
    deep = json_span()
    deep["attributes"].append({"key": "deep", "value": "PLACEHOLDER"})
    fine = json_span()
    nested = '{"stringValue":"x"}'
    for _ in range(depth):
        nested = '{"arrayValue":{"values":[' + nested + "]}}"
    text = json.dumps(json_request([deep, fine])).replace('"PLACEHOLDER"', nested)
    return text.encode(), [deep["spanId"], fine["spanId"]]


def _gzip_bomb(expanded_mb: int) -> bytes:
    """Zeros that expand to ``expanded_mb`` MiB from a body of a few hundred KiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\x00" * (1024 * 1024)
    parts = [compressor.compress(chunk) for _ in range(expanded_mb)]
    parts.append(compressor.flush())
    return b"".join(parts)


def _mixed(bad_attributes: dict, reason: str, *, bad_count: int = 1) -> tuple[bytes, list[str]]:
    good = [proto_span() for _ in range(2)]
    bad = [proto_span(bad_attributes) for _ in range(bad_count)]
    return proto_request([good[0], *bad, good[1]]).SerializeToString(), [
        s.span_id.hex() for s in good
    ]


def cases() -> list[Case]:
    """Every hostile case, built fresh."""
    out: list[Case] = []

    whole = proto_request([proto_span() for _ in range(3)]).SerializeToString()
    out.append(
        Case(
            "truncated-protobuf",
            whole[: len(whole) - 7],
            PROTOBUF,
            400,
            "not a valid OTLP protobuf",
        )
    )
    out.append(
        Case(
            "random-bytes-as-protobuf",
            bytes(range(256)) * 4,
            PROTOBUF,
            400,
            "not a valid OTLP protobuf",
        )
    )

    marked = proto_request([proto_span(call_attributes(note="MARKERMARKER"))]).SerializeToString()
    out.append(
        Case(
            "invalid-utf8-in-protobuf-string",
            marked.replace(b"MARKERMARKER", b"\xff\xfe\xfdMARKERM\xc3"),
            PROTOBUF,
            400,
            "not a valid OTLP protobuf",
        )
    )
    good_json = json_span()
    out.append(
        Case(
            "invalid-utf8-in-json",
            json.dumps(json_request([good_json])).encode().replace(b"search", b"se\xffrch"),
            JSON,
            400,
            "not valid UTF-8",
        )
    )

    body, good = _mixed(call_attributes(gen_ai__usage__input_tokens="lots"), "")
    out.append(
        Case(
            "token-count-is-a-word",
            body,
            PROTOBUF,
            200,
            "is not an integer",
            1,
            good,
            quarantined=1,
        )
    )
    body, good = _mixed(call_attributes(gen_ai__request__model=42), "")
    out.append(
        Case("model-is-a-number", body, PROTOBUF, 200, "is not a string", 1, good, quarantined=1)
    )
    body, good = _mixed(call_attributes(gen_ai__usage__output_tokens=-100), "", bad_count=2)
    out.append(
        Case("negative-token-count", body, PROTOBUF, 200, "negative", 2, good, quarantined=2)
    )
    body, good = _mixed(call_attributes(gen_ai__usage__input_tokens=10**15), "")
    out.append(
        Case("absurd-token-count", body, PROTOBUF, 200, "absurdly large", 1, good, quarantined=1)
    )

    good_spans = [proto_span(), proto_span()]
    no_ids = [proto_span(span_id=b""), proto_span(trace_id=b""), proto_span(span_id=b"\x00" * 8)]
    out.append(
        Case(
            "missing-ids",
            proto_request([*no_ids, *good_spans]).SerializeToString(),
            PROTOBUF,
            200,
            "is not 16 hex characters",
            3,
            [s.span_id.hex() for s in good_spans],
            quarantined=3,
        )
    )

    # A 10 MB attribute value: the call is kept (its cost is real), the value cut, and the cut
    # recorded in the quarantine table.
    huge = proto_span(call_attributes(**{"gen_ai.prompt": "A" * (10 * 1024 * 1024)}))
    other = proto_span()
    out.append(
        Case(
            "ten-megabyte-attribute",
            proto_request([huge, other]).SerializeToString(),
            PROTOBUF,
            200,
            "",
            0,
            [huge.span_id.hex(), other.span_id.hex()],
            quarantined=1,
        )
    )

    out.append(
        Case(
            "gzip-bomb",
            _gzip_bomb(200),
            PROTOBUF,
            413,
            "decompresses to more than",
            encoding="gzip",
        )
    )
    out.append(
        Case("broken-gzip", gzip.compress(whole)[:-20], PROTOBUF, 400, "gzip body", encoding="gzip")
    )

    out.append(
        Case(
            "deeply-nested-json-body",
            b"[" * 100_000 + b"]" * 100_000,
            JSON,
            400,
            "nested too deeply",
        )
    )
    # Nesting JSON can hold is stored as is; deeper is refused whole (the JSON parser's own
    # depth limit, about 1000 levels), never a crash.
    body, ids = _deep_json_request(300)
    out.append(Case("nested-json-attribute-within-limits", body, JSON, 200, "", 0, ids))
    body, _ = _deep_json_request(5000)
    out.append(Case("deeply-nested-json-attribute", body, JSON, 400, "nested too deeply"))
    out.append(
        Case(
            "deeply-nested-protobuf-attribute",
            _deep_proto(200),
            PROTOBUF,
            400,
            "not a valid OTLP protobuf",
        )
    )

    broken = json_span()
    broken["attributes"] = "not a list"
    kept = json_span()
    out.append(
        Case(
            "json-attributes-wrong-shape",
            json.dumps(json_request([broken, kept])).encode(),
            JSON,
            200,
            "not a list of key/value",
            1,
            [kept["spanId"]],
            quarantined=1,
        )
    )
    out.append(Case("json-not-otlp", b'{"hello": "world"}', JSON, 400, "no resourceSpans"))

    inverted = proto_span()
    inverted.end_time_unix_nano = inverted.start_time_unix_nano - 1
    ok = proto_span()
    out.append(
        Case(
            "ends-before-it-starts",
            proto_request([inverted, ok]).SerializeToString(),
            PROTOBUF,
            200,
            "ends before it starts",
            1,
            [ok.span_id.hex()],
            quarantined=1,
        )
    )
    leaky = proto_span(
        call_attributes(
            gen_ai__usage__output_tokens=-1,
            note="key sk-ant-test-SECRETfake1 in a message",
            **{"http.request.header.authorization": "Bearer SECRETSECRETSECRET"},
        )
    )
    out.append(
        Case(
            "secrets-in-a-rejected-span",
            proto_request([leaky]).SerializeToString(),
            PROTOBUF,
            200,
            "negative",
            1,
            quarantined=1,
        )
    )
    return out


def main(argv: list[str]) -> int:
    """Write the corpus into the folder ``argv[0]``."""
    target = Path(argv[0])
    target.mkdir(parents=True, exist_ok=True)
    index = {}
    for case in cases():
        (target / f"{case.name}.bin").write_bytes(case.body)
        index[case.name] = {
            "content_type": case.content_type,
            "content_encoding": case.encoding,
            "expect": case.status,
        }
    (target / "cases.json").write_text(json.dumps(index, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
