"""CSV intake: bad rows reported and skipped, good rows kept, names kept exactly as written."""

import pytest

from leadloop.domain.intake import IntakeFileError, parse_csv_text, validate_lead

HEADER = "email,first_name,last_name,company,timezone,locale,source\n"


def test_bom_is_ignored_and_extra_columns_become_attributes() -> None:
    parsed = parse_csv_text("\ufeff" + HEADER + "a@example.com,Ann,Lee,Acme,Europe/Athens,el,webinar\n")
    [lead] = parsed.leads
    assert lead.email == "a@example.com"
    assert lead.attributes == {"source": "webinar"}
    assert parsed.errors == []


def test_file_without_email_column_is_refused_whole() -> None:
    with pytest.raises(IntakeFileError, match="no 'email' column"):
        parse_csv_text("name,company\nAnn,Acme\n")
    with pytest.raises(IntakeFileError, match="empty"):
        parse_csv_text("")


def test_invalid_rows_are_reported_and_valid_rows_kept() -> None:
    text = HEADER + (
        "good@example.com,Good,,,,,\n"
        "not-an-email,Bad,,,,,\n"
        "zone@example.com,Zed,,,Mars/Olympus,,\n"
        "locale@example.com,Lo,,,,english please,\n"
        ",Nobody,,,,,\n"
        "also.good@example.com,Also,,,America/Los_Angeles,en-us,\n"
    )
    parsed = parse_csv_text(text)
    assert [lead.email for lead in parsed.leads] == ["good@example.com", "also.good@example.com"]
    assert parsed.leads[1].locale == "en-US"
    by_row = {e.row: e for e in parsed.errors}
    assert sorted(by_row) == [3, 4, 5, 6]
    assert by_row[3].field == "email" and "not a valid email" in by_row[3].reason
    assert by_row[4].field == "timezone" and "Mars/Olympus" in by_row[4].reason
    assert by_row[5].field == "locale"
    assert by_row[6].field == "email" and "empty" in by_row[6].reason


def test_duplicates_differing_by_case_merge_into_one_lead() -> None:
    text = HEADER + ("Maria@Example.GR,Μαρία,,,,,\n  maria@example.gr ,,Παπαδοπούλου,Ακρόπολις,Europe/Athens,el,fair\n")
    parsed = parse_csv_text(text)
    [lead] = parsed.leads
    assert lead.email == "maria@example.gr"
    assert (lead.first_name, lead.last_name, lead.company) == ("Μαρία", "Παπαδοπούλου", "Ακρόπολις")
    assert parsed.duplicates == 1
    assert parsed.rows_of["maria@example.gr"] == [2, 3]


def test_names_in_any_script_are_kept_exactly() -> None:
    names = [("Μαρία", "Παπαδοπούλου"), ("Łukasz", "Żółkiewski-Gęś"), ("Szőke", "Tünde Árvíztűrő")]
    text = HEADER + "".join(f"p{i}@example.com,{f},{last},,,,\n" for i, (f, last) in enumerate(names))
    parsed = parse_csv_text(text)
    assert [(lead.first_name, lead.last_name) for lead in parsed.leads] == names


def test_control_characters_in_names_are_refused() -> None:
    result = validate_lead({"email": "x@example.com", "first_name": "Eve\r\nBcc: all@example.com"})
    assert isinstance(result, list)
    assert result[0][0] == "first_name"


def test_too_many_values_in_a_row() -> None:
    parsed = parse_csv_text("email,first_name\na@example.com,A,extra\n")
    assert parsed.leads == []
    assert parsed.errors[0].row == 2


def test_an_installation_can_refuse_non_ascii_local_parts() -> None:
    from leadloop.domain.intake import intake_context

    text = "email,first_name\njosé@example.com,José\nμαρία@example.gr,Μαρία\nhans@bücher.example,Hans\n"
    default = parse_csv_text(text)
    assert [lead.email for lead in default.leads] == ["josé@example.com", "μαρία@example.gr", "hans@bücher.example"]
    strict = parse_csv_text(text, intake_context(refuse_utf8_local_part=True))
    assert [lead.email for lead in strict.leads] == ["hans@bücher.example"]  # its domain goes out in punycode
    assert [(e.row, e.field) for e in strict.errors] == [(2, "email"), (3, "email")]
    assert all("SMTPUTF8" in e.reason for e in strict.errors)
    assert validate_lead({"email": "josé@example.com"}, intake_context(refuse_utf8_local_part=True)) == [
        ("email", strict.errors[0].reason)
    ]


def test_an_owner_at_a_reserved_domain_is_kept_for_the_roster_to_match() -> None:
    parsed = parse_csv_text(
        "email,owner\n"
        "lead1@example.es,Rep.Madrid@leadloop.test\n"  # .test is special-use, and a rep's address all the same
        "lead2@example.es,not even an address\n"  # matched (or not) against the roster at enrolment, never refused
    )
    assert parsed.errors == []
    assert [lead.owner for lead in parsed.leads] == ["rep.madrid@leadloop.test", "not even an address"]
