"""The app the status tests run (``tests.apps.status_tasks:app``): the handlers of
``tests.apps.tasks`` under one job type per catalogue ``status`` setting (and ``satask``, the
async one, recording everything)."""

from __future__ import annotations

import os
from pathlib import Path

from streamjobs._worker import App
from tests.apps.tasks import atask, task

app = App(schemas=Path(__file__).parent / "status_schemas", name="tests-status",
          topic_prefix=os.environ.get("STREAMJOBS_TOPIC_PREFIX", ""))
for _name in ("stask", "ftask", "ntask"):
    app.job(_name)(task)
app.job("satask")(atask)
