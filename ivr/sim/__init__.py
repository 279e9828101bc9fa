"""Parts of the local Twilio simulator; the public entry point is :mod:`ivr.simulator`."""
