"""Fleet provisioning over MQTT: the operations' table (`operations`), their handlers
(`handlers`), provisioning templates (`templates`, evaluated by `evaluation` with `intrinsics`
and AWS's `naming` rules), the pre-provisioning hook (`hooks`) and fault injection per
operation (`faults`); `check-template` is `template_check`."""
