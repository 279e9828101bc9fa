"""Twilio webhooks (blueprint ``ivr``, mounted at ``/ivr``)."""

from flask import Blueprint

bp = Blueprint("ivr", __name__, url_prefix="/ivr")
