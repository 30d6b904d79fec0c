"""The IMAP reader's settings: defaults that read INBOX over TLS, and each bad value named, before anything connects."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from leadloop.infra.settings import Settings, setting_errors


def _errors(**values: object) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **values)  # type: ignore[call-arg]
    return setting_errors(caught.value)


def test_the_defaults_read_inbox_over_tls_and_mark_with_a_keyword() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.imap_security, settings.imap_port_or_default(), settings.imap_folders) == ("ssl", 993, ["INBOX"])
    assert (settings.imap_after, settings.imap_flag) == ("flag", "$LeadloopStored")
    assert settings.imap_problems() == [
        "LEADLOOP_IMAP_HOST is not set",
        "LEADLOOP_IMAP_USER is not set",
        "LEADLOOP_IMAP_PASSWORD is not set",
    ]
    plain = Settings(_env_file=None, imap_security="starttls")  # type: ignore[call-arg]
    assert plain.imap_port_or_default() == 143


def test_a_complete_mailbox_has_no_problems(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        imap_host="imap.example.com",
        imap_user="bounces@example.com",
        imap_password="pw",
        imap_folders=["INBOX", "Bounces/ΑΠ"],
        imap_after="move",
        imap_move_to="Stored",
    )
    assert settings.imap_problems() == []
    missing = settings.model_copy(update={"imap_ca_file": tmp_path / "nope.pem"})
    assert missing.imap_problems() == [f"LEADLOOP_IMAP_CA_FILE '{tmp_path / 'nope.pem'}' is not a file"]


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"imap_security": "tls"}, "LEADLOOP_IMAP_SECURITY: Input should be 'ssl', 'starttls' or 'none'"),
        ({"imap_port": 0}, "LEADLOOP_IMAP_PORT: Input should be greater than or equal to 1"),
        ({"imap_folders": []}, 'LEADLOOP_IMAP_FOLDERS: name at least one folder, e.g. ["INBOX"]'),
        ({"imap_folders": ["INBOX", "INBOX"]}, "LEADLOOP_IMAP_FOLDERS: a folder is named twice"),
        ({"imap_folders": ["Lists/*"]}, "LEADLOOP_IMAP_FOLDERS: 'Lists/*' is not a folder name: * and % are IMAP"),
        ({"imap_folders": [" INBOX"]}, "LEADLOOP_IMAP_FOLDERS: ' INBOX' is not a folder name"),
        ({"imap_flag": "\\Seen"}, "LEADLOOP_IMAP_FLAG: '\\\\Seen' is not an IMAP keyword"),
        ({"imap_flag": "two words"}, "LEADLOOP_IMAP_FLAG: 'two words' is not an IMAP keyword"),
        ({"imap_after": "delete"}, "LEADLOOP_IMAP_AFTER: Input should be 'flag' or 'move'"),
        ({"imap_after": "move"}, "LEADLOOP_IMAP_AFTER=move needs LEADLOOP_IMAP_MOVE_TO"),
        ({"imap_after": "move", "imap_move_to": "INBOX"}, "LEADLOOP_IMAP_MOVE_TO must not be one of"),
        ({"imap_idle_seconds": 3600}, "LEADLOOP_IMAP_IDLE_SECONDS: Input should be less than or equal to 1740"),
        ({"imap_poll_seconds": 0}, "LEADLOOP_IMAP_POLL_SECONDS: Input should be greater than 0"),
        ({"imap_host": "imap.example.com\n"}, "LEADLOOP_IMAP_HOST: no surrounding spaces or control characters"),
    ],
)
def test_a_bad_value_is_named(values: dict[str, object], said: str) -> None:
    errors = _errors(**values)
    assert any(said in error for error in errors), errors
