"""The operator API never answers 500 and keeps to its OpenAPI document: schemathesis against the served document,
and random bytes, headers, paths and methods against the listener."""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.store.db import fetch_value
from tests.fakes.bot_api import FakeBotAPI
from tests.operator import API_KEY, give, operator_api

ROOT = Path(__file__).resolve().parent.parent
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


async def test_the_served_document_is_the_one_in_docs(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url) as op:
        status, body, headers = await op.call("GET", "/api/v1/openapi.json", key=None)
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert body == json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
        assert body["openapi"].startswith("3.1")


async def test_schemathesis_finds_no_500_and_no_answer_outside_the_document(api: FakeBotAPI, tmp_path: Path,
                                                                             database_url: str) -> None:
    async with operator_api(api, database_url, API_RATE_LIMIT="100000") as op:
        for user_id in (1, 2, 5001):
            await give(op.db, user_id, 100_000)
        await op.charge(5001, "1.00", "seed", description="seed")
        report = tmp_path / "schemathesis.txt"
        proc = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS), "run", f"{op.base}/api/v1/openapi.json", "--header", f"Authorization: Bearer {API_KEY}",
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                        "response_schema_conformance,response_headers_conformance,negative_data_rejection",
            "--max-examples", "40", "--seed", "1", "--workers", "2", "--phases", "examples,fuzzing",
            "--no-color", "--request-timeout", "10",
            stdout=report.open("wb"), stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,  # its cache stays there
            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"})
        code = await asyncio.wait_for(proc.wait(), timeout=600)
        output = report.read_text(errors="replace")
        assert code == 0, output[-6000:]
        # Whatever it sent, the money adds up.
        assert await fetch_value(op.db.reader, "SELECT COUNT(*) FROM users u WHERE u.balance_cents <> "
                                               "(SELECT COALESCE(SUM(amount_cents), 0) FROM ledger l "
                                               "WHERE l.user_id = u.id)") == 0


_METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
_PATHS = st.one_of(
    st.sampled_from(["/api/v1/users/5001", "/api/v1/users/5001/charges", "/api/v1/users/5001/ledger",
                     "/api/v1/charges/x/refunds", "/api/v1/links", "/api/v1/deposits", "/api/v1/users",
                     "/api/v1", "/api/v1/", "/api/v1/openapi.json"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/_-.%?=&", max_size=40).map(lambda p: "/api/v1/" + p))
_BODIES = st.one_of(st.binary(max_size=300), st.sampled_from([
    b'{"amount": "1.00"}', b'{"amount": 1e400}', b'{"amount": "99999999999999999999"}', b'[' * 5000,
    b'{"amount": "1.00", "description": "' + b"x" * 500 + b'"}', b'{"external_id": ""}', b'null', b'"x"',
    b'{"amount": {"$gt": 0}}', b'\xff\xfe', json.dumps({"amount": "0.01", "reference": None}).encode()]))
_HEADERS = st.dictionaries(st.sampled_from(["Idempotency-Key", "Content-Type", "Authorization", "Content-Encoding"]),
                           st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
                           max_size=3)


async def test_random_requests_never_get_500_and_move_money_only_as_asked(api: FakeBotAPI, database_url: str) -> None:
    requests = st.tuples(_METHODS, _PATHS, _BODIES, _HEADERS, st.booleans())
    examples: list[tuple[str, str, bytes, dict[str, str], bool]] = []

    @settings(max_examples=300, database=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(requests)
    def collect(example: tuple[str, str, bytes, dict[str, str], bool]) -> None:
        examples.append(example)

    collect()
    async with operator_api(api, database_url, API_RATE_LIMIT="100000") as op:
        await give(op.db, 5001, 100_000)
        for method, path, body, headers, with_key in examples:
            sent = dict(headers)
            if with_key and "Authorization" not in sent:
                sent["Authorization"] = f"Bearer {API_KEY}"
            async with op.session.request(method, op.base + path, data=body, headers=sent) as answer:
                raw = await answer.read()
                assert answer.status < 500, (method, path, body, answer.status)
                if answer.status >= 400 and method != "HEAD" and raw:
                    assert set(json.loads(raw)["error"]) == {"code", "message"}, (method, path, raw)
        charged = await fetch_value(op.db.reader, "SELECT COALESCE(-SUM(amount_cents), 0) FROM ledger "
                                                  "WHERE kind = 'charge'")
        assert charged == await fetch_value(op.db.reader, "SELECT COALESCE(SUM(amount_cents), 0) FROM charges")
        assert await fetch_value(op.db.reader, "SELECT balance_cents FROM users WHERE id = 5001") == 100_000 - charged
