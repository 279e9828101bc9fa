"""``minping serve`` runs the app on gunicorn; structured logs carry the ids."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from minping.logs import JsonFormatter

MINPING = str(Path(sys.executable).with_name("minping"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_health_and_readiness_on_gunicorn(db_url, tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "MINPING_SECRET_KEY": "k" * 32,
           "MINPING_INSTANCE_PATH": str(tmp_path)}
    proc = subprocess.Popen([MINPING, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    assert json.load(r) == {"status": "ready"}
                    break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(proc.communicate()[1].decode()) from None
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            assert json.load(r) == {"status": "ok"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_serve_refuses_to_start_in_production_without_the_twilio_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "MINPING_"))}
    env.update({"MINPING_ENV": "production", "MINPING_SECRET_KEY": "k" * 32,
                "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}",
                "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_FROM_NUMBER": "+8657112345678",
                "MINPING_PUBLIC_URL": "https://survey.example.org"})
    result = subprocess.run([MINPING, "serve", "--check"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "TWILIO_AUTH_TOKEN" in result.stderr


def test_json_logs_carry_the_case_and_call_ids():
    record = logging.LogRecord("minping.ivr", logging.INFO, __file__, 1, "answer saved %s",
                               ("1",), None)
    record.case_id = 42
    record.call_sid = "CA" + "a" * 32
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "answer saved 1"
    assert line["case_id"] == 42 and line["call_sid"].startswith("CA")
    assert line["level"] == "info"
