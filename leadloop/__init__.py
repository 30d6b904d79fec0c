"""leadloop: durable lead nurture and recycle automation on Temporal."""

from pathlib import Path

#: The project's root: cadences, templates, migrations and examples live beside the packages.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
