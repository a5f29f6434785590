"""`python -m bench` (`make bench`), run from the project root: relaunched once like the
pipeline's computing commands (mimalloc, the pinned numerics of params.yaml: runtime/launch.py),
so the figures are those of the stages, then `bench.run`."""

import os
import sys

from musicgen_lora.__main__ import launch_vars
from musicgen_lora.runtime.launch import relaunch, scrub

relaunch(sys.argv[1:], launch_vars(os.environ), module="bench")
scrub()

from bench.run import main  # noqa: E402  (after the relaunch: torch is imported there)

sys.exit(main())
