"""leadloop: durable lead nurture and recycle automation on Temporal."""

from pathlib import Path

#: What the package reads at run time, shipped inside it so a wheel carries it: the sample cadences
#: (cadences/), the email and page templates (templates/), the Alembic migrations (migrations/) and the
#: demo's sample leads and reps (examples/). The repo's top-level folders of those names link here.
DATA_DIR = Path(__file__).resolve().parent / "data"

#: The checkout's root (where pyproject.toml is) when leadloop runs from one; for tests, scripts and bench.
#: Installed from a wheel this is site-packages: nothing leadloop reads or writes at run time is found from it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
