"""The emulated AWS IoT account's things, certificates and policies: the one place both planes
(fleet provisioning over MQTT, the control plane over HTTPS) read and write, and AWS's rules for
them (`lifecycle`, and `overrides` for a thing RegisterThing meets again), who may connect
(`access`) and the expiry of unredeemed certificates (`expiry`). What RegisterThing asks of it is
a value of `specs`; what it answers, a record of `records`."""

from emulator.registry.store import TOKEN_MESSAGE, Registry

__all__ = ["TOKEN_MESSAGE", "Registry"]
