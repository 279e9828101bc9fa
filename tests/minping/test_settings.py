"""Settings come from the environment; production refuses to start without its secrets."""

import pytest

from minping import create_app
from minping.settings import (
    SIMULATOR_AUTH_TOKEN,
    SettingsError,
    load_settings,
)

PRODUCTION = {
    "MINPING_ENV": "production",
    "MINPING_SECRET_KEY": "s" * 40,
    "DATABASE_URL": "postgresql://minping@db.example/minping",
    "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
    "TWILIO_AUTH_TOKEN": "t" * 32,
    "TWILIO_FROM_NUMBER": "+8657112345678",
    "MINPING_PUBLIC_URL": "https://survey.example.org/",
}


def test_development_has_safe_defaults(tmp_path):
    s = load_settings({}, instance_path=tmp_path)
    assert s.env == "development"
    assert s.database_url == f"sqlite:///{tmp_path / 'minping.sqlite'}"
    assert s.twilio_auth_token == SIMULATOR_AUTH_TOKEN
    assert s.verify_signatures is True
    # the development session key is created once, kept out of the repository
    assert len(s.secret_key) == 64
    assert (tmp_path / "secret_key").read_text() == s.secret_key
    assert load_settings({}, instance_path=tmp_path).secret_key == s.secret_key


def test_production_names_every_missing_secret(tmp_path):
    env = dict(PRODUCTION)
    del env["TWILIO_AUTH_TOKEN"]
    del env["MINPING_SECRET_KEY"]
    with pytest.raises(SettingsError) as err:
        load_settings(env, instance_path=tmp_path)
    assert "MINPING_SECRET_KEY" in str(err.value)
    assert "TWILIO_AUTH_TOKEN" in str(err.value)
    assert "DATABASE_URL" not in str(err.value)


def test_production_reads_everything_from_the_environment(tmp_path):
    s = load_settings(PRODUCTION, instance_path=tmp_path)
    assert s.is_production
    assert s.database_url == "postgresql+psycopg://minping@db.example/minping"
    assert s.public_url == "https://survey.example.org"
    assert s.secret_key == "s" * 40
    assert not (tmp_path / "secret_key").exists()


def test_signature_checks_cannot_be_turned_off_in_production(tmp_path):
    with pytest.raises(SettingsError, match="MINPING_VERIFY_SIGNATURES"):
        load_settings({**PRODUCTION, "MINPING_VERIFY_SIGNATURES": "0"}, instance_path=tmp_path)
    dev = load_settings({"MINPING_VERIFY_SIGNATURES": "off"}, instance_path=tmp_path)
    assert dev.verify_signatures is False


@pytest.mark.parametrize(
    ("name", "value"),
    [("MINPING_ENV", "staging"), ("MINPING_VERIFY_SIGNATURES", "maybe"),
     ("MINPING_SESSION_MINUTES", "-5")],
)
def test_malformed_values_name_the_variable(tmp_path, name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value}, instance_path=tmp_path)


def test_app_refuses_to_start_in_production_without_twilio_token():
    env = dict(PRODUCTION)
    del env["TWILIO_AUTH_TOKEN"]
    with pytest.raises(SettingsError, match="TWILIO_AUTH_TOKEN"):
        create_app({"ENVIRON": env})


def test_production_app_has_secure_cookies():
    app = create_app({"ENVIRON": PRODUCTION, "DATABASE_URL": "sqlite:///:memory:"})
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    with pytest.raises(SettingsError):
        create_app({"ENVIRON": PRODUCTION, "VERIFY_SIGNATURES": False})
