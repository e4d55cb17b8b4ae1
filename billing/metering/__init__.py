"""Metering: who calls (an API key and its wallet), and what each metered call holds, settles and records."""
