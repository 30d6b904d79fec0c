"""`make ranges`: rebuild the shipped ranges file (leadloop/data/ranges/machine-ranges.json) from the copies of the
providers' lists it was built from, each checked against its recorded SHA-256 (scripts/ranges/README.md says where
each copy comes from; the large ones are not in the repository: put them in scripts/ranges/downloads/)."""

import argparse
import hashlib
import ipaddress
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from leadloop.domain.range_sources import build, read_source, write_ranges
from leadloop.domain.ranges import PACKAGED_RANGES, RangesError

HERE = Path(__file__).resolve().parent / "ranges"


@dataclass(frozen=True)
class Copy:
    """One provider list as copied: its file, its SHA-256, and the day it was taken when its format carries none."""

    name: str
    sha256: str
    taken: date | None = None
    large: bool = False


COPIES = (
    Copy("ip-ranges.json", "626b06718bb594fe6a5190080f1be23fec524327bd4e1461b0b99b72b96efc84", large=True),
    Copy("goog.json", "f9eea579e4cf0a44ba2d02f584014c04786471167c27c8657614a7d8f1f78e6d"),
    Copy("cloud.json", "81b6a5d4c085decf1362c9541a018980883ddfe71d9d7520fb0e45990e5bee20"),
    Copy(
        "ServiceTags_Public.json",
        "e3f431d8d6919030b13620f1c460fe3d5a28b6d7bb3ce93c988522db4705719f",
        date(2025, 7, 22),
        large=True,
    ),
    Copy(
        "private-relay-merged.txt",
        "1d9a988e3b0167260eed07f603566374b261a8aa40f116672cb5cf2d408db227",
        date(2026, 8, 17),
        large=True,
    ),
    Copy("m365-worldwide.json", "5ac74b9a09b380eb9d1eb3d141aefe85a22ec199ff57ae3abc183b2f12dcb514", date(2026, 12, 1)),
    Copy("documented-ranges.csv", ""),  # leadloop's own, kept in the repository; each row dated
)
GENERATED = date(2026, 12, 1)


def relay_csv(merged: bytes) -> bytes:
    """The merged copy of Apple's egress list (its first column, adjacent networks merged) as rows of Apple's CSV
    with the location fields empty: the shape `leadloop ranges update` reads."""
    lines = [line.strip() for line in merged.decode().splitlines() if line.strip()]
    return "".join(f"{ipaddress.ip_network(line)},,,,\n" for line in lines).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--downloads", type=Path, default=HERE / "downloads", help="folder of the large copies")
    parser.add_argument("--out", type=Path, default=PACKAGED_RANGES)
    args = parser.parse_args()
    given = []
    for copy in COPIES:
        path = (args.downloads if copy.large else HERE) / copy.name
        try:
            raw = path.read_bytes()
        except OSError as exc:
            print(f"error: {path}: {exc.strerror or exc} (scripts/ranges/README.md says where to get it)")
            return 1
        if copy.sha256 and hashlib.sha256(raw).hexdigest() != copy.sha256:
            print(f"error: {path} is not the copy the shipped file was built from (SHA-256 differs)")
            return 1
        if copy.name == "private-relay-merged.txt":
            raw = relay_csv(raw)
        try:
            given += read_source(str(path), raw, copy.taken or GENERATED)
        except RangesError as exc:
            print(f"error: {exc}")
            return 1
    ranges = build(None, given, GENERATED)
    write_ranges(ranges, args.out)
    print(f"wrote {args.out}: {len(ranges)} ranges, version {ranges.version}, {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
