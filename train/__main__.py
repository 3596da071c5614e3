"""`python -m train CONFIG` / `torchrun --nproc-per-node N -m train CONFIG`."""
import sys

from train.loop import main

if __name__ == "__main__":
    sys.exit(main())
