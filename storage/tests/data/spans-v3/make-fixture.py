# Writes data/spans/2026-11-20.redb in format 3 (rolled and sealed: hour and day blobs, no day
# overviews): the spans of ../spans-v2/make-fixture.py, then 25 s for the compactions (every 10 s)
# to roll the long-finished day and seal it. Run in an empty directory with the format-3 binary
# (commit 55a9a53):
#   python3 make-fixture.py /path/to/mcp-obs && cp data/spans/2026-11-20.redb .
import os, subprocess, sys
here = os.path.dirname(os.path.abspath(__file__))
subprocess.run([sys.executable, os.path.join(here, "..", "spans-v2", "make-fixture.py"), sys.argv[1]],
               env=dict(os.environ, FIXTURE_WAIT_S="25"), check=True)
