"""A small MQTT 3.1.1 and 5 server: wire codecs, topics, per-connection protocol and routing.

Nothing in this package knows about AWS fleet provisioning; the broker hands publishes to
reserved topics to a handler it is given (see `emulator.fleet.handlers`).
"""
