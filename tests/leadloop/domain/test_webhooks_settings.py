"""The webhook settings: every provider off by default, and a bad value named when the process starts."""

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from leadloop.infra.settings import Settings, setting_errors


def _errors(**values: object) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **values)  # type: ignore[call-arg]
    return setting_errors(caught.value)


def test_every_provider_is_off_by_default() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ses_topic_arns == []
    assert settings.sendgrid_webhook_public_key is None
    assert settings.mailgun_signing_key is None
    assert settings.postmark_webhook_user is None
    assert settings.postmark_webhook_password is None


def test_good_values_are_taken() -> None:
    der = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        ses_topic_arns=["arn:aws:sns:eu-west-1:123456789012:ses-bounces", "arn:aws-cn:sns:cn-north-1:123456789012:t"],
        sendgrid_webhook_public_key=base64.b64encode(der).decode(),
        mailgun_signing_key="key-abc",
        postmark_webhook_user="postmark",
        postmark_webhook_password="pm-pass-9f3k",
    )
    assert settings.mailgun_signing_key is not None
    assert settings.mailgun_signing_key.get_secret_value() == "key-abc"
    assert "pm-pass-9f3k" not in repr(settings) and "key-abc" not in repr(settings)


def test_a_bad_topic_arn_is_named() -> None:
    [error] = _errors(ses_topic_arns=["arn:aws:sqs:eu-west-1:123456789012:queue"])
    assert error.startswith("LEADLOOP_SES_TOPIC_ARNS:") and "not an SNS topic ARN" in error


def test_a_bad_sendgrid_key_is_named() -> None:
    [error] = _errors(sendgrid_webhook_public_key="not-a-key")
    assert error.startswith("LEADLOOP_SENDGRID_WEBHOOK_PUBLIC_KEY:") and "public key" in error


def test_postmark_credentials_come_in_pairs() -> None:
    [error] = _errors(postmark_webhook_user="postmark")
    assert "LEADLOOP_POSTMARK_WEBHOOK_PASSWORD together" in error
