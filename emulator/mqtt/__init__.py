"""A small MQTT 3.1.1 server: wire codec, topics, per-connection protocol and routing.

Nothing in this package knows about AWS fleet provisioning; the broker hands publishes to
reserved topics to a handler it is given (see `emulator.provisioning`).
"""
