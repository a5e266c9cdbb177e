"""The fleet-provisioning flow over a pool of MQTT links: create a certificate, register a thing."""
