"""Amazon SES through SNS: signatures made with a locally generated certificate, SES's documented notices."""

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from leadloop.domain.webhooks import WebhookRefused, ses

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
SUBSCRIBE_URL = (
    "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=2336412f37"
)


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CERT = _certificate(KEY)
OTHER_CERT = _certificate(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _signed(fields: dict[str, str], version: str = "2", key: rsa.RSAPrivateKey = KEY) -> dict[str, str]:
    doc = {**fields, "SignatureVersion": version, "SigningCertURL": CERT_URL}
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(ses.SnsMessage(doc).string_to_sign(), padding.PKCS1v15(), digest)
    return {**doc, "Signature": base64.b64encode(signature).decode()}


def _notification(message: Mapping[str, object], version: str = "2", subject: str | None = None) -> dict[str, str]:
    fields = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": json.dumps(message),
        "Timestamp": "2026-12-01T05:59:00.000Z",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }
    if subject is not None:
        fields["Subject"] = subject
    return _signed(fields, version)


def _confirmation(kind: str = "SubscriptionConfirmation", url: str = SUBSCRIBE_URL) -> dict[str, str]:
    return _signed(
        {
            "Type": kind,
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37",
            "TopicArn": TOPIC,
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, visit "
            "the SubscribeURL included in this message.",
            "SubscribeURL": url,
            "Timestamp": "2026-12-01T05:59:00.000Z",
        }
    )


def _accept(doc: dict[str, str], cert: bytes = CERT) -> ses.SnsMessage:
    message = ses.read_message(json.dumps(doc).encode(), [TOPIC])
    ses.verify_signature(message, cert, NOW)
    return message


MAIL = {
    "timestamp": "2026-12-01T05:50:00.000Z",
    "source": "hello@leadloop.example",
    "messageId": "0102015fd91a5ca3-93c245fe-e333-46ae-8fed-96160d20cfab-000000",
    "destination": ["jane@example.com"],
    "headersTruncated": False,
    "headers": [
        {"name": "From", "value": "hello@leadloop.example"},
        {"name": "Message-ID", "value": "<lead-7.c0.welcome@leadloop.example>"},
    ],
}


def _bounce(bounce_type: str, sub_type: str, status: str = "5.1.1", diagnostic: str = "") -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": sub_type,
            "reportingMTA": "dns; email.example.com",
            "bouncedRecipients": [
                {
                    "emailAddress": "jane@example.com",
                    "status": status,
                    "action": "failed",
                    "diagnosticCode": diagnostic or f"smtp; 550 {status} <jane@example.com>... User",
                }
            ],
            "timestamp": "2026-12-01T05:58:38.237Z",
            "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
            "remoteMtaIp": "127.0.2.0",
        },
        "mail": MAIL,
    }


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("subject", [None, "Amazon SES Email Event Notification"])
def test_a_signed_bounce_notification_is_accepted_and_read(version: str, subject: str | None) -> None:
    message = _accept(_notification(_bounce("Permanent", "General"), version, subject))
    [event] = ses.events(message)
    assert event.provider == "ses"
    assert event.kind == "hard_bounce"
    assert event.recipient == "jane@example.com"
    assert event.message_id == "<lead-7.c0.welcome@leadloop.example>"
    assert event.status_code == "5.1.1"
    assert event.diagnostic == "smtp; 550 5.1.1 <jane@example.com>... User"
    assert event.occurred_at == datetime(2026, 12, 1, 5, 58, 38, 237000, tzinfo=UTC)
    assert event.event_id == "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000/jane@example.com"
    assert event.raw_type == "Bounce/Permanent/General"


def test_subscription_confirmation_gives_the_url_to_visit() -> None:
    assert ses.subscribe_url(_accept(_confirmation())) == SUBSCRIBE_URL
    assert ses.events(_accept(_confirmation())) == []


def test_unsubscribe_confirmation_is_verified_and_has_nothing_to_visit() -> None:
    message = _accept(_confirmation("UnsubscribeConfirmation"))
    with pytest.raises(WebhookRefused, match="no SubscribeURL"):
        ses.subscribe_url(message)


def test_a_subscribe_url_off_sns_is_refused() -> None:
    message = _accept(_confirmation(url="https://sns.eu-west-1.amazonaws.com.evil.example/?Action=Confirm"))
    with pytest.raises(WebhookRefused, match="SubscribeURL"):
        ses.subscribe_url(message)


def test_one_changed_byte_is_refused() -> None:
    doc = _notification(_bounce("Permanent", "General"))
    doc["Message"] = doc["Message"].replace("jane@", "jake@")
    with pytest.raises(WebhookRefused, match="signature does not match"):
        _accept(doc)


def test_a_changed_subject_or_a_dropped_subject_is_refused() -> None:
    doc = _notification(_bounce("Permanent", "General"), subject="hello")
    with pytest.raises(WebhookRefused, match="signature does not match"):
        _accept({**doc, "Subject": "hellO"})
    with pytest.raises(WebhookRefused, match="signature does not match"):
        _accept({k: v for k, v in doc.items() if k != "Subject"})


def test_a_certificate_with_another_key_is_refused() -> None:
    with pytest.raises(WebhookRefused, match="signature does not match"):
        _accept(_notification(_bounce("Permanent", "General")), cert=OTHER_CERT)


def test_signature_version_1_checked_as_version_2_is_refused() -> None:
    doc = _notification(_bounce("Permanent", "General"), version="1")
    with pytest.raises(WebhookRefused, match="signature does not match"):
        _accept({**doc, "SignatureVersion": "2"})


def test_an_expired_certificate_is_refused() -> None:
    message = ses.read_message(json.dumps(_notification(_bounce("Permanent", "General"))).encode(), [TOPIC])
    with pytest.raises(WebhookRefused, match="not valid at"):
        ses.verify_signature(message, CERT, NOW + timedelta(days=60))


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
        "http://sns.eu-west-1.amazonaws.com/cert.pem",
        "https://user@sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/cert.pem",
        "https://s3.amazonaws.com/cert.pem",
        "not a url",
    ],
)
def test_a_certificate_url_off_sns_is_refused_before_anything_is_fetched(url: str) -> None:
    doc = {**_notification(_bounce("Permanent", "General")), "SigningCertURL": url}
    with pytest.raises(WebhookRefused, match="SigningCertURL"):
        ses.read_message(json.dumps(doc).encode(), [TOPIC])


def test_a_china_region_certificate_url_is_accepted() -> None:
    assert ses.sns_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem", "SigningCertURL")


def test_a_topic_not_allowed_is_refused() -> None:
    body = json.dumps(_notification(_bounce("Permanent", "General"))).encode()
    with pytest.raises(WebhookRefused, match="LEADLOOP_SES_TOPIC_ARNS"):
        ses.read_message(body, ["arn:aws:sns:eu-west-1:123456789012:other"])
    with pytest.raises(WebhookRefused, match="LEADLOOP_SES_TOPIC_ARNS"):
        ses.read_message(body, [])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"Type": "Notification"}', "'Message' is missing"),
        (b'{"Type": "Spam"}', "not one of"),
    ],
)
def test_malformed_bodies_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRefused, match=reason):
        ses.read_message(body, [TOPIC])


def test_a_missing_signature_or_unknown_version_is_refused() -> None:
    doc = _notification(_bounce("Permanent", "General"))
    with pytest.raises(WebhookRefused, match="'Signature' is missing"):
        ses.read_message(json.dumps({k: v for k, v in doc.items() if k != "Signature"}).encode(), [TOPIC])
    with pytest.raises(WebhookRefused, match="SignatureVersion '3'"):
        ses.read_message(json.dumps({**doc, "SignatureVersion": "3"}).encode(), [TOPIC])
    with pytest.raises(WebhookRefused, match="not base64"):
        _accept({**doc, "Signature": "!!!"})


@pytest.mark.parametrize(
    ("bounce_type", "sub_type", "status", "kind"),
    [
        ("Permanent", "General", "5.1.1", "hard_bounce"),
        ("Permanent", "NoEmail", "5.1.1", "hard_bounce"),
        ("Permanent", "Suppressed", "5.1.1", "hard_bounce"),
        ("Permanent", "OnAccountSuppressionList", "5.1.1", "hard_bounce"),
        ("Permanent", "General", "5.7.1", "policy_block"),
        ("Transient", "General", "4.4.7", "soft_bounce"),
        ("Transient", "MailboxFull", "5.2.2", "soft_bounce"),
        ("Transient", "MessageTooLarge", "5.3.4", "soft_bounce"),
        ("Transient", "ContentRejected", "5.6.0", "policy_block"),
        ("Transient", "AttachmentRejected", "5.6.0", "policy_block"),
        ("Undetermined", "Undetermined", "5.1.1", "hard_bounce"),
        ("Undetermined", "Undetermined", "4.2.2", "soft_bounce"),
        ("Undetermined", "Undetermined", "", "soft_bounce"),
    ],
)
def test_bounce_kinds(bounce_type: str, sub_type: str, status: str, kind: str) -> None:
    notice = _bounce(bounce_type, sub_type, status, diagnostic="smtp; 550 no reason given" if not status else "")
    [event] = ses.events(_accept(_notification(notice)))
    assert event.kind == kind
    assert event.raw_type == f"Bounce/{bounce_type}/{sub_type}"


def test_one_event_per_bounced_recipient() -> None:
    notice = _bounce("Permanent", "General")
    recipients = notice["bounce"]["bouncedRecipients"]
    recipients.append({"emailAddress": "joe@example.com", "status": "5.1.1"})
    found = ses.events(_accept(_notification(notice)))
    assert [e.recipient for e in found] == ["jane@example.com", "joe@example.com"]
    assert len({e.event_id for e in found}) == 2


def test_a_complaint_is_read_per_recipient_and_not_spam_is_none() -> None:
    complaint: dict[str, Any] = {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "AnyCompany Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": "richard@example.com"}],
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2026-12-01T05:58:35.877Z",
            "timestamp": "2026-12-01T05:58:38.237Z",
            "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
        },
        "mail": {**MAIL, "headers": [], "commonHeaders": {"messageId": "lead-9.c1.step2@leadloop.example"}},
    }
    [event] = ses.events(_accept(_notification(complaint)))
    assert (event.kind, event.recipient, event.diagnostic) == ("complaint", "richard@example.com", "abuse")
    assert event.message_id == "<lead-9.c1.step2@leadloop.example>"
    complaint["complaint"]["complaintFeedbackType"] = "not-spam"
    assert ses.events(_accept(_notification(complaint))) == []


@pytest.mark.parametrize("notice", ["Delivery", "Send", "Open", "Click", "DeliveryDelay", "Reject"])
def test_other_notices_give_no_event(notice: str) -> None:
    assert ses.events(_accept(_notification({"eventType": notice, "mail": MAIL}))) == []


def test_a_notification_whose_message_is_not_json_is_refused() -> None:
    doc = _signed(
        {
            "Type": "Notification",
            "MessageId": "x",
            "TopicArn": TOPIC,
            "Message": "hello",
            "Timestamp": "2026-12-01T05:59:00.000Z",
        }
    )
    with pytest.raises(WebhookRefused, match="not JSON"):
        ses.events(_accept(doc))


def test_a_bounce_without_its_object_is_refused() -> None:
    with pytest.raises(WebhookRefused, match="no 'bounce' object"):
        ses.events(_accept(_notification({"notificationType": "Bounce", "mail": MAIL})))
