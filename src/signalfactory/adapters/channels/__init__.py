"""Delivery channels behind the ``Channel`` port: webhooks (Standard Webhooks signing),
Apprise (Telegram, Slack, Discord, ntfy, MQTT, ...) and e-mail."""
