"""The app factory."""

from minping import create_app


def test_create_app_registers_the_blueprints(app):
    from ivr.front import IvrFront

    assert "cati" in app.blueprints
    assert isinstance(app.wsgi_app, IvrFront)  # /ivr/: the webhooks' front, before Flask


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


def test_one_runtime_serves_both_blueprints(tmp_path):
    """The clock, the Twilio client and the configuration come from the app's runtime."""
    from datetime import UTC, datetime

    from cati.views import now as cati_now
    from cati.views import twilio_client as cati_client
    from ivr.webhooks import now as ivr_now
    from ivr.webhooks import twilio_client as ivr_client
    from minping.runtime import runtime_of

    app = create_app({"ENVIRON": {"MINPING_SECRET_KEY": "k"},
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"})
    try:
        runtime = runtime_of(app)
        moment = datetime(2026, 11, 17, 1, 0, tzinfo=UTC)
        with app.app_context():
            assert cati_client() is None  # the simulator's credentials name no gateway
            runtime.use(clock=lambda: moment)
            assert cati_now() == ivr_now() == moment
            client = ivr_client()
            assert client is ivr_client()  # built once
            assert cati_client() is None  # still no gateway for the screens
            runtime.use(twilio_client=client)  # given (a simulator, say): both use it
            assert cati_client() is client is ivr_client()
    finally:
        app.extensions["minping.db"].dispose()
