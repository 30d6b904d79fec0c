"""Providers' published lists read into ranges, and a ranges file built from them: formats told apart, overlaps
resolved by kind, bad and cut-short files refused naming the file."""

import ipaddress
import json
from datetime import date
from pathlib import Path

import pytest

from leadloop.domain.range_sources import build, dump, read_source, write_ranges
from leadloop.domain.ranges import RangesError, load_ranges, parse_ranges

COPIES = Path(__file__).resolve().parents[3] / "scripts" / "ranges"
DAY = date(2026, 12, 1)

# excerpts of the real lists, in their own shapes (the first entries of the copies scripts/ranges/README.md names)
AWS = {
    "syncToken": "1787297825",
    "createDate": "2026-08-21-07-37-05",
    "prefixes": [
        {"ip_prefix": "3.4.12.4/32", "region": "eu-west-1", "service": "AMAZON", "network_border_group": "eu-west-1"},
        {"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "service": "AMAZON", "network_border_group": "x"},
    ],
    "ipv6_prefixes": [
        {
            "ipv6_prefix": "2406:daba:f000::/40",
            "region": "ap-southeast-4",
            "service": "AMAZON",
            "network_border_group": "x",
        }
    ],
}
AZURE = {
    "changeNumber": 363,
    "cloud": "Public",
    "values": [
        {"name": "ActionGroup", "id": "ActionGroup", "properties": {"addressPrefixes": ["4.145.74.52/30"]}},
        {
            "name": "AzureCloud",
            "id": "AzureCloud",
            "properties": {"changeNumber": 1, "addressPrefixes": ["4.144.0.0/17", "40.93.0.0/23", "40.93.2.0/24"]},
        },
    ],
}
APPLE = (
    b"172.224.226.0/27,GB,GB-EN,London,\n"
    b"172.224.226.32/31,GB,GB-SC,Aberdeen,\n"
    b"2606:54c0::/35,GB,GB-EN,London,\n"  # the location fields of this one are not from the list
)


def read(name: str, data: object | bytes) -> list:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return read_source(name, raw, DAY)


def test_each_providers_format_is_told_by_its_content() -> None:
    (aws,) = read("aws.json", AWS)
    assert (aws.source.id, aws.source.kind, aws.source.published) == ("aws", "cloud", date(2026, 8, 21))
    assert ipaddress.ip_network("2406:daba:f000::/40") in aws.networks
    (azure,) = read("tags.json", AZURE)
    assert azure.source.id == "azure" and azure.source.published == DAY  # the tags carry no date: the download's
    assert [str(n) for n in azure.networks] == ["4.144.0.0/17", "40.93.0.0/23", "40.93.2.0/24"]
    (relay,) = read("egress.csv", APPLE)
    assert relay.source.kind == "private_relay" and len(relay.networks) == 3
    (goog,) = read_source("goog.json", (COPIES / "goog.json").read_bytes(), DAY)
    (cloud,) = read_source("cloud.json", (COPIES / "cloud.json").read_bytes(), DAY)
    assert (goog.source.kind, goog.minus, cloud.source.kind) == ("mail_proxy", "google-cloud", "cloud")
    assert goog.source.published == cloud.source.published == date(2026, 8, 21)
    (m365,) = read_source("m365.json", (COPIES / "m365-worldwide.json").read_bytes(), DAY)
    assert m365.source.kind == "gateway"
    # Exchange's entries only (ids 1, 2, 9, 10), not SharePoint's or Teams'
    assert ipaddress.ip_network("40.92.0.0/15") in m365.networks
    assert ipaddress.ip_network("52.112.0.0/14") not in m365.networks
    documented = read_source("documented.csv", (COPIES / "documented-ranges.csv").read_bytes(), DAY)
    by_id = {s.source.id: s for s in documented}
    assert by_id["apple"].source.kind == "apple" and by_id["mimecast"].source.kind == "gateway"
    assert all(s.source.url.startswith("https://") for s in documented)


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("list.json", b'{"prefixes": []}', "list.json: a JSON file leadloop cannot place"),
        ("list.txt", b"hello\nworld\n", "list.txt: not a format leadloop reads"),
        ("list.bin", b"\xff\xfe\x00", "list.bin: not text"),
        ("aws.json", json.dumps(AWS).encode()[:-40], "aws.json: not whole JSON, cut short?"),
        ("egress.csv", APPLE + b"172.224.2", "egress.csv: line 4: 1 fields, not Apple's 5"),
        ("egress.csv", APPLE.replace(b"172.224.226.32/31", b"172.224.226.33/31"), "egress.csv: line 2"),
        ("aws.json", json.dumps({**AWS, "prefixes": [{"ip_prefix": "3.5.140.1/22"}]}).encode(), "host bits set"),
        ("aws.json", json.dumps({**AWS, "createDate": "soon"}).encode(), "aws.json: createDate: 'soon' is not"),
        ("tags.json", json.dumps({**AZURE, "values": AZURE["values"][:1]}).encode(), "no AzureCloud tag"),
        (
            "aws.json",
            json.dumps({**AWS, "ipv6_prefixes": [{"ipv6_prefix": "::ffff:0:0/96"}]}).encode(),
            "aws.json: ipv6_prefixes[0]: ::ffff:0:0/96: an IPv4-mapped network",
        ),
        (
            "documented.csv",
            b"network,kind,source,provider,url,checked\n1.2.3.0/24,robot,x,X,https://x,2026-12-01\n",
            "documented.csv: line 2: kind 'robot'",
        ),
    ],
)
def test_a_bad_or_cut_short_list_is_refused_naming_the_file(name: str, raw: bytes, says: str) -> None:
    with pytest.raises(RangesError) as caught:
        read_source(name, raw, DAY)
    assert says in str(caught.value), str(caught.value)


def test_kinds_decide_who_keeps_shared_addresses_and_the_result_has_no_overlap() -> None:
    m365 = read_source("m365.json", (COPIES / "m365-worldwide.json").read_bytes(), DAY)
    built = build(None, [*read("tags.json", AZURE), *m365], DAY)
    # Azure's AzureCloud tag holds 40.93.0.0/23, inside Microsoft 365's EOP 40.92.0.0/15: the gateway keeps it
    assert built.lookup("40.93.0.5").kind == "gateway"  # type: ignore[union-attr]
    assert built.by_source()["azure"] == ["4.144.0.0/17"]
    assert parse_ranges(json.loads(dump(built))).as_data() == built.as_data()


def test_googles_own_ranges_are_goog_json_less_cloud_json() -> None:
    goog = read_source("goog.json", (COPIES / "goog.json").read_bytes(), DAY)
    cloud = read_source("cloud.json", (COPIES / "cloud.json").read_bytes(), DAY)
    built = build(None, [*goog, *cloud], DAY)
    assert built.lookup("66.102.1.1").kind == "mail_proxy"  # type: ignore[union-attr]  # Gmail's image proxy
    assert built.lookup("34.66.1.1").kind == "cloud"  # type: ignore[union-attr]  # listed in cloud.json
    with pytest.raises(RangesError, match="google leaves out google-cloud's ranges: give google-cloud's file too"):
        build(None, goog, DAY)
    with pytest.raises(RangesError, match="source google given by more than one file"):
        build(None, [*goog, *goog, *cloud], DAY)


def test_an_update_keeps_the_other_sources_and_replaces_the_given_ones() -> None:
    first = build(None, [*read("aws.json", AWS), *read("tags.json", AZURE)], DAY)
    newer = {**AWS, "createDate": "2026-11-30-01-02-03", "prefixes": AWS["prefixes"][1:]}
    second = build(first, read("aws.json", newer), date(2026, 12, 2))
    assert second.by_source()["azure"] == first.by_source()["azure"]
    assert "3.4.12.4/32" not in second.by_source()["aws"] and "3.5.140.0/22" in second.by_source()["aws"]
    assert str(second.sources["aws"].published) == "2026-11-30" and str(second.generated) == "2026-12-02"
    assert second.version != first.version


def test_writing_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "ranges.json"
    built = build(None, read("aws.json", AWS), DAY)
    write_ranges(built, target)
    assert load_ranges(target).as_data() == built.as_data()
    assert [p.name for p in tmp_path.iterdir()] == ["ranges.json"]  # no temporary file left beside it
