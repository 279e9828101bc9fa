"""Interviewer and supervisor screens (blueprint ``cati``, mounted at ``/cati``)."""

from flask import Blueprint

bp = Blueprint("cati", __name__, url_prefix="/cati", template_folder="templates")
