"""Device attestation: registered device CAs verify presented chains (real certificates from
`python -m emulator idevids`'s Manufacturer, a real SQLite store), each refusal with its own type."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emulator.security.idevids import Issuer, Manufacturer
from service.callers.devices import DeviceCaSpec, Trust, groups, load_chain, require_new_key
from service.errors import (
    DeviceBlocked,
    DeviceCertificateExpired,
    DeviceCertificateNotYetValid,
    DeviceChainInvalid,
    DeviceChainTooLong,
    DeviceGroupAmbiguous,
    DeviceGroupDisabled,
    DeviceParameterMissing,
    DeviceRevoked,
    DeviceWrongUsage,
    InvalidInput,
    OperationalKeyReused,
    UnknownDeviceCa,
)
from service.store import Store
from service.store.device_cas import DeviceCaQueries

NOW = dt.datetime.now(dt.UTC)
SERIAL_PARAMETERS = {"SerialNumber": {"from": "subject.serialNumber"}}


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


@pytest.fixture(scope="module")
def maker() -> Manufacturer:
    return Manufacturer.create("Acme Sensors")


@pytest.fixture
def queries(tmp_path: Path) -> Iterator[DeviceCaQueries]:
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield DeviceCaQueries(store.engine)
    store.close()


def register(queries: DeviceCaQueries, certificates: bytes, **options: Any) -> str:
    spec = DeviceCaSpec(
        template=options.pop("template", "demo"),
        certificates=certificates.decode(),
        parameters=options.pop("parameters", SERIAL_PARAMETERS),
        **options,
    )
    return groups.register(queries, spec, NOW).ca_id


def trust_of(queries: DeviceCaQueries) -> Trust:
    trust = Trust(queries)
    trust.refresh(force=True)
    return trust


def test_an_idevid_without_san_verifies_to_its_root_and_gives_its_parameters(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    ca_id = register(queries, pem(maker.root.certificate), name="acme")
    _, certificate = maker.issue("SN-000042")
    identity = trust_of(queries).verify(pem(certificate, maker.intermediate.certificate))
    assert identity.ca_id == ca_id and identity.template == "demo"
    assert dict(identity.parameters) == {"SerialNumber": "SN-000042"}
    assert identity.fingerprint_sha256 == certificate.fingerprint(hashes.SHA256()).hex()
    assert identity.issuer == maker.intermediate.certificate.subject.rfc4514_string()
    assert int(identity.serial, 16) == certificate.serial_number
    assert identity.public_key == certificate.public_key()
    assert "public_key" not in repr(identity)


def test_the_device_may_present_only_its_own_certificate_when_the_ca_pem_holds_the_intermediate(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    # What nginx passes on ($ssl_client_escaped_cert is the client's certificate alone).
    register(queries, maker.ca_pem())
    _, certificate = maker.issue("SN-1")
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert trust_of(queries).verify(der).parameters["SerialNumber"] == "SN-1"


def test_an_intermediate_can_be_the_registered_ca(queries: DeviceCaQueries, maker: Manufacturer) -> None:
    register(queries, pem(maker.intermediate.certificate), max_chain_depth=0)
    _, certificate = maker.issue("SN-2")
    assert trust_of(queries).verify([certificate]).parameters["SerialNumber"] == "SN-2"


def test_chains_come_as_pem_der_or_concatenated_der(maker: Manufacturer) -> None:
    _, certificate = maker.issue("SN-3")
    der = [c.public_bytes(serialization.Encoding.DER) for c in (certificate, maker.intermediate.certificate)]
    assert load_chain(b"".join(der)) == load_chain(pem(certificate, maker.intermediate.certificate))
    assert load_chain(der) == load_chain(b"".join(der))
    with pytest.raises(DeviceChainInvalid):
        load_chain(b"\x30\x82\x05\x00not a certificate")
    with pytest.raises(DeviceChainInvalid):
        load_chain(b"garbage")
    with pytest.raises(DeviceChainTooLong):
        load_chain(pem(*[certificate] * 9))


def test_a_certificate_of_an_unregistered_ca_is_unknown(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    register(queries, maker.ca_pem())
    stranger = Manufacturer.create("Other Maker")
    _, certificate = stranger.issue("SN-1")
    with pytest.raises(UnknownDeviceCa) as refused:
        trust_of(queries).verify(pem(certificate, stranger.intermediate.certificate))
    assert refused.value.status == 403
    assert refused.value.certificate.fingerprint_sha256 == certificate.fingerprint(hashes.SHA256()).hex()


def test_a_device_certificate_signed_by_another_key_of_the_same_name_is_invalid(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    register(queries, pem(maker.root.certificate))
    forger = Issuer(ec.generate_private_key(ec.SECP256R1()), maker.intermediate.certificate)
    _, certificate = forger.issue_idevid("SN-1")
    with pytest.raises(DeviceChainInvalid, match="signature does not match"):
        trust_of(queries).verify(pem(certificate, maker.intermediate.certificate))


def test_an_intermediate_of_the_registered_name_but_another_key_is_invalid(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    register(queries, pem(maker.root.certificate))
    forged_root = Issuer(ec.generate_private_key(ec.SECP256R1()), maker.root.certificate)
    forged = forged_root.issue_ca("Acme Sensors Device CA", "Acme Sensors")
    _, certificate = forged.issue_idevid("SN-1")
    with pytest.raises(DeviceChainInvalid, match="signature does not match"):
        trust_of(queries).verify(pem(certificate, forged.certificate))


def test_a_missing_intermediate_leaves_the_ca_unknown(queries: DeviceCaQueries, maker: Manufacturer) -> None:
    register(queries, pem(maker.root.certificate))
    _, certificate = maker.issue("SN-1")
    with pytest.raises(UnknownDeviceCa, match="issuer CN=Acme Sensors Device CA"):
        trust_of(queries).verify([certificate])


def test_another_template_narrows_the_cas_to_none(queries: DeviceCaQueries, maker: Manufacturer) -> None:
    register(queries, maker.ca_pem(), template="sensors")
    _, certificate = maker.issue("SN-1")
    with pytest.raises(UnknownDeviceCa, match="for template 'gateways'"):
        trust_of(queries).verify([certificate], template="gateways")


@pytest.mark.parametrize(
    ("window", "refusal"),
    [
        (
            {"not_before": NOW - dt.timedelta(days=10), "not_after": NOW - dt.timedelta(days=1)},
            DeviceCertificateExpired,
        ),
        ({"not_before": NOW + dt.timedelta(days=1)}, DeviceCertificateNotYetValid),
    ],
)
def test_a_device_certificate_outside_its_validity_is_refused(
    queries: DeviceCaQueries, maker: Manufacturer, window: dict[str, dt.datetime], refusal: type
) -> None:
    register(queries, maker.ca_pem())
    _, certificate = maker.issue("SN-1", **window)
    with pytest.raises(refusal, match="the device certificate"):
        trust_of(queries).verify([certificate])


def test_an_expired_intermediate_is_named(queries: DeviceCaQueries, maker: Manufacturer) -> None:
    register(queries, pem(maker.root.certificate))
    old = maker.root.issue_ca(
        "Acme Old Device CA", not_before=NOW - dt.timedelta(days=30), not_after=NOW - dt.timedelta(days=1)
    )
    _, certificate = old.issue_idevid("SN-1", not_before=NOW - dt.timedelta(days=20))
    with pytest.raises(DeviceCertificateExpired, match="Acme Old Device CA"):
        trust_of(queries).verify(pem(certificate, old.certificate))


@pytest.mark.parametrize(
    "extension",
    [
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
    ],
)
def test_an_eku_without_client_auth_is_the_wrong_usage(
    queries: DeviceCaQueries, maker: Manufacturer, extension: x509.ExtendedKeyUsage
) -> None:
    register(queries, maker.ca_pem())
    _, certificate = maker.issue("SN-1", extensions=[(extension, False)])
    with pytest.raises(DeviceWrongUsage, match="EKU"):
        trust_of(queries).verify([certificate])


def test_an_eku_with_client_auth_is_accepted(queries: DeviceCaQueries, maker: Manufacturer) -> None:
    register(queries, maker.ca_pem())
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    _, certificate = maker.issue("SN-1", extensions=[(eku, False)])
    assert trust_of(queries).verify([certificate]).parameters["SerialNumber"] == "SN-1"


def test_a_key_usage_without_digital_signature_is_the_wrong_usage(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    register(queries, maker.ca_pem())
    agreement_only = x509.KeyUsage(False, False, False, False, True, False, False, False, False)
    _, certificate = maker.issue("SN-1", key_usage=False, extensions=[(agreement_only, True)])
    with pytest.raises(DeviceWrongUsage, match="digitalSignature"):
        trust_of(queries).verify([certificate])


def test_a_chain_longer_than_the_group_allows_is_too_long(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    register(queries, pem(maker.root.certificate), max_chain_depth=1)
    deep = maker.root.issue_ca("Acme Region CA", path_length=None).issue_ca("Acme Line CA")
    _, certificate = deep.issue_idevid("SN-1")
    with pytest.raises(DeviceChainTooLong, match="more than 1 intermediate"):
        trust_of(queries).verify(pem(certificate, *deep.parents[:-1], deep.certificate))


def test_a_path_length_constraint_makes_a_chain_too_long(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    register(queries, pem(maker.root.certificate), max_chain_depth=4)
    # The intermediate allows no CA below it (pathLen 0); a CA it signs anyway cannot sign devices.
    below = maker.intermediate.issue_ca("Acme Rogue CA")
    _, certificate = below.issue_idevid("SN-1")
    with pytest.raises(DeviceChainTooLong, match="pathLenConstraint"):
        trust_of(queries).verify(pem(certificate, below.certificate, maker.intermediate.certificate))


def test_a_ca_certificate_presented_as_a_device_is_an_invalid_chain(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    register(queries, pem(maker.root.certificate))
    with pytest.raises(DeviceChainInvalid, match="basicConstraints"):
        trust_of(queries).verify([maker.intermediate.certificate])


def test_a_weak_device_key_is_an_invalid_chain(queries: DeviceCaQueries, maker: Manufacturer) -> None:
    register(queries, maker.ca_pem())
    _, certificate = maker.issue("SN-1", key=rsa.generate_private_key(65537, 1024))
    with pytest.raises(DeviceChainInvalid, match="RSA key of 1024 bits"):
        trust_of(queries).verify([certificate])


def test_blocked_by_serial_or_fingerprint_and_unblocked(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    ca_id = register(queries, maker.ca_pem())
    _, first = maker.issue("SN-1")
    _, second = maker.issue("SN-2")
    groups.block(queries, ca_id, "serial", "SN-1", NOW, reason="stolen")
    digest = second.fingerprint(hashes.SHA256()).hex().upper()
    groups.block(queries, ca_id, "fingerprint", ":".join(digest[i : i + 2] for i in range(0, 64, 2)), NOW)
    trust = trust_of(queries)
    with pytest.raises(DeviceBlocked, match="SN-1"):
        trust.verify([first])
    with pytest.raises(DeviceBlocked, match=digest.lower()):
        trust.verify([second])
    assert queries.unblock(ca_id, "serial", "SN-1", NOW)
    trust.refresh(force=True)
    assert trust.verify([first]).parameters["SerialNumber"] == "SN-1"


def test_blocking_an_intermediate_blocks_its_devices(queries: DeviceCaQueries, maker: Manufacturer) -> None:
    ca_id = register(queries, pem(maker.root.certificate))
    groups.block(
        queries, ca_id, "fingerprint", maker.intermediate.certificate.fingerprint(hashes.SHA256()).hex(), NOW
    )
    _, certificate = maker.issue("SN-1")
    with pytest.raises(DeviceBlocked, match="Device CA"):
        trust_of(queries).verify(pem(certificate, maker.intermediate.certificate))


def test_a_loaded_crl_revokes_what_it_lists(queries: DeviceCaQueries, maker: Manufacturer) -> None:
    ca_id = register(queries, maker.ca_pem())
    _, revoked = maker.issue("SN-1")
    _, kept = maker.issue("SN-2")
    record = groups.put_crl(queries, ca_id, maker.intermediate.crl([revoked]), NOW)
    assert record.revoked == 1 and "Device CA" in record.issuer
    trust = trust_of(queries)
    with pytest.raises(DeviceRevoked, match=format(revoked.serial_number, "X")):
        trust.verify([revoked])
    assert trust.verify([kept]).parameters["SerialNumber"] == "SN-2"


def test_a_root_crl_revokes_an_intermediate(queries: DeviceCaQueries, maker: Manufacturer) -> None:
    ca_id = register(queries, maker.ca_pem())
    groups.put_crl(queries, ca_id, maker.root.crl([maker.intermediate.certificate]), NOW)
    _, certificate = maker.issue("SN-1")
    with pytest.raises(DeviceRevoked, match="Device CA"):
        trust_of(queries).verify([certificate])


def test_a_crl_not_signed_by_the_registered_ca_is_refused(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    ca_id = register(queries, maker.ca_pem())
    impostor = Issuer(ec.generate_private_key(ec.SECP256R1()), maker.intermediate.certificate)
    with pytest.raises(InvalidInput, match="signature does not verify") as refused:
        groups.put_crl(queries, ca_id, impostor.crl([]), NOW)
    assert refused.value.status == 422 and "crl" in refused.value.extra["errors"]
    with pytest.raises(InvalidInput, match="not this CA nor a certificate of its chain"):
        groups.put_crl(queries, ca_id, Manufacturer.create("Other").intermediate.crl([]), NOW)
    with pytest.raises(InvalidInput, match="not a CRL"):
        groups.put_crl(queries, ca_id, b"nonsense", NOW)
    assert queries.crl(ca_id) is None


def test_a_disabled_group_refuses_its_devices(queries: DeviceCaQueries, maker: Manufacturer) -> None:
    ca_id = register(queries, maker.ca_pem(), enabled=False)
    _, certificate = maker.issue("SN-1")
    trust = trust_of(queries)
    with pytest.raises(DeviceGroupDisabled, match=ca_id):
        trust.verify([certificate])
    assert groups.change(queries, ca_id, {"enabled": True}, NOW)
    trust.refresh(force=True)
    assert trust.verify([certificate]).ca_id == ca_id


def test_one_ca_for_two_templates_needs_the_template_named(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    sensors = register(queries, maker.ca_pem(), template="sensors")
    register(queries, maker.ca_pem(), template="gateways")
    _, certificate = maker.issue("SN-1")
    trust = trust_of(queries)
    with pytest.raises(DeviceGroupAmbiguous, match="gateways, sensors"):
        trust.verify([certificate])
    assert trust.verify([certificate], template="sensors").ca_id == sensors


def test_parameters_from_san_uri_with_a_pattern_cn_and_fixed_values(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    register(
        queries,
        maker.ca_pem(),
        parameters={
            "SerialNumber": {"from": "subject.CN"},
            "Model": {"from": "san.uri", "pattern": "^urn:acme:model:([A-Z0-9]+)$"},
            "Host": {"from": "san.dns"},
            "Site": {"value": "plant-3"},
        },
    )
    san = x509.SubjectAlternativeName(
        [
            x509.UniformResourceIdentifier("https://acme.example/device"),
            x509.UniformResourceIdentifier("urn:acme:model:TX200"),
            x509.DNSName("sn-1.devices.acme.example"),
        ]
    )
    _, certificate = maker.issue("SN-1", common_name="acme-SN-1", extensions=[(san, False)])
    assert dict(trust_of(queries).verify([certificate]).parameters) == {
        "SerialNumber": "acme-SN-1",
        "Model": "TX200",
        "Host": "sn-1.devices.acme.example",
        "Site": "plant-3",
    }


def test_a_certificate_without_the_parameters_source_is_refused(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    register(queries, maker.ca_pem(), parameters={"Model": {"from": "san.uri", "pattern": "model:(.+)"}})
    _, certificate = maker.issue("SN-1")
    with pytest.raises(DeviceParameterMissing, match="'Model' comes from the certificate's san.uri"):
        trust_of(queries).verify([certificate])


def test_a_pattern_runs_in_linear_time_on_a_hostile_subject(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    register(
        queries, maker.ca_pem(), parameters={"SerialNumber": {"from": "subject.CN", "pattern": "^((?:a+)+)$"}}
    )
    _, certificate = maker.issue("SN-1", common_name="a" * 60 + "!")
    with pytest.raises(DeviceParameterMissing):  # a backtracking engine would not return
        trust_of(queries).verify([certificate])


def test_registration_names_every_bad_field(queries: DeviceCaQueries, maker: Manufacturer) -> None:
    key_pem = maker.root.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    spec = DeviceCaSpec(
        template="no spaces!",
        certificates=(maker.ca_pem() + key_pem).decode(),
        parameters={
            "SerialNumber": {"from": "subject.email"},
            "Model": {"from": "san.uri", "pattern": "(a)(b)"},
        },
        reprovision="twice",
        max_chain_depth=99,
        rate_per_minute=0,
    )
    with pytest.raises(InvalidInput) as refused:
        groups.register(queries, spec, NOW)
    errors = refused.value.extra["errors"]
    assert set(errors) == {
        "template",
        "certificates",
        "parameters.SerialNumber",
        "parameters.Model",
        "reprovision",
        "max_chain_depth",
        "rate_per_minute",
    }
    assert "private key" in errors["certificates"][0]
    assert "PRIVATE KEY" not in str(refused.value.problem())
    assert queries.list() == []


def test_registration_refuses_a_non_ca_a_rule_re2_cannot_run_and_only_fixed_values(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    _, device = maker.issue("SN-1")
    cases = [
        (pem(device), SERIAL_PARAMETERS, "not a CA certificate"),
        (maker.ca_pem(), {"SerialNumber": {"from": "subject.CN", "pattern": "(a)\\1"}}, "backreferences"),
        (maker.ca_pem(), {"Site": {"value": "x"}}, "at least one parameter must come from the device"),
        (maker.ca_pem(), {"SerialNumber": {"from": "subject.CN", "value": "x"}}, "nothing else"),
    ]
    for certificates, parameters, why in cases:
        with pytest.raises(InvalidInput, match=why):
            register(queries, certificates, parameters=parameters)


def test_the_same_ca_twice_for_one_template_is_refused(queries: DeviceCaQueries, maker: Manufacturer) -> None:
    register(queries, maker.ca_pem())
    with pytest.raises(InvalidInput, match="already registered for template 'demo'"):
        register(queries, maker.ca_pem())


def test_a_new_block_reaches_a_worker_within_its_refresh(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    ca_id = register(queries, maker.ca_pem())
    _, certificate = maker.issue("SN-1")
    clock = [100.0]
    trust = Trust(queries, refresh_seconds=2.0, clock=lambda: clock[0])
    trust.verify([certificate])
    groups.block(queries, ca_id, "serial", "SN-1", NOW)
    clock[0] += 1.0
    trust.verify([certificate])  # cached: at most refresh_seconds old
    clock[0] += 1.5
    with pytest.raises(DeviceBlocked):
        trust.verify([certificate])


def test_a_ca_registered_at_run_time_is_trusted_without_a_restart(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    clock = [0.0]
    trust = Trust(queries, refresh_seconds=2.0, clock=lambda: clock[0])
    _, certificate = maker.issue("SN-1")
    with pytest.raises(UnknownDeviceCa):
        trust.verify([certificate])
    register(queries, maker.ca_pem())
    clock[0] += 2.0
    assert trust.verify([certificate]).parameters["SerialNumber"] == "SN-1"
    queries.delete(queries.list()[0].ca_id)
    clock[0] += 2.0
    with pytest.raises(UnknownDeviceCa):
        trust.verify([certificate])


def test_the_operational_key_must_be_new(maker: Manufacturer) -> None:
    device_key, certificate = maker.issue("SN-1")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SN-1")])
    same = x509.CertificateSigningRequestBuilder().subject_name(name).sign(device_key, hashes.SHA256())
    with pytest.raises(OperationalKeyReused) as refused:
        require_new_key(certificate.public_key(), same)
    assert refused.value.status == 422 and refused.value.extra["errors"]["csr"]
    assert "BEGIN" not in refused.value.detail
    fresh = ec.generate_private_key(ec.SECP256R1())
    require_new_key(
        certificate.public_key(),
        x509.CertificateSigningRequestBuilder().subject_name(name).sign(fresh, hashes.SHA256()),
    )


def test_the_body_adds_only_parameters_the_group_leaves_open(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    register(queries, maker.ca_pem(), parameters={**SERIAL_PARAMETERS, "Site": {"value": "plant-3"}})
    _, certificate = maker.issue("SN-1")
    identity = trust_of(queries).verify([certificate])
    assert identity.parameters_with({"Color": "red", "SerialNumber": "SN-1"}) == {
        "SerialNumber": "SN-1",
        "Site": "plant-3",
        "Color": "red",
    }
    with pytest.raises(InvalidInput) as refused:
        identity.parameters_with({"SerialNumber": "SN-999", "Site": "elsewhere"})
    assert set(refused.value.extra["errors"]) == {"parameters.SerialNumber", "parameters.Site"}


def test_an_enabled_groups_refusal_outranks_a_disabled_group(
    queries: DeviceCaQueries, maker: Manufacturer
) -> None:
    sensors = register(queries, maker.ca_pem(), template="sensors")
    register(queries, maker.ca_pem(), template="retired", enabled=False)
    _, certificate = maker.issue("SN-1")
    groups.block(queries, sensors, "serial", "SN-1", NOW)
    with pytest.raises(DeviceBlocked):
        trust_of(queries).verify([certificate])
