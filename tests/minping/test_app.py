"""The app factory."""

from minping import create_app


def test_create_app_registers_the_blueprints(app):
    assert {"ivr", "cati"} <= set(app.blueprints)


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_readiness_reports_an_unreachable_database(tmp_path):
    app = create_app(
        {"ENVIRON": {"MINPING_ENV": "testing", "MINPING_SECRET_KEY": "k"},
         "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    )
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["status"] == "unavailable"


def test_every_app_is_new(db_url):
    a = create_app({"ENVIRON": {"MINPING_SECRET_KEY": "k"}, "DATABASE_URL": db_url})
    b = create_app({"ENVIRON": {"MINPING_SECRET_KEY": "k"}, "DATABASE_URL": db_url})
    assert a is not b
    assert a.extensions["minping.db"] is not b.extensions["minping.db"]
    for x in (a, b):
        x.extensions["minping.db"].dispose()
