"""TwiML for the keypad interview (pure: configuration and URLs in, XML out).

Each function returns the text of one TwiML document built with
``twilio.twiml.voice_response.VoiceResponse``.  Prompts come from the survey
configuration: a ``<Play>`` where ``[prompts.audio.<lang>]`` gives a recording,
else a ``<Say>`` with the language's voice.  Questions are
``<Gather input="dtmf" numDigits="1" finishOnKey="" actionOnEmptyResult="true">``
so that silence reaches the application too (it re-asks, then moves on).

References
----------
.. [1] Twilio, TwiML ``<Gather>``, ``<Say>``, ``<Play>``, ``<Record>``,
   https://www.twilio.com/docs/voice/twiml
.. [2] Twilio, Text-to-speech voices and languages ("cmn-CN" with Polly.Zhiyu),
   https://www.twilio.com/docs/voice/twiml/say/text-speech
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from twilio.twiml.voice_response import Gather, VoiceResponse

#: Documents built once per configuration, prompt, language and unit, with a
#: placeholder where the action URL goes (the URL carries the attempt).
_CACHE: dict[tuple, tuple[object, str]] = {}
_CACHE_SIZE = 4096
_ACTION = "\x1e" "action" "\x1e"
#: What ElementTree escapes in an attribute value, in its order (``&`` first).
_ATTRIBUTE_ESCAPES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#09;"}


def _cached(key: tuple, cfg, build, action: str | None) -> str:
    """``build(action)``'s text, built once per ``key`` and configuration object.

    The text is built with a placeholder action and the escaped URL put in its
    place, so it equals what ``build(action)`` returns.
    """
    entry = _CACHE.get(key)
    if entry is None or entry[0] is not cfg:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        entry = _CACHE[key] = (cfg, build(_ACTION if action is not None else None))
    text = entry[1]
    if action is None:
        return text
    return text.replace(_ACTION, escape(action, _ATTRIBUTE_ESCAPES))

#: Our prompt language -> Twilio's ``language`` attribute of ``<Say>``.
TWILIO_LANGUAGES = {"en": "en-US", "cmn-CN": "cmn-CN", "zh": "cmn-CN", "zh-CN": "cmn-CN"}


def twilio_language(lang: str) -> str:
    """The ``language`` Twilio pairs with the configured voice for ``lang``."""
    return TWILIO_LANGUAGES.get(lang, lang)


def speak(target: VoiceResponse | Gather, cfg, key: str, lang: str, **values: object) -> None:
    """Append prompt ``key`` to ``target``: recorded audio if configured, else speech."""
    audio = cfg.audio(key, lang)
    if audio:
        target.play(audio)
    else:
        target.say(cfg.render_prompt(key, lang, **values), voice=cfg.ivr.voice(lang),
                   language=twilio_language(lang))


def _gather(cfg, action: str) -> Gather:
    return Gather(input="dtmf", num_digits=1, finish_on_key="", action_on_empty_result=True,
                  timeout=cfg.ivr.gather_timeout_seconds, action=action, method="POST")


def greeting(cfg, lang: str, *, action: str, notice: str | None = None) -> str:
    """The greeting naming the center and the purpose, then the consent question.

    ``notice`` is a prompt key said first (``invalid_key`` / ``no_answer`` on a re-ask);
    the greeting itself is only said on the first try.
    """
    return _cached(("greeting", id(cfg), lang, notice), cfg,
                   lambda a: _greeting(cfg, lang, action=a, notice=notice), action)


def _greeting(cfg, lang: str, *, action: str, notice: str | None) -> str:
    response = VoiceResponse()
    gather = _gather(cfg, action)
    if notice:
        speak(gather, cfg, notice, lang)
    else:
        speak(gather, cfg, "greeting", lang)
    speak(gather, cfg, "consent", lang)
    response.append(gather)
    return str(response)


def question(cfg, lang: str, *, unit: str, track: str = "", action: str,
             notice: str | None = None) -> str:
    """One rating question (``notice``: a prompt said before it on a re-ask)."""
    return _cached(("question", id(cfg), lang, unit, track, notice), cfg,
                   lambda a: _question(cfg, lang, unit=unit, track=track, action=a,
                                       notice=notice), action)


def _question(cfg, lang: str, *, unit: str, track: str, action: str,
              notice: str | None) -> str:
    response = VoiceResponse()
    gather = _gather(cfg, action)
    if notice:
        speak(gather, cfg, notice, lang)
    speak(gather, cfg, "question", lang, unit=unit, track=track)
    response.append(gather)
    return str(response)


def closing(cfg, lang: str, *, comment_action: str | None) -> str:
    """Thanks; then, if ``comment_action`` is given, a capped ``<Record>`` for a comment."""
    return _cached(("closing", id(cfg), lang, comment_action is None), cfg,
                   lambda a: _closing(cfg, lang, comment_action=a), comment_action)


def _closing(cfg, lang: str, *, comment_action: str | None) -> str:
    response = VoiceResponse()
    speak(response, cfg, "thanks", lang)
    if comment_action:
        speak(response, cfg, "comment_invitation", lang)
        response.record(max_length=cfg.ivr.comment_max_seconds, action=comment_action,
                        method="POST", play_beep=True, timeout=5, trim="trim-silence")
    response.hangup()
    return str(response)


def goodbye(cfg, lang: str, key: str) -> str:
    """Say prompt ``key`` (opt-out confirmation, hand-over, unknown caller...) and hang up."""
    return _cached(("goodbye", id(cfg), lang, key), cfg, lambda _: _goodbye(cfg, lang, key),
                   None)


def _goodbye(cfg, lang: str, key: str) -> str:
    response = VoiceResponse()
    speak(response, cfg, key, lang)
    response.hangup()
    return str(response)


def ask_code(cfg, lang: str, *, digits: int, action: str, notice: str | None = None) -> str:
    """Ask an inbound caller for the code of the SMS advance notice."""
    response = VoiceResponse()
    gather = Gather(action=action, method="POST", num_digits=digits, finish_on_key="#",
                    timeout=cfg.ivr.gather_timeout_seconds, action_on_empty_result=True)
    if notice:
        speak(gather, cfg, notice, lang)
    speak(gather, cfg, "verify_code", lang, digits=digits)
    response.append(gather)
    speak(response, cfg, "code_mismatch", lang)
    response.hangup()
    return str(response)


def offer(cfg, lang: str, key: str, *, action: str, notice: str | None = None,
          **values: object) -> str:
    """Prompt ``key`` (a choice by key, e.g. the call-back offer) in a one-key ``<Gather>``."""
    response = VoiceResponse()
    gather = _gather(cfg, action)
    if notice:
        speak(gather, cfg, notice, lang)
    speak(gather, cfg, key, lang, **values)
    response.append(gather)
    return str(response)


def transfer(cfg, lang: str, *, number: str, timeout: int, action: str) -> str:
    """Say the hand-over prompt, then ring an interviewer's phone (``<Dial>``).

    With ``[ivr] byoc_trunk_sid`` the leg goes through the BYOC trunk
    (``<Number byoc="BY...">``), as the outbound calls do.
    """
    response = VoiceResponse()
    speak(response, cfg, "handoff", lang)
    dial = response.dial(action=action, method="POST", timeout=timeout, answer_on_bridge=True)
    byoc = getattr(cfg.ivr, "byoc_trunk_sid", "")
    dial.number(number, **({"byoc": byoc} if byoc else {}))
    return str(response)


def _hangup() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


_HANGUP = _hangup()
_EMPTY = str(VoiceResponse())


def hangup() -> str:
    """Hang up without a word (an answering machine, a call that is over)."""
    return _HANGUP


def empty() -> str:
    """An empty document (the answer to status callbacks)."""
    return _EMPTY
