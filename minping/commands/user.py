"""``minping user``: add, list, unlock, disable and reset-password.

A password is read from ``MINPING_NEW_PASSWORD`` or typed at a hidden prompt
(twice), never taken from the command line; weak passwords are refused
(:func:`minping.users.check_password_strength`).
"""

from __future__ import annotations

import os

import click

from minping.commands.options import database_url_option, json_option


def _db(database_url):
    from minping.commands.options import cli_settings
    from minping.db import Database

    return Database(cli_settings(database_url).database_url)


def _echo(as_json: bool, data, text: str) -> None:
    if as_json:
        from minping.commands.options import echo_json

        echo_json(data)
    else:
        click.echo(text)


def new_password() -> str:
    """From ``MINPING_NEW_PASSWORD``, else a hidden prompt typed twice."""
    password = os.environ.get("MINPING_NEW_PASSWORD")
    if password is not None:
        return password
    return click.prompt("New password", hide_input=True, confirmation_prompt=True)


database_option = database_url_option


@click.group("user")
def user_group() -> None:
    """Interviewers, supervisors and statisticians."""


@user_group.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["interviewer", "supervisor", "statistician"]),
              required=True)
@click.option("--name", "display_name", help="Name shown on the screens.")
@click.option("--language", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@database_option
@json_option
def user_add(username, role, display_name, language, database_url, as_json) -> None:
    """Create a user who can log in to the CATI screens (password: prompt or
    MINPING_NEW_PASSWORD)."""
    from minping.users import create_user

    password = new_password()
    db = _db(database_url)
    try:
        with db.transaction() as session:
            user = create_user(session, username=username, password=password, role=role,
                               display_name=display_name or username, language=language)
            result = {"id": user.id, "username": user.username, "role": user.role}
    finally:
        db.dispose()
    _echo(as_json, result, f"user {username!r} created with role {role}")


@user_group.command("list")
@database_option
@json_option
def user_list(database_url, as_json) -> None:
    """List the users, with their role, whether active and whether locked."""
    from minping.users import list_users

    db = _db(database_url)
    try:
        with db.transaction() as session:
            users = list_users(session)
    finally:
        db.dispose()
    lines = [f"{u['username']:<20} {u['role']:<13} "
             f"{'active' if u['active'] else 'disabled':<9}"
             f"{' locked until ' + u['locked_until'] if u['locked_until'] else ''}"
             for u in users]
    _echo(as_json, users, "\n".join(lines) or "no users")


@user_group.command("unlock")
@click.argument("username")
@database_option
@json_option
def user_unlock(username, database_url, as_json) -> None:
    """End USERNAME's lock-out and forget its failed log-ins."""
    from minping.users import unlock_user

    db = _db(database_url)
    try:
        with db.transaction() as session:
            unlock_user(session, username)
    finally:
        db.dispose()
    _echo(as_json, {"username": username, "unlocked": True}, f"user {username!r} unlocked")


@user_group.command("disable")
@click.argument("username")
@database_option
@json_option
def user_disable(username, database_url, as_json) -> None:
    """Disable USERNAME: no more log-ins, open sessions end now."""
    from minping.users import disable_user

    db = _db(database_url)
    try:
        with db.transaction() as session:
            ended = disable_user(session, username)
    finally:
        db.dispose()
    _echo(as_json, {"username": username, "disabled": True, "sessions_ended": ended},
          f"user {username!r} disabled ({ended} open session(s) ended)")


@user_group.command("reset-password")
@click.argument("username")
@database_option
@json_option
def user_reset_password(username, database_url, as_json) -> None:
    """Give USERNAME a new password (prompt or MINPING_NEW_PASSWORD); lifts a lock-out
    and ends the user's open sessions."""
    from minping.users import reset_password

    password = new_password()
    db = _db(database_url)
    try:
        with db.transaction() as session:
            ended = reset_password(session, username, password)
    finally:
        db.dispose()
    _echo(as_json, {"username": username, "sessions_ended": ended},
          f"password of {username!r} changed ({ended} open session(s) ended)")
