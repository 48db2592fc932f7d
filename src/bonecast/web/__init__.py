"""The clinician web app: server-rendered pages (Jinja2, a few lines of JS, SVG charts).

Sign-in with a signed session cookie, the worklist, patient pages with charts and the
recommendation, forms for scans, labs and treatments, per-patient reports (HTML and PDF), and
a virtual-trial page for researchers.
Decision support for professionals, not a medical device.
"""

from bonecast.web.pages import mount_web
from bonecast.web.trials_page import mount_trials

__all__ = ["mount_trials", "mount_web"]
