"""The deployment files say what the bot needs: Docker isn't on this machine, so they are read and checked here.

deploy/compose.yaml, the Dockerfile, deploy/Caddyfile and the systemd template unit: the keys and commands they use,
that every setting they pass is one the bot reads, and that the image's health check really asks /healthz.
"""
from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from bot.config import load_settings
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import Harness
from tests.test_e2e import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def documented_settings() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))


def command_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command if isinstance(command, list) else shlex.split(command)


def test_compose_runs_several_bots_on_postgres_and_redis_behind_caddy() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) >= {"postgres", "redis", "migrate", "bot", "caddy"}
    assert not [name for name, s in services.items() if "container_name" in s]  # a fixed name blocks --scale

    bot = services["bot"]
    assert bot["deploy"]["replicas"] >= 2 and command_of(bot) == ["python", "-m", "bot"]
    assert "ports" not in bot  # only Caddy is exposed; replicas can't all bind one host port
    env = bot["environment"]
    assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert re.fullmatch(r"redis://redis:6379/\d+", env["REDIS_URL"])
    assert env["TELEGRAM_WEBHOOK"] == "true" and env["PUBLIC_URL"].startswith("https://")
    assert bot["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Every setting compose passes is one the bot knows (a typo would be silently ignored).
    assert set(env) <= documented_settings(), set(env) - documented_settings()
    settings = load_settings({"BOT_TOKEN": "123456:ABC-def", **{k: v.replace("${POSTGRES_PASSWORD:?set "
                              "POSTGRES_PASSWORD in deploy/.env}", "pw").replace("${BOT_DOMAIN:?set BOT_DOMAIN in "
                              "deploy/.env}", "bot.example.com") for k, v in env.items()}})
    assert settings.telegram_webhook and settings.redis_url is not None

    migrate = services["migrate"]
    assert command_of(migrate) == ["python", "-m", "bot", "migrate"]
    assert migrate["environment"] == env and migrate.get("restart") == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"

    redis = command_of(services["redis"])
    assert redis[0] == "redis-server"
    assert redis[redis.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis[redis.index("--appendonly") + 1] == "yes"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]

    caddy = services["caddy"]
    assert caddy["image"].startswith("caddy:")
    assert "443:443" in caddy["ports"] and "80:80" in caddy["ports"]
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    # Only the proxy's network is trusted for X-Forwarded-For.
    assert env["TRUSTED_PROXIES"] == spec["networks"]["backend"]["ipam"]["config"][0]["subnet"]


def test_the_commands_compose_runs_exist() -> None:
    """`python -m bot migrate` and `python -m bot backup` are real subcommands (an unknown word starts the bot)."""
    main = (ROOT / "bot" / "__main__.py").read_text()
    for word in ("migrate", "backup"):
        assert f'["{word}"]' in main, word


def test_caddy_balances_round_robin_over_every_replica() -> None:
    text = (DEPLOY / "Caddyfile").read_text()
    assert re.search(r"^\{\$BOT_DOMAIN\} \{", text, re.M)  # TLS for the domain, automatic
    block = re.search(r"dynamic a \{(.*?)\}", text, re.S)
    assert block is not None
    assert re.search(r"name bot\b", block.group(1)) and re.search(r"port 8080\b", block.group(1))
    assert re.search(r"lb_policy round_robin", text)
    assert compose()["services"]["bot"]["expose"] == ["8080"]


def test_dockerfile_is_small_non_root_and_checks_its_health() -> None:
    steps = dockerfile()
    kinds = [kind for kind, _ in steps]
    assert steps[0][0] == "FROM" and re.match(r"python:3\.1[1-9]-slim", steps[0][1])
    user = [args for kind, args in steps if kind == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert kinds.index("USER") < kinds.index("CMD")
    assert json.loads(dict(steps)["CMD"]) == ["python", "-m", "bot"]
    assert "8080" in dict(steps)["EXPOSE"]
    for kind, args in steps:
        if kind == "COPY":
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored  # secrets and history stay out of the image


def healthcheck_command() -> list[str]:
    args = dict(dockerfile())["HEALTHCHECK"]
    return json.loads(args[args.index("CMD") + 3:].strip())


async def test_the_image_healthcheck_passes_on_a_healthy_bot_and_fails_without_one(
        api: FakeBotAPI, tmp_path: Path) -> None:
    command = healthcheck_command()
    assert command[0] == "python"
    h = await Harness.start(api, tmp_path / "bot.sqlite3")
    port = free_port()
    runner = web.AppRunner(h.app.web_app)
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ok = await asyncio.to_thread(subprocess.run, [sys.executable, *command[1:]], env={"WEB_PORT": str(port)},
                                     capture_output=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
    finally:
        await runner.cleanup()
        await h.close()
    down = await asyncio.to_thread(subprocess.run, [sys.executable, *command[1:]], env={"WEB_PORT": str(port)},
                                   capture_output=True, timeout=30)
    assert down.returncode != 0


def test_systemd_template_runs_one_instance_per_port() -> None:
    lines = [line.strip() for line in (DEPLOY / "topup-bot@.service").read_text().splitlines()]
    entries = [tuple(line.split("=", 1)) for line in lines if "=" in line and not line.startswith("#")]
    values: dict[str, list[str]] = {}
    for key, value in entries:
        values.setdefault(key, []).append(value)
    assert values["ExecStart"][0].endswith("python -m bot")
    assert "WEB_PORT=%i" in values["Environment"]
    assert values["User"][0] not in ("root", "0")
    assert values["Restart"] == ["always"] and values["EnvironmentFile"][0].startswith("/etc/")
    assert "[Install]" in lines and values["WantedBy"] == ["multi-user.target"]
