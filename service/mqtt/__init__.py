"""MQTT connections to AWS IoT: the only users of paho, awscrt and botocore."""
