"""`python -m train CONFIG` / `torchrun --nproc-per-node N -m train CONFIG`."""
import sys

from train.loop import main
from uvd import logs, progress

if __name__ == "__main__":
    logs.configure(0, ("uvd", "train", "tokenize_job"))
    progress.configure("bar" if sys.stderr.isatty() else "lines")
    sys.exit(main())
